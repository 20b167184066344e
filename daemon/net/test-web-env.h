/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A real web front for the net tests: Web on LoopUv and sd-event, a private Redis, the real auth helper under pam_matrix, loopback clients. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "net/services.h"
#include "net/web.h"
#include "net/ws.h"
#include "store/session.h"
#include "test/test-pam-env.h"
#include "test/test-redis-server.h"

#define TEST_MSEC UINT64_C(1000)
#define TEST_SEC UINT64_C(1000000)

/* What the web front reported through its hooks. */
typedef struct Recorder {
        unsigned ready;
        int ready_result;               /* what conn_ready answers */
        unsigned commands;
        CommandType last_type;
        char last_room[ROOM_ID_MAX + 1];
        char last_message[2048];
        char last_ref[REF_MAX + 1];
        unsigned closed;
        Conn *last_ready, *last_closed;
        unsigned conns;                 /* the last count conns_changed gave */
        unsigned conns_changes;
        unsigned peers_removed;
        unsigned rooms_json;
        bool healthy;
        unsigned logouts;
        char logout_session[SESSION_ID_MAX + 1];
} Recorder;

typedef struct TestWeb {
        sd_event *event;
        LoopUv *uv;
        Redis *redis;
        bool redis_connected;
        AuthClient *auth;
        LoginLimiter *login_limiter;
        StaticFiles *static_files;
        WebServices services;
        WebStats stats;
        Web *web;
        Recorder rec;

        TestRedis redis_server;
        char dir[64];                   /* web root and PAM files */
        char helper[512];
        int listen_fd;
        unsigned port;
        char host[32];                  /* "127.0.0.1:PORT", the Host header */
} TestWeb;

/* A growing receive buffer for a client socket. */
typedef struct Buf {
        char *data;
        size_t len;
        bool eof;
} Buf;

/* An HTTP response as the client saw it. */
typedef struct HttpReply {
        unsigned status;
        char *headers;                  /* the header block, lines ending in \r\n */
        char *body;
        size_t body_len;
} HttpReply;

/* Everything up and running; EXIT_TEST_SKIP when redis-server, pam_wrapper
 * or nss_wrapper is missing (Debian: redis-server, libpam-wrapper,
 * libnss-wrapper; .ci/run installs them). */
int test_web_setup(TestWeb *t);
void test_web_teardown(TestWeb *t);

/* One round of the loop (at most timeout). */
void test_web_run(TestWeb *t, uint64_t timeout);
void test_web_run_for(TestWeb *t, uint64_t usec);

/* A TCP loopback connection whose server end Web adopted; the client end
 * is non-blocking. */
int test_web_connect(TestWeb *t);
/* Reads what is there without waiting; sets b->eof on EOF or a reset. */
void buf_fill(Buf *b, int fd);
void buf_consume(Buf *b, size_t n);
void buf_done(Buf *b);
/* Runs the loop while the socket buffer is full. */
void test_web_send(TestWeb *t, int fd, const void *data, size_t len);

/* A session stored in Redis through store/session.h. */
void test_web_session(TestWeb *t, const char *user, uid_t uid, bool staff, char ret_id[static SESSION_ID_MAX + 1],
                      char *ret_csrf);
/* Whether the session is in Redis (the side channel). */
bool test_web_session_exists(TestWeb *t, const char *id);

/* Sends request on a new connection, runs the loop until the whole
 * response is in (Content-Length) or timeout, and closes. */
void http_get(TestWeb *t, const char *request, HttpReply *ret, uint64_t timeout);
/* The same on a connection the caller keeps. */
void http_exchange(TestWeb *t, int fd, Buf *b, const char *request, HttpReply *ret, uint64_t timeout);
/* A header's value (first occurrence from index on), malloc'd, or NULL. */
char *http_reply_header(const HttpReply *r, const char *name, unsigned index);
void http_reply_done(HttpReply *r);
