/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the replay after a lost subscription: every message once and in order, held live events, gaps, joins meanwhile. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "chat/catch-up.h"
#include "chat/chat.h"
#include "chat/rooms.h"
#include "chat/test-harness.h"
#include "store/store.h"
#include "wire/events.h"
#include "test/test.h"

static TestRedis server;
static sd_event *event;
static TestDaemon A;
static Redis *writer;           /* another daemon's command connection */
static bool writer_up;

static TestDaemon *const only_a[] = { &A, NULL };

/* ---- the writer ---- */

static void on_writer_state(Redis *r, bool connected, void *userdata) {
        writer_up = connected;
}

static void on_sent(Redis *r, const redisReply *reply, void *userdata) {
        ASSERT_NOT_NULL(reply);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_STRING);
        (*(unsigned *) userdata)++;
}

/* Sends texts "<prefix><i>" for i in [from, to), pipelined; returns at
 * once, *acked counts the replies. */
static void write_messages(const char *room, const char *prefix, unsigned from, unsigned to, unsigned *acked) {
        char text[64];

        for (unsigned i = from; i < to; i++) {
                snprintf(text, sizeof text, "%s%u", prefix, i);
                ASSERT_OK(store_send(writer, room, "writer", text, NULL, 100000, on_sent, acked));
        }
}

/* Kills the daemon's subscriber connection, as Redis does to a slow
 * subscriber: the one subscribed to more than the probe channel that every
 * connection of ours has (the writer's is not touched). */
static void kill_subscribers(void) {
        redisReply *list = test_redis_command(&server, "CLIENT LIST TYPE pubsub");
        char *save = NULL;
        unsigned killed = 0;

        ASSERT_INT_EQ(list->type, REDIS_REPLY_STRING);
        for (char *line = strtok_r(list->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *sub = strstr(line, " sub=");
                unsigned long long id;

                ASSERT_TRUE(sscanf(line, "id=%llu ", &id) == 1);
                ASSERT_NOT_NULL(sub);
                if (strtoul(sub + 5, NULL, 10) > 1) {
                        ASSERT_INT_EQ(test_redis_integer(&server, "CLIENT KILL ID %llu", id), 1);
                        killed++;
                }
        }
        freeReplyObject(list);
        ASSERT_INT_EQ(killed, 1);
}

/* ---- what a connection got ---- */

/* The texts of the messages the connection got, in order, from the
 * frames not taken yet (taking them); checks that ids only grow. */
static size_t take_messages(TestConn *c, char ***ret) {
        char last[MESSAGE_ID_MAX + 1] = "0-0";
        char **texts = NULL;
        size_t n = 0;

        for (size_t i = 0; i < c->n_frames; i++) {
                json_t *j = c->frames[i];

                if (c->taken[i] || !test_json_str(j, "message") || json_object_get(j, "edited"))
                        continue;
                c->taken[i] = true;
                if (message_id_compare(test_json_str(j, "id"), last) <= 0)
                        fprintf(stderr, "%s: %s after %s\n", c->username, test_json_str(j, "id"), last);
                ASSERT_TRUE(message_id_compare(test_json_str(j, "id"), last) > 0);
                snprintf(last, sizeof last, "%s", test_json_str(j, "id"));
                texts = reallocarray(texts, n + 1, sizeof *texts);
                ASSERT_NOT_NULL(texts);
                texts[n++] = (char *) test_json_str(j, "message");
        }
        *ret = texts;
        return n;
}

/* The connection got exactly "<prefix><from>" ... "<prefix><to - 1>", in order, once each. */
static void assert_got(TestConn *c, const char *prefix, unsigned from, unsigned to) {
        _cleanup_free_ char **texts = NULL;
        size_t n = take_messages(c, &texts);
        char want[64];

        if (n != to - from)
                fprintf(stderr, "%s got %zu messages, expected %u\n", c->username, n, to - from);
        ASSERT_INT_EQ(n, to - from);
        for (unsigned i = from; i < to; i++) {
                snprintf(want, sizeof want, "%s%u", prefix, i);
                ASSERT_STREQ(texts[i - from], want);
        }
}

static void join(TestConn *c, const char *room, json_t **ret) {
        char cmd[128];
        json_t *j;

        snprintf(cmd, sizeof cmd, "{\"command\": \"join\", \"room\": \"%s\", \"ref\": \"j\"}", room);
        test_conn_command(c, cmd);
        j = test_conn_take(c, "join", room);
        if (ret)
                *ret = j;
}

typedef struct Created {
        bool done;
        char id[ROOM_ID_MAX + 1];
} Created;

static void on_created(int r, const char *id, void *userdata) {
        Created *c = userdata;

        ASSERT_OK(r);
        snprintf(c->id, sizeof c->id, "%s", id);
        c->done = true;
}

static void create_room(const char *title, char *ret) {
        Created c = {};

        ASSERT_OK(chat_create_room(A.chat, title, false, on_created, &c));
        TEST_RUN_UNTIL(event, c.done);
        strcpy(ret, c.id);
}

/* Runs the loop until the daemon is connected again after losing its
 * subscriber, and its room replays; true when it saw the replay running. */
static bool run_until_replaying(Room *room) {
        uint64_t end = test_now() + 5 * TEST_SEC;

        /* The replay begins when the connection drops (live events wait
         * from then on) and reads once it is back. */
        TEST_RUN_UNTIL(event, !chat_is_ready(A.chat));
        while (!(room->catch_up && redis_is_connected(A.redis)) && test_now() < end)
                ASSERT_OK(sd_event_run(event, 5 * TEST_MSEC));
        return room->catch_up;
}

/* The subscriber drops while another daemon writes 2,500 messages (three
 * pages to replay); more come live while the replay runs, and a member
 * joins meanwhile. */
static void test_replay(void) {
        TestConn m1, m2;
        char room_id[ROOM_ID_MAX + 1];
        unsigned acked = 0, live_acked = 0;
        json_t *joined, *h;
        Room *room;

        create_room("Replay", room_id);
        room = chat_find_room(A.chat, room_id);
        ASSERT_NOT_NULL(room);
        test_conn_open(&m1, &A, "m1", "s1", false);
        test_conn_open(&m2, &A, "m2", "s2", false);
        join(&m1, room_id, NULL);

        /* Live first: nothing to replay. */
        write_messages(room_id, "a", 0, 10, &acked);
        TEST_RUN_UNTIL(event, acked == 10);
        test_settle(only_a);
        ASSERT_NULL(room->catch_up);
        assert_got(&m1, "a", 0, 10);

        /* Lost: the writes happen before the daemon even notices. */
        kill_subscribers();
        acked = 0;
        write_messages(room_id, "b", 0, 2500, &acked);
        ASSERT_TRUE(run_until_replaying(room));

        /* During the replay: live messages (held), and a join. */
        write_messages(room_id, "b", 2500, 2600, &live_acked);
        join(&m2, room_id, &joined);
        TEST_RUN_UNTIL(event, acked == 2500 && live_acked == 100 && !room->catch_up);
        test_settle(only_a);
        ASSERT_TRUE(chat_is_ready(A.chat));

        assert_got(&m1, "b", 0, 2600);
        /* m2 has the last messages before its join in the join's history,
         * and everything after live: nothing twice. */
        h = json_object_get(joined, "history");
        ASSERT_INT_EQ(json_array_size(h), 5);
        {
                const char *last = test_json_str(json_array_get(h, 4), "message");
                unsigned k;

                ASSERT_TRUE(last && last[0] == 'b');
                k = (unsigned) strtoul(last + 1, NULL, 10);
                assert_got(&m2, "b", k + 1, 2600);
        }

        /* Live again. */
        acked = 0;
        write_messages(room_id, "c", 0, 3, &acked);
        TEST_RUN_UNTIL(event, acked == 3);
        test_settle(only_a);
        assert_got(&m1, "c", 0, 3);
        assert_got(&m2, "c", 0, 3);
        ASSERT_NULL(test_conn_find(&m1, "complete", NULL));

        test_conn_free(&m1);
        test_conn_free(&m2);
        test_settle(only_a);
}

/* What the subscriber missed was trimmed away before the replay could
 * read it: the member is told ("complete": false), then gets what is left. */
static void test_trimmed(void) {
        TestConn m;
        char room_id[ROOM_ID_MAX + 1];
        unsigned acked = 0;
        json_t *j;
        Room *room;

        create_room("Trimmed", room_id);
        room = chat_find_room(A.chat, room_id);
        test_conn_open(&m, &A, "m", "s", false);
        join(&m, room_id, NULL);
        write_messages(room_id, "a", 0, 3, &acked);
        TEST_RUN_UNTIL(event, acked == 3);
        test_settle(only_a);
        assert_got(&m, "a", 0, 3);

        /* Written (as the send script does, less the publication nobody
         * hears) and trimmed before the daemon can reconnect. */
        kill_subscribers();
        for (unsigned i = 0; i < 50; i++)
                freeReplyObject(test_redis_command(&server, "XADD mc:{r%s}:log * u writer m b%u", room_id, i));
        freeReplyObject(test_redis_command(&server, "XTRIM mc:{r%s}:log MAXLEN 5", room_id));
        TEST_RUN_UNTIL(event, !chat_is_ready(A.chat));
        TEST_RUN_UNTIL(event, chat_is_ready(A.chat) && !room->catch_up);
        test_settle(only_a);

        j = test_conn_take(&m, "complete", "false");
        ASSERT_STREQ(test_json_str(j, "join"), room_id);
        assert_got(&m, "b", 45, 50);

        /* Only once for the gap. */
        acked = 0;
        write_messages(room_id, "c", 0, 1, &acked);
        TEST_RUN_UNTIL(event, acked == 1);
        test_settle(only_a);
        assert_got(&m, "c", 0, 1);
        ASSERT_NULL(test_conn_find(&m, "complete", NULL));

        test_conn_free(&m);
        test_settle(only_a);
}

/* ---- the module alone, with ops of our own ---- */

static void hold_json(RoomCatchUp *cu, const char *json) {
        Event ev;

        ASSERT_OK(event_parse(json, strlen(json), &ev));
        catch_up_hold(cu, &ev);
        /* The replay keeps its own reference. */
        event_done(&ev);
}


typedef struct Recorder {
        RoomRegistry *rooms;
        char log[64][256];       /* "m <text>", "r <user or text>", "s <frame>"; the first 64 */
        unsigned n;
        /* Set: the first delivery adds a message to this room's stream and
         * hands its live event to the full hold, as if published while the
         * replay read its last page. */
        const char *late_room;
} Recorder;

static char *rec_next(Recorder *r) {
        static char overflow[256];

        return r->n++ < ELEMENTSOF(r->log) ? r->log[r->n - 1] : overflow;
}

static Room *rec_find_room(void *ud, const char *id) {
        return room_registry_find(((Recorder *) ud)->rooms, id);
}

static void rec_deliver(void *ud, Room *room, const ChatMessage *msg, const RoomCatchUp *cu) {
        Recorder *r = ud;

        snprintf(rec_next(r), sizeof r->log[0], "m %s", msg->message);
        if (r->late_room) {
                redisReply *id = test_redis_command(&server, "XADD mc:{r%s}:log * u w m late", r->late_room);
                char json[128];

                r->late_room = NULL;
                ASSERT_INT_EQ(id->type, REDIS_REPLY_STRING);
                snprintf(json, sizeof json, "[\"m\",\"%s\",\"w\",\"late\"]", id->str);
                freeReplyObject(id);
                hold_json(room->catch_up, json);
                hold_json(room->catch_up, "[\"n\",2,\"lost\"]");
        }
        if (message_id_compare(msg->id, room->last_id) > 0)
                snprintf(room->last_id, sizeof room->last_id, "%s", msg->id);
}

static void rec_release(void *ud, Room *room, const Event *ev) {
        Recorder *r = ud;

        snprintf(rec_next(r), sizeof r->log[0], "r %s", ev->kind == EVENT_TYPING ? ev->user : ev->text);
}

static void rec_send(void *ud, Membership *mb, Frame *f) {
        Recorder *r = ud;

        snprintf(rec_next(r), sizeof r->log[0], "s %.*s", (int) MIN(f->len, (size_t) 240), frame_payload(f));
}

static const CatchUpOps rec_ops = {
        .find_room = rec_find_room,
        .deliver = rec_deliver,
        .release = rec_release,
        .send = rec_send,
};

/* Held live events are released after the replayed ones, in the order
 * they came, messages through deliver and the rest through release. */
static void test_hold_order(void) {
        Recorder rec = {};
        char room_id[ROOM_ID_MAX + 1], json[128];
        unsigned acked = 0;
        Room *room;

        create_room("Held", room_id);
        write_messages(room_id, "x", 0, 3, &acked);
        TEST_RUN_UNTIL(event, acked == 3);

        ASSERT_OK(room_registry_new(&rec.rooms));
        ASSERT_INT_EQ(room_registry_put(rec.rooms, room_id, "Held", false, &room), 1);
        strcpy(room->last_id, "0-0");
        catch_up_begin(room, writer, &rec_ops, &rec, true);
        ASSERT_NOT_NULL(room->catch_up);

        snprintf(json, sizeof json, "[\"m\",\"%s\",\"w\",\"live1\"]", "99999999999999-0");
        hold_json(room->catch_up, json);
        hold_json(room->catch_up, "[\"t\",\"typist\"]");
        hold_json(room->catch_up, "[\"n\",1,\"notice\"]");
        snprintf(json, sizeof json, "[\"m\",\"%s\",\"w\",\"live2\"]", "99999999999999-1");
        hold_json(room->catch_up, json);

        catch_up_resume(room, writer, &rec_ops, &rec);
        TEST_RUN_UNTIL(event, !room->catch_up);
        ASSERT_INT_EQ(rec.n, 7);
        ASSERT_STREQ(rec.log[0], "m x0");
        ASSERT_STREQ(rec.log[1], "m x1");
        ASSERT_STREQ(rec.log[2], "m x2");
        ASSERT_STREQ(rec.log[3], "m live1");
        ASSERT_STREQ(rec.log[4], "r typist");
        ASSERT_STREQ(rec.log[5], "r notice");
        ASSERT_STREQ(rec.log[6], "m live2");

        /* A room that lost its members ends its replay: replies that come
         * later find no replay and do nothing. */
        rec.n = 0;
        catch_up_begin(room, writer, &rec_ops, &rec, true);
        catch_up_resume(room, writer, &rec_ops, &rec);
        catch_up_end(room);
        ASSERT_NULL(room->catch_up);
        test_settle(only_a);
        ASSERT_INT_EQ(rec.n, 0);

        room_registry_remove(rec.rooms, room);
        rec.rooms = room_registry_free(rec.rooms);
}

/* Past CATCH_UP_HELD_MAX held events, messages are read from the stream
 * instead, and anything else that was dropped is reported as a gap. */
static void test_hold_overflow(void) {
        Recorder rec = {};
        char room_id[ROOM_ID_MAX + 1];
        unsigned acked = 0;
        Room *room;
        Membership *mb;

        create_room("Overflow", room_id);
        ASSERT_OK(room_registry_new(&rec.rooms));
        ASSERT_INT_EQ(room_registry_put(rec.rooms, room_id, "Overflow", false, &room), 1);
        strcpy(room->last_id, "0-0");
        ASSERT_OK(room_add_member(room, NULL, &mb));
        mb->pending = false;            /* its join was answered */
        catch_up_begin(room, writer, &rec_ops, &rec, true);

        for (unsigned i = 0; i < CATCH_UP_HELD_MAX; i++)
                hold_json(room->catch_up, "[\"t\",\"typist\"]");
        /* Over the limit while the last page is read: a message (in the
         * stream: read once more) and a notice (lost: told as a gap). */
        write_messages(room_id, "s", 0, 1, &acked);
        TEST_RUN_UNTIL(event, acked == 1);
        rec.late_room = room_id;

        catch_up_resume(room, writer, &rec_ops, &rec);
        TEST_RUN_UNTIL(event, !room->catch_up);
        /* The messages from the stream, the gap told to the member
         * ("complete": false), then the held typing hints. */
        ASSERT_INT_EQ(rec.n, 3 + CATCH_UP_HELD_MAX);
        ASSERT_STREQ(rec.log[0], "m s0");
        ASSERT_STREQ(rec.log[1], "m late");
        ASSERT_TRUE(strncmp(rec.log[2], "s {\"join\"", 9) == 0);
        ASSERT_NOT_NULL(strstr(rec.log[2], "\"complete\": false"));
        ASSERT_STREQ(rec.log[3], "r typist");
        ASSERT_STREQ(rec.log[63], "r typist");

        room_remove_member(mb);
        room_registry_remove(rec.rooms, room);
        rec.rooms = room_registry_free(rec.rooms);
}

int main(void) {
        _cleanup_free_ char *url = NULL;

        alarm(120);
        (void) signal(SIGPIPE, SIG_IGN);

        if (!test_server_start(&server)) {
                fprintf(stderr, "redis-server not found (Debian package redis-server), skipping\n");
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(sd_event_new(&event));
        test_daemon_start(&A, event, &server);
        ASSERT_TRUE(asprintf(&url, "unix:%s", server.sock) >= 0);
        ASSERT_OK(redis_new(&writer, event, url, on_writer_state, NULL, NULL));
        ASSERT_OK(redis_start(writer));
        TEST_RUN_UNTIL(event, writer_up);

        test_replay();
        test_trimmed();
        test_hold_order();
        test_hold_overflow();

        writer = redis_free(writer);
        test_daemon_stop(&A);
        event = sd_event_unref(event);
        ASSERT_OK(test_redis_cleanup(&server));
        return 0;
}
