/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the chat tests share: daemons (a Chat on a real Redis) and connections that record what they are sent. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/macro.h"
#include "chat/test-harness.h"
#include "store/store.h"
#include "wire/frame.h"
#include "wire/protocol.h"
#include "test/test.h"

uint64_t test_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * TEST_SEC + (uint64_t) ts.tv_nsec / 1000;
}

bool test_server_start(TestRedis *server) {
        int r = test_redis_init(server, "redis.sock");

        if (r == -ENOENT)
                return false;
        ASSERT_OK(r);
        ASSERT_OK(test_redis_start(server));
        return true;
}

/* ---- the hooks, as the daemon's owner would fill them ---- */

static void on_send(void *conn, Frame *f) {
        TestConn *c = conn;
        json_error_t err;
        json_t *j;

        ASSERT_FALSE(c->gone);
        j = json_loadb((const char *) frame_payload(f), f->len, 0, &err);
        if (!j)
                fprintf(stderr, "frame is not JSON (%s): %.*s\n", err.text, (int) f->len, frame_payload(f));
        ASSERT_NOT_NULL(j);
        ASSERT_TRUE(GREEDY_REALLOC(c->frames, c->n_allocated, c->n_frames + 1));
        c->taken = reallocarray(c->taken, c->n_allocated, sizeof *c->taken);
        ASSERT_NOT_NULL(c->taken);
        c->taken[c->n_frames] = false;
        c->frames[c->n_frames++] = j;
}

static void on_close(void *conn, uint16_t code, const char *reason) {
        TestConn *c = conn;

        ASSERT_FALSE(c->gone);
        /* The first close counts; the connection is on its way out. */
        if (c->close_code == 0) {
                c->close_code = code;
                snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
        }
}

static void on_room_added(void *ud, const char *id) {
        TestDaemon *d = ud;

        ASSERT_TRUE(d->n_added < ELEMENTSOF(d->added));
        snprintf(d->added[d->n_added++], sizeof d->added[0], "%s", id);
}

static void on_room_changed(void *ud, const char *id, unsigned changes) {
        TestDaemon *d = ud;
        unsigned long k = strtoul(id, NULL, 10);

        if (k < ELEMENTSOF(d->changes))
                d->changes[k] |= changes;
}

static void on_room_removed(void *ud, const char *id) {
        TestDaemon *d = ud;

        ASSERT_TRUE(d->n_removed < ELEMENTSOF(d->removed));
        snprintf(d->removed[d->n_removed++], sizeof d->removed[0], "%s", id);
}

static void on_ready_changed(void *ud, bool ready) {
        TestDaemon *d = ud;

        if (ready)
                d->n_ready_true++;
        else
                d->n_ready_false++;
}

static const ChatHooks test_hooks = {
        .send = on_send,
        .close = on_close,
        .room_added = on_room_added,
        .room_changed = on_room_changed,
        .room_removed = on_room_removed,
        .ready_changed = on_ready_changed,
};

static void on_redis_state(Redis *r, bool connected, void *userdata) {
        TestDaemon *d = userdata;

        if (connected)
                chat_on_redis_connected(d->chat);
        else
                chat_on_redis_disconnected(d->chat);
}

static void on_redis_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        TestDaemon *d = userdata;

        chat_on_redis_message(d->chat, channel, data, len);
}

void test_daemon_start(TestDaemon *d, sd_event *event, const TestRedis *server) {
        _cleanup_free_ char *url = NULL;

        *d = (TestDaemon) { .event = event };
        ASSERT_TRUE(asprintf(&url, "unix:%s", server->sock) >= 0);
        ASSERT_OK(redis_new(&d->redis, event, url, on_redis_state, on_redis_message, d));
        ASSERT_OK(chat_new(&d->chat, event, d->redis, &test_hooks, d));
        chat_set_settings(d->chat, &(ChatSettings) {
                .history_on_join = 5, .history_size = 1000, .overload_lag_usec = 60 * TEST_SEC,
        });
        ASSERT_OK(redis_subscribe(d->redis, STORE_EVENTS_CHANNEL));
        ASSERT_OK(redis_start(d->redis));
        TEST_RUN_UNTIL(event, chat_is_ready(d->chat));
}

/* Redis first: freeing it answers the chat's pending commands. */
void test_daemon_stop(TestDaemon *d) {
        d->redis = redis_free(d->redis);
        d->chat = chat_free(d->chat);
}

/* ---- settling ---- */

static void on_ping(Redis *r, const redisReply *reply, void *userdata) {
        ASSERT_NOT_NULL(reply);
        (*(unsigned *) userdata)++;
}

static void on_barrier(Redis *r, bool ok, void *userdata) {
        ASSERT_TRUE(ok);
        (*(unsigned *) userdata)++;
}

void test_settle(TestDaemon *const *daemons) {
        unsigned n = 0, done = 0;

        /* Twice: a reply handled in the first round may send more (a join
         * reply starts a replay, which reads the stream). */
        for (int round = 0; round < 3; round++) {
                n = done = 0;
                for (TestDaemon *const *d = daemons; *d; d++, n++)
                        ASSERT_OK(redis_command((*d)->redis, on_ping, &done, "PING"));
                TEST_RUN_UNTIL(daemons[0]->event, done == n);
                n = done = 0;
                for (TestDaemon *const *d = daemons; *d; d++, n++)
                        ASSERT_OK(redis_subscriber_barrier((*d)->redis, on_barrier, &done));
                TEST_RUN_UNTIL(daemons[0]->event, done == n);
        }
}

/* ---- connections ---- */

void test_conn_open(TestConn *c, TestDaemon *d, const char *username, const char *session, bool staff) {
        *c = (TestConn) { .daemon = d };
        snprintf(c->username, sizeof c->username, "%s", username);
        snprintf(c->session, sizeof c->session, "%s", session);
        ASSERT_OK(chat_member_new(d->chat, c, c->username, c->session, staff, &c->member));
}

void test_conn_gone(TestConn *c) {
        if (c->gone)
                return;
        chat_member_closed(c->member);
        c->member = NULL;
        c->gone = true;
}

void test_conn_free(TestConn *c) {
        test_conn_gone(c);
        for (size_t i = 0; i < c->n_frames; i++)
                json_decref(c->frames[i]);
        free(c->frames);
        free(c->taken);
        *c = (TestConn) { .gone = true };
}

void test_conn_command(TestConn *c, const char *json) {
        Command cmd;
        ProtocolError e;

        e = protocol_parse_command(json, strlen(json), 64 * 1024, &cmd);
        if (e != PROTOCOL_OK)
                fprintf(stderr, "command refused by the parser: %s\n", json);
        ASSERT_INT_EQ(e, PROTOCOL_OK);
        chat_member_command(c->member, &cmd);
        command_done(&cmd);
}

static bool value_is(json_t *v, const char *value) {
        char buf[32];

        if (!v)
                return false;
        if (!value)
                return true;
        if (json_is_string(v))
                return streq(json_string_value(v), value);
        if (json_is_integer(v)) {
                snprintf(buf, sizeof buf, "%lld", (long long) json_integer_value(v));
                return streq(buf, value);
        }
        if (json_is_boolean(v))
                return streq(json_is_true(v) ? "true" : "false", value);
        return false;
}

json_t *test_conn_find(TestConn *c, const char *key, const char *value) {
        for (size_t i = 0; i < c->n_frames; i++)
                if (!c->taken[i] && value_is(json_object_get(c->frames[i], key), value)) {
                        c->taken[i] = true;
                        return c->frames[i];
                }
        return NULL;
}

json_t *test_conn_take(TestConn *c, const char *key, const char *value) {
        uint64_t end = test_now() + 5 * TEST_SEC;
        json_t *j;

        while (!(j = test_conn_find(c, key, value)) && test_now() < end)
                ASSERT_OK(sd_event_run(c->daemon->event, 20 * TEST_MSEC));
        if (!j) {
                fprintf(stderr, "%s: no frame with %s = %s among:\n", c->username, key, value ?: "(any)");
                for (size_t i = 0; i < c->n_frames; i++) {
                        _cleanup_free_ char *s = json_dumps(c->frames[i], JSON_COMPACT);

                        fprintf(stderr, "  %s %s\n", c->taken[i] ? "taken" : "     ", s ?: "?");
                }
        }
        ASSERT_NOT_NULL(j);
        return j;
}

size_t test_conn_untaken(const TestConn *c) {
        size_t n = 0;

        for (size_t i = 0; i < c->n_frames; i++)
                if (!c->taken[i]) {
                        _cleanup_free_ char *s = json_dumps(c->frames[i], JSON_COMPACT);

                        fprintf(stderr, "%s has, untaken: %s\n", c->username, s ?: "?");
                        n++;
                }
        return n;
}

const char *test_json_str(json_t *j, const char *key) {
        return json_string_value(json_object_get(j, key));
}

bool test_json_true(json_t *j, const char *key) {
        return json_is_true(json_object_get(j, key));
}
