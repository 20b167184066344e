/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon: builds every part from the configuration, wires them together, signals, readiness, shutdown. */
#pragma once

#include <systemd/sd-event.h>

#include "net/services.h"
#include "readiness.h"

typedef struct Admin Admin;
typedef struct AuthClient AuthClient;
typedef struct Bus Bus;
typedef struct Chat Chat;
typedef struct Config Config;
typedef struct Listener Listener;
typedef struct LoopUv LoopUv;
typedef struct Redis Redis;
typedef struct Web Web;

/* The only module that knows every other: it owns them, fills their hooks
 * and passes each its real dependencies. */
typedef struct Manager {
        sd_event *event;
        Config *config;               /* live settings, replaced on SIGHUP */
        Config *config_boot;          /* what connections to Redis, the bus and the auth helper were made with */
        char **argv;                  /* for reloading the config on SIGHUP */
        int argc;
        char **auth_helper_args;

        LoopUv *uv;
        Redis *redis;
        AuthClient *auth;
        Chat *chat;
        WebServices web_services;
        WebStats web_stats;
        Web *web;
        Listener *listener;
        Admin *admin;
        Bus *bus;

        Readiness readiness;
        bool exiting;                 /* everything closed; waiting for Redis to take the last writes */
        bool reloading;
        int exit_code;
        bool redis_was_connected;
        uint64_t redis_reconnects;    /* connections made again after a loss */

        sd_event_source *status_timer;
        sd_event_source *shutdown_timer;
        uint64_t last_heartbeat_usec;
} Manager;

/* Redis or a sentinel refused our credentials before we were ever
 * connected, or a password file could not be read: a restart cannot help,
 * so multichat.service names it in RestartPreventExitStatus=. manager_new()
 * returns -ENOKEY for the latter. */
#define EXIT_REDIS_CREDENTIALS 78       /* EX_CONFIG */

/* Takes config, also when it fails. */
int manager_new(Manager **ret, Config *config, int argc, char *argv[]);
Manager *manager_free(Manager *m);
int manager_start(Manager *m);
int manager_run(Manager *m);

/* Begins an orderly shutdown: close every WebSocket with 1001, then exit. */
void manager_stop(Manager *m, int exit_code);

static inline void manager_freep(Manager **m) {
        manager_free(*m);
}
