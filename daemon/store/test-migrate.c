/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the migration to key layout 2 against real redis-servers: data written as the first layout wrote it, read back through the store. */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "basic/time-util.h"
#include "redis/redis.h"
#include "store/migrate.h"
#include "store/session.h"
#include "store/store.h"
#include "store/test-store-env.h"
#include "test/test-redis-server.h"
#include "test/test.h"

#define MSEC USEC_PER_MSEC
#define SEC USEC_PER_SEC
#define SESSION_ID "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static sd_event *event;

typedef struct Client {
        Redis *redis;
        bool up;
        Migrate *migrate;
        bool done;
        int error;
} Client;

static void on_state(Redis *r, bool connected, void *userdata) {
        Client *c = userdata;

        c->up = connected;
}

static void on_migrated(Migrate *m, int error, void *userdata) {
        Client *c = userdata;

        ASSERT_FALSE(c->done);          /* once per start */
        c->done = true;
        c->error = error;
}

static void client_open(Client *c, const TestRedis *server, const char *daemon_id) {
        _cleanup_free_ char *url = NULL;

        *c = (Client) {};
        ASSERT_TRUE(asprintf(&url, "unix:%s", server->sock) >= 0);
        ASSERT_OK(redis_new(&c->redis, event, url, on_state, NULL, c));
        ASSERT_OK(redis_start(c->redis));
        store_env_run_until(event, &c->up, 5 * SEC);
        ASSERT_OK(migrate_new(&c->migrate, event, c->redis, daemon_id, on_migrated, c));
}

static void client_close(Client *c) {
        c->redis = redis_free(c->redis);
        c->migrate = migrate_free(c->migrate);
}

/* ---- the first layout, written as its scripts wrote it ---- */

typedef struct OldData {
        char hello[64], mention[64], gone[64];
} OldData;

static void id_from(const TestRedis *s, char buf[64], const char *fmt, const char *a, const char *b) {
        _cleanup_(freeReplyObjectp) redisReply *r = test_redis_command(s, fmt, a, b);

        ASSERT_INT_EQ(r->type, REDIS_REPLY_STRING);
        ASSERT_TRUE(r->len < 64);
        strcpy(buf, r->str);
}

/* Rooms 1 (Lobby) and 2 (Staff, staff only); in 1: alice's "hello"
 * (edited), bob's message mentioning alice, and one of alice's that she
 * deleted; alice's rooms 1 (read up to "hello") and 2; a send ref; a
 * presence of a daemon that is gone; a session. */
static void write_old(const TestRedis *s, OldData *d) {
        uint64_t created = now_usec(CLOCK_REALTIME);
        redisReply *r;

        freeReplyObject(test_redis_command(s, "FLUSHALL"));
        freeReplyObject(test_redis_command(s, "HSET mc:rooms 1 %s 2 %s", "{\"title\":\"Lobby\",\"staff_only\":false}",
                                           "{\"title\":\"Staff\",\"staff_only\":true}"));
        freeReplyObject(test_redis_command(s, "SET mc:rooms:seq 2"));
        freeReplyObject(test_redis_command(s, "SET mc:epoch 0123456789abcdef"));
        id_from(s, d->hello, "XADD mc:room:1:log MAXLEN ~ 5000 * u %s m %s", "alice", "hello");
        id_from(s, d->mention, "XADD mc:room:1:log MAXLEN ~ 5000 * u %s m %s n alice", "bob", "hi alice");
        id_from(s, d->gone, "XADD mc:room:1:log MAXLEN ~ 5000 * u %s m %s", "alice", "oops");
        freeReplyObject(test_redis_command(s, "HSET mc:room:1:edits %s %s", d->hello, "hello, edited"));
        freeReplyObject(test_redis_command(s, "HSET mc:room:1:edits-n %s %s", d->hello, ""));
        freeReplyObject(test_redis_command(s, "XDEL mc:room:1:log %s", d->gone));
        freeReplyObject(test_redis_command(s, "SET mc:room:1:ref:alice:r-1 %s EX 600", d->hello));
        freeReplyObject(test_redis_command(s, "HSET mc:room:1:users alice 2"));
        freeReplyObject(test_redis_command(s, "HSET mc:daemon:old:presence %s 2", "1\talice"));
        freeReplyObject(test_redis_command(s, "SADD mc:daemons old"));
        freeReplyObject(test_redis_command(s, "HSET mc:user:alice:rooms 1 %s 2 %s", d->hello, ""));
        freeReplyObject(test_redis_command(s, "ZADD mc:user:alice:order 1000 1 2000 2"));
        r = test_redis_command(s, "HSET mc:session:%s user alice uid 1000 staff 0 csrf %s created %" PRIu64,
                               SESSION_ID, SESSION_ID, created);
        freeReplyObject(r);
        freeReplyObject(test_redis_command(s, "PEXPIRE mc:session:%s 600000", SESSION_ID));
}

static void assert_schema(const TestRedis *s, const char *want) {
        _cleanup_(freeReplyObjectp) redisReply *r = test_redis_command(s, "GET mc:schema");

        ASSERT_INT_EQ(r->type, REDIS_REPLY_STRING);
        ASSERT_STREQ(r->str, want);
}

static void on_session(int r, const SessionData *d, void *userdata) {
        int *ret = userdata;

        *ret = r;
        if (r == 0)
                ASSERT_STREQ(d->user, "alice");
}

/* Everything write_old() wrote, found through the store as layout 2. */
static void check_new(const TestRedis *s, Client *c, const OldData *d) {
        _cleanup_(freeReplyObjectp) redisReply *rooms = NULL, *hist = NULL, *mine = NULL, *unread = NULL,
                *ref = NULL, *join = NULL, *presence = NULL, *created = NULL;
        StoreHistoryReply h;
        StoreReadState rs;
        StoreJoinReply j;
        StoreEntry e;
        int session = 1;

        rooms = STORE_ENV_CALL(event, store_load_rooms, c->redis);
        ASSERT_INT_EQ(rooms->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(rooms->elements, 4);

        hist = STORE_ENV_CALL(event, store_history, c->redis, "1", NULL, 10);
        ASSERT_OK(store_parse_history_reply(hist, &h));
        ASSERT_TRUE(h.complete);
        ASSERT_INT_EQ(store_entries_count(&h.history), 2);     /* the deleted one stays deleted */
        ASSERT_OK(store_entries_get(&h.history, 0, &e));
        ASSERT_STREQ(e.id, d->mention);
        ASSERT_STREQ(e.username, "bob");
        ASSERT_FALSE(e.edited);
        ASSERT_OK(store_entries_get(&h.history, 1, &e));
        ASSERT_STREQ(e.id, d->hello);
        ASSERT_STREQ(e.text, "hello, edited");
        ASSERT_TRUE(e.edited);

        mine = STORE_ENV_CALL(event, store_user_rooms, c->redis, "alice");
        ASSERT_INT_EQ(mine->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(mine->elements, 2);
        ASSERT_STREQ(mine->element[0]->str, "1");
        ASSERT_STREQ(mine->element[1]->str, "2");

        /* alice read up to "hello": bob's mention is unread. */
        unread = STORE_ENV_CALL(event, store_unread, c->redis, "1", "alice");
        ASSERT_OK(store_parse_unread_reply(unread, &rs));
        ASSERT_STREQ(rs.read, d->hello);
        ASSERT_INT_EQ(rs.unread, 1);
        ASSERT_INT_EQ(rs.mentions, 1);

        /* A retried send still finds its first answer. */
        ref = STORE_ENV_CALL(event, store_send, c->redis, "1", "alice", "hello", "r-1", 5000);
        ASSERT_INT_EQ(ref->type, REDIS_REPLY_STRING);
        ASSERT_STREQ(ref->str, d->hello);

        /* The room works; the stopped daemon's presence is gone. */
        join = STORE_ENV_CALL(event, store_join, c->redis, "new", "1", "bob", NULL, 5);
        ASSERT_OK(store_parse_join_reply(join, &j));
        ASSERT_INT_EQ(j.connections, 1);
        ASSERT_STREQ(j.tip, d->mention);
        presence = STORE_ENV_CALL(event, store_load_presence, c->redis, "1");
        ASSERT_INT_EQ(presence->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(presence->elements, 2);
        ASSERT_STREQ(presence->element[0]->str, "bob");

        /* Room ids go on from where they were. */
        created = STORE_ENV_CALL(event, store_create_room, c->redis, "New", false);
        ASSERT_INT_EQ(created->type, REDIS_REPLY_STRING);
        ASSERT_STREQ(created->str, "3");

        /* Sessions keep their names. */
        ASSERT_OK(session_lookup(c->redis, SESSION_ID, 600 * SEC, 3600 * SEC, on_session, &session, NULL));
        while (session == 1)
                ASSERT_OK(sd_event_run(event, 50 * MSEC));
        ASSERT_OK(session);

        ASSERT_INT_EQ(test_redis_integer(s, "EXISTS mc:rooms mc:rooms:seq mc:epoch mc:room:1:log mc:room:1:edits "
                                            "mc:room:1:edits-n mc:room:1:users mc:room:1:ref:alice:r-1 "
                                            "mc:user:alice:rooms mc:user:alice:order mc:daemon:old:presence"), 0);
        ASSERT_INT_EQ(test_redis_integer(s, "EXISTS mc:{rooms}:epoch mc:{r1}:room mc:{r2}:room"), 3);
        assert_schema(s, "2");
        ASSERT_INT_EQ(test_redis_integer(s, "EXISTS mc:migrate-lock"), 0);
        {
                long long ttl = test_redis_integer(s, "TTL mc:{r1}:ref:alice:r-1");

                ASSERT_TRUE(ttl > 500 && ttl <= 600);
        }
}

/* ---- the tests ---- */

static void test_names(void) {
        static const struct {
                const char *old;
                int r;
                const char *new;
        } cases[] = {
                { "mc:rooms", 1, "mc:{rooms}" },
                { "mc:rooms:seq", 1, "mc:{rooms}:seq" },
                { "mc:epoch", 1, "mc:{rooms}:epoch" },
                { "mc:room:1:log", 1, "mc:{r1}:log" },
                { "mc:room:12345678901234567890:edits", 1, "mc:{r12345678901234567890}:edits" },
                { "mc:room:7:edits-n", 1, "mc:{r7}:edits-n" },
                { "mc:room:7:ref:alice:a:b", 1, "mc:{r7}:ref:alice:a:b" },
                { "mc:room:7:users", 0, NULL },
                { "mc:user:a.b-c_d:rooms", 1, "mc:{ua.b-c_d}:rooms" },
                { "mc:user:alice:order", 1, "mc:{ualice}:order" },
                { "mc:daemon:0123abcd:presence", 0, NULL },
                /* Not keys of the first layout: left alone. */
                { "mc:room:07:log", -EINVAL, NULL },
                { "mc:room::log", -EINVAL, NULL },
                { "mc:room:123456789012345678901:log", -EINVAL, NULL },
                { "mc:room:1x:log", -EINVAL, NULL },
                { "mc:room:1:other", -EINVAL, NULL },
                { "mc:room:1", -EINVAL, NULL },
                { "mc:user::rooms", -EINVAL, NULL },
                { "mc:user:a:b:rooms", -EINVAL, NULL },
                { "mc:user:alice:other", -EINVAL, NULL },
                { "mc:daemon:abc", -EINVAL, NULL },
                { "mc:daemon::presence", -EINVAL, NULL },
                { "mc:daemons", -EINVAL, NULL },
                { "mc:session:abc", -EINVAL, NULL },
                { "mc:{r1}:log", -EINVAL, NULL },
                { "mc:schema", -EINVAL, NULL },
                { "", -EINVAL, NULL },
        };
        char buf[STORE_KEY_MAX + 1];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = migrate_key_name(cases[i].old, buf, sizeof buf);

                if (r != cases[i].r)
                        fprintf(stderr, "%s: %d, not %d\n", cases[i].old, r, cases[i].r);
                ASSERT_INT_EQ(r, cases[i].r);
                if (cases[i].new)
                        ASSERT_STREQ(buf, cases[i].new);
        }
        ASSERT_ERROR(migrate_key_name("mc:room:1:log", buf, 5), ENOBUFS);
        {
                char user[USERNAME_MAX + 20];

                snprintf(user, sizeof user, "mc:user:%0*d:rooms", USERNAME_MAX + 1, 0);
                ASSERT_ERROR(migrate_key_name(user, buf, sizeof buf), EINVAL);
        }
}

/* First-layout data, and two daemons on it that have not started. */
static void open_two_on_old(const TestRedis *s, Client *a, Client *b, OldData *d) {
        write_old(s, d);
        client_open(a, s, "daemon-a");
        client_open(b, s, "daemon-b");
}

/* Two daemons start at once on first-layout data: one migrates, both end
 * at layout 2, and everything is there. */
static void test_two_at_once(const TestRedis *s) {
        Client a, b;
        OldData d;

        open_two_on_old(s, &a, &b, &d);
        ASSERT_OK(migrate_start(a.migrate));
        ASSERT_OK(migrate_start(b.migrate));
        store_env_run_until(event, &a.done, 10 * SEC);
        store_env_run_until(event, &b.done, 10 * SEC);
        ASSERT_OK(a.error);
        ASSERT_OK(b.error);
        ASSERT_INT_EQ(migrate_state(a.migrate), MIGRATE_DONE);
        ASSERT_INT_EQ(migrate_state(b.migrate), MIGRATE_DONE);
        ASSERT_INT_EQ(migrate_did_migrate(a.migrate) + migrate_did_migrate(b.migrate), 1);
        ASSERT_FALSE(migrate_did_migrate(a.migrate) && migrate_waited(a.migrate));
        /* 9 renamed, 2 presence keys dropped */
        ASSERT_INT_EQ(migrate_keys_moved(migrate_did_migrate(a.migrate) ? a.migrate : b.migrate), 11);
        check_new(s, &a, &d);

        /* Once done, never again: a restart only reads mc:schema. */
        a.done = false;
        ASSERT_OK(migrate_start(a.migrate));
        store_env_run_until(event, &a.done, 5 * SEC);
        ASSERT_OK(a.error);
        ASSERT_FALSE(migrate_did_migrate(a.migrate));
        ASSERT_FALSE(migrate_waited(a.migrate));
        ASSERT_INT_EQ(migrate_keys_moved(a.migrate), 0);
        client_close(&a);
        client_close(&b);
}

/* A daemon that was killed halfway: some keys moved, its lock still held
 * until it expires. The next daemon waits, then takes over and finishes. */
static void test_resume(const TestRedis *s) {
        Client c;
        OldData d;
        uint64_t start;

        write_old(s, &d);
        freeReplyObject(test_redis_command(s, "RENAME mc:room:1:log mc:{r1}:log"));
        freeReplyObject(test_redis_command(s, "RENAME mc:user:alice:rooms mc:{ualice}:rooms"));
        freeReplyObject(test_redis_command(s, "RENAME mc:rooms mc:{rooms}"));
        freeReplyObject(test_redis_command(s, "SET mc:migrate-lock dead PX 700"));

        client_open(&c, s, "daemon-c");
        start = now_usec(CLOCK_MONOTONIC);
        ASSERT_OK(migrate_start(c.migrate));
        while (migrate_state(c.migrate) == MIGRATE_CHECKING)
                ASSERT_OK(sd_event_run(event, 50 * MSEC));
        ASSERT_INT_EQ(migrate_state(c.migrate), MIGRATE_WAITING);
        ASSERT_STREQ(migrate_state_to_string(migrate_state(c.migrate)),
                     "waiting for another daemon to migrate the data to key layout 2");
        store_env_run_until(event, &c.done, 10 * SEC);
        ASSERT_OK(c.error);
        ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - start >= 500 * MSEC);
        ASSERT_TRUE(migrate_did_migrate(c.migrate));
        ASSERT_TRUE(migrate_waited(c.migrate));
        check_new(s, &c, &d);
        client_close(&c);
}

/* A daemon killed while migrating, lock and all: the one waiting takes
 * over when the lock expires. */
static void test_holder_killed(const TestRedis *s) {
        Client a, b;
        OldData d;

        open_two_on_old(s, &a, &b, &d);
        ASSERT_OK(migrate_start(a.migrate));
        while (migrate_state(a.migrate) != MIGRATE_MIGRATING && !a.done)
                ASSERT_OK(sd_event_run(event, 1 * MSEC));
        ASSERT_INT_EQ(migrate_state(a.migrate), MIGRATE_MIGRATING);
        ASSERT_OK(migrate_start(b.migrate));
        /* a dies: nothing more from it, its lock stays until it expires. */
        client_close(&a);
        while (migrate_state(b.migrate) == MIGRATE_CHECKING)
                ASSERT_OK(sd_event_run(event, 50 * MSEC));
        ASSERT_INT_EQ(migrate_state(b.migrate), MIGRATE_WAITING);
        store_env_run_until(event, &b.done, MIGRATE_LOCK_MSEC * MSEC + 5 * SEC);
        ASSERT_OK(b.error);
        ASSERT_TRUE(migrate_did_migrate(b.migrate));
        check_new(s, &b, &d);
        client_close(&b);
}

/* A new, empty Redis: layout 2 at once; a newer layout: refused. */
static void test_fresh_and_newer(const TestRedis *s) {
        Client c;

        freeReplyObject(test_redis_command(s, "FLUSHALL"));
        client_open(&c, s, "daemon-c");
        ASSERT_OK(migrate_start(c.migrate));
        store_env_run_until(event, &c.done, 5 * SEC);
        ASSERT_OK(c.error);
        assert_schema(s, "2");
        ASSERT_INT_EQ(test_redis_integer(s, "DBSIZE"), 1);

        freeReplyObject(test_redis_command(s, "SET mc:schema 3"));
        c.done = false;
        ASSERT_OK(migrate_start(c.migrate));
        store_env_run_until(event, &c.done, 5 * SEC);
        ASSERT_ERROR(c.error, EMEDIUMTYPE);
        ASSERT_INT_EQ(migrate_state(c.migrate), MIGRATE_REFUSED);
        ASSERT_TRUE(strstr(migrate_refusal(c.migrate), "layout 3") != NULL);
        freeReplyObject(test_redis_command(s, "SET mc:schema 2x"));
        c.done = false;
        ASSERT_OK(migrate_start(c.migrate));
        store_env_run_until(event, &c.done, 5 * SEC);
        ASSERT_ERROR(c.error, EMEDIUMTYPE);
        client_close(&c);
}

/* Redis goes away mid-migration: the handler says so; started again on
 * the next connection, it finishes. */
static void test_connection_lost(TestRedis *s) {
        Client c;
        OldData d;

        write_old(s, &d);
        client_open(&c, s, "daemon-c");
        ASSERT_OK(migrate_start(c.migrate));
        while (migrate_state(c.migrate) != MIGRATE_MIGRATING && !c.done)
                ASSERT_OK(sd_event_run(event, 1 * MSEC));
        test_redis_kill(s);
        store_env_run_until(event, &c.done, 10 * SEC);
        ASSERT_TRUE(c.error < 0);
        ASSERT_INT_EQ(migrate_state(c.migrate), MIGRATE_FAILED);
        client_close(&c);
}

/* A single-node Redis Cluster owning every slot: old keys refused, none
 * at layout 2 from the start. */
static void test_cluster(void) {
        static const char *const args[] = { "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", NULL };
        _cleanup_free_ char *conf = NULL;
        TestRedis s = {};
        Client c;
        uint64_t end;

        ASSERT_OK(test_redis_init(&s, "cluster.sock"));
        s.args = args;
        ASSERT_OK(test_redis_start(&s));
        freeReplyObject(test_redis_command(&s, "CLUSTER ADDSLOTSRANGE 0 16383"));
        end = now_usec(CLOCK_MONOTONIC) + 10 * SEC;
        for (;;) {
                _cleanup_(freeReplyObjectp) redisReply *info = test_redis_command(&s, "CLUSTER INFO");

                if (strstr(info->str, "cluster_state:ok"))
                        break;
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < end);
                usleep(100 * 1000);
        }

        freeReplyObject(test_redis_command(&s, "SET mc:rooms:seq 4"));
        client_open(&c, &s, "daemon-c");
        ASSERT_OK(migrate_start(c.migrate));
        store_env_run_until(event, &c.done, 5 * SEC);
        ASSERT_ERROR(c.error, EMEDIUMTYPE);
        ASSERT_TRUE(strstr(migrate_refusal(c.migrate), "cluster") != NULL);
        ASSERT_INT_EQ(test_redis_integer(&s, "EXISTS mc:schema"), 0);

        freeReplyObject(test_redis_command(&s, "DEL mc:rooms:seq"));
        c.done = false;
        ASSERT_OK(migrate_start(c.migrate));
        store_env_run_until(event, &c.done, 5 * SEC);
        ASSERT_OK(c.error);
        ASSERT_FALSE(migrate_did_migrate(c.migrate));
        assert_schema(&s, "2");
        client_close(&c);
        ASSERT_OK(test_redis_cleanup(&s));
}

int main(void) {
        TestRedis server = {};

        alarm(120);
        (void) signal(SIGPIPE, SIG_IGN);

        test_names();

        if (store_env_server_start(&server) == -ENOENT)
                return EXIT_TEST_SKIP;
        ASSERT_OK(sd_event_new(&event));

        test_two_at_once(&server);
        test_resume(&server);
        test_fresh_and_newer(&server);
        test_holder_killed(&server);
        test_connection_lost(&server);
        test_cluster();

        ASSERT_OK(test_redis_cleanup(&server));
        event = sd_event_unref(event);
        return 0;
}
