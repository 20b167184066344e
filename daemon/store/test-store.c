/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the Redis schema and its Lua scripts against a real redis-server: replies, keys and published events. */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "basic/macro.h"
#include "basic/time-util.h"
#include "redis/redis.h"
#include "store/store.h"
#include "store/test-store-env.h"
#include "test/test-redis-server.h"
#include "test/test.h"

#define MSEC USEC_PER_MSEC
#define SEC USEC_PER_SEC

static TestRedis server;

DEFINE_CLEANUP_FUNC(redisContext *, redisFree);

/* ---- keys, read over a side channel ---- */

/* HGET answers want ("" for a missing field). */
static void assert_hget(const char *key, const char *field, const char *want) {
        _cleanup_(freeReplyObjectp) redisReply *reply = test_redis_command(&server, "HGET %s %s", key, field);
        const char *got = "";

        if (reply->type != REDIS_REPLY_NIL) {
                ASSERT_INT_EQ(reply->type, REDIS_REPLY_STRING);
                got = reply->str;
        }
        if (!streq(got, want))
                fprintf(stderr, "HGET %s %s\n", key, field);
        ASSERT_STREQ(got, want);
}

/* Hand-made replies for store_parse_entry(). */
static redisReply *mk(int type, const char *s, size_t len, long long integer) {
        redisReply *r = calloc(1, sizeof *r);

        ASSERT_NOT_NULL(r);
        r->type = type;
        r->integer = integer;
        if (s) {
                r->str = malloc(len + 1);
                ASSERT_NOT_NULL(r->str);
                memcpy(r->str, s, len);
                r->str[len] = 0;
                r->len = len;
        }
        return r;
}

static redisReply *mk_str(const char *s) {
        return mk(REDIS_REPLY_STRING, s, strlen(s), 0);
}

static redisReply *mk_int(long long v) {
        return mk(REDIS_REPLY_INTEGER, NULL, 0, v);
}

static redisReply *mk_nil(void) {
        return mk(REDIS_REPLY_NIL, NULL, 0, 0);
}

/* An array of n replies (taken). */
static redisReply *mk_arr(size_t n, ...) {
        redisReply *r = mk(REDIS_REPLY_ARRAY, NULL, 0, 0);
        va_list ap;

        r->elements = n;
        r->element = calloc(MAX(n, (size_t) 1), sizeof(redisReply *));
        ASSERT_NOT_NULL(r->element);
        va_start(ap, n);
        for (size_t i = 0; i < n; i++)
                r->element[i] = va_arg(ap, redisReply *);
        va_end(ap);
        return r;
}

/* ---- the clients under test: one for commands, one subscriber ---- */

/* Room ids the tests reach: rooms are numbered from 1 after each reset. */
#define TEST_ROOMS_MAX 64

static void connect_all(StoreEnv *t) {
        store_env_open(t, &server);
        /* Room channels are sharded: no pattern matches them, so each of
         * the rooms the tests create is subscribed by name. */
        for (unsigned i = 1; i <= TEST_ROOMS_MAX; i++) {
                char room[16], channel[64];

                snprintf(room, sizeof room, "%u", i);
                ASSERT_OK(store_room_channel(room, channel, sizeof channel));
                ASSERT_OK(redis_ssubscribe(t->sub, channel));
        }
        store_env_start(t);
}

/* ---- published events ---- */

static json_t *parse(const char *data, size_t len) {
        json_error_t err;
        json_t *j = json_loadb(data, len, JSON_DECODE_ANY, &err);

        if (!j) {
                fprintf(stderr, "not JSON (%s): %.*s\n", err.text, (int) len, data);
                ASSERT_TRUE(!"JSON expected");
        }
        return j;
}

static bool msg_is(const StoreMsg *m, const char *channel, const char *json) {
        _cleanup_(json_decrefp) json_t *a = NULL, *b = NULL;

        if (!streq(m->channel, channel))
                return false;
        a = parse(m->data, m->len);
        b = parse(json, strlen(json));
        return json_equal(a, b);
}

/* The next message is exactly this JSON on this channel. */
static void expect_msg(StoreEnv *t, const char *channel, const char *json) {
        const StoreMsg *m = store_env_next_msg(t, 3 * SEC);

        if (!msg_is(m, channel, json)) {
                fprintf(stderr, "expected %s %s\n     got %s %.*s\n", channel, json, m->channel,
                        (int) m->len, m->data);
                ASSERT_TRUE(!"unexpected message");
        }
}

static void expect_msgf(StoreEnv *t, const char *channel, const char *fmt, ...) _printf_(3, 4);
static void expect_msgf(StoreEnv *t, const char *channel, const char *fmt, ...) {
        _cleanup_free_ char *json = NULL;
        va_list ap;

        va_start(ap, fmt);
        ASSERT_TRUE(vasprintf(&json, fmt, ap) >= 0);
        va_end(ap);
        expect_msg(t, channel, json);
}

/* The next n messages are these, in any order (scripts walk hashes). */
static void expect_msgs_unordered(StoreEnv *t, size_t n, const char *channel, const char *const *jsons) {
        bool used[16] = {};

        ASSERT_TRUE(n <= ELEMENTSOF(used));
        for (size_t i = 0; i < n; i++) {
                const StoreMsg *m = store_env_next_msg(t, 3 * SEC);
                bool found = false;

                for (size_t j = 0; j < n && !found; j++)
                        if (!used[j] && msg_is(m, channel, jsons[j]))
                                used[j] = found = true;
                if (!found) {
                        fprintf(stderr, "unexpected: %s %.*s\n", m->channel, (int) m->len, m->data);
                        ASSERT_TRUE(!"unexpected message");
                }
        }
}

/* Publishes marker and consumes everything up to it: true when nothing
 * else was published meanwhile (said on stderr when report). A script's
 * publications reach subscribers before anything sent after the script. */
static bool consume_to_marker(StoreEnv *t, const char *marker, bool report) {
        bool clean = true;

        freeReplyObject(STORE_ENV_CALL(t->event, store_publish, t->cmd, STORE_EVENTS_CHANNEL, marker, strlen(marker)));
        for (;;) {
                const StoreMsg *m = store_env_next_msg(t, 3 * SEC);

                if (streq(m->channel, STORE_EVENTS_CHANNEL) && m->len == strlen(marker) &&
                    memcmp(m->data, marker, m->len) == 0)
                        return clean;
                if (report)
                        fprintf(stderr, "published unexpectedly: %s %.*s\n", m->channel, (int) m->len, m->data);
                clean = false;
        }
}

static bool quiet(StoreEnv *t) {
        return consume_to_marker(t, "[\"marker\"]", true);
}

/* Consumes whatever was published so far. */
static void drain(StoreEnv *t) {
        (void) consume_to_marker(t, "[\"drain\"]", false);
}

static void assert_quiet(StoreEnv *t) {
        ASSERT_TRUE(quiet(t));
}

/* ---- reply checks ---- */

static void assert_str(const redisReply *r, const char *s) {
        ASSERT_INT_EQ(r->type, REDIS_REPLY_STRING);
        ASSERT_STREQ(r->str, s);
}

static void assert_ok_status(const redisReply *r) {
        if (r->type == REDIS_REPLY_ERROR)
                fprintf(stderr, "error reply: %s\n", r->str);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_STATUS);
        ASSERT_STREQ(r->str, "OK");
}

static void assert_int(const redisReply *r, long long v) {
        if (r->type == REDIS_REPLY_ERROR)
                fprintf(stderr, "error reply: %s\n", r->str);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_INTEGER);
        ASSERT_INT_EQ(r->integer, v);
}

static int code_errno(const char *code) {
        return streq(code, "NOROOM") ? -ENOENT : streq(code, "BADID") ? -EINVAL : streq(code, "NOTFOUND") ? -ESRCH :
               streq(code, "FORBIDDEN") ? -EPERM : streq(code, "FULL") ? -ENOSPC : streq(code, "NOTJOINED") ? -EACCES : -EIO;
}

/* The script refused with this code, and store_reply_error() says so
 * (that is how the chat tells NOROOM from Redis trouble). */
static void assert_error(const redisReply *r, const char *code) {
        if (r->type != REDIS_REPLY_ERROR)
                fprintf(stderr, "expected error %s, got type %d %s\n", code, r->type, r->str ?: "");
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ERROR);
        if (!strstr(r->str, code)) {
                fprintf(stderr, "expected error %s, got \"%s\"\n", code, r->str);
                ASSERT_TRUE(!"wrong error");
        }
        ASSERT_INT_EQ(store_reply_error(r), code_errno(code));
}

/* The same checks for a reply that is not looked at further: freed. */
static void assert_error_free(redisReply *r, const char *code) {
        assert_error(r, code);
        freeReplyObject(r);
}

static void assert_int_free(redisReply *r, long long v) {
        assert_int(r, v);
        freeReplyObject(r);
}

static void assert_ok_free(redisReply *r) {
        assert_ok_status(r);
        freeReplyObject(r);
}

static bool is_stream_id(const char *s) {
        const char *dash = strchr(s, '-');

        return dash && dash > s && dash[1] && strspn(s, "0123456789") == (size_t) (dash - s) &&
               strspn(dash + 1, "0123456789") == strlen(dash + 1);
}

static int id_cmp(const char *a, const char *b) {
        unsigned long long am, as, bm, bs;

        ASSERT_INT_EQ(sscanf(a, "%llu-%llu", &am, &as), 2);
        ASSERT_INT_EQ(sscanf(b, "%llu-%llu", &bm, &bs), 2);
        if (am != bm)
                return am < bm ? -1 : 1;
        return as < bs ? -1 : as > bs ? 1 : 0;
}

/* Looks a user's count up in a flat HGETALL-style [user, n, ...] reply; -1 when absent. */
static long long flat_count(const redisReply *r, const char *user) {
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements % 2, 0);
        for (size_t i = 0; i < r->elements; i += 2) {
                ASSERT_INT_EQ(r->element[i]->type, REDIS_REPLY_STRING);
                if (streq(r->element[i]->str, user)) {
                        ASSERT_INT_EQ(r->element[i + 1]->type, REDIS_REPLY_STRING);
                        return strtoll(r->element[i + 1]->str, NULL, 10);
                }
        }
        return -1;
}

/* Checks a list of entries (with their parallel edits list) against ids
 * and texts; text "" skips the text check. */
static void assert_entries(const redisReply *entries, const redisReply *edits, size_t n,
                           char ids[][64], const char *const *texts, const char *username) {
        ASSERT_INT_EQ(entries->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(edits->type, REDIS_REPLY_ARRAY);
        if (entries->elements != n)
                fprintf(stderr, "expected %zu entries, got %zu\n", n, entries->elements);
        ASSERT_INT_EQ(entries->elements, n);
        ASSERT_INT_EQ(edits->elements, n);
        for (size_t i = 0; i < n; i++) {
                StoreEntry e;

                ASSERT_OK(store_parse_entry(entries->element[i], edits->element[i], &e));
                ASSERT_STREQ(e.id, ids[i]);
                if (username)
                        ASSERT_STREQ(e.username, username);
                if (texts) {
                        ASSERT_STREQ(e.text, texts[i]);
                        ASSERT_INT_EQ(e.text_len, strlen(texts[i]));
                }
        }
}

/* ---- store calls, synchronously ---- */

static redisReply *do_create(StoreEnv *t, const char *title, bool staff_only) {
        return STORE_ENV_CALL(t->event, store_create_room, t->cmd, title, staff_only);
}

static redisReply *do_update(StoreEnv *t, const char *room, const char *title, int staff_only) {
        return STORE_ENV_CALL(t->event, store_update_room, t->cmd, room, title, staff_only);
}

static redisReply *do_delete(StoreEnv *t, const char *room) {
        return STORE_ENV_CALL(t->event, store_delete_room, t->cmd, room);
}

static redisReply *do_load_rooms(StoreEnv *t) {
        return STORE_ENV_CALL(t->event, store_load_rooms, t->cmd);
}

static redisReply *do_load_presence(StoreEnv *t, const char *room) {
        return STORE_ENV_CALL(t->event, store_load_presence, t->cmd, room);
}

static redisReply *do_join(StoreEnv *t, const char *daemon, const char *room, const char *user,
                           const char *since, unsigned history) {
        return STORE_ENV_CALL(t->event, store_join, t->cmd, daemon, room, user, since, history);
}

static redisReply *do_leave(StoreEnv *t, const char *daemon, const char *room, const char *user) {
        return STORE_ENV_CALL(t->event, store_leave, t->cmd, daemon, room, user);
}

static redisReply *do_send(StoreEnv *t, const char *room, const char *user, const char *text, unsigned keep) {
        return STORE_ENV_CALL(t->event, store_send, t->cmd, room, user, text, NULL, keep);
}

static redisReply *do_edit(StoreEnv *t, const char *room, const char *id, const char *user, const char *text) {
        return STORE_ENV_CALL(t->event, store_edit, t->cmd, room, id, user, text);
}

static redisReply *do_history(StoreEnv *t, const char *room, const char *before, unsigned limit) {
        return STORE_ENV_CALL(t->event, store_history, t->cmd, room, before, limit);
}

static redisReply *do_since(StoreEnv *t, const char *room, const char *after, unsigned limit) {
        return STORE_ENV_CALL(t->event, store_since, t->cmd, room, after, limit);
}

typedef struct Reaped {
        bool done;
        int error;
        unsigned n;
} Reaped;

static void on_reaped(Redis *r, int error, unsigned n, void *userdata) {
        Reaped *p = userdata;

        ASSERT_FALSE(p->done);          /* exactly once */
        *p = (Reaped) { .done = true, .error = error, .n = n };
}

/* How many daemons were reaped. */
static unsigned do_reap(StoreEnv *t, const char *daemon) {
        Reaped p = {};

        ASSERT_OK(store_reap(t->cmd, daemon, on_reaped, &p));
        store_env_run_until(t->event, &p.done, 5 * SEC);
        ASSERT_OK(p.error);
        return p.n;
}

/* Waits for everything sent before on the command connection. */
static void barrier(StoreEnv *t) {
        PendingReply p = {};
        ASSERT_OK(redis_command(t->cmd, store_env_on_reply, &p, "PING"));
        freeReplyObject(store_env_wait_reply(t->event, &p));
}

/* Empties Redis (scripts stay cached) and the message queue. */
static void reset(StoreEnv *t) {
        PendingReply p = {};

        ASSERT_OK(redis_command(t->cmd, store_env_on_reply, &p, "FLUSHALL"));
        freeReplyObject(store_env_wait_reply(t->event, &p));
        drain(t);
}

/* Creates a room and consumes its ["rooms"] event. */
static void create_room(StoreEnv *t, const char *title, const char *expect_id) {
        _cleanup_(freeReplyObjectp) redisReply *r = do_create(t, title, false);

        assert_str(r, expect_id);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
}

/* Sends and checks the published ["m", ...]; writes the id. */
static void send_msg(StoreEnv *t, const char *room, const char *user, const char *text, unsigned keep, char id[64]) {
        _cleanup_(freeReplyObjectp) redisReply *r = do_send(t, room, user, text, keep);
        _cleanup_(json_decrefp) json_t *expect = NULL, *got = NULL;
        char channel[64];
        const StoreMsg *m;

        ASSERT_INT_EQ(r->type, REDIS_REPLY_STRING);
        ASSERT_TRUE(is_stream_id(r->str));
        ASSERT_TRUE(r->len < 64);
        strcpy(id, r->str);

        ASSERT_OK(store_room_channel(room, channel, sizeof channel));
        m = store_env_next_msg(t, 3 * SEC);
        ASSERT_STREQ(m->channel, channel);
        got = parse(m->data, m->len);
        expect = json_pack("[s s s s]", "m", id, user, text);
        ASSERT_NOT_NULL(expect);
        if (!json_equal(got, expect)) {
                fprintf(stderr, "got %.*s\n", (int) m->len, m->data);
                ASSERT_TRUE(!"wrong message event");
        }
}

static redisReply *do_send_ref(StoreEnv *t, const char *room, const char *user, const char *text, const char *ref) {
        return STORE_ENV_CALL(t->event, store_send, t->cmd, room, user, text, ref, 1000);
}

static redisReply *do_epoch(StoreEnv *t, const char *known, const char *fresh, char **rooms, size_t n) {
        return STORE_ENV_CALL(t->event, store_epoch, t->cmd, known, fresh, rooms, n);
}

/* ---- the tests ---- */

static void test_pure(void) {
        char buf[32];

        ASSERT_OK(store_room_channel("1", buf, sizeof buf));
        ASSERT_STREQ(buf, "mc:{r1}:ch");
        ASSERT_OK(store_room_channel("12345678901234567890", buf, sizeof buf));
        ASSERT_STREQ(buf, "mc:{r12345678901234567890}:ch");
        ASSERT_OK(store_room_channel("123", buf, strlen("mc:{r123}:ch") + 1));
        ASSERT_ERROR(store_room_channel("123", buf, strlen("mc:{r123}:ch")), ENOBUFS);
        ASSERT_ERROR(store_room_channel("123", buf, 1), ENOBUFS);
        ASSERT_ERROR(store_room_channel("", buf, sizeof buf), EINVAL);
        ASSERT_ERROR(store_room_channel("123456789012345678901", buf, sizeof buf), EINVAL);

        /* Room and user keys: the tag around the id or name. */
        {
                char key[STORE_KEY_MAX + 1], user[USERNAME_MAX + 2];

                ASSERT_OK(store_room_key(key, sizeof key, "7", "log"));
                ASSERT_STREQ(key, "mc:{r7}:log");
                ASSERT_OK(store_user_key(key, sizeof key, "a.b-c_d", "rooms"));
                ASSERT_STREQ(key, "mc:{ua.b-c_d}:rooms");
                memset(user, 'u', USERNAME_MAX + 1);
                user[USERNAME_MAX + 1] = 0;
                ASSERT_ERROR(store_user_key(key, sizeof key, user, "rooms"), EINVAL);
                user[USERNAME_MAX] = 0;
                ASSERT_OK(store_user_key(key, sizeof key, user, "rooms"));
                ASSERT_ERROR(store_user_key(key, sizeof key, "", "rooms"), EINVAL);
                ASSERT_ERROR(store_user_key(key, sizeof key, NULL, "rooms"), EINVAL);
                ASSERT_ERROR(store_room_key(key, sizeof key, NULL, "log"), EINVAL);
                ASSERT_ERROR(store_room_key(key, 8, "7", "log"), ENOBUFS);
        }

        /* Which room a channel is for; anything else is no room's. */
        {
                static const char *const bad[] = {
                        "mc:events", "mc:{r}:ch", "mc:{r1}:chx", "mc:{r1}", "mc:{r1}:c", "mc:{r1}ch",
                        "mc:{r123456789012345678901}:ch", "mc:room:1", "mc:{u1}:ch", "x:{r1}:ch", "",
                };
                char room[ROOM_ID_MAX + 1];

                ASSERT_OK(store_channel_room("mc:{r42}:ch", room, sizeof room));
                ASSERT_STREQ(room, "42");
                ASSERT_OK(store_channel_room("mc:{r12345678901234567890}:ch", room, sizeof room));
                ASSERT_STREQ(room, "12345678901234567890");
                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        ASSERT_ERROR(store_channel_room(bad[i], room, sizeof room), EINVAL);
                ASSERT_ERROR(store_channel_room("mc:{r42}:ch", room, 2), EINVAL);
        }

        /* A script error is "-CODE message": the code is the first word. */
        {
                _cleanup_(freeReplyObjectp) redisReply *err = mk(REDIS_REPLY_ERROR, "NOROOM no such room", 19, 0);
                _cleanup_(freeReplyObjectp) redisReply *longer = mk(REDIS_REPLY_ERROR, "NOROOMS x", 9, 0);
                _cleanup_(freeReplyObjectp) redisReply *generic = mk(REDIS_REPLY_ERROR, "ERR NOROOM", 10, 0);
                _cleanup_(freeReplyObjectp) redisReply *str = mk_str("NOROOM no such room");

                ASSERT_INT_EQ(store_reply_error(err), -ENOENT);
                ASSERT_INT_EQ(store_reply_error(longer), -EIO);
                ASSERT_INT_EQ(store_reply_error(generic), -EIO);
                ASSERT_INT_EQ(store_reply_error(str), 0);
                ASSERT_INT_EQ(store_reply_error(NULL), -ENOTCONN);
        }
}

static void test_parse_entry(void) {
        StoreEntry e, sentinel;

        memset(&sentinel, 0x5A, sizeof sentinel);

        /* Good. */
        {
                _cleanup_(freeReplyObjectp) redisReply *r =
                        mk_arr(2, mk_str("1700000000000-0"),
                               mk_arr(4, mk_str("u"), mk_str("alice"), mk_str("m"), mk_str("hi")));

                ASSERT_OK(store_parse_entry(r, NULL, &e));
                ASSERT_STREQ(e.id, "1700000000000-0");
                ASSERT_STREQ(e.username, "alice");
                ASSERT_STREQ(e.text, "hi");
                ASSERT_INT_EQ(e.text_len, 2);
                ASSERT_FALSE(e.edited);
        }
        /* Field order does not matter; unknown fields are ignored; text is binary-safe. */
        {
                _cleanup_(freeReplyObjectp) redisReply *r =
                        mk_arr(2, mk_str("1-2"),
                               mk_arr(6, mk_str("m"), mk(REDIS_REPLY_STRING, "a\0b", 3, 0), mk_str("x"),
                                      mk_str("y"), mk_str("u"), mk_str("bob")));
                _cleanup_(freeReplyObjectp) redisReply *empty = mk_str("");
                _cleanup_(freeReplyObjectp) redisReply *nil = mk_nil();
                _cleanup_(freeReplyObjectp) redisReply *edited = mk_str("changed");
                _cleanup_(freeReplyObjectp) redisReply *integer = mk_int(5);

                ASSERT_OK(store_parse_entry(r, NULL, &e));
                ASSERT_STREQ(e.username, "bob");
                ASSERT_INT_EQ(e.text_len, 3);
                ASSERT_TRUE(memcmp(e.text, "a\0b", 3) == 0);
                /* "" and nil in the edits list mean "not edited". */
                ASSERT_OK(store_parse_entry(r, empty, &e));
                ASSERT_FALSE(e.edited);
                ASSERT_INT_EQ(e.text_len, 3);
                ASSERT_OK(store_parse_entry(r, nil, &e));
                ASSERT_FALSE(e.edited);
                ASSERT_OK(store_parse_entry(r, integer, &e));
                ASSERT_FALSE(e.edited);
                ASSERT_OK(store_parse_entry(r, edited, &e));
                ASSERT_TRUE(e.edited);
                ASSERT_STREQ(e.text, "changed");
                ASSERT_INT_EQ(e.text_len, 7);
                ASSERT_STREQ(e.username, "bob");
                ASSERT_STREQ(e.id, "1-2");
        }

        /* Malformed: refused, ret untouched. */
        {
                redisReply *bad[] = {
                        mk_str("1-1"),
                        mk_arr(0),
                        mk_arr(1, mk_str("1-1")),
                        mk_arr(2, mk_int(1), mk_arr(4, mk_str("u"), mk_str("a"), mk_str("m"), mk_str("t"))),
                        mk_arr(2, mk_str("1-1"), mk_nil()),
                        mk_arr(2, mk_str("1-1"), mk_str("u")),
                        mk_arr(2, mk_str("1-1"), mk_arr(3, mk_str("u"), mk_str("a"), mk_str("m"))),
                        mk_arr(2, mk_str("1-1"), mk_arr(2, mk_str("u"), mk_str("a"))),
                        mk_arr(2, mk_str("1-1"), mk_arr(2, mk_str("m"), mk_str("t"))),
                        mk_arr(2, mk_str("1-1"), mk_arr(0)),
                        mk_arr(2, mk_str("1-1"), mk_arr(4, mk_int(1), mk_str("a"), mk_str("m"), mk_str("t"))),
                        mk_arr(2, mk_str("1-1"), mk_arr(4, mk_str("u"), mk_int(1), mk_str("m"), mk_str("t"))),
                        mk_arr(2, mk_str("1-1"), mk_arr(4, mk_str("u"), mk_str("a"), mk_str("m"), mk_nil())),
                        mk_arr(2, mk_str("1-1"), mk_arr(4, mk_str("u"), mk_str("a"), mk_str("m"), mk_arr(0))),
                };
                _cleanup_(freeReplyObjectp) redisReply *edited = mk_str("x");

                for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                        memcpy(&e, &sentinel, sizeof e);
                        if (store_parse_entry(bad[i], NULL, &e) != -EBADMSG) {
                                fprintf(stderr, "malformed entry %zu accepted\n", i);
                                ASSERT_TRUE(!"malformed entry accepted");
                        }
                        ASSERT_TRUE(memcmp(&e, &sentinel, sizeof e) == 0);
                        /* An edit does not make up for a malformed entry (a
                         * missing "m" it may: the edit is the text shown). */
                        if (i != 7)
                                ASSERT_ERROR(store_parse_entry(bad[i], edited, &e), EBADMSG);
                        freeReplyObject(bad[i]);
                }
                ASSERT_ERROR(store_parse_entry(NULL, NULL, &e), EBADMSG);
        }
}

static void test_rooms(StoreEnv *t) {
        static const char odd_title[] = "a/b \"q\" \\ </script> \xc3\xa9 \xf0\x9f\x98\x80 \t\n";
        redisReply *r;

        reset(t);

        r = do_create(t, "Lobby", false);
        assert_str(r, "1");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
        r = do_create(t, "Staff room", true);
        assert_str(r, "2");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
        r = do_create(t, odd_title, false);
        assert_str(r, "3");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");

        /* HGETALL mc:rooms: id -> {"title", "staff_only"}. */
        {
                _cleanup_(freeReplyObjectp) redisReply *rooms = do_load_rooms(t);
                unsigned seen = 0;

                ASSERT_INT_EQ(rooms->type, REDIS_REPLY_ARRAY);
                ASSERT_INT_EQ(rooms->elements, 6);
                for (size_t i = 0; i < rooms->elements; i += 2) {
                        _cleanup_(json_decrefp) json_t *j = parse(rooms->element[i + 1]->str,
                                                                  rooms->element[i + 1]->len);
                        const char *id = rooms->element[i]->str;

                        ASSERT_TRUE(json_is_object(j));
                        ASSERT_INT_EQ(json_object_size(j), 2);
                        if (streq(id, "1")) {
                                ASSERT_STREQ(json_string_value(json_object_get(j, "title")), "Lobby");
                                ASSERT_TRUE(json_is_false(json_object_get(j, "staff_only")));
                        } else if (streq(id, "2")) {
                                ASSERT_STREQ(json_string_value(json_object_get(j, "title")), "Staff room");
                                ASSERT_TRUE(json_is_true(json_object_get(j, "staff_only")));
                        } else {
                                ASSERT_STREQ(id, "3");
                                ASSERT_STREQ(json_string_value(json_object_get(j, "title")), odd_title);
                                ASSERT_TRUE(json_is_false(json_object_get(j, "staff_only")));
                        }
                        seen++;
                }
                ASSERT_INT_EQ(seen, 3);
        }

        /* Update: title only, staff_only only, neither. */
        {
                static const struct {
                        const char *title;
                        int staff_only;
                        const char *expect_title;
                        bool expect_staff;
                } steps[] = {
                        { "Main hall", -1, "Main hall", false },
                        { NULL, 1, "Main hall", true },
                        { NULL, -1, "Main hall", true },
                        { "", -1, "Main hall", true },          /* "" keeps, too */
                        { NULL, 0, "Main hall", false },
                        { "Lobby", 1, "Lobby", true },
                };

                for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                        _cleanup_(json_decrefp) json_t *j = NULL;
                        _cleanup_(freeReplyObjectp) redisReply *raw = NULL;

                        assert_ok_free(do_update(t, "1", steps[i].title, steps[i].staff_only));
                        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
                        raw = test_redis_command(&server, "HGET mc:{rooms} 1");
                        ASSERT_INT_EQ(raw->type, REDIS_REPLY_STRING);
                        j = parse(raw->str, raw->len);
                        ASSERT_STREQ(json_string_value(json_object_get(j, "title")), steps[i].expect_title);
                        ASSERT_INT_EQ(json_is_true(json_object_get(j, "staff_only")), steps[i].expect_staff);
                        ASSERT_TRUE(json_is_boolean(json_object_get(j, "staff_only")));
                }
        }
        assert_error_free(do_update(t, "99", "x", 1), "NOROOM");
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{rooms} 99"), 0);

        /* Delete: gone with its keys; ids are never reused. */
        assert_ok_free(do_delete(t, "2"));
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"deleted\", \"2\"]");
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{rooms} 2"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "HLEN mc:{rooms}"), 2);
        assert_error_free(do_delete(t, "2"), "NOROOM");
        assert_quiet(t);
        assert_error_free(do_update(t, "2", "back", 0), "NOROOM");
        assert_quiet(t);
        r = do_create(t, "Next", false);
        assert_str(r, "4");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
}

static void test_presence(StoreEnv *t) {
        redisReply *r;

        reset(t);
        create_room(t, "Lobby", "1");

        /* [count, [entries], complete, [edits], newest id]: no member list,
         * whatever the room's size. */
        r = do_join(t, "d1", "1", "alice", NULL, 50);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements, 5);
        assert_str(r->element[4], "0-0");       /* no messages yet */
        assert_int(r->element[0], 1);
        ASSERT_INT_EQ(r->element[1]->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->element[1]->elements, 0);
        assert_int(r->element[2], 1);
        ASSERT_INT_EQ(r->element[3]->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->element[3]->elements, 0);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 1, 1]");

        /* A second connection of the same user: count 2, no "entered". */
        r = do_join(t, "d1", "1", "alice", NULL, 50);
        assert_int(r->element[0], 2);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 2, 0]");

        /* Another user on another daemon: the presence hash has both. */
        r = do_join(t, "d2", "1", "bob", NULL, 50);
        assert_int(r->element[0], 1);
        ASSERT_INT_EQ(r->elements, 5);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 1, 1]");

        r = do_load_presence(t, "1");
        ASSERT_INT_EQ(r->elements, 4);
        ASSERT_INT_EQ(flat_count(r, "alice"), 2);
        ASSERT_INT_EQ(flat_count(r, "bob"), 1);
        freeReplyObject(r);
        r = do_load_presence(t, "99");
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements, 0);
        freeReplyObject(r);

        /* Each daemon's share, for the reaper. */
        assert_hget("mc:{r1}:d:d1", "alice", "2");
        assert_hget("mc:{r1}:d:d2", "bob", "1");
        ASSERT_INT_EQ(test_redis_integer(&server, "HLEN mc:{r1}:d:d1"), 1);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemon:d1:rooms 1"), 1);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemon:d2:rooms 1"), 1);
        ASSERT_INT_EQ(test_redis_integer(&server, "SCARD mc:daemons"), 2);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons d1"), 1);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons d2"), 1);

        /* No such room: refused, nothing written or published. */
        assert_error_free(do_join(t, "d1", "99", "carol", NULL, 50), "NOROOM");
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r99}:users mc:{r99}:d:d1"), 0);

        /* Leave: down to 1, then 0 with "left". */
        assert_int_free(do_leave(t, "d1", "1", "alice"), 1);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 1, 0]");
        assert_int_free(do_leave(t, "d1", "1", "alice"), 0);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 0, -1]");
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users alice"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:d:d1 alice"), 0);

        /* Leaves without a join change nothing: once more, never joined,
         * joined on another daemon. */
        assert_int_free(do_leave(t, "d1", "1", "alice"), 0);
        r = do_leave(t, "d1", "1", "carol");
        assert_int(r, 0);
        freeReplyObject(r);
        assert_int_free(do_leave(t, "d1", "1", "bob"), 0);
        r = do_leave(t, "d1", "99", "bob");
        assert_int(r, 0);
        freeReplyObject(r);
        assert_quiet(t);
        assert_hget("mc:{r1}:users", "bob", "1");
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users carol"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users alice"), 0);

        assert_int_free(do_leave(t, "d2", "1", "bob"), 0);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 0, -1]");
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:users"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:d:d2"), 0);
        assert_quiet(t);
}

/* A send retried with the same ref stores and publishes nothing new and
 * answers the first send's id; the ref is the user's, in that room. */
static void test_send_ref(StoreEnv *t) {
        char id[64];
        redisReply *r;
        size_t before;

        reset(t);
        create_room(t, "Lobby", "1");
        create_room(t, "Other", "2");

        r = do_send_ref(t, "1", "alice", "once", "r-1");
        ASSERT_INT_EQ(r->type, REDIS_REPLY_STRING);
        ASSERT_TRUE(is_stream_id(r->str));
        strcpy(id, r->str);
        freeReplyObject(r);
        ASSERT_NOT_NULL(store_env_next_msg(t, 3 * SEC));
        before = t->n_msgs;

        r = do_send_ref(t, "1", "alice", "once", "r-1");
        ASSERT_STREQ(r->str, id);
        freeReplyObject(r);
        ASSERT_INT_EQ(test_redis_integer(&server, "XLEN mc:{r1}:log"), 1);
        ASSERT_TRUE(test_redis_integer(&server, "TTL mc:{r1}:ref:alice:r-1") > (long long) STORE_SEND_REF_TTL_SEC - 5);

        /* Another user, another room, or no ref: new messages. */
        r = do_send_ref(t, "1", "bob", "once", "r-1");
        ASSERT_FALSE(streq(r->str, id));
        freeReplyObject(r);
        r = do_send_ref(t, "2", "alice", "once", "r-1");
        ASSERT_TRUE(is_stream_id(r->str));
        freeReplyObject(r);
        ASSERT_INT_EQ(test_redis_integer(&server, "XLEN mc:{r2}:log"), 1);
        r = do_send_ref(t, "1", "alice", "again", NULL);
        ASSERT_FALSE(streq(r->str, id));
        freeReplyObject(r);
        ASSERT_INT_EQ(test_redis_integer(&server, "XLEN mc:{r1}:log"), 3);
        /* Nothing was published for the retry: bob's message comes next. */
        ASSERT_NOT_NULL(strstr(store_env_next_msg(t, 3 * SEC)->data, "\"bob\""));
        ASSERT_STREQ(store_env_next_msg(t, 3 * SEC)->channel, "mc:{r2}:ch");
        ASSERT_NOT_NULL(strstr(store_env_next_msg(t, 3 * SEC)->data, "again"));
        ASSERT_TRUE(t->n_msgs >= before);
}

/* The epoch: written once; a Redis that lost it gets the daemon's rooms
 * back; a first connect adopts what is there. */
static void test_epoch(StoreEnv *t) {
        char *rooms[] = { "7", "{\"title\":\"Seven\",\"staff_only\":true}", "3", "{\"title\":\"Three\",\"staff_only\":false}", NULL };
        StoreEpochReply e;
        redisReply *r;

        reset(t);
        r = do_epoch(t, NULL, "e1", NULL, 0);
        ASSERT_OK(store_parse_epoch_reply(r, &e));
        ASSERT_STREQ(e.epoch, "e1");
        ASSERT_FALSE(e.lost);
        freeReplyObject(r);

        /* Another daemon's first connect adopts it; the same daemon again is fine. */
        r = do_epoch(t, NULL, "e2", NULL, 0);
        ASSERT_OK(store_parse_epoch_reply(r, &e));
        ASSERT_STREQ(e.epoch, "e1");
        ASSERT_FALSE(e.lost);
        freeReplyObject(r);
        r = do_epoch(t, "e1", "e3", rooms, 4);
        ASSERT_OK(store_parse_epoch_reply(r, &e));
        ASSERT_FALSE(e.lost);
        ASSERT_INT_EQ(e.restored, 0u);
        freeReplyObject(r);
        ASSERT_INT_EQ(test_redis_integer(&server, "HLEN mc:{rooms}"), 0);

        /* Redis came back empty: the rooms the daemon knew come back, the
         * room sequence goes past them, and every daemon hears of it. */
        freeReplyObject(test_redis_command(&server, "FLUSHALL"));
        r = do_epoch(t, "e1", "e4", rooms, 4);
        ASSERT_OK(store_parse_epoch_reply(r, &e));
        ASSERT_STREQ(e.epoch, "e4");
        ASSERT_TRUE(e.lost);
        ASSERT_INT_EQ(e.restored, 2u);
        freeReplyObject(r);
        ASSERT_INT_EQ(test_redis_integer(&server, "HLEN mc:{rooms}"), 2);
        r = test_redis_command(&server, "GET mc:{rooms}:seq");
        ASSERT_STREQ(r->str, "7");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");

        /* A daemon that knew the old epoch learns it was lost, and adopts. */
        r = do_epoch(t, "e1", "e5", NULL, 0);
        ASSERT_OK(store_parse_epoch_reply(r, &e));
        ASSERT_STREQ(e.epoch, "e4");
        ASSERT_TRUE(e.lost);
        freeReplyObject(r);
}

static void test_messages(StoreEnv *t) {
        static const char odd[] = "quote \" backslash \\ slash / nl \n tab \t \xc3\xa9 \xf0\x9f\x98\x80 \x01 </script>";
        char id[64], id2[64], odd_id[64];
        redisReply *r;

        reset(t);
        create_room(t, "Lobby", "1");

        send_msg(t, "1", "alice", "hello", 1000, id);
        send_msg(t, "1", "bob", "hi alice", 1000, id2);
        ASSERT_TRUE(id_cmp(id, id2) < 0);
        send_msg(t, "1", "alice", odd, 1000, odd_id);
        ASSERT_TRUE(id_cmp(id2, odd_id) < 0);
        {
                _cleanup_(freeReplyObjectp) redisReply *x =
                        test_redis_command(&server, "XRANGE mc:{r1}:log %s %s", odd_id, odd_id);
                StoreEntry e;

                ASSERT_INT_EQ(x->elements, 1);
                ASSERT_OK(store_parse_entry(x->element[0], NULL, &e));
                ASSERT_STREQ(e.text, odd);
                ASSERT_STREQ(e.username, "alice");
        }
        ASSERT_INT_EQ(test_redis_integer(&server, "XLEN mc:{r1}:log"), 3);

        assert_error_free(do_send(t, "99", "alice", "lost", 1000), "NOROOM");
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r99}:log"), 0);

        /* Edit: only by the author. */
        assert_ok_free(do_edit(t, "1", id, "alice", "hello, edited"));
        expect_msgf(t, "mc:{r1}:ch", "[\"e\", \"%s\", \"alice\", \"hello, edited\"]", id);
        assert_hget("mc:{r1}:edits", id, "hello, edited");

        assert_error_free(do_edit(t, "1", id, "bob", "bob was here"), "FORBIDDEN");
        assert_quiet(t);
        assert_hget("mc:{r1}:edits", id, "hello, edited");

        assert_error_free(do_edit(t, "1", "1-1", "alice", "x"), "NOTFOUND");
        r = do_edit(t, "99", id, "alice", "x");
        assert_error(r, "NOROOM");
        freeReplyObject(r);
        assert_quiet(t);

        /* Edit an edit, with text that needs escaping. */
        assert_ok_free(do_edit(t, "1", id, "alice", odd));
        {
                _cleanup_(json_decrefp) json_t *expect = json_pack("[s s s s]", "e", id, "alice", odd);
                _cleanup_(json_decrefp) json_t *got = NULL;
                const StoreMsg *m = store_env_next_msg(t, 3 * SEC);

                ASSERT_STREQ(m->channel, "mc:{r1}:ch");
                got = parse(m->data, m->len);
                ASSERT_TRUE(json_equal(got, expect));
        }

        /* Delete: only by the author, then gone. */
        assert_error_free(do_edit(t, "1", id, "bob", NULL), "FORBIDDEN");
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "XLEN mc:{r1}:log"), 3);

        assert_ok_free(do_edit(t, "1", id, "alice", NULL));
        expect_msgf(t, "mc:{r1}:ch", "[\"d\", \"%s\"]", id);
        ASSERT_INT_EQ(test_redis_integer(&server, "XLEN mc:{r1}:log"), 2);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:edits %s", id), 0);
        assert_error_free(do_edit(t, "1", id, "alice", "again"), "NOTFOUND");
        r = do_edit(t, "1", id, "alice", NULL);
        assert_error(r, "NOTFOUND");
        freeReplyObject(r);
        assert_quiet(t);

        /* The others are still there. */
        r = do_history(t, "1", NULL, 10);
        ASSERT_INT_EQ(r->element[0]->elements, 2);
        freeReplyObject(r);

        /* Deleting a room takes its log, edits and presence with it. */
        assert_ok_free(do_edit(t, "1", id2, "bob", "edited before the end"));
        expect_msgf(t, "mc:{r1}:ch", "[\"e\", \"%s\", \"bob\", \"edited before the end\"]", id2);
        r = do_join(t, "d1", "1", "alice", NULL, 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 1, 1]");
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:log mc:{r1}:edits mc:{r1}:users"), 3);
        assert_ok_free(do_delete(t, "1"));
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"deleted\", \"1\"]");
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"rooms\"]");
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:log mc:{r1}:edits mc:{r1}:users"), 0);

        /* Afterwards everything about it is refused and creates nothing. */
        assert_error_free(do_send(t, "1", "alice", "anyone?", 1000), "NOROOM");
        r = do_edit(t, "1", id2, "bob", "x");
        assert_error(r, "NOROOM");
        freeReplyObject(r);
        assert_error_free(do_history(t, "1", NULL, 10), "NOROOM");
        r = do_join(t, "d1", "1", "bob", NULL, 10);
        assert_error(r, "NOROOM");
        freeReplyObject(r);
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:log mc:{r1}:edits mc:{r1}:users"), 0);

        /* The daemon's late leave for the deleted room is harmless. */
        r = do_leave(t, "d1", "1", "alice");
        ASSERT_INT_EQ(r->type, REDIS_REPLY_INTEGER);
        freeReplyObject(r);
        drain(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:users"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:d:d1"), 0);
}

static void test_history(StoreEnv *t) {
        static const char *const texts[] = { "m1", "m2", "m3", "m4 edited", "m5", "m6", "m7", "m8", "m9", "m10" };
        char ids[10][64], sel[10][64];
        const char *tsel[10];
        redisReply *r;

        reset(t);
        create_room(t, "Lobby", "1");
        create_room(t, "Empty", "2");

        for (unsigned i = 0; i < 10; i++) {
                char text[8];

                snprintf(text, sizeof text, "m%u", i + 1);
                send_msg(t, "1", "alice", text, 1000, ids[i]);
                if (i > 0)
                        ASSERT_TRUE(id_cmp(ids[i - 1], ids[i]) < 0);
        }
        assert_ok_free(do_edit(t, "1", ids[3], "alice", "m4 edited"));
        (void) store_env_next_msg(t, 3 * SEC);

/* Selects ids/texts a..b (1-based message numbers), in that direction. */
#define SELECT(a, b)                                                            \
        do {                                                                    \
                int _k = 0, _step = (a) <= (b) ? 1 : -1;                        \
                for (int _i = (a);; _i += _step) {                              \
                        strcpy(sel[_k], ids[_i - 1]);                           \
                        tsel[_k++] = texts[_i - 1];                             \
                        if (_i == (b))                                          \
                                break;                                          \
                }                                                               \
        } while (0)

        /* [[entries newest first], [edits], complete] */
        r = do_history(t, "1", NULL, 3);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements, 3);
        SELECT(10, 8);
        assert_entries(r->element[0], r->element[1], 3, sel, tsel, "alice");
        assert_int(r->element[2], 0);
        freeReplyObject(r);

        r = do_history(t, "1", ids[7], 3);              /* before m8 */
        SELECT(7, 5);
        assert_entries(r->element[0], r->element[1], 3, sel, tsel, "alice");
        assert_int(r->element[2], 0);
        freeReplyObject(r);

        r = do_history(t, "1", ids[4], 3);              /* before m5: m4 is edited */
        SELECT(4, 2);
        assert_entries(r->element[0], r->element[1], 3, sel, tsel, "alice");
        assert_str(r->element[1]->element[0], "m4 edited");
        assert_str(r->element[1]->element[1], "");
        {
                StoreEntry e;

                ASSERT_OK(store_parse_entry(r->element[0]->element[0], r->element[1]->element[0], &e));
                ASSERT_TRUE(e.edited);
                ASSERT_OK(store_parse_entry(r->element[0]->element[1], r->element[1]->element[1], &e));
                ASSERT_FALSE(e.edited);
        }
        assert_int(r->element[2], 0);
        freeReplyObject(r);

        r = do_history(t, "1", ids[2], 3);              /* before m3: the start */
        SELECT(2, 1);
        assert_entries(r->element[0], r->element[1], 2, sel, tsel, "alice");
        assert_int(r->element[2], 1);
        freeReplyObject(r);

        r = do_history(t, "1", NULL, 10);               /* exactly all */
        SELECT(10, 1);
        assert_entries(r->element[0], r->element[1], 10, sel, tsel, "alice");
        assert_int(r->element[2], 1);
        freeReplyObject(r);

        r = do_history(t, "1", NULL, 100);
        assert_entries(r->element[0], r->element[1], 10, sel, tsel, "alice");
        assert_int(r->element[2], 1);
        freeReplyObject(r);

        r = do_history(t, "1", ids[0], 5);
        assert_entries(r->element[0], r->element[1], 0, sel, tsel, NULL);
        assert_int(r->element[2], 1);
        freeReplyObject(r);

        r = do_history(t, "2", NULL, 5);
        assert_entries(r->element[0], r->element[1], 0, sel, tsel, NULL);
        assert_int(r->element[2], 1);
        freeReplyObject(r);

        assert_error_free(do_history(t, "99", NULL, 5), "NOROOM");

        /* since: [[entries oldest first], [edits], more, gap, last generated id] */
        r = do_since(t, "1", ids[4], 100);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements, 5);
        ASSERT_INT_EQ(r->element[4]->type, REDIS_REPLY_STRING);
        ASSERT_STREQ(r->element[4]->str, ids[9]);
        SELECT(6, 10);
        assert_entries(r->element[0], r->element[1], 5, sel, tsel, "alice");
        assert_int(r->element[2], 0);
        assert_int(r->element[3], 0);
        freeReplyObject(r);

        /* Exactly what is left: no more. */
        r = do_since(t, "1", ids[4], 5);
        assert_entries(r->element[0], r->element[1], 5, sel, tsel, "alice");
        assert_int(r->element[2], 0);
        freeReplyObject(r);

        r = do_since(t, "1", ids[2], 100);
        SELECT(4, 10);
        assert_entries(r->element[0], r->element[1], 7, sel, tsel, "alice");
        assert_str(r->element[1]->element[0], "m4 edited");
        freeReplyObject(r);

        r = do_since(t, "1", ids[4], 2);
        SELECT(6, 7);
        assert_entries(r->element[0], r->element[1], 2, sel, tsel, "alice");
        assert_int(r->element[2], 1);           /* more follow */
        assert_int(r->element[3], 0);
        freeReplyObject(r);

        r = do_since(t, "1", ids[9], 100);
        assert_entries(r->element[0], r->element[1], 0, sel, tsel, NULL);
        freeReplyObject(r);

        r = do_since(t, "1", "0-0", 100);
        SELECT(1, 10);
        assert_entries(r->element[0], r->element[1], 10, sel, tsel, "alice");
        freeReplyObject(r);

        r = do_since(t, "2", "0-0", 100);
        assert_entries(r->element[0], r->element[1], 0, sel, tsel, NULL);
        assert_int(r->element[2], 0);
        assert_int(r->element[3], 0);           /* no stream at all */
        freeReplyObject(r);

        /* A join answers the newest id, whatever history it asked for. */
        r = do_join(t, "d1", "1", "dave", ids[2], 3);
        assert_str(r->element[4], ids[9]);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"dave\", 1, 1]");

        /* join: the last n, oldest first, with edits. */
        r = do_join(t, "d1", "1", "carol", NULL, 8);
        SELECT(3, 10);
        assert_entries(r->element[1], r->element[3], 8, sel, tsel, "alice");
        assert_str(r->element[3]->element[1], "m4 edited");
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"carol\", 1, 1]");

        r = do_join(t, "d1", "1", "carol", NULL, 1);
        SELECT(10, 10);
        assert_entries(r->element[1], r->element[3], 1, sel, tsel, "alice");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"carol\", 2, 0]");

        /* join with since: what came after it. */
        r = do_join(t, "d1", "1", "carol", ids[6], 50);
        SELECT(8, 10);
        assert_entries(r->element[1], r->element[3], 3, sel, tsel, "alice");
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"carol\", 3, 0]");

        r = do_join(t, "d1", "1", "carol", ids[9], 50);
        assert_entries(r->element[1], r->element[3], 0, sel, tsel, NULL);
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"carol\", 4, 0]");

        r = do_join(t, "d1", "1", "carol", "0-0", 50);
        SELECT(1, 10);
        assert_entries(r->element[1], r->element[3], 10, sel, tsel, "alice");
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"carol\", 5, 0]");

        /* More after since than asked for: incomplete. */
        r = do_join(t, "d1", "1", "carol", ids[0], 3);
        SELECT(2, 4);
        assert_entries(r->element[1], r->element[3], 3, sel, tsel, "alice");
        assert_int(r->element[2], 0);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"carol\", 6, 0]");

        /* A room without any message yet. */
        r = do_join(t, "d1", "2", "carol", "1-0", 50);
        assert_entries(r->element[1], r->element[3], 0, sel, tsel, NULL);
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"2\", \"carol\", 1, 1]");
        assert_quiet(t);
#undef SELECT
}

#define N_TRIM 3000
#define KEEP 100

static void test_trim(StoreEnv *t) {
        static char ids[N_TRIM][64];
        PendingReply *p;
        redisReply *r;
        long long len;
        uint64_t start = now_usec(CLOCK_MONOTONIC);

        reset(t);
        create_room(t, "Busy", "1");

        /* 3000 sends, pipelined. */
        p = calloc(N_TRIM, sizeof *p);
        ASSERT_NOT_NULL(p);
        for (unsigned i = 0; i < N_TRIM; i++) {
                char text[32];

                snprintf(text, sizeof text, "message %u", i);
                ASSERT_OK(store_send(t->cmd, "1", "alice", text, NULL, KEEP, store_env_on_reply, &p[i]));
        }
        for (unsigned i = 0; i < N_TRIM; i++) {
                r = store_env_wait_reply(t->event, &p[i]);
                ASSERT_INT_EQ(r->type, REDIS_REPLY_STRING);
                ASSERT_TRUE(is_stream_id(r->str));
                strcpy(ids[i], r->str);
                freeReplyObject(r);
                if (i > 0)
                        ASSERT_TRUE(id_cmp(ids[i - 1], ids[i]) < 0);
        }
        free(p);

        /* Every one was published, in order, with its id. */
        for (unsigned i = 0; i < N_TRIM; i++) {
                char text[32];

                snprintf(text, sizeof text, "message %u", i);
                expect_msgf(t, "mc:{r1}:ch", "[\"m\", \"%s\", \"alice\", \"%s\"]", ids[i], text);
        }
        assert_quiet(t);

        /* Trimmed to about keep (whole stream nodes: at least keep, less than
         * keep plus a node of 100). */
        len = test_redis_integer(&server, "XLEN mc:{r1}:log");
        ASSERT_TRUE(len >= KEEP);
        ASSERT_TRUE(len < KEEP + 100);

        /* Joining with a since older than what is kept: incomplete, even
         * when fewer than asked for are left. */
        r = do_join(t, "d1", "1", "bob", ids[0], 1000);
        ASSERT_INT_EQ(r->element[1]->elements, (size_t) len);
        assert_int(r->element[2], 0);
        {
                StoreEntry e;

                ASSERT_OK(store_parse_entry(r->element[1]->element[len - 1], r->element[3]->element[len - 1], &e));
                ASSERT_STREQ(e.id, ids[N_TRIM - 1]);
                ASSERT_OK(store_parse_entry(r->element[1]->element[0], r->element[3]->element[0], &e));
                ASSERT_STREQ(e.id, ids[N_TRIM - len]);
        }
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 1, 1]");

        r = do_join(t, "d1", "1", "bob", "1-0", 1000);
        ASSERT_INT_EQ(r->element[1]->elements, (size_t) len);
        if (r->element[2]->integer != 0)
                fprintf(stderr, "(same bug with since=\"1-0\")\n");
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 2, 0]");

        r = do_join(t, "d1", "1", "bob", ids[N_TRIM - KEEP - 300], 50);
        ASSERT_INT_EQ(r->element[1]->elements, 50);
        assert_int(r->element[2], 0);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 3, 0]");

        /* Replaying after an id that was trimmed: a gap, paged. After one
         * that is kept, none. */
        {
                char after[64];
                unsigned total = 0, pages = 0;
                bool first = true;

                snprintf(after, sizeof after, "%s", ids[10]);
                for (;;) {
                        r = do_since(t, "1", after, 40);
                        ASSERT_INT_EQ(r->elements, 5);
                        assert_int(r->element[3], first ? 1 : 0);
                        for (size_t i = 0; i < r->element[0]->elements; i++) {
                                StoreEntry e;

                                ASSERT_OK(store_parse_entry(r->element[0]->element[i], r->element[1]->element[i], &e));
                                ASSERT_STREQ(e.id, ids[N_TRIM - len + total]);
                                total++;
                                snprintf(after, sizeof after, "%s", e.id);
                        }
                        first = false;
                        ASSERT_TRUE(++pages < 100);
                        if (r->element[2]->integer == 0) {
                                freeReplyObject(r);
                                break;
                        }
                        ASSERT_INT_EQ(r->element[0]->elements, 40);
                        freeReplyObject(r);
                }
                ASSERT_INT_EQ(total, len);
                ASSERT_INT_EQ(pages, (len + 39) / 40);
        }
        r = do_since(t, "1", ids[N_TRIM - len], 10);
        assert_int(r->element[3], 0);
        freeReplyObject(r);
        r = do_since(t, "1", ids[N_TRIM - len - 1], 10);       /* the newest trimmed one: nothing lost after it */
        ASSERT_INT_EQ(r->element[0]->elements, 10);
        freeReplyObject(r);

        /* A recent since is complete. */
        r = do_join(t, "d1", "1", "bob", ids[N_TRIM - 10], 50);
        ASSERT_INT_EQ(r->element[1]->elements, 9);
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 4, 0]");

        /* History pages through what is kept, newest first, and ends. */
        {
                char before[64] = "";
                unsigned total = 0, pages = 0;

                for (;;) {
                        r = do_history(t, "1", before[0] ? before : NULL, 30);
                        ASSERT_INT_EQ(r->elements, 3);
                        for (size_t i = 0; i < r->element[0]->elements; i++) {
                                StoreEntry e;

                                ASSERT_OK(store_parse_entry(r->element[0]->element[i], r->element[1]->element[i], &e));
                                ASSERT_STREQ(e.id, ids[N_TRIM - 1 - total]);
                                total++;
                                snprintf(before, sizeof before, "%s", e.id);
                        }
                        pages++;
                        ASSERT_TRUE(pages < 100);
                        if (r->element[2]->integer == 1) {
                                freeReplyObject(r);
                                break;
                        }
                        ASSERT_INT_EQ(r->element[0]->elements, 30);
                        freeReplyObject(r);
                }
                ASSERT_INT_EQ(total, len);
        }
        assert_quiet(t);
        printf("test_trim: %u sends and checks in %" PRIu64 " ms, %lld kept\n", N_TRIM,
               (now_usec(CLOCK_MONOTONIC) - start) / 1000, len);
}

static void test_reap(StoreEnv *t) {
        reset(t);
        create_room(t, "One", "1");
        create_room(t, "Two", "2");

        ASSERT_OK(store_heartbeat(t->cmd, "live"));
        barrier(t);
        {
                long long ttl = test_redis_integer(&server, "TTL mc:daemon:live");

                ASSERT_TRUE(ttl > 0 && ttl <= STORE_HEARTBEAT_SEC);
        }
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons live"), 1);

        /* "dead" never sent a heartbeat (or it expired). */
        freeReplyObject(do_join(t, "dead", "1", "alice", NULL, 1));
        freeReplyObject(do_join(t, "dead", "1", "alice", NULL, 1));
        freeReplyObject(do_join(t, "dead", "1", "carol", NULL, 1));
        freeReplyObject(do_join(t, "dead", "2", "alice", NULL, 1));
        freeReplyObject(do_join(t, "live", "1", "alice", NULL, 1));
        freeReplyObject(do_join(t, "live", "1", "bob", NULL, 1));
        for (unsigned i = 0; i < 6; i++)
                (void) store_env_next_msg(t, 3 * SEC);
        assert_quiet(t);
        assert_hget("mc:{r1}:users", "alice", "3");

        ASSERT_INT_EQ(do_reap(t, NULL), 1);
        {
                static const char *const events[] = {
                        "[\"p\", \"1\", \"alice\", 1, 0]",
                        "[\"p\", \"1\", \"carol\", 0, -1]",
                        "[\"p\", \"2\", \"alice\", 0, -1]",
                };
                expect_msgs_unordered(t, ELEMENTSOF(events), STORE_EVENTS_CHANNEL, events);
        }
        assert_quiet(t);
        assert_hget("mc:{r1}:users", "alice", "1");
        assert_hget("mc:{r1}:users", "bob", "1");
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{r1}:users carol"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r2}:users"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:d:dead mc:{r2}:d:dead mc:daemon:dead:rooms"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons dead"), 0);
        /* The live daemon is untouched. */
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons live"), 1);
        ASSERT_INT_EQ(test_redis_integer(&server, "HLEN mc:{r1}:d:live"), 2);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:daemon:live"), 1);

        /* Nothing left to reap. */
        ASSERT_INT_EQ(do_reap(t, NULL), 0);
        assert_quiet(t);

        /* The reaped daemon's late leave changes nothing. */
        assert_int_free(do_leave(t, "dead", "1", "alice"), 0);
        assert_quiet(t);
        assert_hget("mc:{r1}:users", "alice", "1");

        /* A clean shutdown gives back this daemon's presence, heartbeat or not. */
        ASSERT_INT_EQ(do_reap(t, "live"), 1);
        {
                static const char *const events[] = {
                        "[\"p\", \"1\", \"alice\", 0, -1]",
                        "[\"p\", \"1\", \"bob\", 0, -1]",
                };
                expect_msgs_unordered(t, ELEMENTSOF(events), STORE_EVENTS_CHANNEL, events);
        }
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:users"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r1}:d:live mc:daemon:live:rooms"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "SCARD mc:daemons"), 0);

        /* A daemon with a heartbeat and presence survives a reap by others;
         * an empty dead one is only dropped from the set. */
        ASSERT_OK(store_heartbeat(t->cmd, "live"));
        freeReplyObject(do_join(t, "live", "1", "bob", NULL, 1));
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"bob\", 1, 1]");
        freeReplyObject(test_redis_command(&server, "SADD mc:daemons ghost"));
        ASSERT_INT_EQ(do_reap(t, NULL), 1);
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons ghost"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "SISMEMBER mc:daemons live"), 1);
        assert_hget("mc:{r1}:users", "bob", "1");
}

/* The scripts survive a SCRIPT FLUSH (NOSCRIPT → EVAL). */
static void test_script_flush(StoreEnv *t) {
        redisReply *r;

        reset(t);
        freeReplyObject(test_redis_command(&server, "SCRIPT FLUSH"));
        create_room(t, "Again", "1");
        freeReplyObject(test_redis_command(&server, "SCRIPT FLUSH"));
        r = do_join(t, "d1", "1", "alice", NULL, 10);
        assert_int(r->element[0], 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 1, 1]");
}

static void test_publish(StoreEnv *t) {
        static const char payload[] = "[\"n\", 1, \"a\\u0000b\"]\0tail";
        PendingReply p = {};
        redisReply *r;
        const StoreMsg *m;

        reset(t);
        ASSERT_OK(store_publish(t->cmd, STORE_EVENTS_CHANNEL, payload, sizeof payload - 1, store_env_on_reply, &p));
        r = store_env_wait_reply(t->event, &p);
        assert_int(r, 1);               /* our one subscriber */
        freeReplyObject(r);
        m = store_env_next_msg(t, 3 * SEC);
        ASSERT_STREQ(m->channel, STORE_EVENTS_CHANNEL);
        ASSERT_INT_EQ(m->len, sizeof payload - 1);
        ASSERT_TRUE(memcmp(m->data, payload, m->len) == 0);

        p = (PendingReply) {};
        ASSERT_OK(store_publish_room(t->cmd, "5", "[\"t\", \"bob\"]", 12, store_env_on_reply, &p));
        r = store_env_wait_reply(t->event, &p);
        assert_int(r, 1);
        freeReplyObject(r);
        expect_msg(t, "mc:{r5}:ch", "[\"t\", \"bob\"]");
        assert_quiet(t);

        ASSERT_ERROR(store_publish_room(t->cmd, "", "[]", 2, store_env_on_reply, &p), EINVAL);
        ASSERT_ERROR(store_publish_room(t->cmd, "123456789012345678901", "[]", 2, store_env_on_reply, &p), EINVAL);
}

/* Message ids the protocol accepts (1..20 digits each part) that Redis
 * does not: the scripts must not leave half their work done. */
static void test_odd_ids(StoreEnv *t) {
        static const char *const sinces[] = {
                "99999999999999999999-0",                       /* ms > UINT64_MAX */
                "18446744073709551615-18446744073709551615",    /* no id after it */
        };
        char id[64];
        redisReply *r;

        reset(t);
        create_room(t, "Lobby", "1");
        send_msg(t, "1", "alice", "hello", 1000, id);

        for (size_t i = 0; i < ELEMENTSOF(sinces); i++) {
                r = do_join(t, "d1", "1", "mallory", sinces[i], 50);
                if (r->type == REDIS_REPLY_ARRAY) {
                        /* Treated as "nothing after it": fine, clean up. */
                        freeReplyObject(r);
                        (void) quiet(t);
                        freeReplyObject(do_leave(t, "d1", "1", "mallory"));
                        (void) quiet(t);
                        continue;
                }
                ASSERT_INT_EQ(r->type, REDIS_REPLY_ERROR);
                /* Refused before the presence is counted (chat.c drops the
                 * membership on an error reply without a leave): nothing
                 * published, nothing kept. */
                ASSERT_TRUE(quiet(t));
                assert_hget("mc:{r1}:users", "mallory", "");
                freeReplyObject(r);
        }

        /* history-on-join = 0 is a valid setting (docs/configuration.md: 0-100000). */
        r = do_join(t, "d1", "1", "zoe", NULL, 0);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements, 5);
        assert_int(r->element[0], 1);
        ASSERT_INT_EQ(r->element[1]->elements, 0);
        assert_int(r->element[2], 1);
        ASSERT_INT_EQ(r->element[4]->type, REDIS_REPLY_STRING);
        ASSERT_TRUE(is_stream_id(r->element[4]->str));
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"zoe\", 1, 1]");

        assert_error_free(do_edit(t, "1", "99999999999999999999-0", "alice", "x"), "NOTFOUND");

        r = do_history(t, "1", "0-0", 10);
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->element[0]->elements, 0);
        assert_int(r->element[2], 1);
        freeReplyObject(r);
        assert_quiet(t);
}

/* ---- version 2: a user's rooms, read markers and unread counts ---- */

static redisReply *do_join_v2(StoreEnv *t, const char *room, const char *user, unsigned max) {
        return STORE_ENV_CALL(t->event, store_join_v2, t->cmd, "d1", room, user, NULL, 10, max);
}

static redisReply *do_unread(StoreEnv *t, const char *room, const char *user) {
        return STORE_ENV_CALL(t->event, store_unread, t->cmd, room, user);
}

static redisReply *do_read(StoreEnv *t, const char *room, const char *user, const char *id) {
        return STORE_ENV_CALL(t->event, store_read, t->cmd, room, user, id);
}

static redisReply *do_user_rooms(StoreEnv *t, const char *user) {
        return STORE_ENV_CALL(t->event, store_user_rooms, t->cmd, user);
}

static redisReply *do_user_leave(StoreEnv *t, const char *user, const char *room, const char *reason) {
        return STORE_ENV_CALL(t->event, store_user_leave, t->cmd, user, room, reason);
}

static void assert_read_state(const redisReply *r, const char *marker, unsigned unread, unsigned mentions) {
        StoreReadState s;

        ASSERT_OK(store_parse_unread_reply(r, &s));
        ASSERT_STREQ(s.read ?: "", marker);
        ASSERT_INT_EQ(s.unread, unread);
        ASSERT_INT_EQ(s.mentions, mentions);
}

static void assert_rooms(const redisReply *r, size_t n, const char *const *ids) {
        ASSERT_INT_EQ(r->type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(r->elements, n);
        for (size_t i = 0; i < n; i++)
                assert_str(r->element[i], ids[i]);
}

static void test_user_rooms(StoreEnv *t) {
        _cleanup_(freeReplyObjectp) redisReply *sent = NULL;
        char first[64];
        StoreJoinReply j;
        redisReply *r;

        reset(t);
        create_room(t, "One", "1");
        create_room(t, "Two", "2");
        create_room(t, "Three", "3");

        /* A version 2 join makes the room the user's, with no marker yet. */
        r = do_join_v2(t, "1", "alice", 2);
        ASSERT_OK(store_parse_join_reply(r, &j));
        ASSERT_TRUE(j.has_read_state);
        ASSERT_NULL(j.read_state.read);
        ASSERT_INT_EQ(j.connections, 1);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"uj\", \"alice\", \"1\"]");
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 1, 1]");
        freeReplyObject(do_join_v2(t, "2", "alice", 2));
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"uj\", \"alice\", \"2\"]");
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"2\", \"alice\", 1, 1]");

        /* A third is refused before anything changes. */
        assert_error_free(do_join_v2(t, "3", "alice", 2), "FULL");
        assert_quiet(t);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS mc:{r3}:users"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{ualice}:rooms 3"), 0);

        /* Another connection: the room is the user's already. */
        r = do_join_v2(t, "1", "alice", 2);
        ASSERT_OK(store_parse_join_reply(r, &j));
        ASSERT_INT_EQ(j.connections, 2);
        freeReplyObject(r);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"p\", \"1\", \"alice\", 2, 0]");

        /* The writer's marker moves to what they wrote. */
        send_msg(t, "1", "alice", "first", 100, first);
        barrier(t);
        assert_hget("mc:{ualice}:rooms", "1", first);
        expect_msgf(t, STORE_EVENTS_CHANNEL, "[\"ur\", \"alice\", \"1\", \"%s\"]", first);

        /* Someone else's message, mentioning alice: unread 1, mentions 1. */
        {
                PendingReply p = {};

                ASSERT_OK(store_send_mentioning(t->cmd, "1", "bob", "hi alice", "alice", NULL, 100, store_env_on_reply, &p));
                sent = store_env_wait_reply(t->event, &p);
                ASSERT_INT_EQ(sent->type, REDIS_REPLY_STRING);
                drain(t);
        }
        r = do_unread(t, "1", "alice");
        assert_read_state(r, first, 1, 1);
        freeReplyObject(r);

        assert_int_free(do_read(t, "1", "alice", sent->str), 1);
        expect_msgf(t, STORE_EVENTS_CHANNEL, "[\"ur\", \"alice\", \"1\", \"%s\"]", sent->str);
        r = do_unread(t, "1", "alice");
        assert_read_state(r, sent->str, 0, 0);
        freeReplyObject(r);

        /* Markers never move back; a room not the user's has none. */
        assert_int_free(do_read(t, "1", "alice", first), 0);
        assert_error_free(do_read(t, "3", "alice", first), "NOTJOINED");
        r = do_unread(t, "3", "alice");
        assert_error(r, "NOTJOINED");
        freeReplyObject(r);
        assert_quiet(t);

        /* The user's rooms in the order joined; a deleted room drops out. */
        r = do_user_rooms(t, "alice");
        assert_rooms(r, 2, (const char *[]) { "1", "2" });
        freeReplyObject(r);
        assert_ok_free(do_delete(t, "2"));
        drain(t);
        r = do_user_rooms(t, "alice");
        assert_rooms(r, 1, (const char *[]) { "1" });
        freeReplyObject(r);
        ASSERT_INT_EQ(test_redis_integer(&server, "HEXISTS mc:{ualice}:rooms 2"), 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "ZCARD mc:{ualice}:order"), 1);
        r = do_user_rooms(t, "nobody");
        assert_rooms(r, 0, NULL);
        freeReplyObject(r);

        /* What cannot name a key is refused before anything is sent. */
        {
                char user[USERNAME_MAX + 2], daemon[STORE_DAEMON_ID_MAX + 2];

                memset(user, 'u', sizeof user - 1);
                user[sizeof user - 1] = 0;
                memset(daemon, 'd', sizeof daemon - 1);
                daemon[sizeof daemon - 1] = 0;
                ASSERT_ERROR(store_join(t->cmd, "d1", "", "alice", NULL, 10, store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_join(t->cmd, daemon, "1", "alice", NULL, 10, store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_join_v2(t->cmd, "d1", "1", user, NULL, 10, 2, store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_join_v2(t->cmd, "d1", "123456789012345678901", "alice", NULL, 10, 2, store_env_on_reply, NULL),
                             EINVAL);
                ASSERT_ERROR(store_user_rooms(t->cmd, "", store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_unread(t->cmd, "1", user, store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_history(t->cmd, "", NULL, 10, store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_leave(t->cmd, "", "1", "alice", store_env_on_reply, NULL), EINVAL);
                ASSERT_ERROR(store_reap(t->cmd, daemon, NULL, NULL), EINVAL);
                ASSERT_ERROR(store_delete_room(t->cmd, "", store_env_on_reply, NULL), EINVAL);
                barrier(t);
                assert_quiet(t);
        }

        /* Leaving the user's room: once. */
        assert_int_free(do_user_leave(t, "alice", "1", ""), 1);
        expect_msg(t, STORE_EVENTS_CHANNEL, "[\"ul\", \"alice\", \"1\", \"\"]");
        assert_int_free(do_user_leave(t, "alice", "1", ""), 0);
        assert_quiet(t);
        r = do_user_rooms(t, "alice");
        assert_rooms(r, 0, NULL);
        freeReplyObject(r);
}

/* ---- every script in one slot ---- */

/* The hash tag Redis Cluster hashes a key by: the part between the first
 * '{' and the first '}' after it when that is not empty, else the key. */
static void key_tag(const char *key, size_t len, const char **ret, size_t *ret_len) {
        const char *open = memchr(key, '{', len), *close;

        *ret = key;
        *ret_len = len;
        if (!open)
                return;
        close = memchr(open + 1, '}', len - (size_t) (open + 1 - key));
        if (!close || close == open + 1)
                return;
        *ret = open + 1;
        *ret_len = (size_t) (close - open - 1);
}

/* One argument of a MONITOR line, as Redis quotes it (sdscatrepr). */
static const char *monitor_arg(const char *p, char *buf, size_t size, size_t *ret_len) {
        size_t n = 0;

        while (*p == ' ')
                p++;
        if (*p != '"')
                return NULL;
        for (p++; *p && *p != '"'; p++) {
                char c = *p;

                if (c == '\\') {
                        p++;
                        switch (*p) {
                        case 'n': c = '\n'; break;
                        case 'r': c = '\r'; break;
                        case 't': c = '\t'; break;
                        case 'a': c = '\a'; break;
                        case 'b': c = '\b'; break;
                        case 'x': {
                                char hex[3] = { p[1], p[2], 0 };

                                ASSERT_TRUE(p[1] && p[2]);
                                c = (char) strtol(hex, NULL, 16);
                                p += 2;
                                break;
                        }
                        default: c = *p;
                        }
                }
                if (n + 1 < size)
                        buf[n] = c;
                n++;
        }
        ASSERT_TRUE(*p == '"');
        buf[MIN(n, size - 1)] = 0;
        *ret_len = MIN(n, size - 1);
        return p + 1;
}

typedef struct SlotCheck {
        char loaded[32][41];
        size_t n_loaded;
        char used[32][41];
        size_t n_used;
        unsigned evals;
} SlotCheck;

static void slot_check_source(SlotCheck *c, const char *source, char ret_sha1[41]) {
        RedisScript s;
        const char *q = source;

        /* Keys are built in C and passed in KEYS: a key name in the
         * source is one Redis Cluster cannot route. */
        while ((q = strstr(q, "'mc:"))) {
                if (strncmp(q, "'mc:events'", 11) != 0) {
                        fprintf(stderr, "a key built in Lua: %.40s\n", q);
                        ASSERT_TRUE(!"key name in a script");
                }
                q++;
        }
        redis_script_init(&s, source);
        if (ret_sha1)
                strcpy(ret_sha1, s.sha1);
        for (size_t i = 0; i < c->n_loaded; i++)
                if (streq(c->loaded[i], s.sha1))
                        return;
        ASSERT_TRUE(c->n_loaded < ELEMENTSOF(c->loaded));
        strcpy(c->loaded[c->n_loaded++], s.sha1);
}

/* EVAL or EVALSHA: argv[2] keys from argv[3] on, all under one tag. */
static void slot_check_keys(SlotCheck *c, const char *sha1, size_t n, char argv[][8192], const size_t *len) {
        long nkeys = strtol(argv[2], NULL, 10);
        const char *tag0 = NULL, *tag;
        size_t tag0_len = 0, tag_len;

        ASSERT_TRUE(nkeys >= 1 && (size_t) nkeys + 3 <= n);
        for (long i = 0; i < nkeys; i++) {
                key_tag(argv[3 + i], len[3 + i], &tag, &tag_len);
                if (i == 0) {
                        tag0 = tag;
                        tag0_len = tag_len;
                } else if (tag_len != tag0_len || memcmp(tag, tag0, tag_len) != 0) {
                        fprintf(stderr, "keys in two slots: %s, %s\n", argv[3], argv[3 + i]);
                        ASSERT_TRUE(!"a script spans slots");
                }
        }
        c->evals++;
        for (size_t i = 0; i < c->n_used; i++)
                if (streq(c->used[i], sha1))
                        return;
        ASSERT_TRUE(c->n_used < ELEMENTSOF(c->used) && strlen(sha1) < sizeof c->used[0]);
        strcpy(c->used[c->n_used++], sha1);
}

static void slot_check_line(SlotCheck *c, const char *line) {
        static char argv[16][8192];
        size_t len[16], n = 0;
        const char *p = strchr(line, ']');

        ASSERT_NOT_NULL(p);
        for (p++; n < ELEMENTSOF(argv) && (p = monitor_arg(p, argv[n], sizeof argv[n], &len[n])); n++)
                ;
        if (n >= 3 && strcasecmp(argv[0], "SCRIPT") == 0 && strcasecmp(argv[1], "LOAD") == 0)
                slot_check_source(c, argv[2], NULL);
        else if (n >= 3 && strcasecmp(argv[0], "EVAL") == 0) {
                char sha1[41];

                slot_check_source(c, argv[1], sha1);
                slot_check_keys(c, sha1, n, argv, len);
        } else if (n >= 3 && strcasecmp(argv[0], "EVALSHA") == 0)
                slot_check_keys(c, argv[1], n, argv, len);
}

/* Every script the store sent during the tests above, as Redis saw it on
 * MONITOR: each declared at least one key, all of them under one hash
 * tag; and every script loaded was run. */
static void test_slots(redisContext *mon) {
        SlotCheck c = {};

        freeReplyObject(test_redis_command(&server, "ECHO end-of-slot-check"));
        for (;;) {
                redisReply *reply = NULL;

                ASSERT_INT_EQ(redisGetReply(mon, (void **) &reply), REDIS_OK);
                ASSERT_INT_EQ(reply->type, REDIS_REPLY_STATUS);
                if (strstr(reply->str, "\"end-of-slot-check\"")) {
                        freeReplyObject(reply);
                        break;
                }
                slot_check_line(&c, reply->str);
                freeReplyObject(reply);
        }
        ASSERT_TRUE(c.n_loaded >= 10);
        ASSERT_TRUE(c.evals > 100);
        for (size_t i = 0; i < c.n_loaded; i++) {
                bool found = false;

                for (size_t k = 0; k < c.n_used && !found; k++)
                        found = streq(c.loaded[i], c.used[k]);
                if (!found)
                        fprintf(stderr, "script %s was never run by the tests\n", c.loaded[i]);
                ASSERT_TRUE(found);
        }
}

int main(void) {
        _cleanup_(redisFreep) redisContext *mon = NULL;
        StoreEnv t = {};
        uint64_t start = now_usec(CLOCK_MONOTONIC);

        /* Everything here is bounded; this is the last resort (and the
         * server dies with us through PR_SET_PDEATHSIG). */
        alarm(120);
        (void) signal(SIGPIPE, SIG_IGN);

        test_pure();
        test_parse_entry();

        if (store_env_server_start(&server) == -ENOENT)
                return EXIT_TEST_SKIP;
        mon = redisConnectUnix(server.sock);
        ASSERT_TRUE(mon && !mon->err);
        freeReplyObject(redisCommand(mon, "MONITOR"));
        connect_all(&t);
        /* Every script, so that the slot check knows them all. */
        ASSERT_OK(store_load_scripts(t.cmd));

        test_publish(&t);
        test_rooms(&t);
        test_presence(&t);
        test_messages(&t);
        test_send_ref(&t);
        test_epoch(&t);
        test_history(&t);
        test_trim(&t);
        test_reap(&t);
        test_script_flush(&t);
        test_odd_ids(&t);
        test_user_rooms(&t);
        test_slots(mon);

        store_env_close(&t);
        ASSERT_OK(test_redis_cleanup(&server));
        printf("test-store: %" PRIu64 " ms\n", (now_usec(CLOCK_MONOTONIC) - start) / 1000);
        return 0;
}
