/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One WebSocket connection: receive, reassemble, dispatch commands, bounded write queue. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

struct lws;
typedef struct Manager Manager;
typedef struct Membership Membership;

/* Close codes of our own (RFC 6455 leaves 4000-4999 to applications). */
#define WS_CLOSE_LOGGED_OUT 4001
/* RFC 6455's registry has 1013 (try again later); lws 4.1 names no constant. */
#define WS_CLOSE_TRY_AGAIN_LATER 1013

/* Commands that arrive before the session is checked wait, this many. */
#define WS_HELD_COMMANDS_MAX 16
#define WS_ROOMS_MAX 100
/* Bytes of queued frames written in one go (one send()). */
#define WS_BATCH_MAX (16 * 1024)

typedef enum ConnState {
        CONN_VALIDATING,      /* session and staff flag being checked */
        CONN_READY,
        CONN_CLOSED,          /* lws is done with it; only pending replies keep it */
} ConnState;

typedef struct Conn Conn;

struct Conn {
        unsigned n_ref;
        Manager *manager;
        struct lws *wsi;              /* NULL once closed */
        Conn *prev, *next;            /* the manager's list */
        uint64_t serial;
        ConnState state;

        char session_id[64];
        char username[65];
        bool staff;
        char peer[64];
        uint64_t since_usec;          /* CLOCK_REALTIME */

        char *rx;                     /* message being reassembled */
        size_t rx_len;
        bool rx_binary;

        Frame **queue;                /* ring of frames to send */
        unsigned queue_head, queue_len, queue_allocated;

        double tokens;                /* rate limit: token bucket */
        uint64_t tokens_usec;
        unsigned strikes;

        Membership **memberships;
        size_t n_memberships;

        char *held[WS_HELD_COMMANDS_MAX];
        size_t held_len[WS_HELD_COMMANDS_MAX];
        unsigned n_held;

        bool close_requested;
        bool close_sent;
        uint16_t close_code;
        char close_reason[64];

        void *pending_session;
        void *pending_auth;
};

int ws_conn_new(Conn **ret, Manager *m, struct lws *wsi, const char *session_id, const char *peer);
/* LWS_CALLBACK_CLOSED: leaves every room and drops lws's reference. */
void ws_conn_closed(Conn *c);

Conn *ws_conn_ref(Conn *c);
Conn *ws_conn_unref(Conn *c);

/* lws callbacks; return what the lws callback should return. */
int ws_conn_on_receive(Conn *c, const void *in, size_t len);
int ws_conn_on_writeable(Conn *c);

/* Queues a frame (takes a new reference). A receiver whose queue is full
 * is closed with 1013 rather than allowed to grow without end. */
void ws_conn_send(Conn *c, Frame *f);
/* Queues a malloc'd JSON text, taking ownership. */
void ws_conn_send_json(Conn *c, char *json);
/* Closes once what is queued has gone out. */
void ws_conn_close(Conn *c, uint16_t code, const char *reason);

static inline bool ws_conn_is_open(const Conn *c) {
        return c->state != CONN_CLOSED && !c->close_requested;
}
