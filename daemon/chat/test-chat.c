/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the chat on a real Redis: rooms, joins, messages, presence, kicks, logouts, room administration, two daemons. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "chat/chat.h"
#include "chat/rooms.h"
#include "chat/test-harness.h"
#include "test/test.h"

static TestRedis server;
static sd_event *event;
static TestDaemon A, B;

static TestDaemon *const only_a[] = { &A, NULL };
static TestDaemon *const both[] = { &A, &B, NULL };

static void redis_do(const char *cmd, const char *arg1, const char *arg2) {
        freeReplyObject(test_redis_command(&server, cmd, arg1, arg2));
}

/* A forged event on room 1's channel, sharded as the daemons subscribe
 * it: daemon A (frank's) must have received it. */
static void room_spublish(const char *json) {
        ASSERT_TRUE(test_redis_integer(&server, "SPUBLISH mc:{r1}:ch %s", json) >= 1);
}

/* The next room list that differs from the one before (see
 * drop_repeated_rooms()), waiting for it. */
static json_t *find_new_rooms(TestConn *c) {
        json_t *last = NULL;

        for (size_t i = 0; i < c->n_frames; i++) {
                if (!json_object_get(c->frames[i], "rooms"))
                        continue;
                if (!c->taken[i] && last && json_equal(c->frames[i], last))
                        c->taken[i] = true;
                else if (!c->taken[i]) {
                        c->taken[i] = true;
                        return c->frames[i];
                }
                last = c->frames[i];
        }
        return NULL;
}

static json_t *take_rooms(TestConn *c) {
        uint64_t end = test_now() + 5 * TEST_SEC;
        json_t *j;

        while (!(j = find_new_rooms(c)) && test_now() < end)
                ASSERT_OK(sd_event_run(event, 20 * TEST_MSEC));
        ASSERT_NOT_NULL(j);
        ASSERT_TRUE(json_is_array(json_object_get(j, "rooms")));
        return json_object_get(j, "rooms");
}

/* The daemon that made a room change pushes the list at once, and again
 * when the change's "rooms" event comes back from Redis: a repeat must be
 * the same list, never an older one. */
static void drop_repeated_rooms(TestConn *c) {
        json_t *last = NULL;

        for (size_t i = 0; i < c->n_frames; i++) {
                if (!json_object_get(c->frames[i], "rooms"))
                        continue;
                if (!c->taken[i]) {
                        ASSERT_NOT_NULL(last);
                        ASSERT_TRUE(json_equal(c->frames[i], last));
                        c->taken[i] = true;
                }
                last = c->frames[i];
        }
}

/* The room list holds a room with this title and flag. */
static bool rooms_have(json_t *rooms, const char *id, const char *title, bool staff_only) {
        size_t i;
        json_t *r;

        json_array_foreach(rooms, i, r)
                if (streq(test_json_str(r, "id"), id))
                        return streq(test_json_str(r, "title"), title) &&
                               test_json_true(r, "staff_only") == staff_only;
        return false;
}

static bool members_have(json_t *joined, const char *user) {
        json_t *m = json_object_get(joined, "members"), *u;
        size_t i;

        json_array_foreach(m, i, u)
                if (streq(json_string_value(u), user))
                        return true;
        return false;
}

static void join(TestConn *c, const char *room, json_t **ret) {
        char cmd[128];
        json_t *j;

        snprintf(cmd, sizeof cmd, "{\"command\": \"join\", \"room\": \"%s\", \"ref\": \"j-%s\"}", room, room);
        test_conn_command(c, cmd);
        j = test_conn_take(c, "join", room);
        snprintf(cmd, sizeof cmd, "j-%s", room);
        ASSERT_STREQ(test_json_str(j, "ref"), cmd);
        if (ret)
                *ret = j;
}

static void expect_error(TestConn *c, const char *error, const char *ref) {
        json_t *j = test_conn_take(c, "error", error);

        if (ref)
                ASSERT_STREQ(test_json_str(j, "ref"), ref);
}

/* Sends and returns the new message's id (from the ok). */
static void send_msg(TestConn *c, const char *room, const char *text, const char *ref, char *ret_id) {
        char cmd[512];
        json_t *ok;

        snprintf(cmd, sizeof cmd, "{\"command\": \"send\", \"room\": \"%s\", \"message\": \"%s\", \"ref\": \"%s\"}",
                 room, text, ref);
        test_conn_command(c, cmd);
        ok = test_conn_take(c, "ref", ref);
        ASSERT_TRUE(test_json_true(ok, "ok"));
        ASSERT_NOT_NULL(test_json_str(ok, "id"));
        snprintf(ret_id, MESSAGE_ID_MAX + 1, "%s", test_json_str(ok, "id"));
}

static void test_ready(void) {
        /* A room that is in Redis before the daemon starts. */
        redis_do("HSET mc:{rooms} 1 %s", "{\"title\":\"Lobby\",\"staff_only\":false}", NULL);
        redis_do("SET mc:{rooms}:seq %s", "1", NULL);
        redis_do("SET mc:{r1}:room %s", "1", NULL);

        test_daemon_start(&A, event, &server);
        ASSERT_INT_EQ(A.n_ready_true, 1);
        ASSERT_INT_EQ(A.n_ready_false, 0);
        ASSERT_INT_EQ(A.n_added, 1);
        ASSERT_STREQ(A.added[0], "1");
        ASSERT_INT_EQ(chat_room_count(A.chat), 1);
        ASSERT_NOT_NULL(chat_find_room(A.chat, "1"));
        ASSERT_STREQ(chat_find_room(A.chat, "1")->title, "Lobby");
        ASSERT_NULL(chat_find_room(A.chat, "2"));
        ASSERT_INT_EQ(strlen(chat_daemon_id(A.chat)), CHAT_DAEMON_ID_LEN);
}

static void test_basics(void) {
        TestConn alice, bob, alice2;
        char id[MESSAGE_ID_MAX + 1], first[MESSAGE_ID_MAX + 1], cmd[256];
        json_t *j, *h;
        uint64_t relayed;

        test_conn_open(&alice, &A, "alice", "s-alice", false);
        ASSERT_TRUE(rooms_have(take_rooms(&alice), "1", "Lobby", false));
        ASSERT_CONN_DONE(&alice);
        test_conn_open(&bob, &A, "bob", "s-bob", false);
        (void) take_rooms(&bob);

        /* bob joins alone and writes; alice joins after and gets it as history. */
        join(&bob, "1", &j);
        ASSERT_TRUE(members_have(j, "bob"));
        ASSERT_FALSE(members_have(j, "alice"));
        ASSERT_INT_EQ(json_array_size(json_object_get(j, "history")), 0);
        send_msg(&bob, "1", "first", "s1", first);
        j = test_conn_take(&bob, "message", "first");
        ASSERT_TRUE(test_json_true(j, "own"));
        ASSERT_STREQ(test_json_str(j, "id"), first);
        ASSERT_STREQ(test_json_str(j, "username"), "bob");
        ASSERT_STREQ(test_json_str(j, "room"), "1");

        A.changes[1] = 0;
        join(&alice, "1", &j);
        ASSERT_TRUE(members_have(j, "bob"));
        ASSERT_TRUE(members_have(j, "alice"));
        ASSERT_STREQ(test_json_str(j, "title"), "Lobby");
        ASSERT_FALSE(test_json_true(j, "staff_only"));
        ASSERT_NULL(json_object_get(j, "complete"));     /* no "since" given */
        h = json_object_get(j, "history");
        ASSERT_INT_EQ(json_array_size(h), 1);
        ASSERT_STREQ(test_json_str(json_array_get(h, 0), "message"), "first");
        ASSERT_STREQ(test_json_str(json_array_get(h, 0), "id"), first);
        ASSERT_NULL(json_object_get(json_array_get(h, 0), "own"));
        /* bob hears alice enter; alice is not told of herself. */
        j = test_conn_take(&bob, "msg_type", "4");
        ASSERT_STREQ(test_json_str(j, "username"), "alice");
        ASSERT_STREQ(test_json_str(j, "room"), "1");
        test_settle(only_a);
        ASSERT_TRUE(A.changes[1] & CHAT_ROOM_MEMBERS);
        ASSERT_TRUE(room_has_user(chat_find_room(A.chat, "1"), "alice"));
        ASSERT_CONN_DONE(&alice);
        ASSERT_CONN_DONE(&bob);

        /* Joining again answers the state, without history, without a presence notice. */
        test_conn_command(&alice, "{\"command\": \"join\", \"room\": 1, \"ref\": \"again\"}");
        j = test_conn_take(&alice, "ref", "again");
        ASSERT_STREQ(test_json_str(j, "join"), "1");
        test_settle(only_a);
        ASSERT_CONN_DONE(&bob);

        /* A message reaches every member through Redis, marked "own" for its author only. */
        relayed = chat_messages_relayed(A.chat);
        send_msg(&alice, "1", "hello \\u00e9", "s2", id);
        j = test_conn_take(&alice, "message", "hello \xc3\xa9");
        ASSERT_TRUE(test_json_true(j, "own"));
        ASSERT_STREQ(test_json_str(j, "id"), id);
        ASSERT_INT_EQ(json_integer_value(json_object_get(j, "msg_type")), 0);
        j = test_conn_take(&bob, "message", "hello \xc3\xa9");
        ASSERT_NULL(json_object_get(j, "own"));
        ASSERT_STREQ(test_json_str(j, "username"), "alice");
        ASSERT_STREQ(test_json_str(j, "id"), id);
        ASSERT_TRUE(json_integer_value(json_object_get(j, "ts")) > 1700000000000);
        ASSERT_INT_EQ(chat_messages_relayed(A.chat), relayed + 2);
        /* Later ids sort later. */
        ASSERT_TRUE(message_id_compare(id, first) > 0);

        /* A second connection of the author gets "own" too, and its join
         * does not count as the user entering. */
        test_conn_open(&alice2, &A, "alice", "s-alice-2", false);
        (void) take_rooms(&alice2);
        join(&alice2, "1", NULL);
        test_settle(only_a);
        ASSERT_CONN_DONE(&bob);
        send_msg(&bob, "1", "to both", "s3", id);
        ASSERT_NULL(json_object_get(test_conn_take(&alice, "message", "to both"), "own"));
        ASSERT_NULL(json_object_get(test_conn_take(&alice2, "message", "to both"), "own"));
        ASSERT_TRUE(test_json_true(test_conn_take(&bob, "message", "to both"), "own"));

        /* Edit: everyone gets the new text under the same id. */
        snprintf(cmd, sizeof cmd, "{\"command\": \"edit\", \"room\": \"1\", \"id\": \"%s\", \"message\": \"to all\", "
                 "\"ref\": \"e1\"}", id);
        test_conn_command(&bob, cmd);
        j = test_conn_take(&bob, "ref", "e1");
        ASSERT_TRUE(test_json_true(j, "ok"));
        ASSERT_NULL(json_object_get(j, "id"));
        j = test_conn_take(&alice, "message", "to all");
        ASSERT_STREQ(test_json_str(j, "id"), id);
        ASSERT_TRUE(test_json_true(j, "edited"));
        ASSERT_NULL(json_object_get(j, "own"));
        j = test_conn_take(&bob, "message", "to all");
        ASSERT_TRUE(test_json_true(j, "own"));
        ASSERT_TRUE(test_json_true(j, "edited"));
        (void) test_conn_take(&alice2, "message", "to all");

        /* Someone else's message: FORBIDDEN; an unknown id: NOT_FOUND. */
        snprintf(cmd, sizeof cmd, "{\"command\": \"edit\", \"room\": \"1\", \"id\": \"%s\", \"message\": \"mine\", "
                 "\"ref\": \"e2\"}", id);
        test_conn_command(&alice, cmd);
        expect_error(&alice, "FORBIDDEN", "e2");
        test_conn_command(&alice, "{\"command\": \"delete\", \"room\": \"1\", \"id\": \"1-1\", \"ref\": \"d0\"}");
        expect_error(&alice, "NOT_FOUND", "d0");

        /* Delete. */
        snprintf(cmd, sizeof cmd, "{\"command\": \"delete\", \"room\": \"1\", \"id\": \"%s\"}", id);
        test_conn_command(&bob, cmd);
        ASSERT_STREQ(test_json_str(test_conn_take(&alice, "deleted", id), "room"), "1");
        (void) test_conn_take(&bob, "deleted", id);
        (void) test_conn_take(&alice2, "deleted", id);

        /* Typing goes to everyone but the typist (and not to its other connection either). */
        test_conn_command(&alice, "{\"command\": \"typing\", \"room\": \"1\", \"ref\": \"t1\"}");
        (void) test_conn_take(&alice, "ref", "t1");
        ASSERT_STREQ(test_json_str(test_conn_take(&bob, "typing", "alice"), "room"), "1");
        test_settle(only_a);
        ASSERT_CONN_DONE(&alice);
        ASSERT_CONN_DONE(&bob);
        ASSERT_CONN_DONE(&alice2);

        /* History. */
        test_conn_command(&bob, "{\"command\": \"history\", \"room\": \"1\", \"limit\": 1, \"ref\": \"h\"}");
        j = test_conn_take(&bob, "ref", "h");
        h = json_object_get(j, "history");
        ASSERT_INT_EQ(json_array_size(h), 1);
        ASSERT_STREQ(test_json_str(json_array_get(h, 0), "message"), "hello \xc3\xa9");
        ASSERT_FALSE(test_json_true(j, "complete"));

        /* Errors: no such room, not in the room. */
        test_conn_command(&bob, "{\"command\": \"join\", \"room\": \"99\", \"ref\": \"x1\"}");
        expect_error(&bob, "ROOM_INVALID", "x1");
        test_conn_command(&bob, "{\"command\": \"leave\", \"room\": \"99\", \"ref\": \"x2\"}");
        expect_error(&bob, "ROOM_INVALID", "x2");
        test_conn_command(&bob, "{\"command\": \"send\", \"room\": \"99\", \"message\": \"hi\", \"ref\": \"x3\"}");
        expect_error(&bob, "ROOM_INVALID", "x3");

        /* Leave: the leaver is answered, the others are told once the
         * user's last connection is out. */
        test_conn_command(&bob, "{\"command\": \"leave\", \"room\": \"1\", \"ref\": \"l1\"}");
        j = test_conn_take(&bob, "leave", "1");
        ASSERT_STREQ(test_json_str(j, "ref"), "l1");
        ASSERT_NULL(json_object_get(j, "reason"));
        j = test_conn_take(&alice, "msg_type", "5");
        ASSERT_STREQ(test_json_str(j, "username"), "bob");
        (void) test_conn_take(&alice2, "msg_type", "5");
        test_conn_command(&bob, "{\"command\": \"send\", \"room\": \"1\", \"message\": \"hi\", \"ref\": \"x4\"}");
        expect_error(&bob, "ROOM_ACCESS_DENIED", "x4");
        test_conn_command(&bob, "{\"command\": \"typing\", \"room\": \"1\", \"ref\": \"x5\"}");
        expect_error(&bob, "ROOM_ACCESS_DENIED", "x5");
        test_conn_command(&bob, "{\"command\": \"history\", \"room\": \"1\", \"ref\": \"x6\"}");
        expect_error(&bob, "ROOM_ACCESS_DENIED", "x6");
        /* Leaving again changes nothing and tells nobody. */
        test_conn_command(&bob, "{\"command\": \"leave\", \"room\": \"1\", \"ref\": \"l2\"}");
        (void) test_conn_take(&bob, "ref", "l2");
        test_settle(only_a);
        ASSERT_CONN_DONE(&alice);
        ASSERT_CONN_DONE(&bob);
        ASSERT_CONN_DONE(&alice2);

        /* A connection that goes away leaves its rooms: alice still has
         * one more, so nobody hears of it until that one goes too. */
        join(&bob, "1", NULL);
        (void) test_conn_take(&alice, "msg_type", "4");
        (void) test_conn_take(&alice2, "msg_type", "4");
        test_conn_gone(&alice);
        test_settle(only_a);
        ASSERT_CONN_DONE(&bob);
        test_conn_gone(&alice2);
        j = test_conn_take(&bob, "msg_type", "5");
        ASSERT_STREQ(test_json_str(j, "username"), "alice");
        test_settle(only_a);
        ASSERT_FALSE(room_has_user(chat_find_room(A.chat, "1"), "alice"));
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users alice"), 0);
        ASSERT_CONN_DONE(&bob);

        test_conn_free(&bob);
        test_conn_free(&alice);
        test_conn_free(&alice2);
        test_settle(only_a);
        ASSERT_INT_EQ(test_redis_integer(&server, "HLEN mc:{r1}:users"), 0);
}

typedef struct Change {
        bool done;
        int r;
        char id[ROOM_ID_MAX + 1];
} Change;

static void on_change(int r, const char *id, void *userdata) {
        Change *c = userdata;

        ASSERT_FALSE(c->done);
        c->done = true;
        c->r = r;
        ASSERT_TRUE((r >= 0) == !!id);
        if (id)
                snprintf(c->id, sizeof c->id, "%s", id);
}

static void wait_change(Change *c) {
        TEST_RUN_UNTIL(event, c->done);
}

static void test_admin(void) {
        TestConn staffer, user;
        Change c = {};
        char staff_room[ROOM_ID_MAX + 1];
        json_t *j;
        unsigned added = A.n_added, removed = A.n_removed;

        test_conn_open(&staffer, &A, "carol", "s-carol", true);
        test_conn_open(&user, &A, "dave", "s-dave", false);
        (void) take_rooms(&staffer);
        (void) take_rooms(&user);

        /* Create: the callback has the id; the room is there at once; every
         * connection gets the new list. */
        ASSERT_OK(chat_create_room(A.chat, "Staff room", true, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        snprintf(staff_room, sizeof staff_room, "%s", c.id);
        ASSERT_STREQ(staff_room, "2");
        ASSERT_NOT_NULL(chat_find_room(A.chat, staff_room));
        ASSERT_INT_EQ(A.n_added, added + 1);
        ASSERT_STREQ(A.added[added], staff_room);
        ASSERT_TRUE(rooms_have(take_rooms(&user), staff_room, "Staff room", true));
        ASSERT_TRUE(rooms_have(take_rooms(&staffer), staff_room, "Staff room", true));
        /* The "rooms" event that follows changes nothing more. */
        test_settle(only_a);
        ASSERT_INT_EQ(A.n_added, added + 1);

        /* Staff-only: refused for non-staff. */
        test_conn_command(&user, "{\"command\": \"join\", \"room\": \"2\", \"ref\": \"sj\"}");
        expect_error(&user, "ROOM_ACCESS_DENIED", "sj");
        join(&staffer, staff_room, NULL);

        /* A room that becomes staff-only evicts its non-staff members only. */
        join(&user, "1", NULL);
        join(&staffer, "1", NULL);
        (void) test_conn_take(&user, "msg_type", "4");
        test_settle(only_a);
        drop_repeated_rooms(&user);
        ASSERT_CONN_DONE(&user);
        A.changes[1] = 0;
        c = (Change) {};
        ASSERT_OK(chat_update_room(A.chat, "1", NULL, 1, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        ASSERT_STREQ(c.id, "1");
        ASSERT_TRUE(A.changes[1] & CHAT_ROOM_STAFF_ONLY);
        ASSERT_FALSE(A.changes[1] & CHAT_ROOM_TITLE);
        j = test_conn_take(&user, "leave", "1");
        ASSERT_STREQ(test_json_str(j, "reason"), "kicked");
        ASSERT_TRUE(rooms_have(take_rooms(&user), "1", "Lobby", true));
        ASSERT_TRUE(rooms_have(take_rooms(&staffer), "1", "Lobby", true));
        ASSERT_NULL(test_conn_find(&staffer, "leave", NULL));
        /* dave's presence went with him. */
        (void) test_conn_take(&staffer, "msg_type", "5");
        test_settle(only_a);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users dave"), 0);
        test_conn_command(&user, "{\"command\": \"join\", \"room\": \"1\", \"ref\": \"sj2\"}");
        expect_error(&user, "ROOM_ACCESS_DENIED", "sj2");

        /* Title and back to open. */
        A.changes[1] = 0;
        c = (Change) {};
        ASSERT_OK(chat_update_room(A.chat, "1", "Hall", 0, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        ASSERT_TRUE(A.changes[1] & CHAT_ROOM_TITLE);
        ASSERT_TRUE(A.changes[1] & CHAT_ROOM_STAFF_ONLY);
        ASSERT_STREQ(chat_find_room(A.chat, "1")->title, "Hall");
        ASSERT_TRUE(rooms_have(take_rooms(&user), "1", "Hall", false));
        (void) take_rooms(&staffer);

        /* Changes to rooms that do not exist. */
        c = (Change) {};
        ASSERT_OK(chat_update_room(A.chat, "77", "x", -1, on_change, &c));
        wait_change(&c);
        ASSERT_INT_EQ(c.r, -ENOENT);
        c = (Change) {};
        ASSERT_OK(chat_delete_room(A.chat, "77", on_change, &c));
        wait_change(&c);
        ASSERT_INT_EQ(c.r, -ENOENT);

        /* Delete: members leave with reason "deleted", the hook hears of it. */
        c = (Change) {};
        ASSERT_OK(chat_delete_room(A.chat, staff_room, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        ASSERT_NULL(chat_find_room(A.chat, staff_room));
        ASSERT_INT_EQ(A.n_removed, removed + 1);
        ASSERT_STREQ(A.removed[removed], staff_room);
        j = test_conn_take(&staffer, "leave", staff_room);
        ASSERT_STREQ(test_json_str(j, "reason"), "deleted");
        ASSERT_FALSE(rooms_have(take_rooms(&staffer), staff_room, "Staff room", true));
        (void) take_rooms(&user);
        test_settle(only_a);
        ASSERT_INT_EQ(A.n_removed, removed + 1);
        test_conn_command(&staffer, "{\"command\": \"send\", \"room\": \"2\", \"message\": \"hi\", \"ref\": \"gone\"}");
        expect_error(&staffer, "ROOM_INVALID", "gone");
        drop_repeated_rooms(&staffer);
        ASSERT_CONN_DONE(&staffer);
        drop_repeated_rooms(&user);
        ASSERT_CONN_DONE(&user);

        test_conn_free(&staffer);
        test_conn_free(&user);
        test_settle(only_a);
}

/* Kicks, logouts and notices go through mc:events to every daemon. */
static void test_events(void) {
        TestConn eve1, eve2, frank, eve_b;
        json_t *j;

        test_conn_open(&eve1, &A, "eve", "s-eve-1", false);
        test_conn_open(&eve2, &A, "eve", "s-eve-2", false);
        test_conn_open(&frank, &A, "frank", "s-frank", false);
        test_conn_open(&eve_b, &B, "eve", "s-eve-b", false);
        (void) take_rooms(&eve1);
        (void) take_rooms(&eve2);
        (void) take_rooms(&frank);
        (void) take_rooms(&eve_b);
        join(&eve1, "1", NULL);
        join(&eve2, "1", NULL);
        join(&frank, "1", NULL);
        join(&eve_b, "1", NULL);
        test_settle(both);
        while (test_conn_find(&eve1, "msg_type", NULL) || test_conn_find(&eve2, "msg_type", NULL) ||
               test_conn_find(&eve_b, "msg_type", NULL))
                ;
        ASSERT_CONN_DONE(&eve1);

        /* A notice to one room, and to all. */
        ASSERT_OK(chat_publish_notice(A.chat, "1", 2, "behave"));
        j = test_conn_take(&frank, "msg_type", "2");
        ASSERT_STREQ(test_json_str(j, "message"), "behave");
        (void) test_conn_take(&eve_b, "msg_type", "2");
        (void) test_conn_take(&eve1, "msg_type", "2");
        (void) test_conn_take(&eve2, "msg_type", "2");
        ASSERT_OK(chat_publish_notice(B.chat, NULL, 3, "muted"));
        j = test_conn_take(&frank, "msg_type", "3");
        ASSERT_STREQ(test_json_str(j, "room"), "1");
        (void) test_conn_take(&eve_b, "msg_type", "3");
        (void) test_conn_take(&eve1, "msg_type", "3");
        (void) test_conn_take(&eve2, "msg_type", "3");

        /* A kick from one room: every connection of the user, on every daemon. */
        ASSERT_OK(chat_publish_kick(B.chat, "eve", "1"));
        ASSERT_STREQ(test_json_str(test_conn_take(&eve1, "leave", "1"), "reason"), "kicked");
        ASSERT_STREQ(test_json_str(test_conn_take(&eve2, "leave", "1"), "reason"), "kicked");
        ASSERT_STREQ(test_json_str(test_conn_take(&eve_b, "leave", "1"), "reason"), "kicked");
        ASSERT_STREQ(test_json_str(test_conn_take(&frank, "msg_type", "5"), "username"), "eve");
        test_settle(both);
        ASSERT_INT_EQ(eve1.close_code, 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users eve"), 0);
        ASSERT_CONN_DONE(&frank);
        ASSERT_CONN_DONE(&eve1);

        /* A logout closes the connections of that session only. */
        ASSERT_OK(chat_publish_logout(B.chat, "s-eve-2"));
        (void) test_conn_take(&eve2, "error", "USER_HAS_TO_LOGIN");
        TEST_RUN_UNTIL(event, eve2.close_code != 0);
        ASSERT_INT_EQ(eve2.close_code, CHAT_CLOSE_LOGGED_OUT);
        test_settle(both);
        ASSERT_INT_EQ(eve1.close_code, 0);
        ASSERT_INT_EQ(eve_b.close_code, 0);
        ASSERT_INT_EQ(frank.close_code, 0);
        test_conn_gone(&eve2);

        /* A kick from every room closes every connection of the user. */
        ASSERT_OK(chat_publish_kick(A.chat, "eve", NULL));
        TEST_RUN_UNTIL(event, eve1.close_code != 0 && eve_b.close_code != 0);
        ASSERT_INT_EQ(eve1.close_code, CHAT_CLOSE_POLICY_VIOLATION);
        ASSERT_STREQ(eve1.close_reason, "kicked");
        ASSERT_INT_EQ(eve_b.close_code, CHAT_CLOSE_POLICY_VIOLATION);
        test_settle(both);
        ASSERT_INT_EQ(frank.close_code, 0);
        ASSERT_CONN_DONE(&frank);

        /* Malformed events on the channels are ignored. */
        redis_do("PUBLISH mc:events %s", "[\"kick\",\"frank\",\"01\"]", NULL);
        redis_do("PUBLISH mc:events %s", "[\"logout\"]", NULL);
        room_spublish("[\"m\",\"x\",\"eve\",\"forged\"]");
        room_spublish("{\"m\":1}");
        /* An event of the wrong channel too. */
        room_spublish("[\"kick\",\"frank\",\"\"]");
        test_settle(both);
        ASSERT_INT_EQ(frank.close_code, 0);
        ASSERT_CONN_DONE(&frank);

        test_conn_free(&eve1);
        test_conn_free(&eve2);
        test_conn_free(&eve_b);
        test_conn_free(&frank);
        test_settle(both);
}

/* Two daemons on one Redis see each other's messages, rooms and presence. */
static void test_two_daemons(void) {
        TestConn a, b;
        Change c = {};
        char id[MESSAGE_ID_MAX + 1];
        unsigned added_b = B.n_added, removed_b = B.n_removed;
        uint64_t relayed_a, relayed_b;
        json_t *j;

        test_conn_open(&a, &A, "gina", "s-gina", false);
        test_conn_open(&b, &B, "hank", "s-hank", false);
        (void) take_rooms(&a);
        (void) take_rooms(&b);

        /* A room created through A appears on B through the "rooms" event. */
        ASSERT_OK(chat_create_room(A.chat, "Shared", false, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        TEST_RUN_UNTIL(event, chat_find_room(B.chat, c.id));
        /* B loads the new room's presence with HGETALL; a reply that lands
         * after a presence event on the subscriber connection overwrites
         * that event (a known race, see docs/architecture.md), so the
         * load is done before anyone joins. */
        test_settle(both);
        ASSERT_INT_EQ(B.n_added, added_b + 1);
        ASSERT_STREQ(B.added[added_b], c.id);
        ASSERT_TRUE(rooms_have(take_rooms(&b), c.id, "Shared", false));
        (void) take_rooms(&a);

        join(&a, c.id, NULL);
        /* B hears of gina's presence on its subscriber connection, which
         * races with the join reply on its command connection. */
        TEST_RUN_UNTIL(event, room_has_user(chat_find_room(B.chat, c.id), "gina"));
        join(&b, c.id, &j);
        ASSERT_TRUE(members_have(j, "gina"));
        ASSERT_STREQ(test_json_str(test_conn_take(&a, "msg_type", "4"), "username"), "hank");

        relayed_a = chat_messages_relayed(A.chat);
        relayed_b = chat_messages_relayed(B.chat);
        send_msg(&a, c.id, "across", "x", id);
        j = test_conn_take(&b, "message", "across");
        ASSERT_STREQ(test_json_str(j, "id"), id);
        ASSERT_NULL(json_object_get(j, "own"));
        (void) test_conn_take(&a, "message", "across");
        send_msg(&b, c.id, "back", "y", id);
        (void) test_conn_take(&a, "message", "back");
        (void) test_conn_take(&b, "message", "back");
        ASSERT_INT_EQ(chat_messages_relayed(A.chat), relayed_a + 2);
        ASSERT_INT_EQ(chat_messages_relayed(B.chat), relayed_b + 2);

        /* Deleted through B: A's member is evicted. */
        c.done = false;
        ASSERT_OK(chat_delete_room(B.chat, c.id, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        ASSERT_STREQ(test_json_str(test_conn_take(&a, "leave", c.id), "reason"), "deleted");
        ASSERT_STREQ(test_json_str(test_conn_take(&b, "leave", c.id), "reason"), "deleted");
        TEST_RUN_UNTIL(event, !chat_find_room(A.chat, c.id));
        ASSERT_INT_EQ(B.n_removed, removed_b + 1);
        test_settle(both);
        (void) take_rooms(&a);
        (void) take_rooms(&b);
        drop_repeated_rooms(&a);
        drop_repeated_rooms(&b);
        ASSERT_CONN_DONE(&a);
        ASSERT_CONN_DONE(&b);

        test_conn_free(&a);
        test_conn_free(&b);
        test_settle(both);
}

/* A join shows a first page and the count, "members" pages on, from the
 * presence every daemon keeps: users who joined on B are paged on A. */
static void test_members(void) {
        const unsigned n = PROTOCOL_MEMBERS_PAGE + 20;
        _cleanup_free_ TestConn *many = calloc(n, sizeof *many);
        TestConn zed, outsider;
        char name[32], cmd[160];
        Change c = {};
        json_t *j, *names;

        ASSERT_NOT_NULL(many);
        ASSERT_OK(chat_create_room(A.chat, "Big", false, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        TEST_RUN_UNTIL(event, chat_find_room(B.chat, c.id));
        for (unsigned i = 0; i < n; i++) {
                snprintf(name, sizeof name, "m%03u", n - 1 - i);
                test_conn_open(&many[i], &B, name, name, false);
                join(&many[i], c.id, NULL);
        }
        test_settle(both);
        TEST_RUN_UNTIL(event, chat_find_room(A.chat, c.id)->n_usernames == n);

        test_conn_open(&zed, &A, "zed", "s-zed", false);
        join(&zed, c.id, &j);
        names = json_object_get(j, "members");
        ASSERT_INT_EQ(json_array_size(names), PROTOCOL_MEMBERS_PAGE);
        ASSERT_INT_EQ(json_integer_value(json_object_get(j, "member_count")), n + 1);
        ASSERT_STREQ(json_string_value(json_array_get(names, 0)), "m000");
        ASSERT_STREQ(json_string_value(json_array_get(names, PROTOCOL_MEMBERS_PAGE - 1)), "m099");

        snprintf(cmd, sizeof cmd, "{\"command\": \"members\", \"room\": \"%s\", \"after\": \"m099\", \"ref\": \"p2\"}", c.id);
        test_conn_command(&zed, cmd);
        j = test_conn_take(&zed, "ref", "p2");
        ASSERT_STREQ(test_json_str(j, "room"), c.id);
        ASSERT_FALSE(test_json_true(j, "more"));
        names = json_object_get(j, "members");
        ASSERT_INT_EQ(json_array_size(names), 21);
        ASSERT_STREQ(json_string_value(json_array_get(names, 0)), "m100");
        ASSERT_STREQ(json_string_value(json_array_get(names, 20)), "zed");

        snprintf(cmd, sizeof cmd, "{\"command\": \"members\", \"room\": \"%s\", \"ref\": \"p1\"}", c.id);
        test_conn_command(&zed, cmd);
        j = test_conn_take(&zed, "ref", "p1");
        ASSERT_TRUE(test_json_true(j, "more"));
        ASSERT_INT_EQ(json_array_size(json_object_get(j, "members")), PROTOCOL_MEMBERS_PAGE);

        /* Someone leaves on B: gone from A's pages too. The room is larger
         * than a page: no "left" notice, a count instead. */
        test_conn_free(&many[n - 1]);          /* m000 */
        ASSERT_STREQ(test_json_str(test_conn_take(&zed, "member_count", "120"), "room"), c.id);
        ASSERT_NULL(test_conn_find(&zed, "msg_type", NULL));
        test_conn_command(&zed, cmd);
        j = test_conn_take(&zed, "ref", "p1");
        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(j, "members"), 0)), "m001");

        /* A burst of changes is one count, the latest. */
        test_conn_free(&many[n - 2]);
        test_conn_free(&many[n - 3]);
        test_conn_free(&many[n - 4]);
        ASSERT_NOT_NULL(test_conn_take(&zed, "member_count", "117"));
        ASSERT_NULL(test_conn_find(&zed, "member_count", NULL));

        /* Only a member of the room may page it. */
        test_conn_open(&outsider, &A, "olga", "s-olga", false);
        (void) take_rooms(&outsider);
        snprintf(cmd, sizeof cmd, "{\"command\": \"members\", \"room\": \"%s\", \"ref\": \"o1\"}", c.id);
        test_conn_command(&outsider, cmd);
        expect_error(&outsider, "ROOM_ACCESS_DENIED", "o1");
        test_conn_command(&outsider, "{\"command\": \"members\", \"room\": \"999\", \"ref\": \"o2\"}");
        expect_error(&outsider, "ROOM_INVALID", "o2");

        for (unsigned i = 0; i < n - 4; i++)
                test_conn_free(&many[i]);
        test_conn_free(&zed);
        test_conn_free(&outsider);
        c.done = false;
        ASSERT_OK(chat_delete_room(A.chat, c.id, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        test_settle(both);
}

DEFINE_CLEANUP_FUNC(redisReply *, freeReplyObject);

static size_t frame_index(const TestConn *c, const char *text) {
        for (size_t i = 0; i < c->n_frames; i++) {
                const char *m = test_json_str(c->frames[i], "message");

                if (m && streq(m, text))
                        return i;
        }
        ASSERT_TRUE(!"no such message");
        return 0;
}

/* The larger the room, the rarer its count: 3,000 present get it every
 * 3 s. Presence events forged on the global channel fill the room. */
static void test_member_count_interval(void) {
        TestConn zed;
        Change c = {};
        char ev[160];
        uint64_t end;

        ASSERT_OK(chat_create_room(A.chat, "Huge", false, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        test_conn_open(&zed, &A, "zed", "s-zed", false);
        (void) take_rooms(&zed);
        join(&zed, c.id, NULL);
        for (unsigned i = 0; i < 2999; i++) {
                snprintf(ev, sizeof ev, "[\"p\",\"%s\",\"h%04u\",1,1]", c.id, i);
                redis_do("PUBLISH mc:events %s", ev, NULL);
        }
        for (unsigned i = 1; i < PROTOCOL_MEMBERS_PAGE; i++)
                ASSERT_NOT_NULL(test_conn_take(&zed, "msg_type", "4"));
        ASSERT_NOT_NULL(test_conn_take(&zed, "member_count", "3000"));

        snprintf(ev, sizeof ev, "[\"p\",\"%s\",\"h0000\",0,-1]", c.id);
        redis_do("PUBLISH mc:events %s", ev, NULL);
        end = test_now() + 1500 * TEST_MSEC;
        TEST_RUN_UNTIL(event, test_now() >= end);
        ASSERT_NULL(test_conn_find(&zed, "member_count", NULL));
        ASSERT_NOT_NULL(test_conn_take(&zed, "member_count", "2999"));
        ASSERT_NULL(test_conn_find(&zed, "msg_type", NULL));

        test_conn_free(&zed);
        c.done = false;
        ASSERT_OK(chat_delete_room(A.chat, c.id, on_change, &c));
        wait_change(&c);
        ASSERT_OK(c.r);
        test_settle(both);
}

/* A room's sharded subscription that Redis dropped (a slot moved): live
 * events wait from the drop on, and once it is back the room replays its
 * stream, so what was published in between arrives, once and in order. */
static void test_shard_dropped(void) {
        _cleanup_(freeReplyObjectp) redisReply *missed = NULL, *live = NULL;
        char id[MESSAGE_ID_MAX + 1], event_json[256];
        TestConn a;

        test_conn_open(&a, &A, "ivy", "s-ivy", false);
        (void) take_rooms(&a);
        join(&a, "1", NULL);
        send_msg(&a, "1", "before the drop", "d1", id);
        (void) test_conn_take(&a, "message", "before the drop");
        test_settle(only_a);

        /* Not a room's channel, or a room without members here: nothing. */
        chat_on_redis_shard(A.chat, "mc:events", false);
        chat_on_redis_shard(A.chat, "mc:{r99}:ch", false);
        chat_on_redis_shard(A.chat, "mc:{r1}", false);
        room_spublish("[\"t\",\"zed\"]");
        ASSERT_NOT_NULL(test_conn_take(&a, "typing", "zed"));

        chat_on_redis_shard(A.chat, "mc:{r1}:ch", false);
        /* Published while the subscription was away: only in the stream. */
        missed = test_redis_command(&server, "XADD mc:{r1}:log * u %s m %s", "zed", "while away");
        ASSERT_INT_EQ(missed->type, REDIS_REPLY_STRING);
        /* Published once it was back, before the client knew: held. */
        live = test_redis_command(&server, "XADD mc:{r1}:log * u %s m %s", "zed", "after the return");
        ASSERT_INT_EQ(live->type, REDIS_REPLY_STRING);
        snprintf(event_json, sizeof event_json, "[\"m\",\"%s\",\"zed\",\"after the return\"]", live->str);
        room_spublish(event_json);
        test_settle(only_a);
        ASSERT_NULL(test_conn_find(&a, "message", "after the return"));
        ASSERT_CONN_DONE(&a);

        chat_on_redis_shard(A.chat, "mc:{r1}:ch", true);
        ASSERT_STREQ(test_json_str(test_conn_take(&a, "message", "while away"), "id"), missed->str);
        ASSERT_STREQ(test_json_str(test_conn_take(&a, "message", "after the return"), "id"), live->str);
        ASSERT_TRUE(frame_index(&a, "while away") < frame_index(&a, "after the return"));
        test_settle(only_a);
        ASSERT_CONN_DONE(&a);

        /* Live again. */
        send_msg(&a, "1", "live again", "d2", id);
        ASSERT_STREQ(test_json_str(test_conn_take(&a, "message", "live again"), "id"), id);
        test_settle(only_a);
        ASSERT_CONN_DONE(&a);
        test_conn_free(&a);
        test_settle(only_a);
}

/* Losing Redis makes the chat not ready; it comes back by itself. */
static void test_redis_restart(void) {
        test_redis_kill(&server);
        TEST_RUN_UNTIL(event, A.n_ready_false == 1);
        ASSERT_FALSE(chat_is_ready(A.chat));
        ASSERT_OK(test_redis_start(&server));
        TEST_RUN_UNTIL(event, chat_is_ready(A.chat) && chat_is_ready(B.chat));
        ASSERT_INT_EQ(A.n_ready_true, 2);
}

int main(void) {
        alarm(120);
        (void) signal(SIGPIPE, SIG_IGN);

        if (!test_server_start(&server)) {
                fprintf(stderr, "redis-server not found (Debian package redis-server), skipping\n");
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(sd_event_new(&event));

        test_ready();
        test_basics();
        test_admin();
        test_shard_dropped();
        test_daemon_start(&B, event, &server);
        ASSERT_INT_EQ(B.n_added, 1);
        test_events();
        test_two_daemons();
        test_members();
        test_member_count_interval();
        test_redis_restart();

        test_daemon_stop(&B);
        test_daemon_stop(&A);
        event = sd_event_unref(event);
        ASSERT_OK(test_redis_cleanup(&server));
        return 0;
}
