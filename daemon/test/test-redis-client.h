/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The event loop, clock and setup the Redis client's unit tests drive their clients with. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "test/test-redis-server.h"

#define SEC 1000000ULL

/* What a reply handler keeps of a reply for the test to assert on, after
 * hiredis has freed it. */
typedef struct TestReply {
        unsigned calls;
        bool null;                      /* the handler got NULL: the command was never answered */
        int type;
        long long integer;
        size_t len;                     /* of the whole string, also when str holds only its start */
        char str[256];                  /* binary-safe up to its size, always NUL-terminated */
        size_t elements;
        char element[4][64];            /* the first elements' strings ... */
        long long element_int[4];       /* ... and integers */
} TestReply;

/* Counts the call and records reply (NULL too) into out. */
void test_reply_record(TestReply *out, const redisReply *reply);

uint64_t test_now_usec(void);

/* A TCP port of 127.0.0.1 that was free a moment ago. */
int test_free_tcp_port(void);

/* Runs the loop until done(arg) holds or timeout has passed; returns
 * done(arg), so that the caller asserts where it waited. */
bool test_run_until(sd_event *e, bool (*done)(const void *arg), const void *arg, uint64_t timeout);
/* The same until *flag is set. */
bool test_run_until_set(sd_event *e, const bool *flag, uint64_t timeout);
/* Runs the loop for usec, whatever happens. */
void test_run_for(sd_event *e, uint64_t usec);

/* test_redis_init(), and the test's exit as skipped when redis-server is
 * not installed. SIGPIPE is ignored, as in the daemon: a server killed
 * under a client must not kill the test. */
void test_redis_init_or_skip(TestRedis *s, const char *sock_name);
