/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* WebSocket connections and their hub: receive, reassemble, rate limit, bounded write queues, batched writes, keep-alive. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/list.h"
#include "basic/time-util.h"
#include "net/services.h"
#include "store/session.h"
#include "wire/frame.h"

struct lws;
typedef struct AuthRequest AuthRequest;
typedef struct WsHub WsHub;

/* Close codes of our own (RFC 6455 leaves 4000-4999 to applications). */
#define WS_CLOSE_LOGGED_OUT 4001
/* RFC 6455's registry has 1013 (try again later); lws 4.1 names no constant. */
#define WS_CLOSE_TRY_AGAIN_LATER 1013

/* Commands that arrive before the session is checked wait, this many. */
#define WS_HELD_COMMANDS_MAX 16
/* Frames a connection queues without an allocation of its own: what a
 * quiet connection needs. */
#define WS_QUEUE_INLINE 2
/* How long a closing connection may take to send what is queued and its
 * close frame before it is reset. */
#define WS_CLOSE_GRACE_USEC (2 * USEC_PER_SEC)
/* Bytes of queued frames written in one go (one send()). */
#define WS_BATCH_MAX (16 * 1024)


typedef enum ConnState {
        CONN_VALIDATING,      /* session and staff flag being checked */
        CONN_READY,
        CONN_CLOSED,          /* lws is done with it; only pending replies keep it */
} ConnState;

typedef struct Conn Conn;

/* A command that arrived before the session was checked. */
typedef struct HeldCommand {
        char *data;
        size_t len;
} HeldCommand;

struct Conn {
        unsigned n_ref;
        WsHub *hub;
        struct lws *wsi;              /* NULL once closed */
        LIST_FIELDS(Conn, conns);     /* the hub's list */
        Conn *write_next;             /* the hub's list of connections to write to */
        void *userdata;               /* the owner's, from the conn_ready hook on */
        ConnState state;
        bool staff;
        bool write_scheduled;
        bool ping_sent;
        bool close_requested;
        bool close_sent;
        bool rx_binary;
        uint16_t close_code;
        const char *close_reason;     /* a string literal */

        char session_id[SESSION_ID_MAX + 1];
        char username[USERNAME_MAX + 1];
        char peer[47];                /* an IPv6 address at most */
        uint64_t since_usec;          /* CLOCK_REALTIME */
        uint64_t last_rx_usec;        /* CLOCK_MONOTONIC: when the peer last sent anything */
        uint64_t session_used_usec;   /* CLOCK_MONOTONIC: when this connection last refreshed its session */
        uint64_t close_usec;          /* CLOCK_MONOTONIC: when the close was asked for */

        char *rx;                     /* message being reassembled */
        size_t rx_len;

        Frame **queue;                /* ring of frames to send: queue_inline, or allocated */
        unsigned queue_head, queue_len, queue_allocated;
        Frame *queue_inline[WS_QUEUE_INLINE];

        unsigned strikes;
        double tokens;                /* rate limit: token bucket */
        uint64_t tokens_usec;

        unsigned n_held;
        HeldCommand *held;            /* WS_HELD_COMMANDS_MAX, allocated on first use */

        SessionRequest *pending_session;
        AuthRequest *pending_auth;
};

/* The hub owns every live connection, the list of those with frames to
 * write, the buffer batched writes are put together in, and the keep-alive
 * sweep. services must outlive it. */
int ws_hub_new(WsHub **ret, const WebServices *services);
/* Every connection must be closed (lws destroyed them) before. */
WsHub *ws_hub_free(WsHub *hub);
unsigned ws_hub_count(const WsHub *hub);
/* The first connection of the hub's list; go on with c->conns_next. */
Conn *ws_hub_first(WsHub *hub);
/* Closes every connection (shutdown). */
void ws_hub_close_all(WsHub *hub, uint16_t code, const char *reason);
/* Writes to every connection that got frames since the last call: run
 * once per loop iteration (a deferred event source does), so frames from
 * one batch of Redis replies go out together and a connection with nothing
 * pending costs no poll changes. */
void ws_hub_write_scheduled(WsHub *hub);

int ws_conn_new(Conn **ret, WsHub *hub, struct lws *wsi, const char *session_id, const char *peer);
/* LWS_CALLBACK_CLOSED: leaves every room and drops lws's reference. */
void ws_conn_closed(Conn *c);

Conn *ws_conn_ref(Conn *c);
Conn *ws_conn_unref(Conn *c);

/* lws callbacks; return what the lws callback should return. */
int ws_conn_on_receive(Conn *c, const void *in, size_t len);
void ws_conn_on_pong(Conn *c);
int ws_conn_on_writeable(Conn *c);
/* LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: a close code a peer may not send
 * (or a one-byte payload) is answered with 1002, a reason that is not
 * UTF-8 with 1007, instead of lws 4.1's echo. */
int ws_conn_on_peer_close(Conn *c, const void *in, size_t len);

/* Pings connections quiet for keepalive and hangs up on those that stay
 * quiet as long again, so a vanished client leaves its rooms; an open
 * connection keeps its login session from expiring as unused. The hub's
 * timer runs it; exposed for tests. */
void ws_hub_keepalive(WsHub *hub, uint64_t now_usec);

/* Queues a frame (takes a new reference). A receiver whose queue is full
 * is closed with 1013 rather than allowed to grow without end: what it has
 * not been sent yet is dropped, so the close frame goes next. */
void ws_conn_send(Conn *c, Frame *f);
/* Queues a malloc'd JSON text, taking ownership. */
void ws_conn_send_json(Conn *c, char *json);
/* Closes once what is queued has gone out; a connection whose socket
 * takes none of that within WS_CLOSE_GRACE_USEC is reset (the keep-alive
 * sweep does it). The reason is a string literal. */
void ws_conn_close(Conn *c, uint16_t code, const char *reason);

static inline bool ws_conn_is_open(const Conn *c) {
        return c->state != CONN_CLOSED && !c->close_requested;
}
