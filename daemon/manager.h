/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one daemon context: event loop, web, Redis, rooms, bus; signals, notify, shutdown. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>
#include <libwebsockets.h>

#include "chat/overload.h"
#include "net/ws.h"

typedef struct AuthClient AuthClient;
typedef struct Bus Bus;
typedef struct Config Config;
typedef struct Conn Conn;
typedef struct Listener Listener;
typedef struct LoopUv LoopUv;
typedef struct Redis Redis;
typedef struct RoomRegistry RoomRegistry;
typedef struct StaticFiles StaticFiles;
typedef struct Web Web;
typedef struct LoginLimiter LoginLimiter;

#define DAEMON_ID_LEN 16

typedef struct Manager {
        sd_event *event;
        Config *config;               /* live settings, replaced on SIGHUP */
        Config *config_boot;          /* what connections to Redis, the bus and the auth helper were made with */
        char **argv;                  /* for reloading the config on SIGHUP */
        int argc;
        char **auth_helper_args;

        LoopUv *uv;
        Web *web;
        Listener *listener;
        Redis *redis;
        AuthClient *auth;
        Bus *bus;
        RoomRegistry *rooms;
        StaticFiles *static_files;
        LoginLimiter *login_limiter;

        /* Every live WebSocket connection, newest first. */
        Conn *conns;
        unsigned n_conns;

        /* Connections that got frames this loop iteration; written by
         * write_source at its end. Each holds a reference. */
        Conn *write_list;
        sd_event_source *write_source;
        Frame *ping_frame;

        Overload overload;
        uint64_t time_asked_usec;     /* CLOCK_REALTIME, when TIME was sent to Redis */

        uint64_t messages_relayed;
        Frame *rooms_frame;           /* the room list, serialized once per change */
        /* Scratch space for writing several queued frames at once; one
         * thread, so one buffer serves every connection. */
        unsigned char write_buffer[WS_BATCH_MAX];
        char daemon_id[DAEMON_ID_LEN + 1];   /* random per start; keys this daemon's presence in Redis */
        gid_t admin_gid;              /* (gid_t) -1 when the group does not exist */

        bool redis_ready;             /* connected and the room list loaded */
        bool bus_started;             /* asked for the name (after the rooms loaded) */
        bool bus_ready;
        bool ready_sent;
        bool stopping;
        bool exiting;                 /* everything closed; waiting for Redis to take the last writes */
        bool reloading;
        int exit_code;

        sd_event_source *status_timer;
        sd_event_source *keepalive_timer;
        sd_event_source *shutdown_timer;
        uint64_t last_heartbeat_usec;
} Manager;

int manager_new(Manager **ret, Config *config, int argc, char *argv[]);
Manager *manager_free(Manager *m);
int manager_start(Manager *m);
int manager_run(Manager *m);

/* Tells systemd how we are doing (READY=1 once Redis and the bus are up). */
void manager_update_notify(Manager *m);
/* Begins an orderly shutdown: close every WebSocket with 1001, then exit. */
void manager_stop(Manager *m, int exit_code);

void manager_conn_added(Manager *m);
void manager_conn_removed(Manager *m);
/* An accepted connection (HTTP or WebSocket) is gone. */
void manager_peer_removed(Manager *m);

static inline void manager_freep(Manager **m) {
        manager_free(*m);
}
