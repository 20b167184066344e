/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the web front (pages, login, WebSockets) needs of the daemon: its dependencies, settings and hooks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "wire/protocol.h"

typedef struct AuthClient AuthClient;
typedef struct Conn Conn;
typedef struct LoginLimiter LoginLimiter;
typedef struct LoopUv LoopUv;
typedef struct Redis Redis;
typedef struct StaticFiles StaticFiles;

typedef struct WebSettings {
        char *const *allowed_origins;   /* extra Origins WebSockets may come from */
        const char *tls_certificate;    /* NULL: plain HTTP */
        const char *tls_key;
        unsigned max_connections;       /* WebSockets */
        uint64_t keepalive_usec;        /* ping after this long quiet, drop after twice */
        uint64_t session_idle_usec;
        uint64_t session_max_usec;
        size_t max_message_bytes;
        double rate_limit;              /* commands per second per connection */
        unsigned rate_burst;
        unsigned send_queue_frames;     /* frames queued before a slow reader is closed */
        size_t max_header_bytes;        /* a request head's budget (used at start: lws's too) */
        uint64_t request_timeout_usec;  /* for a request head, then for its body */
        unsigned max_connections_per_address; /* per IPv4 address or IPv6 /64; 0: no limit */
} WebSettings;

/* What the web front counts, for /metrics; the owner keeps it and the net
 * modules increment it. Counters only grow. */
typedef struct WebStats {
        uint64_t connections_opened;    /* WebSockets that passed the handshake */
        uint64_t slow_readers_cut;      /* closed with 1013: the send queue was full */
        uint64_t refusals[_PROTOCOL_ERROR_MAX];   /* errors the net layer answered commands with */
        uint64_t logins_accepted;
        uint64_t logins_refused;        /* wrong password, unknown or disallowed account */
        uint64_t logins_throttled;      /* over login-attempts */
} WebStats;

/* How the web front reports upward; ud is WebServices.userdata. */
typedef struct WebHooks {
        /* A WebSocket passed its session check and takes commands now;
         * < 0 closes it. */
        int (*conn_ready)(void *ud, Conn *c);
        void (*conn_command)(void *ud, Conn *c, const Command *cmd);
        /* A WebSocket that was ready is gone. */
        void (*conn_closed)(void *ud, Conn *c);
        /* The number of WebSockets changed. */
        void (*conns_changed)(void *ud, unsigned n);
        /* An accepted connection, HTTP or WebSocket, is gone. */
        void (*peer_removed)(void *ud);
        /* GET /api/rooms: {"rooms": [...]}, malloc'd. */
        char *(*rooms_json)(void *ud);
        /* /healthz: whether the chat is served (Redis up, rooms loaded);
         * when not, *ret_reason says why in a few words (a static string). */
        bool (*healthy)(void *ud, const char **ret_reason);
        /* A logout: every daemon closes that session's WebSockets. */
        int (*publish_logout)(void *ud, const char *session_id);
        /* GET /metrics from peer (a numeric address): the Prometheus text,
         * malloc'd, in *ret; -EPERM when that address may not scrape. */
        int (*metrics)(void *ud, const char *peer, char **ret);
} WebHooks;

/* Filled by the owner, which keeps it valid until web_free() and may
 * change static_files and settings between events (a reload). */
typedef struct WebServices {
        sd_event *event;
        LoopUv *uv;
        Redis *redis;
        AuthClient *auth;
        LoginLimiter *login_limiter;
        StaticFiles *static_files;
        WebSettings settings;
        bool stopping;                  /* answer, then close: no next request */
        WebStats *stats;
        const WebHooks *hooks;
        void *userdata;
} WebServices;
