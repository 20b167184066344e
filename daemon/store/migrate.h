/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The move of Redis data from the first key layout to layout 2 (store.h), once, by one daemon among all that start. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"
#include "redis/redis.h"

/* The lock mc:migrate-lock holds the migrating daemon's id for this long,
 * renewed every third of it while the migration goes on: a daemon killed
 * halfway lets another take over within this time, and resume (every
 * step can be done twice). */
#define MIGRATE_LOCK_MSEC 10000u
/* How often a daemon that waits for another one looks again. */
#define MIGRATE_POLL_MSEC 250u

typedef struct Migrate Migrate;

typedef enum MigrateState {
        MIGRATE_IDLE,
        MIGRATE_CHECKING,       /* reading mc:schema */
        MIGRATE_WAITING,        /* another daemon holds the lock */
        MIGRATE_MIGRATING,      /* this daemon holds it and moves keys */
        MIGRATE_DONE,           /* mc:schema says 2 */
        MIGRATE_REFUSED,        /* a Redis Cluster with keys of the first layout, or a newer layout */
        MIGRATE_FAILED,         /* an error from Redis, or the connection dropped: start again */
} MigrateState;

/* Called once per migrate_start(): 0 when mc:schema says 2; -EMEDIUMTYPE
 * refused (see MIGRATE_REFUSED); -ENOTCONN the connection dropped; -EIO
 * Redis answered with an error. */
typedef void (*MigrateHandler)(Migrate *m, int error, void *userdata);

int migrate_new(Migrate **ret, sd_event *event, Redis *redis, const char *daemon_id,
                MigrateHandler cb, void *userdata);
/* Touches no Redis: free the Redis client first (which answers what is
 * in flight with NULL, and the handler runs), or call migrate_stop() while
 * it lives. */
Migrate *migrate_free(Migrate *m);
DEFINE_CLEANUP_FUNC(Migrate *, migrate_free);

/* Begins (again, after a failure or on a new connection). */
int migrate_start(Migrate *m);
/* Drops what is in flight without calling the handler, back to idle. */
void migrate_stop(Migrate *m);

MigrateState migrate_state(const Migrate *m);
const char *migrate_state_to_string(MigrateState s);
/* Since the last migrate_start(): whether this daemon moved the data (it
 * held the lock to the end), and how many keys it moved. */
bool migrate_did_migrate(const Migrate *m);
unsigned migrate_keys_moved(const Migrate *m);
/* Since the last migrate_start(): whether it found another daemon's lock. */
bool migrate_waited(const Migrate *m);
/* Why it was refused, for the log; "" otherwise. */
const char *migrate_refusal(const Migrate *m);

/* The layout 2 name of a first-layout key: 1 and the new name in buf, 0
 * when the key goes (presence, which daemons rebuild), -EINVAL when it is
 * not a key of the first layout (left alone), -ENOBUFS. */
int migrate_key_name(const char *old, char *buf, size_t size);
