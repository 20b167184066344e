/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for sessions: id/CSRF formats, cookies, and the Redis store against a real redis-server. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis.h"
#include "store/session.h"
#include "store/test-store-env.h"
#include "test/test-redis-server.h"
#include "test/test.h"

#define USEC_PER_MS UINT64_C(1000)
#define USEC_PER_S UINT64_C(1000000)
#define HOUR (UINT64_C(3600) * USEC_PER_S)

static TestRedis server;

typedef struct Result {
        unsigned calls;
        int r;
        bool has_data;
        SessionData d;
} Result;

static void on_result(int r, const SessionData *d, void *userdata) {
        Result *res = userdata;

        res->calls++;
        res->r = r;
        res->has_data = d != NULL;
        if (d)
                res->d = *d;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_S + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- formats ---- */

static void test_tokens(void) {
        char a[SESSION_ID_MAX + 1], b[SESSION_ID_MAX + 1], c[CSRF_TOKEN_MAX + 1];
        unsigned seen[256] = {};

        ASSERT_OK(session_id_generate(a));
        ASSERT_OK(session_id_generate(b));
        ASSERT_OK(csrf_token_generate(c));
        ASSERT_INT_EQ(strlen(a), 43);
        ASSERT_INT_EQ(strlen(c), 43);
        ASSERT_TRUE(session_id_is_valid(a));
        ASSERT_TRUE(csrf_token_is_valid(c));
        ASSERT_TRUE(strcmp(a, b) != 0);
        ASSERT_TRUE(strcmp(a, c) != 0);

        /* Many ids: all valid, the whole alphabet shows up, nothing else. */
        for (unsigned i = 0; i < 2000; i++) {
                ASSERT_OK(session_id_generate(a));
                ASSERT_TRUE(session_id_is_valid(a));
                for (size_t j = 0; j < 43; j++)
                        seen[(unsigned char) a[j]]++;
        }
        for (unsigned ch = 0; ch < 256; ch++) {
                bool in = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
                ASSERT_TRUE(in == (seen[ch] > 0));
        }

        ASSERT_FALSE(session_id_is_valid(NULL));
        ASSERT_FALSE(session_id_is_valid(""));
        ASSERT_TRUE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));     /* 42 */
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));   /* 44 */
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+"));
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/"));
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA "));
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAA*AAAAAAAAAAAAAAAAAAAAA"));
        ASSERT_FALSE(session_id_is_valid("AAAAAAAAAAAAAAAAAAAAA\xc3\xa9" "AAAAAAAAAAAAAAAAAAAA"));
        ASSERT_FALSE(csrf_token_is_valid("short"));

        ASSERT_OK(csrf_token_generate(c));
        memcpy(b, c, sizeof b);
        ASSERT_TRUE(csrf_token_equal(c, b));
        b[42] = b[42] == 'A' ? 'B' : 'A';
        ASSERT_FALSE(csrf_token_equal(c, b));
        b[42] = c[42];
        b[20] = 0;
        ASSERT_FALSE(csrf_token_equal(c, b));           /* a prefix */
        ASSERT_FALSE(csrf_token_equal(c, NULL));
        ASSERT_FALSE(csrf_token_equal(c, ""));
        ASSERT_FALSE(csrf_token_equal(NULL, c));
        ASSERT_FALSE(csrf_token_equal("", ""));
        {
                char longer[64];
                snprintf(longer, sizeof longer, "%sX", c);
                ASSERT_FALSE(csrf_token_equal(c, longer));
        }
}

static void test_user(void) {
        char u[80];

        ASSERT_TRUE(session_user_is_valid("alice"));
        ASSERT_TRUE(session_user_is_valid("j.doe-2@EXAMPLE"));
        ASSERT_TRUE(session_user_is_valid("z\xc3\xa9"));
        ASSERT_FALSE(session_user_is_valid(NULL));
        ASSERT_FALSE(session_user_is_valid(""));
        ASSERT_FALSE(session_user_is_valid("a\nb"));
        ASSERT_FALSE(session_user_is_valid("a\x7f"));
        ASSERT_FALSE(session_user_is_valid("\xc3"));
        ASSERT_FALSE(session_user_is_valid("\xed\xa0\x80"));
        memset(u, 'u', 64);
        u[64] = 0;
        ASSERT_TRUE(session_user_is_valid(u));
        u[64] = 'u';
        u[65] = 0;
        ASSERT_FALSE(session_user_is_valid(u));
}

/* ---- a real redis-server ---- */

static char *sync_hget(const char *key, const char *field) {
        redisReply *reply = test_redis_command(&server, "HGET %s %s", key, field);
        char *v = reply->type == REDIS_REPLY_STRING ? strdup(reply->str) : NULL;
        freeReplyObject(reply);
        return v;
}

static char *key_of(const char *id) {
        char *k;
        ASSERT_TRUE(asprintf(&k, "mc:session:%s", id) >= 0);
        return k;
}

typedef struct Test {
        sd_event *event;
        Redis *redis;
        bool connected;
} Test;

static void on_state(Redis *r, bool connected, void *userdata) {
        Test *t = userdata;
        t->connected = connected;
}

static void run_until(Test *t, const unsigned *calls, unsigned want) {
        for (unsigned i = 0; i < 500 && *calls < want; i++)
                ASSERT_OK(sd_event_run(t->event, 10 * USEC_PER_MS));
        ASSERT_INT_EQ(*calls, want);
}

static void run_for(Test *t, uint64_t usec) {
        uint64_t end = now_usec() + usec;
        while (now_usec() < end)
                ASSERT_OK(sd_event_run(t->event, 10 * USEC_PER_MS));
}

static void connect_redis(Test *t) {
        _cleanup_free_ char *url = NULL;

        ASSERT_TRUE(asprintf(&url, "unix:%s", server.sock) >= 0);
        ASSERT_OK(redis_new(&t->redis, t->event, url, on_state, NULL, t));
        ASSERT_OK(redis_start(t->redis));
        for (unsigned i = 0; i < 500 && !t->connected; i++)
                ASSERT_OK(sd_event_run(t->event, 10 * USEC_PER_MS));
        ASSERT_TRUE(t->connected);
}

static void do_create(Test *t, SessionData *d, uint64_t idle, Result *res) {
        *res = (Result) {};
        ASSERT_OK(session_create(t->redis, d, idle, on_result, res, NULL));
        run_until(t, &res->calls, 1);
}

static void do_lookup(Test *t, const char *id, uint64_t idle, uint64_t max, Result *res) {
        *res = (Result) {};
        ASSERT_OK(session_lookup(t->redis, id, idle, max, on_result, res, NULL));
        run_until(t, &res->calls, 1);
}

static void test_create_lookup_delete(Test *t) {
        SessionData d = { .uid = 1000, .staff = false };
        _cleanup_free_ char *key = NULL, *v = NULL;
        Result res, res2;
        uint64_t before = now_usec();
        char other[SESSION_ID_MAX + 1];

        strcpy(d.user, "alice");
        do_create(t, &d, 60 * USEC_PER_S, &res);
        ASSERT_INT_EQ(res.r, 0);
        ASSERT_TRUE(res.has_data);
        ASSERT_TRUE(session_id_is_valid(res.d.id));       /* generated */
        ASSERT_TRUE(csrf_token_is_valid(res.d.csrf));
        ASSERT_STREQ(res.d.user, "alice");
        ASSERT_INT_EQ(res.d.uid, 1000);
        ASSERT_FALSE(res.d.staff);
        ASSERT_TRUE(res.d.created_usec >= before && res.d.created_usec <= now_usec());

        /* What is stored: a hash with the idle timeout as TTL. */
        key = key_of(res.d.id);
        v = sync_hget(key, "user");
        ASSERT_STREQ(v, "alice");
        v = mfree(v);
        v = sync_hget(key, "csrf");
        ASSERT_STREQ(v, res.d.csrf);
        v = mfree(v);
        v = sync_hget(key, "staff");
        ASSERT_STREQ(v, "0");
        v = mfree(v);
        ASSERT_TRUE(test_redis_integer(&server, "PTTL %s", key) > 55000 &&
                    test_redis_integer(&server, "PTTL %s", key) <= 60000);

        do_lookup(t, res.d.id, 60 * USEC_PER_S, HOUR, &res2);
        ASSERT_INT_EQ(res2.r, 0);
        ASSERT_TRUE(res2.has_data);
        ASSERT_STREQ(res2.d.id, res.d.id);
        ASSERT_STREQ(res2.d.user, "alice");
        ASSERT_INT_EQ(res2.d.uid, 1000);
        ASSERT_FALSE(res2.d.staff);
        ASSERT_STREQ(res2.d.csrf, res.d.csrf);
        ASSERT_INT_EQ(res2.d.created_usec, res.d.created_usec);

        /* Redis forgot our scripts (restart, SCRIPT FLUSH): still works. */
        freeReplyObject(test_redis_command(&server, "SCRIPT FLUSH"));
        do_lookup(t, res.d.id, 60 * USEC_PER_S, HOUR, &res2);
        ASSERT_INT_EQ(res2.r, 0);

        /* Refresh: a lookup pushes the idle timeout out again. */
        ASSERT_INT_EQ(test_redis_integer(&server, "PEXPIRE %s 2000", key), 1);
        do_lookup(t, res.d.id, 60 * USEC_PER_S, HOUR, &res2);
        ASSERT_INT_EQ(res2.r, 0);
        ASSERT_TRUE(test_redis_integer(&server, "PTTL %s", key) > 55000);

        /* Staff flag update. */
        res2 = (Result) {};
        ASSERT_OK(session_update_staff(t->redis, res.d.id, true, on_result, &res2, NULL));
        run_until(t, &res2.calls, 1);
        ASSERT_INT_EQ(res2.r, 0);
        ASSERT_FALSE(res2.has_data);
        do_lookup(t, res.d.id, 60 * USEC_PER_S, HOUR, &res2);
        ASSERT_INT_EQ(res2.r, 0);
        ASSERT_TRUE(res2.d.staff);

        /* The same id again is refused, and the stored one unchanged. */
        d = res.d;
        strcpy(d.user, "mallory");
        do_create(t, &d, 60 * USEC_PER_S, &res2);
        ASSERT_ERROR(res2.r, EEXIST);
        ASSERT_FALSE(res2.has_data);
        v = sync_hget(key, "user");
        ASSERT_STREQ(v, "alice");
        v = mfree(v);

        /* Delete, twice. */
        res2 = (Result) {};
        ASSERT_OK(session_delete(t->redis, res.d.id, on_result, &res2, NULL));
        run_until(t, &res2.calls, 1);
        ASSERT_INT_EQ(res2.r, 0);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS %s", key), 0);
        res2 = (Result) {};
        ASSERT_OK(session_delete(t->redis, res.d.id, on_result, &res2, NULL));
        run_until(t, &res2.calls, 1);
        ASSERT_ERROR(res2.r, ENOENT);
        do_lookup(t, res.d.id, 60 * USEC_PER_S, HOUR, &res2);
        ASSERT_ERROR(res2.r, ENOENT);
        ASSERT_FALSE(res2.has_data);

        /* Updating a deleted session must not bring back a TTL-less key. */
        res2 = (Result) {};
        ASSERT_OK(session_update_staff(t->redis, res.d.id, true, on_result, &res2, NULL));
        run_until(t, &res2.calls, 1);
        ASSERT_ERROR(res2.r, ENOENT);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS %s", key), 0);

        /* A well-formed id that was never handed out. */
        ASSERT_OK(session_id_generate(other));
        do_lookup(t, other, 60 * USEC_PER_S, HOUR, &res2);
        ASSERT_ERROR(res2.r, ENOENT);

        /* Given id and token are kept; staff is stored. */
        d = (SessionData) { .uid = 0, .staff = true };
        strcpy(d.user, "root\xc3\xa9");
        ASSERT_OK(session_id_generate(d.id));
        ASSERT_OK(csrf_token_generate(d.csrf));
        d.created_usec = now_usec() - 10 * USEC_PER_S;
        do_create(t, &d, 60 * USEC_PER_S, &res);
        ASSERT_INT_EQ(res.r, 0);
        ASSERT_STREQ(res.d.id, d.id);
        ASSERT_STREQ(res.d.csrf, d.csrf);
        ASSERT_INT_EQ(res.d.created_usec, d.created_usec);
        do_lookup(t, d.id, 60 * USEC_PER_S, UINT64_C(1) << 50, &res2);
        ASSERT_INT_EQ(res2.r, 0);
        ASSERT_STREQ(res2.d.user, "root\xc3\xa9");
        ASSERT_INT_EQ(res2.d.uid, 0);
        ASSERT_TRUE(res2.d.staff);
}

static void test_invalid_args(Test *t) {
        SessionData d = { .uid = 1000 };
        Result res = {};
        SessionRequest *req = NULL;

        /* Malformed ids never reach Redis; the handler is not called. */
        ASSERT_ERROR(session_lookup(t->redis, "nope", 60 * USEC_PER_S, HOUR, on_result, &res, &req), EINVAL);
        ASSERT_ERROR(session_lookup(t->redis, NULL, 60 * USEC_PER_S, HOUR, on_result, &res, &req), EINVAL);
        ASSERT_ERROR(session_lookup(t->redis, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*", 60 * USEC_PER_S, HOUR,
                                    on_result, &res, &req), EINVAL);
        ASSERT_ERROR(session_delete(t->redis, "../../x", on_result, &res, &req), EINVAL);
        ASSERT_ERROR(session_update_staff(t->redis, "x", true, on_result, &res, &req), EINVAL);
        ASSERT_NULL(req);

        ASSERT_ERROR(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &res, &req), EINVAL); /* no user */
        strcpy(d.user, "bad\nuser");
        ASSERT_ERROR(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &res, &req), EINVAL);
        strcpy(d.user, "alice");
        strcpy(d.id, "not-an-id");
        ASSERT_ERROR(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &res, &req), EINVAL);
        d.id[0] = 0;
        strcpy(d.csrf, "not-a-token");
        ASSERT_ERROR(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &res, &req), EINVAL);
        d.csrf[0] = 0;
        ASSERT_ERROR(session_create(t->redis, &d, 0, on_result, &res, &req), EINVAL);
        d.uid = (uid_t) -1;
        ASSERT_ERROR(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &res, &req), EINVAL);
        ASSERT_NULL(req);

        run_for(t, 50 * USEC_PER_MS);
        ASSERT_INT_EQ(res.calls, 0);
}

static void test_expiry(Test *t) {
        SessionData d = { .uid = 1000 };
        _cleanup_free_ char *key = NULL;
        Result res, res2;
        long long ttl;

        strcpy(d.user, "bob");

        /* Idle: unused for longer than the idle timeout → gone. */
        do_create(t, &d, 100 * USEC_PER_MS, &res);
        ASSERT_INT_EQ(res.r, 0);
        do_lookup(t, res.d.id, 100 * USEC_PER_MS, HOUR, &res2);
        ASSERT_INT_EQ(res2.r, 0);
        run_for(t, 300 * USEC_PER_MS);
        do_lookup(t, res.d.id, 100 * USEC_PER_MS, HOUR, &res2);
        ASSERT_ERROR(res2.r, ENOENT);

        /* Absolute: past created + max, even when used all the time → deleted. */
        d.created_usec = now_usec() - 2 * HOUR;
        do_create(t, &d, HOUR, &res);
        ASSERT_INT_EQ(res.r, 0);
        key = key_of(res.d.id);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS %s", key), 1);
        do_lookup(t, res.d.id, HOUR, 3 * HOUR, &res2);        /* still within max */
        ASSERT_INT_EQ(res2.r, 0);
        do_lookup(t, res.d.id, HOUR, HOUR, &res2);
        ASSERT_ERROR(res2.r, ENOENT);
        ASSERT_FALSE(res2.has_data);
        ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS %s", key), 0);
        key = mfree(key);

        /* The refreshed TTL never reaches beyond the absolute expiry. */
        d.created_usec = now_usec() - HOUR + 2 * USEC_PER_S;
        do_create(t, &d, HOUR, &res);
        ASSERT_INT_EQ(res.r, 0);
        key = key_of(res.d.id);
        do_lookup(t, res.d.id, HOUR, HOUR, &res2);
        ASSERT_INT_EQ(res2.r, 0);
        ttl = test_redis_integer(&server, "PTTL %s", key);
        ASSERT_TRUE(ttl > 0 && ttl <= 2000);
}

static void test_cancel(Test *t) {
        SessionData d = { .uid = 1000 };
        SessionRequest *req = NULL;
        Result cancelled = {}, after = {}, res;

        strcpy(d.user, "carol");
        do_create(t, &d, 60 * USEC_PER_S, &res);
        ASSERT_INT_EQ(res.r, 0);

        /* Cancelled right after sending: the handler never runs, even though
         * the reply arrives (the lookup after it is answered later). */
        ASSERT_OK(session_lookup(t->redis, res.d.id, 60 * USEC_PER_S, HOUR, on_result, &cancelled, &req));
        ASSERT_NOT_NULL(req);
        ASSERT_NULL(session_request_cancel(req));
        ASSERT_OK(session_lookup(t->redis, res.d.id, 60 * USEC_PER_S, HOUR, on_result, &after, NULL));
        run_until(t, &after.calls, 1);
        ASSERT_INT_EQ(after.r, 0);
        run_for(t, 50 * USEC_PER_MS);
        ASSERT_INT_EQ(cancelled.calls, 0);

        /* Every kind of request can be cancelled, also through the untyped helper. */
        req = NULL;
        cancelled = (Result) {};
        after = (Result) {};
        ASSERT_OK(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &cancelled, &req));
        session_request_cancel_opaque(req);
        ASSERT_OK(session_update_staff(t->redis, res.d.id, true, on_result, &cancelled, &req));
        session_request_cancel(req);
        ASSERT_OK(session_delete(t->redis, res.d.id, on_result, &cancelled, &req));
        session_request_cancel(req);
        ASSERT_NULL(session_request_cancel(NULL));
        ASSERT_OK(session_lookup(t->redis, res.d.id, 60 * USEC_PER_S, HOUR, on_result, &after, NULL));
        run_until(t, &after.calls, 1);
        ASSERT_ERROR(after.r, ENOENT);          /* the cancelled delete still happened */
        ASSERT_INT_EQ(cancelled.calls, 0);

        /* No handler at all (fire and forget). */
        ASSERT_OK(session_delete(t->redis, res.d.id, NULL, NULL, NULL));
        after = (Result) {};
        ASSERT_OK(session_lookup(t->redis, res.d.id, 60 * USEC_PER_S, HOUR, on_result, &after, NULL));
        run_until(t, &after.calls, 1);
}

static SessionRequest *self_req;

static void on_result_cancel_self(int r, const SessionData *d, void *userdata) {
        on_result(r, d, userdata);
        self_req = session_request_cancel(self_req);   /* harmless inside its own handler */
}

static void test_cancel_in_handler(Test *t) {
        char id[SESSION_ID_MAX + 1];
        Result res = {};

        ASSERT_OK(session_id_generate(id));
        ASSERT_OK(session_lookup(t->redis, id, 60 * USEC_PER_S, HOUR, on_result_cancel_self, &res, &self_req));
        run_until(t, &res.calls, 1);
        ASSERT_ERROR(res.r, ENOENT);
        ASSERT_NULL(self_req);
}

/* Stored garbage is rejected, never crashes, and is removed. */
static void expect_malformed(Test *t, const char *id, bool deleted) {
        _cleanup_free_ char *key = key_of(id);
        Result res;

        do_lookup(t, id, 60 * USEC_PER_S, HOUR, &res);
        ASSERT_TRUE(res.r == -EBADMSG || res.r == -ENOENT);
        ASSERT_FALSE(res.has_data);
        if (deleted) {
                /* The DEL is sent after the reply: one more round trip. */
                Result sync = {};
                char other[SESSION_ID_MAX + 1];
                ASSERT_OK(session_id_generate(other));
                do_lookup(t, other, 60 * USEC_PER_S, HOUR, &sync);
                ASSERT_INT_EQ(test_redis_integer(&server, "EXISTS %s", key), 0);
        }
}

/* A new session whose key only fmt wrote (with the key, then arg). */
static void expect_malformed_written(Test *t, const char *fmt, const char *arg) {
        char id[SESSION_ID_MAX + 1];
        _cleanup_free_ char *key = NULL;

        ASSERT_OK(session_id_generate(id));
        key = key_of(id);
        freeReplyObject(test_redis_command(&server, fmt, key, arg));
        expect_malformed(t, id, true);
}

static void plant(const char *id, const char *user, const char *uid, const char *staff,
                  const char *csrf, const char *created) {
        _cleanup_free_ char *key = key_of(id);
        redisReply *reply = test_redis_command(&server, "HSET %s user %s uid %s staff %s csrf %s created %s",
                                               key, user, uid, staff, csrf, created);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_INTEGER);
        freeReplyObject(reply);
}

static void test_malformed(Test *t) {
        char id[SESSION_ID_MAX + 1], csrf[CSRF_TOKEN_MAX + 1], now[32], user65[66];
        _cleanup_free_ char *key = NULL;
        redisReply *reply;
        Result res;

        ASSERT_OK(csrf_token_generate(csrf));
        snprintf(now, sizeof now, "%llu", (unsigned long long) now_usec());
        memset(user65, 'u', 65);
        user65[65] = 0;

        /* A good one planted by hand is accepted (so the bad ones below fail for their own reason). */
        ASSERT_OK(session_id_generate(id));
        plant(id, "dave", "1001", "1", csrf, now);
        do_lookup(t, id, 60 * USEC_PER_S, HOUR, &res);
        ASSERT_INT_EQ(res.r, 0);
        ASSERT_STREQ(res.d.user, "dave");
        ASSERT_INT_EQ(res.d.uid, 1001);
        ASSERT_TRUE(res.d.staff);

        const struct {
                const char *user, *uid, *staff, *csrf, *created;
        } bad[] = {
                { "",       "1001", "1", NULL, NULL },
                { NULL,     "abc",  "1", NULL, NULL },
                { NULL,     "-1",   "1", NULL, NULL },
                { NULL,     "01",   "1", NULL, NULL },
                { NULL,     "4294967295", "1", NULL, NULL },
                { NULL,     "99999999999999999999999", "1", NULL, NULL },
                { NULL,     " 1",   "1", NULL, NULL },
                { NULL,     "1001", "2", NULL, NULL },
                { NULL,     "1001", "true", NULL, NULL },
                { NULL,     "1001", "", NULL, NULL },
                { NULL,     "1001", "1", "short", NULL },
                { NULL,     "1001", "1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", NULL },
                { NULL,     "1001", "1", NULL, "xyz" },
                { NULL,     "1001", "1", NULL, "1e15" },
                { NULL,     "1001", "1", NULL, "0x10" },
                { NULL,     "1001", "1", NULL, "-5" },
                { NULL,     "1001", "1", NULL, "0" },
                { "a\x01" "b", "1001", "1", NULL, NULL },
                { "\xff\xfe", "1001", "1", NULL, NULL },
                { user65,   "1001", "1", NULL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_OK(session_id_generate(id));
                plant(id, bad[i].user ?: "dave", bad[i].uid, bad[i].staff,
                      bad[i].csrf ?: csrf, bad[i].created ?: now);
                expect_malformed(t, id, true);
        }

        /* A NUL byte inside a field (binary-safe Redis, C strings here). */
        ASSERT_OK(session_id_generate(id));
        key = key_of(id);
        plant(id, "dave", "1001", "1", csrf, now);
        reply = test_redis_command(&server, "HSET %s user %b", key, "da\0ve", (size_t) 5);
        freeReplyObject(reply);
        expect_malformed(t, id, true);
        key = mfree(key);

        /* Fields missing. */
        expect_malformed_written(t, "HSET %s user dave", NULL);
        expect_malformed_written(t, "HSET %s user dave uid 1 staff 0 csrf %s", csrf);

        /* Keys of other types in our namespace. */
        expect_malformed_written(t, "SET %s hello", NULL);

        ASSERT_OK(session_id_generate(id));
        key = key_of(id);
        freeReplyObject(test_redis_command(&server, "RPUSH %s a b c d e", key));
        expect_malformed(t, id, true);
        freeReplyObject(test_redis_command(&server, "RPUSH %s a", key));
        res = (Result) {};
        ASSERT_OK(session_update_staff(t->redis, id, true, on_result, &res, NULL));
        run_until(t, &res.calls, 1);
        ASSERT_ERROR(res.r, EBADMSG);
        ASSERT_INT_EQ(test_redis_integer(&server, "LLEN %s", key), 1); /* left alone: only lookups clean up */
        key = mfree(key);

        /* Extra fields are ignored. */
        ASSERT_OK(session_id_generate(id));
        plant(id, "erin", "5", "0", csrf, now);
        key = key_of(id);
        freeReplyObject(test_redis_command(&server, "HSET %s extra field", key));
        do_lookup(t, id, 60 * USEC_PER_S, HOUR, &res);
        ASSERT_INT_EQ(res.r, 0);
        ASSERT_STREQ(res.d.user, "erin");
}

static void test_redis_gone(Test *t) {
        Result res = {}, pending = {};
        SessionData d = { .uid = 1 };
        char id[SESSION_ID_MAX + 1];
        Redis *unstarted = NULL;
        _cleanup_free_ char *url = NULL;

        strcpy(d.user, "frank");
        ASSERT_OK(session_id_generate(id));

        /* Not connected yet: refused at once, handler never called. */
        ASSERT_TRUE(asprintf(&url, "unix:%s", server.sock) >= 0);
        ASSERT_OK(redis_new(&unstarted, t->event, url, NULL, NULL, NULL));
        ASSERT_ERROR(session_lookup(unstarted, id, 60 * USEC_PER_S, HOUR, on_result, &res, NULL), ENOTCONN);
        ASSERT_ERROR(session_create(unstarted, &d, 60 * USEC_PER_S, on_result, &res, NULL), ENOTCONN);
        ASSERT_ERROR(session_delete(unstarted, id, on_result, &res, NULL), ENOTCONN);
        ASSERT_ERROR(session_update_staff(unstarted, id, true, on_result, &res, NULL), ENOTCONN);
        unstarted = redis_free(unstarted);

        /* In flight when the client goes away: the handler gets -ENOTCONN. */
        ASSERT_OK(session_lookup(t->redis, id, 60 * USEC_PER_S, HOUR, on_result, &pending, NULL));
        t->redis = redis_free(t->redis);
        ASSERT_INT_EQ(pending.calls, 1);
        ASSERT_ERROR(pending.r, ENOTCONN);

        /* The server dies with a request in flight (held back by CLIENT PAUSE). */
        t->connected = false;
        connect_redis(t);
        freeReplyObject(test_redis_command(&server, "CLIENT PAUSE 3000 ALL"));
        pending = (Result) {};
        ASSERT_OK(session_lookup(t->redis, id, 60 * USEC_PER_S, HOUR, on_result, &pending, NULL));
        run_for(t, 50 * USEC_PER_MS);
        ASSERT_INT_EQ(pending.calls, 0);
        test_redis_kill(&server);
        run_until(t, &pending.calls, 1);
        ASSERT_ERROR(pending.r, ENOTCONN);
        for (unsigned i = 0; i < 200 && t->connected; i++)
                ASSERT_OK(sd_event_run(t->event, 10 * USEC_PER_MS));
        ASSERT_FALSE(t->connected);

        /* And while it is down, refused at once. */
        res = (Result) {};
        ASSERT_ERROR(session_lookup(t->redis, id, 60 * USEC_PER_S, HOUR, on_result, &res, NULL), ENOTCONN);
        ASSERT_ERROR(session_create(t->redis, &d, 60 * USEC_PER_S, on_result, &res, NULL), ENOTCONN);
        run_for(t, 50 * USEC_PER_MS);
        ASSERT_INT_EQ(res.calls, 0);
}

int main(void) {
        Test t = {};

        test_tokens();
        test_user();

        if (store_env_server_start(&server) == -ENOENT)
                return EXIT_TEST_SKIP;

        ASSERT_OK(sd_event_new(&t.event));
        connect_redis(&t);

        test_create_lookup_delete(&t);
        test_invalid_args(&t);
        test_expiry(&t);
        test_cancel(&t);
        test_cancel_in_handler(&t);
        test_malformed(&t);
        test_redis_gone(&t);

        t.redis = redis_free(t.redis);
        t.event = sd_event_unref(t.event);
        ASSERT_OK(test_redis_cleanup(&server));
        return 0;
}
