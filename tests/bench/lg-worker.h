/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One load generator worker process: an epoll loop over many client connections (members, logins, reconnects). */
#pragma once

#include <netinet/in.h>
#include <stdint.h>

#include "lg-stats.h"

#define MAX_TARGETS 32                  /* daemons: idle-200k spreads over as many as the fd limit needs */
#define COOKIE_MAX 128
#define SETUP_STEP (MAX_STEPS - 1)      /* counters of the setup phase go here */

/* Everything a worker needs to know, fixed before the fork. */
typedef struct Params {
        unsigned n_workers;
        struct sockaddr_in targets[MAX_TARGETS];
        char target_host[MAX_TARGETS][32];      /* "127.0.0.1:PORT", for Host and Origin */
        unsigned n_targets;

        unsigned n_users;                       /* accounts user_prefix + i in user_width digits */
        char user_prefix[24];
        unsigned user_width;
        char password[64];

        /* Member connections: member i talks to targets[i % n_targets] as
         * user i % n_member_users; with rooms, it joins room i / members
         * and sends when i % members < senders. */
        unsigned n_members;
        unsigned n_member_users;
        char **room_ids;
        unsigned n_rooms;
        unsigned members;
        unsigned senders;
        unsigned message_bytes;
        unsigned connect_concurrency;           /* handshakes in flight per worker */

        unsigned login_user_base;               /* storm slot j logs in as user login_user_base + j */

        /* A member whose connection drops reconnects with its cookie as the
         * page does (web/render.js backoffDelay), joins its room again with
         * `since` the last message id it saw, and counts the messages whose
         * text begins with "away " that the join brings back. */
        bool rejoin;
        unsigned away;                          /* such messages per room: a member has them all */
} Params;

enum {
        CMD_LOGIN_USERS = 1,    /* log in users w, w + W, ...; cookies into the shared table */
        CMD_CONNECT,            /* open members up to `n` (global count) */
        CMD_STEP,               /* send / run slots from t0 to t_end */
        CMD_PROBE,              /* ping every open member once; pongs are counted in the shm */
        CMD_QUIT,
};

typedef struct Cmd {
        uint32_t op;
        uint32_t step;
        uint64_t t0_ns, t_end_ns;
        double rate;                    /* chat messages per second, all workers together */
        uint32_t send_slot, send_slots; /* message i is this worker's when i % send_slots == send_slot */
        uint64_t n;
        uint32_t right_slots, wrong_slots, reconnect_slots;     /* totals over all workers */
        uint32_t reconnect_join;        /* reconnect slots also join a room before closing */
        uint64_t stagger_ns;            /* wrong-password slots start spread over this, not at once */
} Cmd;

/* Runs worker `id` until CMD_QUIT; commands arrive on cmd_fd, one byte per
 * finished command goes back on ack_fd. shm is this worker's statistics;
 * cookies the table of session cookies (n_users × COOKIE_MAX), shared. */
int worker_run(const Params *p, unsigned id, int cmd_fd, int ack_fd, WorkerShm *shm, char *cookies);
