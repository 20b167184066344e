/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Holds the scripts' publications and the event codec together: every payload a script publishes parses as the event it means. */

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
#include "store/store.h"
#include "wire/events.h"
#include "store/test-store-env.h"
#include "test/test-redis-server.h"
#include "test/test.h"

#define SEC USEC_PER_SEC

static TestRedis server;

typedef struct Pending {
        bool done;
        int type;
        char str[128];
        long long integer;
} Pending;

static void on_reply(Redis *r, const redisReply *reply, void *userdata) {
        Pending *p = userdata;

        ASSERT_FALSE(p->done);
        ASSERT_NOT_NULL(reply);
        p->done = true;
        p->type = reply->type;
        p->integer = reply->integer;
        if (reply->str)
                snprintf(p->str, sizeof p->str, "%s", reply->str);
}

static void wait_ok(StoreEnv *t, Pending *p) {
        store_env_run_until(t->event, &p->done, 5 * SEC);
        if (p->type == REDIS_REPLY_ERROR)
                fprintf(stderr, "script failed: %s\n", p->str);
        ASSERT_TRUE(p->type != REDIS_REPLY_ERROR);
}

/* The next publication: on this channel, and a well-formed event. */
static void next_event(StoreEnv *t, const char *channel, Event *ret) {
        const StoreMsg *m = store_env_next_msg(t, 5 * SEC);

        if (!streq(m->channel, channel) || event_parse(m->data, m->len, ret) < 0) {
                fprintf(stderr, "expected an event on %s, got on %s: %.*s\n", channel, m->channel,
                        (int) m->len, m->data);
                ASSERT_TRUE(!"publication the codec does not read");
        }
}

/* Nothing else was published: a marker published now is what comes next. */
static void assert_quiet(StoreEnv *t) {
        static const char marker[] = "[\"rooms\"]";
        Pending p = {};
        Event e;

        ASSERT_OK(store_publish(t->cmd, "mc:marker", marker, strlen(marker), on_reply, &p));
        wait_ok(t, &p);
        next_event(t, "mc:marker", &e);
        event_done(&e);
}

static void expect_presence(StoreEnv *t, const char *room, const char *user, int64_t count, int change) {
        Event e;

        next_event(t, STORE_EVENTS_CHANNEL, &e);
        ASSERT_INT_EQ(e.kind, EVENT_PRESENCE);
        ASSERT_STREQ(e.room, room);
        ASSERT_STREQ(e.user, user);
        ASSERT_INT_EQ(e.count, count);
        ASSERT_INT_EQ(e.change, change);
        event_done(&e);
}

static void expect_kind(StoreEnv *t, const char *channel, EventKind kind, Event *ret) {
        next_event(t, channel, ret);
        ASSERT_INT_EQ(ret->kind, kind);
}

static void connect_all(StoreEnv *t) {
        store_env_open(t, &server);
        ASSERT_OK(redis_subscribe(t->sub, "mc:marker"));
        store_env_start(t);
}

static void on_barrier(Redis *r, bool ok, void *userdata) {
        *(bool *) userdata = ok;
}

static void subscribe_room(StoreEnv *t, const char *room) {
        char channel[64];
        bool done = false;

        ASSERT_OK(store_room_channel(room, channel, sizeof channel));
        ASSERT_OK(redis_ssubscribe(t->sub, channel));
        ASSERT_OK(redis_subscriber_barrier(t->sub, on_barrier, &done));
        store_env_run_until(t->event, &done, 5 * SEC);
}

static void test_rooms(StoreEnv *t, char *ret_room, size_t size) {
        Pending p = {};
        Event e;

        ASSERT_OK(store_create_room(t->cmd, "Lobby / \xc3\xa9", false, on_reply, &p));
        wait_ok(t, &p);
        ASSERT_INT_EQ(p.type, REDIS_REPLY_STRING);
        ASSERT_TRUE(strlen(p.str) < size);
        strcpy(ret_room, p.str);
        expect_kind(t, STORE_EVENTS_CHANNEL, EVENT_ROOMS, &e);
        event_done(&e);
        assert_quiet(t);

        p = (Pending) {};
        ASSERT_OK(store_update_room(t->cmd, ret_room, "Hall", 1, on_reply, &p));
        wait_ok(t, &p);
        expect_kind(t, STORE_EVENTS_CHANNEL, EVENT_ROOMS, &e);
        event_done(&e);
        p = (Pending) {};
        ASSERT_OK(store_update_room(t->cmd, ret_room, NULL, 0, on_reply, &p));
        wait_ok(t, &p);
        expect_kind(t, STORE_EVENTS_CHANNEL, EVENT_ROOMS, &e);
        event_done(&e);
        assert_quiet(t);
}

static void leave(StoreEnv *t, const char *daemon, const char *room, const char *user) {
        Pending p = {};

        ASSERT_OK(store_leave(t->cmd, daemon, room, user, on_reply, &p));
        wait_ok(t, &p);
}

/* A join or leave, and the presence change it publishes. */
static void join_expect(StoreEnv *t, const char *daemon, const char *room, const char *user, int64_t count,
                        int change) {
        Pending p = {};

        ASSERT_OK(store_join(t->cmd, daemon, room, user, NULL, 10, on_reply, &p));
        wait_ok(t, &p);
        expect_presence(t, room, user, count, change);
}

static void leave_expect(StoreEnv *t, const char *daemon, const char *room, const char *user, int64_t count,
                         int change) {
        leave(t, daemon, room, user);
        expect_presence(t, room, user, count, change);
}

static void test_presence(StoreEnv *t, const char *room) {
        char longest[USERNAME_MAX + 1];

        /* The longest username and one that cjson escapes. */
        memset(longest, 'x', USERNAME_MAX);
        longest[USERNAME_MAX] = 0;

        join_expect(t, "d1", room, "o/neil", 1, 1);
        join_expect(t, "d2", room, "o/neil", 2, 0);
        join_expect(t, "d1", room, longest, 1, 1);

        leave_expect(t, "d1", room, "o/neil", 1, 0);
        leave_expect(t, "d2", room, "o/neil", 0, -1);
        /* A leave that was never a join publishes nothing. */
        leave(t, "d2", room, "o/neil");
        assert_quiet(t);

        leave_expect(t, "d1", room, longest, 0, -1);
        assert_quiet(t);
}

static void test_messages(StoreEnv *t, const char *room) {
        static const char text[] = "line 1\nline 2\t\"quoted\" \\ / \xc3\xa9 \xf0\x9f\x98\x80 \x01";
        char channel[64], id[MESSAGE_ID_MAX + 1];
        Pending p = {};
        Event e;

        ASSERT_OK(store_room_channel(room, channel, sizeof channel));
        subscribe_room(t, room);

        ASSERT_OK(store_send(t->cmd, room, "alice", text, NULL, 100, on_reply, &p));
        wait_ok(t, &p);
        ASSERT_INT_EQ(p.type, REDIS_REPLY_STRING);
        ASSERT_TRUE(strlen(p.str) <= MESSAGE_ID_MAX);
        strcpy(id, p.str);
        expect_kind(t, channel, EVENT_MESSAGE, &e);
        ASSERT_STREQ(e.id, id);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.text, text);
        event_done(&e);

        p = (Pending) {};
        ASSERT_OK(store_edit(t->cmd, room, id, "alice", "fixed / \xc3\xa9", on_reply, &p));
        wait_ok(t, &p);
        expect_kind(t, channel, EVENT_EDITED, &e);
        ASSERT_STREQ(e.id, id);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.text, "fixed / \xc3\xa9");
        event_done(&e);

        /* Refused edits publish nothing. */
        p = (Pending) {};
        ASSERT_OK(store_edit(t->cmd, room, id, "mallory", "mine now", on_reply, &p));
        store_env_run_until(t->event, &p.done, 5 * SEC);
        ASSERT_INT_EQ(p.type, REDIS_REPLY_ERROR);
        assert_quiet(t);

        p = (Pending) {};
        ASSERT_OK(store_edit(t->cmd, room, id, "alice", NULL, on_reply, &p));
        wait_ok(t, &p);
        expect_kind(t, channel, EVENT_DELETED, &e);
        ASSERT_STREQ(e.id, id);
        event_done(&e);
        assert_quiet(t);

        /* The largest message a client may send (the default limit is far
         * below) still reads back whole. */
        {
                _cleanup_free_ char *big = malloc(64 * 1024 + 1);

                ASSERT_NOT_NULL(big);
                memset(big, 'b', 64 * 1024);
                big[64 * 1024] = 0;
                p = (Pending) {};
                ASSERT_OK(store_send(t->cmd, room, "bob", big, NULL, 100, on_reply, &p));
                wait_ok(t, &p);
                expect_kind(t, channel, EVENT_MESSAGE, &e);
                ASSERT_STREQ(e.id, p.str);
                ASSERT_STREQ(e.text, big);
                event_done(&e);
        }
        assert_quiet(t);
}

static void on_reaped(Redis *r, int error, unsigned n, void *userdata) {
        Pending *p = userdata;

        ASSERT_OK(error);
        p->integer = n;
        p->done = true;
}

static void test_reap(StoreEnv *t, const char *room) {
        Pending p = {};

        /* A daemon that joined and died: no heartbeat key. */
        join_expect(t, "dead", room, "carol", 1, 1);
        join_expect(t, "dead", room, "carol", 2, 0);
        ASSERT_OK(store_reap(t->cmd, NULL, on_reaped, &p));
        store_env_run_until(t->event, &p.done, 5 * SEC);
        /* d1 and d2 have no heartbeat either: reaped, with nothing left to say. */
        ASSERT_INT_EQ(p.integer, 3);
        expect_presence(t, room, "carol", 0, -1);
        assert_quiet(t);

        /* A daemon that retires itself, with a user another daemon holds too. */
        join_expect(t, "alive", room, "dan", 1, 1);
        join_expect(t, "other", room, "dan", 2, 0);
        ASSERT_OK(store_heartbeat(t->cmd, "other"));
        p = (Pending) {};
        ASSERT_OK(store_reap(t->cmd, "alive", on_reaped, &p));
        store_env_run_until(t->event, &p.done, 5 * SEC);
        expect_presence(t, room, "dan", 1, 0);
        assert_quiet(t);
}

static void test_delete(StoreEnv *t, const char *room) {
        Pending p = {};
        Event e;

        ASSERT_OK(store_delete_room(t->cmd, room, on_reply, &p));
        wait_ok(t, &p);
        expect_kind(t, STORE_EVENTS_CHANNEL, EVENT_ROOM_DELETED, &e);
        ASSERT_STREQ(e.room, room);
        event_done(&e);
        expect_kind(t, STORE_EVENTS_CHANNEL, EVENT_ROOMS, &e);
        event_done(&e);
        assert_quiet(t);
}

/* Room ids are decimal strings however far the counter got: Lua numbers
 * are doubles, printed with 14 significant digits ("1e+14"). */
static void create_at(StoreEnv *t, const char *seq, const char *want) {
        Pending p = {};
        Event e;

        freeReplyObject(test_redis_command(&server, "SET mc:{rooms}:seq %s", seq));
        ASSERT_OK(store_create_room(t->cmd, "Late", false, on_reply, &p));
        wait_ok(t, &p);
        ASSERT_STREQ(p.str, want);
        expect_kind(t, STORE_EVENTS_CHANNEL, EVENT_ROOMS, &e);
        event_done(&e);
        join_expect(t, "d1", want, "eve", 1, 1);
        test_delete(t, want);
}

static void test_big_room_ids(StoreEnv *t) {
        create_at(t, "99999999999999", "100000000000000");
        create_at(t, "9007199254740992", "9007199254740993");
        /* As far as INCR counts. */
        create_at(t, "9223372036854775806", "9223372036854775807");
}

int main(void) {
        char room[ROOM_ID_MAX + 1];
        StoreEnv t = {};

        alarm(60);
        (void) signal(SIGPIPE, SIG_IGN);

        if (store_env_server_start(&server) == -ENOENT)
                return EXIT_TEST_SKIP;
        connect_all(&t);

        test_rooms(&t, room, sizeof room);
        test_presence(&t, room);
        test_messages(&t, room);
        test_reap(&t, room);
        test_delete(&t, room);
        test_big_room_ids(&t);

        store_env_close(&t);
        ASSERT_OK(test_redis_cleanup(&server));
        return 0;
}
