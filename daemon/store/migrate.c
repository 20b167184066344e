/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The move of Redis data from the first key layout to layout 2 (store.h), once, by one daemon among all that start. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/time-util.h"
#include "store/migrate.h"
#include "store/store.h"

/*
 * The first layout named keys without hash tags: mc:rooms, mc:rooms:seq,
 * mc:epoch, mc:room:<id>:{log,edits,edits-n,users,ref:...},
 * mc:user:<name>:{rooms,order}, mc:daemon:<d>:presence. Sessions
 * (mc:session:<id>), heartbeats and mc:daemons keep their names.
 *
 * One daemon moves them, holding mc:migrate-lock; the others wait until
 * mc:schema says 2. Each step can run twice (a RENAME whose source is gone
 * was done before), so a daemon that takes over an expired lock starts
 * again from the first step. Presence is dropped, not moved: the daemons
 * that held it stopped for the upgrade, and members' reconnects rebuild it.
 * Redis Cluster deployments start at layout 2: a cluster with first-layout
 * keys is refused, as moving keys between slots is a job for redis-cli.
 */

typedef enum Step {
        STEP_SCAN_ROOMS,
        STEP_SCAN_USERS,
        STEP_SCAN_PRESENCE,
        STEP_GLOBAL,
        STEP_MARKERS,
        STEP_SCHEMA,
        STEP_RELEASE,
        _STEP_MAX,
} Step;

static const char *const scan_patterns[] = {
        [STEP_SCAN_ROOMS] = "mc:room:*",
        [STEP_SCAN_USERS] = "mc:user:*",
        [STEP_SCAN_PRESENCE] = "mc:daemon:*:presence",
};

struct Migrate {
        sd_event *event;
        Redis *redis;
        char daemon_id[STORE_DAEMON_ID_MAX + 1];
        MigrateHandler cb;
        void *userdata;

        MigrateState state;
        sd_event_source *timer;         /* renews the lock (MIGRATING) or looks again (WAITING) */
        Step step;
        unsigned pending;               /* this step's commands in flight */
        char cursor[32];
        int error;
        bool lost;                      /* the lock went to another daemon */
        bool migrated;
        bool waited;                    /* found the lock taken at least once */
        unsigned moved;
        char refusal[160];
};

/* KEYS: the lock. ARGV: this daemon, ms. */
static RedisScript script_renew = { .source =
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
        "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
        "return 1\n"
};

/* KEYS: the lock. ARGV: this daemon. */
static RedisScript script_release = { .source =
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
        "return redis.call('DEL', KEYS[1])\n"
};

static int eval(Migrate *m, RedisScript *s, RedisReplyHandler cb, int nargs, const char **args) {
        const char *argv[4] = { STORE_MIGRATE_LOCK_KEY };

        if (!s->sha1[0])
                redis_script_init(s, s->source);
        for (int i = 0; i < nargs && i < 3; i++)
                argv[1 + i] = args[i];
        return redis_eval(m->redis, s, cb, m, 1, nargs, argv, NULL);
}

/* ---- names ---- */

static const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static bool all_digits(const char *s, size_t n) {
        if (n == 0 || n > ROOM_ID_MAX || s[0] == '0')
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* The tag's prefix, n bytes of the name in it, '}', the rest. */
static int name_out(char *buf, size_t size, const char *prefix, size_t n, const char *name, const char *rest) {
        int k = snprintf(buf, size, "%s%.*s}%s", prefix, (int) n, name, rest);

        return k < 0 || (size_t) k >= size ? -ENOBUFS : 1;
}

int migrate_key_name(const char *old, char *buf, size_t size) {
        static const struct {
                const char *old, *new;
        } globals[] = {
                { "mc:rooms", STORE_ROOMS_KEY },
                { "mc:rooms:seq", STORE_ROOMS_SEQ_KEY },
                { "mc:epoch", STORE_EPOCH_KEY },
        };
        const char *p, *colon;

        for (size_t i = 0; i < ELEMENTSOF(globals); i++)
                if (streq(old, globals[i].old))
                        return snprintf(buf, size, "%s", globals[i].new) < (int) size ? 1 : -ENOBUFS;

        if ((p = startswith(old, "mc:room:"))) {
                colon = strchr(p, ':');
                if (!colon || !all_digits(p, (size_t) (colon - p)))
                        return -EINVAL;
                if (streq(colon + 1, "users"))
                        return 0;
                if (streq(colon + 1, "log") || streq(colon + 1, "edits") || streq(colon + 1, "edits-n") ||
                    startswith(colon + 1, "ref:"))
                        return name_out(buf, size, STORE_ROOM_KEY_PREFIX, (size_t) (colon - p), p, colon);
                return -EINVAL;
        }
        if ((p = startswith(old, "mc:user:"))) {
                /* A user name has no ':' (login allows [A-Za-z0-9._-]); the
                 * last part says which key. */
                colon = strrchr(p, ':');
                if (!colon || colon == p || (size_t) (colon - p) > USERNAME_MAX || memchr(p, ':', (size_t) (colon - p)) ||
                    !(streq(colon + 1, "rooms") || streq(colon + 1, "order")))
                        return -EINVAL;
                return name_out(buf, size, STORE_USER_KEY_PREFIX, (size_t) (colon - p), p, colon);
        }
        if ((p = startswith(old, "mc:daemon:")) && (colon = strchr(p, ':')) && colon > p && streq(colon, ":presence"))
                return 0;
        return -EINVAL;
}

/* ---- the state machine ---- */

static void migrate_end(Migrate *m, MigrateState state, int error) {
        m->state = state;
        m->pending = 0;
        (void) sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        if (m->cb)
                m->cb(m, error, m->userdata);
}

static void migrate_fail(Migrate *m, int error) {
        (void) redis_cancel(m->redis, m);
        migrate_end(m, MIGRATE_FAILED, error);
}

static void timer_arm(Migrate *m, unsigned msec) {
        (void) sd_event_source_set_time_relative(m->timer, (uint64_t) msec * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(m->timer, SD_EVENT_ONESHOT);
}

static void step_begin(Migrate *m, Step step);
static void try_lock(Migrate *m);

static bool sent(Migrate *m, int k) {
        if (k < 0) {
                if (m->error == 0)
                        m->error = k;
                return false;
        }
        m->pending++;
        return true;
}

/* A command of the current step was answered: the step ends with the last. */
static void step_answered(Migrate *m) {
        if (m->pending == 0 || --m->pending > 0)
                return;
        if (m->error < 0)
                return migrate_fail(m, m->error);
        if (m->lost) {
                m->lost = false;
                m->state = MIGRATE_WAITING;
                return timer_arm(m, MIGRATE_POLL_MSEC);
        }
        if (m->step <= STEP_SCAN_PRESENCE && !streq(m->cursor, "0"))
                return step_begin(m, m->step);
        if (m->step == STEP_RELEASE) {
                m->migrated = true;
                return migrate_end(m, MIGRATE_DONE, 0);
        }
        step_begin(m, m->step + 1);
}

static bool reply_failed(Migrate *m, const redisReply *reply) {
        if (!reply) {
                m->error = -ENOTCONN;
                return true;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                if (m->error == 0)
                        m->error = -EIO;
                return true;
        }
        return false;
}

static void on_moved(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;

        /* Moved before, by a daemon that stopped halfway. */
        if (reply && reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "no such key"))
                return step_answered(m);
        if (!reply_failed(m, reply) && !(reply->type == REDIS_REPLY_INTEGER && reply->integer == 0))
                m->moved++;
        step_answered(m);
}

/* A write that moves no key: a room's own key, the schema, the lock. */
static void on_written(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;

        (void) reply_failed(m, reply);
        step_answered(m);
}

static void move_key(Migrate *m, const char *old) {
        char name[STORE_KEY_MAX + 1];
        int k = migrate_key_name(old, name, sizeof name);

        if (k == 1)
                (void) sent(m, redis_command(m->redis, on_moved, m, "RENAME %s %s", old, name));
        else if (k == 0)
                (void) sent(m, redis_command(m->redis, on_moved, m, "DEL %s", old));
}

static void on_scan(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;
        const redisReply *cursor, *keys;

        if (reply_failed(m, reply))
                return step_answered(m);
        cursor = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 ? reply->element[0] : NULL;
        keys = cursor ? reply->element[1] : NULL;
        if (!cursor || cursor->type != REDIS_REPLY_STRING || cursor->len >= sizeof m->cursor ||
            keys->type != REDIS_REPLY_ARRAY) {
                m->error = -EBADMSG;
                return step_answered(m);
        }
        memcpy(m->cursor, cursor->str, cursor->len + 1);
        for (size_t i = 0; i < keys->elements && m->error == 0; i++)
                if (keys->element[i]->type == REDIS_REPLY_STRING)
                        move_key(m, keys->element[i]->str);
        step_answered(m);
}

static void on_room_ids(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;

        if (reply_failed(m, reply) || reply->type != REDIS_REPLY_ARRAY)
                return step_answered(m);
        for (size_t i = 0; i < reply->elements && m->error == 0; i++) {
                char key[STORE_KEY_MAX + 1];
                const redisReply *id = reply->element[i];

                if (id->type == REDIS_REPLY_STRING && store_room_key(key, sizeof key, id->str, "room") >= 0)
                        (void) sent(m, redis_command(m->redis, on_written, m, "SET %s 1", key));
        }
        step_answered(m);
}

static void step_begin(Migrate *m, Step step) {
        bool first = m->step != step || streq(m->cursor, "");

        m->step = step;
        switch (step) {
        case STEP_SCAN_ROOMS:
        case STEP_SCAN_USERS:
        case STEP_SCAN_PRESENCE:
                if (first)
                        strcpy(m->cursor, "0");
                (void) sent(m, redis_command(m->redis, on_scan, m, "SCAN %s MATCH %s COUNT 500",
                                             m->cursor, scan_patterns[step]));
                break;
        case STEP_GLOBAL:
                move_key(m, "mc:rooms");
                move_key(m, "mc:rooms:seq");
                move_key(m, "mc:epoch");
                break;
        case STEP_MARKERS:
                /* Each listed room gets the key its scripts check. */
                (void) sent(m, redis_command(m->redis, on_room_ids, m, "HKEYS " STORE_ROOMS_KEY));
                break;
        case STEP_SCHEMA:
                (void) sent(m, redis_command(m->redis, on_written, m, "SET " STORE_SCHEMA_KEY " " STORE_SCHEMA_VERSION_STR));
                break;
        case STEP_RELEASE:
                (void) sent(m, eval(m, &script_release, on_written, 1, (const char *[]) { m->daemon_id }));
                break;
        default:
                break;
        }
        if (m->pending == 0)
                migrate_fail(m, m->error ?: -EIO);
}

static void on_lock(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;

        if (!reply)
                return migrate_end(m, MIGRATE_FAILED, -ENOTCONN);
        if (reply->type == REDIS_REPLY_ERROR)
                return migrate_end(m, MIGRATE_FAILED, -EIO);
        if (reply->type != REDIS_REPLY_STATUS) {
                m->waited = true;
                m->state = MIGRATE_WAITING;
                return timer_arm(m, MIGRATE_POLL_MSEC);
        }
        m->state = MIGRATE_MIGRATING;
        m->cursor[0] = 0;
        m->step = _STEP_MAX;
        timer_arm(m, MIGRATE_LOCK_MSEC / 3);
        step_begin(m, STEP_SCAN_ROOMS);
}

static void try_lock(Migrate *m) {
        int k = redis_command(m->redis, on_lock, m, "SET " STORE_MIGRATE_LOCK_KEY " %s NX PX %u",
                              m->daemon_id, MIGRATE_LOCK_MSEC);

        if (k < 0)
                migrate_end(m, MIGRATE_FAILED, k);
}

static void on_renewed(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;

        if (m->state != MIGRATE_MIGRATING)
                return;
        /* Lost: the steps in flight finish, and then this daemon waits. */
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
                m->lost = true;
}

static void on_cluster_schema(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;

        if (!reply || reply->type == REDIS_REPLY_ERROR)
                return migrate_end(m, MIGRATE_FAILED, reply ? -EIO : -ENOTCONN);
        migrate_end(m, MIGRATE_DONE, 0);
}

static void on_old_keys_in_cluster(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;
        int k;

        if (!reply || reply->type != REDIS_REPLY_INTEGER)
                return migrate_end(m, MIGRATE_FAILED, reply ? -EIO : -ENOTCONN);
        if (reply->integer > 0) {
                snprintf(m->refusal, sizeof m->refusal,
                         "this Redis Cluster holds keys of multichat's first layout (mc:rooms:seq); "
                         "a cluster starts at layout 2");
                return migrate_end(m, MIGRATE_REFUSED, -EMEDIUMTYPE);
        }
        /* Nothing to move: a new cluster is at layout 2 from the start. */
        k = redis_command(m->redis, on_cluster_schema, m, "SET " STORE_SCHEMA_KEY " " STORE_SCHEMA_VERSION_STR);
        if (k < 0)
                migrate_end(m, MIGRATE_FAILED, k);
}

static void on_info(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;
        int k;

        if (!reply || reply->type != REDIS_REPLY_STRING)
                return migrate_end(m, MIGRATE_FAILED, reply ? -EIO : -ENOTCONN);
        if (!strstr(reply->str, "cluster_enabled:1"))
                return try_lock(m);
        k = redis_command(m->redis, on_old_keys_in_cluster, m, "EXISTS mc:rooms:seq");
        if (k < 0)
                migrate_end(m, MIGRATE_FAILED, k);
}

static void on_schema(Redis *r, const redisReply *reply, void *userdata) {
        Migrate *m = userdata;
        int k;

        if (!reply || reply->type == REDIS_REPLY_ERROR)
                return migrate_end(m, MIGRATE_FAILED, reply ? -EIO : -ENOTCONN);
        if (reply->type == REDIS_REPLY_STRING && streq(reply->str, STORE_SCHEMA_VERSION_STR))
                return migrate_end(m, MIGRATE_DONE, 0);
        if (reply->type == REDIS_REPLY_STRING) {
                snprintf(m->refusal, sizeof m->refusal, "Redis holds key layout %.16s, which this version does not know",
                         reply->str);
                return migrate_end(m, MIGRATE_REFUSED, -EMEDIUMTYPE);
        }
        if (m->state == MIGRATE_WAITING)
                return try_lock(m);
        k = redis_command(m->redis, on_info, m, "INFO cluster");
        if (k < 0)
                migrate_end(m, MIGRATE_FAILED, k);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Migrate *m = userdata;
        int k;

        if (m->state == MIGRATE_MIGRATING) {
                char ms[16];

                snprintf(ms, sizeof ms, "%u", MIGRATE_LOCK_MSEC);
                (void) eval(m, &script_renew, on_renewed, 2, (const char *[]) { m->daemon_id, ms });
                timer_arm(m, MIGRATE_LOCK_MSEC / 3);
        } else if (m->state == MIGRATE_WAITING) {
                k = redis_command(m->redis, on_schema, m, "GET " STORE_SCHEMA_KEY);
                if (k < 0)
                        migrate_end(m, MIGRATE_FAILED, k);
        }
        return 0;
}

int migrate_new(Migrate **ret, sd_event *event, Redis *redis, const char *daemon_id,
                MigrateHandler cb, void *userdata) {
        _cleanup_(migrate_freep) Migrate *m = NULL;
        int r;

        if (!daemon_id || !daemon_id[0] || strlen(daemon_id) > STORE_DAEMON_ID_MAX)
                return -EINVAL;
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->redis = redis;
        m->cb = cb;
        m->userdata = userdata;
        strcpy(m->daemon_id, daemon_id);
        r = sd_event_add_time_relative(event, &m->timer, CLOCK_MONOTONIC, UINT64_MAX / 2, USEC_PER_MSEC, on_timer, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        *ret = TAKE_PTR(m);
        return 0;
}

Migrate *migrate_free(Migrate *m) {
        if (!m)
                return NULL;
        sd_event_source_disable_unref(m->timer);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

void migrate_stop(Migrate *m) {
        (void) redis_cancel(m->redis, m);
        (void) sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        m->state = MIGRATE_IDLE;
        m->pending = 0;
        m->error = 0;
        m->lost = false;
}

int migrate_start(Migrate *m) {
        int k;

        migrate_stop(m);
        m->refusal[0] = 0;
        m->migrated = m->waited = false;
        m->moved = 0;
        m->state = MIGRATE_CHECKING;
        k = redis_command(m->redis, on_schema, m, "GET " STORE_SCHEMA_KEY);
        if (k < 0)
                m->state = MIGRATE_FAILED;
        return k;
}

MigrateState migrate_state(const Migrate *m) {
        return m->state;
}

const char *migrate_state_to_string(MigrateState s) {
        static const char *const names[] = {
                [MIGRATE_IDLE] = "idle",
                [MIGRATE_CHECKING] = "checking the key layout",
                [MIGRATE_WAITING] = "waiting for another daemon to migrate the data to key layout 2",
                [MIGRATE_MIGRATING] = "migrating the data to key layout 2",
                [MIGRATE_DONE] = "key layout 2",
                [MIGRATE_REFUSED] = "refused",
                [MIGRATE_FAILED] = "failed",
        };

        return (size_t) s < ELEMENTSOF(names) ? names[s] : "unknown";
}

bool migrate_did_migrate(const Migrate *m) {
        return m->migrated;
}

bool migrate_waited(const Migrate *m) {
        return m->waited;
}

unsigned migrate_keys_moved(const Migrate *m) {
        return m->moved;
}

const char *migrate_refusal(const Migrate *m) {
        return m->refusal;
}
