/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the Redis client against real redis-servers: commands, pub/sub, scripts, loss and reconnect. */

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis.h"
#include "test/test-redis-client.h"
#include "test/test-redis-server.h"
#include "test/test.h"

/* ---- the client under test ---- */

typedef struct Ctx {
        sd_event *event;
        Redis *redis;
        unsigned n_up, n_down;
        unsigned n_messages;
        char channel[64];
        char data[64];
        size_t len;
        bool free_on_down, free_on_message;
        uint64_t slow_usec;             /* each message takes this long, as in a busy daemon */
        uint64_t stall_once_usec;       /* the first message takes this long */
} Ctx;

static void on_state(Redis *r, bool connected, void *userdata) {
        Ctx *c = userdata;

        ASSERT_TRUE(r == c->redis);
        ASSERT_INT_EQ(redis_is_connected(r), connected);
        if (connected)
                c->n_up++;
        else
                c->n_down++;
        ASSERT_TRUE(c->n_up - c->n_down <= 1);         /* strictly alternating */
        if (!connected && c->free_on_down)
                c->redis = redis_free(r);
}

static void on_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        Ctx *c = userdata;

        c->n_messages++;
        if (c->stall_once_usec > 0) {
                usleep(c->stall_once_usec);
                c->stall_once_usec = 0;
        }
        if (c->slow_usec > 0)
                usleep(c->slow_usec);
        snprintf(c->channel, sizeof(c->channel), "%s", channel);
        c->len = MIN(len, sizeof(c->data));
        memcpy(c->data, data, c->len);
        if (c->free_on_message)
                c->redis = redis_free(r);
}

static void on_reply(Redis *r, const redisReply *reply, void *userdata) {
        test_reply_record(userdata, reply);
}

static bool is_up(const void *p) {
        const Ctx *c = p;
        return c->redis && redis_is_connected(c->redis);
}

static bool is_down(const void *p) {
        const Ctx *c = p;
        return !c->redis || !redis_is_connected(c->redis);
}

static bool reply_done(const void *p) {
        return ((const TestReply *) p)->calls > 0;
}

static void ctx_open_timeouts(Ctx *c, sd_event *e, const char *url, uint64_t timeout, uint64_t ping) {
        *c = (Ctx) { .event = e };
        ASSERT_OK(redis_new(&c->redis, e, url, on_state, on_message, c));
        ASSERT_OK(redis_set_timeouts(c->redis, timeout, ping));
        ASSERT_OK(redis_start(c->redis));
        ASSERT_TRUE(test_run_until(e, is_up, c, 5 * SEC));
        ASSERT_INT_EQ(c->n_up, 1);
}

static void ctx_open(Ctx *c, sd_event *e, const char *url) {
        *c = (Ctx) { .event = e };
        ASSERT_OK(redis_new(&c->redis, e, url, on_state, on_message, c));
        ASSERT_OK(redis_start(c->redis));
        ASSERT_TRUE(test_run_until(e, is_up, c, 5 * SEC));
        ASSERT_INT_EQ(c->n_up, 1);
}

static void ctx_open_server(Ctx *c, sd_event *e, const TestRedis *srv) {
        char url[192];

        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        ctx_open(c, e, url);
}

/* Sends argv (NULL-terminated) and waits for the answer. */
static void command_sync(Ctx *c, TestReply *out, const char *const *argv) {
        int argc = 0;

        while (argv[argc])
                argc++;
        *out = (TestReply) {};
        ASSERT_OK(redis_command_argv(c->redis, on_reply, out, argc, (const char **) argv, NULL));
        ASSERT_TRUE(test_run_until(c->event, reply_done, out, 5 * SEC));
        ASSERT_INT_EQ(out->calls, 1);
}

#define COMMAND(c, out, ...) command_sync((c), (out), (const char *const[]) { __VA_ARGS__, NULL })

/* ---- tests ---- */

static void test_url(sd_event *e) {
        static const char *const good[] = {
                "unix:/run/redis/redis-server.sock", "unix:/tmp/x.sock?db=3", "unix:/x?db=65535",
                "redis://127.0.0.1", "redis://127.0.0.1:6380/2", "redis://[::1]:6379/0", "redis://[::1]",
                "redis://localhost/1", "redis://LOCALHOST:1", "redis://redis.example:6379", "redis://r/0",
        };
        static const char *const bad[] = {
                "", "redis://", "unix:", "unix:relative", "unix:/x?db=", "unix:/x?db=65536",
                "unix:/x?foo=1", "redis://h:0", "redis://h:65536", "redis://h:/1", "redis://[::1",
                "redis://[::1]x", "redis://[nothex]:1", "redis://h/abc", "redis://h/-1", "http://h",
                "redis://a b", "redis://user@h", "redis://h:1:2", "redis://-h", "tcp://h:1",
        };
        char longpath[200];
        Redis *r = NULL;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ASSERT_OK(redis_new(&r, e, good[i], NULL, NULL, NULL));
                ASSERT_FALSE(redis_is_connected(r));
                ASSERT_STREQ(redis_last_error(r), "");
                r = redis_free(r);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (redis_new(&r, e, bad[i], NULL, NULL, NULL) != -EINVAL) {
                        fprintf(stderr, "accepted bad URL \"%s\"\n", bad[i]);
                        abort();
                }
                ASSERT_NULL(r);
        }
        memset(longpath, 'x', sizeof(longpath) - 1);
        longpath[sizeof(longpath) - 1] = '\0';
        memcpy(longpath, "unix:/", 6);
        ASSERT_ERROR(redis_new(&r, e, longpath, NULL, NULL, NULL), EINVAL);

        /* Not started: nothing is sent, subscriptions are only recorded. */
        ASSERT_OK(redis_new(&r, e, "unix:/nonexistent/redis.sock", NULL, NULL, NULL));
        ASSERT_ERROR(redis_command(r, NULL, NULL, "PING"), ENOTCONN);
        ASSERT_OK(redis_subscribe(r, "a"));
        ASSERT_OK(redis_subscribe(r, "a"));
        ASSERT_OK(redis_unsubscribe(r, "a"));
        ASSERT_OK(redis_unsubscribe(r, "a"));
        ASSERT_ERROR(redis_unsubscribe(r, "a"), ENOENT);
        ASSERT_ERROR(redis_subscribe(r, ""), EINVAL);
        ASSERT_ERROR(redis_punsubscribe(r, "a"), ENOENT);
        ASSERT_ERROR(redis_set_timeouts(r, 0, SEC), EINVAL);
        ASSERT_ERROR(redis_set_timeouts(r, SEC, 999), EINVAL);
        ASSERT_OK(redis_set_timeouts(r, SEC, SEC));
        r = redis_free(r);
        ASSERT_NULL(redis_free(NULL));
}

static void test_sha1(void) {
        static const struct {
                const char *in, *sha1;
        } v[] = {
                { "", "da39a3ee5e6b4b0d3255bfef95601890afd80709" },
                { "abc", "a9993e364706816aba3e25717850c26c9cd0d89d" },
                { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  "84983e441c3bd26ebaae4aa1f95129e5e54670f1" },
                { "return 1", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db" },
        };
        RedisScript s;
        char *big;

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                redis_script_init(&s, v[i].in);
                ASSERT_STREQ(s.sha1, v[i].sha1);
        }
        big = malloc(1000001);
        ASSERT_NOT_NULL(big);
        memset(big, 'a', 1000000);
        big[1000000] = '\0';
        redis_script_init(&s, big);
        ASSERT_STREQ(s.sha1, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
        free(big);
}

static void on_must_not_run(Redis *r, const redisReply *reply, void *userdata) {
        abort();
}

static void test_commands(TestRedis *srv, sd_event *e) {
        char url[192];
        Ctx c;
        TestReply a, b;
        int dummy;

        snprintf(url, sizeof(url), "unix:%s?db=3", srv->sock);
        ctx_open(&c, e, url);

        /* SELECTed the database from the URL. */
        COMMAND(&c, &a, "CLIENT", "INFO");
        ASSERT_INT_EQ(a.type, REDIS_REPLY_STRING);
        ASSERT_NOT_NULL(strstr(a.str, " db=3 "));

        a = (TestReply) {};
        ASSERT_OK(redis_command(c.redis, on_reply, &a, "SET bin %b", "a\0b", (size_t) 3));
        COMMAND(&c, &b, "GET", "bin");
        ASSERT_INT_EQ(a.calls, 1);
        ASSERT_INT_EQ(a.type, REDIS_REPLY_STATUS);
        ASSERT_STREQ(a.str, "OK");
        ASSERT_INT_EQ(b.type, REDIS_REPLY_STRING);
        ASSERT_INT_EQ(b.len, 3);
        ASSERT_TRUE(memcmp(b.str, "a\0b", 3) == 0);

        /* An error is a reply, not a failure. */
        COMMAND(&c, &a, "INCR", "bin");
        ASSERT_FALSE(a.null);
        ASSERT_INT_EQ(a.type, REDIS_REPLY_ERROR);

        /* Commands that would change the connection's state are refused. */
        ASSERT_ERROR(redis_command(c.redis, NULL, NULL, "SELECT 1"), EINVAL);
        ASSERT_ERROR(redis_command(c.redis, NULL, NULL, "subscribe x"), EINVAL);
        ASSERT_ERROR(redis_command(c.redis, NULL, NULL, ""), EINVAL);
        ASSERT_ERROR(redis_command_argv(c.redis, NULL, NULL, 1, (const char *[]) { "MONITOR" }, NULL), EINVAL);
        ASSERT_ERROR(redis_command_argv(c.redis, NULL, NULL, 0, (const char *[]) { "PING" }, NULL), EINVAL);
        COMMAND(&c, &a, "SELECTX");     /* only the exact names */
        ASSERT_INT_EQ(a.type, REDIS_REPLY_ERROR);

        /* A cancelled handler never runs; the command still goes out. */
        ASSERT_OK(redis_command(c.redis, on_must_not_run, &dummy, "SET cancelled 1"));
        ASSERT_OK(redis_command(c.redis, on_must_not_run, &dummy, "PING"));
        ASSERT_INT_EQ(redis_cancel(c.redis, &dummy), 2);
        ASSERT_INT_EQ(redis_cancel(c.redis, &dummy), 0);
        COMMAND(&c, &a, "GET", "cancelled");
        ASSERT_STREQ(a.str, "1");

        /* A NULL handler is fine. */
        ASSERT_OK(redis_command(c.redis, NULL, NULL, "SET nocb 1"));
        COMMAND(&c, &a, "GET", "nocb");
        ASSERT_STREQ(a.str, "1");

        c.redis = redis_free(c.redis);
        ASSERT_INT_EQ(c.n_down, 0);     /* redis_free() does not report */
}

typedef struct Counter {
        unsigned n, n_null;
        long long last;
        bool in_order;
} Counter;

static void on_incr(Redis *r, const redisReply *reply, void *userdata) {
        Counter *k = userdata;

        k->n++;
        if (!reply) {
                k->n_null++;
                return;
        }
        if (reply->type != REDIS_REPLY_INTEGER || reply->integer != k->last + 1)
                k->in_order = false;
        k->last = reply->integer;
}

static bool counter_done(const void *p) {
        return ((const Counter *) p)->n >= 10000;
}

static void test_pipeline(TestRedis *srv, sd_event *e) {
        static const char *const incr[] = { "INCR", "pipeline" };
        Counter k = { .in_order = true };
        TestReply a;
        uint64_t t;
        Ctx c;

        ctx_open_server(&c, e, srv);
        COMMAND(&c, &a, "DEL", "pipeline");

        t = test_now_usec();
        for (unsigned i = 0; i < 10000; i++)
                ASSERT_OK(redis_command_argv(c.redis, on_incr, &k, 2, (const char **) incr, NULL));
        ASSERT_TRUE(test_run_until(e, counter_done, &k, 10 * SEC));
        t = test_now_usec() - t;
        ASSERT_TRUE(k.in_order);
        ASSERT_INT_EQ(k.n_null, 0);
        ASSERT_INT_EQ(k.last, 10000);
        printf("redis: 10000 pipelined INCR in %.1f ms = %.0f commands/s\n", t / 1000.0, 1e10 / (double) t);

        k = (Counter) { .in_order = true };
        t = test_now_usec();
        for (unsigned i = 0; i < 10000; i++)
                ASSERT_OK(redis_command(c.redis, on_incr, &k, "PUBLISH %s %b", "nobody", "x", (size_t) 1));
        ASSERT_TRUE(test_run_until(e, counter_done, &k, 10 * SEC));
        t = test_now_usec() - t;
        printf("redis: 10000 pipelined PUBLISH in %.1f ms = %.0f commands/s\n", t / 1000.0, 1e10 / (double) t);

        c.redis = redis_free(c.redis);
}

static bool got_message(const void *p) {
        return ((const Ctx *) p)->n_messages > 0;
}

static long long publish(Ctx *c, const char *channel, const char *data) {
        TestReply a;

        COMMAND(c, &a, "PUBLISH", channel, data);
        ASSERT_INT_EQ(a.type, REDIS_REPLY_INTEGER);
        return a.integer;
}

/* Waits until Redis has applied our (UN)SUBSCRIBEs: they travel on the other connection. */
static void wait_receivers(Ctx *c, const char *channel, long long want) {
        TestReply a;

        for (unsigned i = 0; i < 100; i++) {
                COMMAND(c, &a, "PUBSUB", "NUMSUB", channel);
                ASSERT_INT_EQ(a.elements, 2);
                if (a.element_int[1] == want)
                        return;
                test_run_for(c->event, 10000);
        }
        abort();
}

static void test_pubsub(TestRedis *srv, sd_event *e) {
        Ctx c;

        ctx_open_server(&c, e, srv);

        ASSERT_OK(redis_subscribe(c.redis, "chat:a"));
        ASSERT_OK(redis_subscribe(c.redis, "chat:a"));
        wait_receivers(&c, "chat:a", 1);
        ASSERT_INT_EQ(publish(&c, "chat:a", "hello"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "chat:a");
        ASSERT_INT_EQ(c.len, 5);
        ASSERT_TRUE(memcmp(c.data, "hello", 5) == 0);

        /* Still one reference left. */
        ASSERT_OK(redis_unsubscribe(c.redis, "chat:a"));
        test_run_for(e, 20000);
        ASSERT_INT_EQ(publish(&c, "chat:a", "again"), 1);
        c.n_messages = 0;
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));

        /* The last one unsubscribes. */
        ASSERT_OK(redis_unsubscribe(c.redis, "chat:a"));
        wait_receivers(&c, "chat:a", 0);
        c.n_messages = 0;
        ASSERT_INT_EQ(publish(&c, "chat:a", "gone"), 0);
        test_run_for(e, 50000);
        ASSERT_INT_EQ(c.n_messages, 0);

        /* Patterns: the handler sees the real channel. */
        ASSERT_OK(redis_psubscribe(c.redis, "room:*"));
        for (unsigned i = 0; i < 100 && publish(&c, "room:7", "p") == 0; i++)
                test_run_for(e, 10000);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "room:7");
        ASSERT_OK(redis_punsubscribe(c.redis, "room:*"));

        /* Resubscribing right after the last unsubscribe keeps it. */
        ASSERT_OK(redis_subscribe(c.redis, "chat:b"));
        wait_receivers(&c, "chat:b", 1);
        ASSERT_OK(redis_unsubscribe(c.redis, "chat:b"));
        ASSERT_OK(redis_subscribe(c.redis, "chat:b"));
        test_run_for(e, 50000);
        wait_receivers(&c, "chat:b", 1);

        c.redis = redis_free(c.redis);
}

static void test_eval(TestRedis *srv, sd_event *e) {
        RedisScript s, counter;
        const char *argv[] = { "key", "arg\0x", "two" };
        const size_t argvlen[] = { 3, 5, 3 };
        TestReply a;
        Counter k = { .in_order = true };
        uint64_t t;
        Ctx c;

        redis_script_init(&s, "return {KEYS[1], ARGV[1], ARGV[2], tostring(#ARGV[1])}");
        ctx_open_server(&c, e, srv);

        /* Our SHA-1 is Redis' name for the script. */
        COMMAND(&c, &a, "SCRIPT", "LOAD", s.source);
        ASSERT_STREQ(a.str, s.sha1);

        /* Unknown script: NOSCRIPT is handled inside, the caller sees the result. */
        COMMAND(&c, &a, "SCRIPT", "FLUSH");
        a = (TestReply) {};
        ASSERT_OK(redis_eval(c.redis, &s, on_reply, &a, 1, 2, argv, argvlen));
        ASSERT_TRUE(test_run_until(e, reply_done, &a, 5 * SEC));
        ASSERT_INT_EQ(a.calls, 1);
        ASSERT_INT_EQ(a.type, REDIS_REPLY_ARRAY);
        ASSERT_INT_EQ(a.elements, 4);
        ASSERT_STREQ(a.element[0], "key");
        ASSERT_STREQ(a.element[1], "arg");        /* binary-safe: ... */
        ASSERT_STREQ(a.element[3], "5");          /* ... all 5 bytes arrived */
        ASSERT_STREQ(a.element[2], "two");

        /* EVAL cached it: now EVALSHA answers directly. */
        COMMAND(&c, &a, "SCRIPT", "EXISTS", s.sha1);
        ASSERT_INT_EQ(a.elements, 1);
        ASSERT_INT_EQ(a.element_int[0], 1);
        a = (TestReply) {};
        ASSERT_OK(redis_eval(c.redis, &s, on_reply, &a, 1, 2, argv, argvlen));
        ASSERT_TRUE(test_run_until(e, reply_done, &a, 5 * SEC));
        ASSERT_STREQ(a.element[2], "two");

        /* A failing script is an error reply, not a fallback loop. */
        redis_script_init(&counter, "return redis.call('INCR', KEYS[1])");
        COMMAND(&c, &a, "SET", "str", "x");
        a = (TestReply) {};
        ASSERT_OK(redis_eval(c.redis, &counter, on_reply, &a, 1, 0, (const char *[]) { "str" }, NULL));
        ASSERT_TRUE(test_run_until(e, reply_done, &a, 5 * SEC));
        ASSERT_INT_EQ(a.type, REDIS_REPLY_ERROR);

        /* 10000 pipelined after a flush: every one falls back, in order per key. */
        COMMAND(&c, &a, "DEL", "n");
        COMMAND(&c, &a, "SCRIPT", "FLUSH");
        t = test_now_usec();
        for (unsigned i = 0; i < 10000; i++)
                ASSERT_OK(redis_eval(c.redis, &counter, on_incr, &k, 1, 0, (const char *[]) { "n" }, NULL));
        ASSERT_TRUE(test_run_until(e, counter_done, &k, 10 * SEC));
        ASSERT_TRUE(k.in_order);
        ASSERT_INT_EQ(k.last, 10000);
        printf("redis: 10000 pipelined EVALSHA→EVAL fallbacks in %.1f ms\n", (test_now_usec() - t) / 1000.0);
        k = (Counter) { .in_order = true, .last = 10000 };
        t = test_now_usec();
        for (unsigned i = 0; i < 10000; i++)
                ASSERT_OK(redis_eval(c.redis, &counter, on_incr, &k, 1, 0, (const char *[]) { "n" }, NULL));
        ASSERT_TRUE(test_run_until(e, counter_done, &k, 10 * SEC));
        ASSERT_TRUE(k.in_order);
        t = test_now_usec() - t;
        printf("redis: 10000 pipelined EVALSHA in %.1f ms = %.0f/s\n", t / 1000.0, 1e10 / (double) t);

        ASSERT_ERROR(redis_eval(c.redis, &s, NULL, NULL, -1, 0, NULL, NULL), EINVAL);
        ASSERT_ERROR(redis_eval(c.redis, &s, NULL, NULL, 1, 0, NULL, NULL), EINVAL);
        c.redis = redis_free(c.redis);
}

/* Keys in two slots are refused before anything is sent, on one Redis as
 * on a cluster; keys that share a hash tag run. */
static void test_eval_slots(TestRedis *srv, sd_event *e) {
        RedisScript s;
        const char *same[] = { "mc:{r1}:a", "mc:{r1}:b", "x" };
        const char *cross[] = { "mc:{r1}:a", "mc:{r2}:a" };
        const size_t crosslen[] = { 9, 9 };
        const char *binary[] = { "{a}\0", "{a\0}" };
        const size_t binarylen[] = { 4, 4 };
        char url[192];
        TestReply a = {};
        Ctx c;

        redis_script_init(&s, "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('SET', KEYS[2], ARGV[1])");
        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        ctx_open(&c, e, url);

        ASSERT_OK(redis_eval(c.redis, &s, on_reply, &a, 2, 1, same, NULL));
        ASSERT_TRUE(test_run_until(e, reply_done, &a, 5 * SEC));
        ASSERT_INT_EQ(a.type, REDIS_REPLY_STATUS);
        ASSERT_INT_EQ(test_redis_integer(srv, "EXISTS mc:{r1}:a mc:{r1}:b"), 2);

        /* Without keys there is no slot to disagree on. */
        a = (TestReply) {};
        ASSERT_OK(redis_eval(c.redis, &s, on_reply, &a, 0, 2, same, NULL));
        ASSERT_TRUE(test_run_until(e, reply_done, &a, 5 * SEC));
        ASSERT_INT_EQ(a.type, REDIS_REPLY_ERROR);       /* the script wants keys */

        ASSERT_ERROR(redis_eval(c.redis, &s, on_reply, &a, 2, 0, cross, NULL), EXDEV);
        ASSERT_ERROR(redis_eval(c.redis, &s, on_reply, &a, 2, 0, cross, crosslen), EXDEV);
        /* The lengths count: "{a\0}" has the tag "a\0", not "a". */
        ASSERT_ERROR(redis_eval(c.redis, &s, on_reply, &a, 2, 0, binary, binarylen), EXDEV);
        ASSERT_ERROR(redis_eval(c.redis, &s, on_reply, &a, 2, 0, (const char *[]) { "k", NULL }, NULL), EINVAL);
        ASSERT_INT_EQ(test_redis_integer(srv, "EXISTS mc:{r2}:a"), 0);
        test_run_for(e, 100000);
        ASSERT_INT_EQ(a.calls, 1);

        /* Also while disconnected: the layout is wrong whatever the state. */
        c.redis = redis_free(c.redis);
        ASSERT_OK(redis_new(&c.redis, e, url, on_state, on_message, &c));
        ASSERT_ERROR(redis_eval(c.redis, &s, on_reply, &a, 2, 0, cross, NULL), EXDEV);
        ASSERT_ERROR(redis_eval(c.redis, &s, on_reply, &a, 2, 1, same, NULL), ENOTCONN);
        c.redis = redis_free(c.redis);
        ASSERT_INT_EQ(a.calls, 1);
}

#define N_PENDING 1001

typedef struct Pending {
        unsigned calls[N_PENDING];
        unsigned n_null, n_reply;
        bool connected_in_null;         /* a NULL handler saw redis_is_connected() */
        Redis *redis;
} Pending;

typedef struct Slot {
        Pending *p;
        unsigned i;
} Slot;

static void on_pending(Redis *r, const redisReply *reply, void *userdata) {
        Slot *s = userdata;

        s->p->calls[s->i]++;
        if (reply)
                s->p->n_reply++;
        else {
                s->p->n_null++;
                if (redis_is_connected(r))
                        s->p->connected_in_null = true;
        }
}

static bool all_answered(const void *arg) {
        const Pending *p = arg;
        return p->n_null + p->n_reply == N_PENDING;
}

static bool first_called(const void *arg) {
        return ((const Pending *) arg)->calls[0] > 0;
}

/* Sends INCRs into slots [from, to) and, when last, a BLPOP that a live
 * Redis never answers into the final slot. */
static void send_range(Ctx *c, Pending *p, Slot *slots, unsigned from, unsigned to, bool last) {
        static const char *const incr[] = { "INCR", "p" };

        for (unsigned i = from; i < to; i++) {
                slots[i] = (Slot) { p, i };
                ASSERT_OK(redis_command_argv(c->redis, on_pending, &slots[i], 2, (const char **) incr, NULL));
        }
        if (last) {
                slots[N_PENDING - 1] = (Slot) { p, N_PENDING - 1 };
                ASSERT_OK(redis_command(c->redis, on_pending, &slots[N_PENDING - 1], "BLPOP nolist 0"));
        }
}

static void send_pending(Ctx *c, Pending *p, Slot *slots) {
        *p = (Pending) { .redis = c->redis };
        send_range(c, p, slots, 0, N_PENDING - 1, true);
}

static bool some_answered(const void *arg) {
        return ((const Pending *) arg)->n_reply > 0;
}

static void assert_each_once(const Pending *p) {
        for (unsigned i = 0; i < N_PENDING; i++)
                ASSERT_INT_EQ(p->calls[i], 1);
}

static void test_kill_restart(TestRedis *srv, sd_event *e) {
        static Slot slots[N_PENDING];
        static Pending p;
        uint64_t t;
        Ctx c;

        ctx_open_server(&c, e, srv);
        ASSERT_OK(redis_subscribe(c.redis, "chat:k"));
        ASSERT_OK(redis_psubscribe(c.redis, "kp:*"));
        wait_receivers(&c, "chat:k", 1);

        /* Mid-stream: some replies in, then the server dies while more
         * commands are on their way out that we think are fine. */
        p = (Pending) { .redis = c.redis };
        send_range(&c, &p, slots, 0, 500, false);
        ASSERT_TRUE(test_run_until(e, some_answered, &p, 5 * SEC));
        test_redis_kill(srv);
        ASSERT_TRUE(redis_is_connected(c.redis));       /* not noticed yet */
        send_range(&c, &p, slots, 500, N_PENDING - 1, true);
        ASSERT_TRUE(test_run_until(e, all_answered, &p, 5 * SEC));
        ASSERT_TRUE(p.n_null >= 1);
        ASSERT_FALSE(p.connected_in_null);
        assert_each_once(&p);
        ASSERT_INT_EQ(c.n_down, 1);
        ASSERT_FALSE(redis_is_connected(c.redis));
        ASSERT_ERROR(redis_command(c.redis, on_must_not_run, NULL, "PING"), ENOTCONN);
        ASSERT_TRUE(strlen(redis_last_error(c.redis)) > 0);
        printf("redis: killed mid-stream: %u replies, %u NULL; last error \"%s\"\n",
               p.n_reply, p.n_null, redis_last_error(c.redis));

        /* Down for a while: retries back off, nothing is reported twice. */
        test_run_for(e, 1500000);
        ASSERT_INT_EQ(c.n_down, 1);
        ASSERT_INT_EQ(c.n_up, 1);

        ASSERT_OK(test_redis_start(srv));
        t = test_now_usec();
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        printf("redis: reconnected %.0f ms after the restart\n", (test_now_usec() - t) / 1000.0);
        ASSERT_INT_EQ(c.n_up, 2);

        /* Resubscribed before reporting up: messages flow at once. */
        c.n_messages = 0;
        ASSERT_INT_EQ(publish(&c, "chat:k", "back"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "chat:k");
        c.n_messages = 0;
        ASSERT_INT_EQ(publish(&c, "kp:1", "back"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "kp:1");

        c.redis = redis_free(c.redis);
}

static void test_timeout(TestRedis *srv, sd_event *e) {
        static Slot slots[N_PENDING];
        static Pending p;
        char url[192];
        uint64_t t;
        TestReply a;
        Ctx c;

        snprintf(url, sizeof(url), "unix:%s", srv->sock);

        /* A Redis that stops answering but keeps the socket open (like a
         * half-open TCP connection): only the command timeout notices. */
        ctx_open_timeouts(&c, e, url, 1 * SEC, 60 * SEC);
        ASSERT_INT_EQ(kill(srv->pid, SIGSTOP), 0);
        t = test_now_usec();
        send_pending(&c, &p, slots);
        ASSERT_TRUE(test_run_until(e, is_down, &c, 10 * SEC));
        t = test_now_usec() - t;
        printf("redis: stopped server noticed after %.0f ms (command timeout 1000 ms)\n", t / 1000.0);
        ASSERT_TRUE(t >= 1 * SEC - 50000);
        ASSERT_TRUE(t < 2 * SEC);
        ASSERT_TRUE(all_answered(&p));
        ASSERT_INT_EQ(p.n_null, N_PENDING);
        assert_each_once(&p);

        ASSERT_INT_EQ(kill(srv->pid, SIGCONT), 0);
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        ASSERT_INT_EQ(c.n_up, 2);
        c.redis = redis_free(c.redis);

        /* Idle connections are probed: the subscriber's shows as active... */
        ctx_open_timeouts(&c, e, url, 500000, 300000);
        test_run_for(e, 2200000);
        COMMAND(&c, &a, "CLIENT", "LIST", "TYPE", "pubsub");
        /* Redis counts idle time in whole seconds of a cached clock, so a
         * probe 300 ms ago may read 1; unprobed it would be 2 by now. */
        ASSERT_TRUE(strstr(a.str, " idle=0 ") || strstr(a.str, " idle=1 "));
        ASSERT_NOT_NULL(strstr(a.str, " sub=1 "));     /* just the probe channel */

        /* ... and a Redis that vanishes while nothing is pending is noticed. */
        ASSERT_INT_EQ(kill(srv->pid, SIGSTOP), 0);
        t = test_now_usec();
        ASSERT_TRUE(test_run_until(e, is_down, &c, 10 * SEC));
        t = test_now_usec() - t;
        printf("redis: stopped server noticed after %.0f ms while idle (ping 300 ms, timeout 500 ms)\n",
               t / 1000.0);
        ASSERT_TRUE(t < 1500000);
        ASSERT_INT_EQ(kill(srv->pid, SIGCONT), 0);
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        c.redis = redis_free(c.redis);
}

static void on_free_in_handler(Redis *r, const redisReply *reply, void *userdata) {
        Slot *s = userdata;

        on_pending(r, reply, userdata);
        if (s->i == 0) {
                /* Everything else still pending gets NULL before this returns. */
                ASSERT_NOT_NULL(reply);
                ASSERT_NULL(redis_free(r));
                ASSERT_INT_EQ(s->p->n_null + s->p->n_reply, 3);
        }
}

static void test_free_pending(TestRedis *srv, sd_event *e) {
        static Slot slots[N_PENDING];
        static Pending p;
        Ctx c;

        /* Freed from outside: all handlers get NULL before redis_free() returns. */
        ctx_open_server(&c, e, srv);
        ASSERT_OK(redis_subscribe(c.redis, "chat:f"));
        send_pending(&c, &p, slots);
        c.redis = redis_free(c.redis);
        ASSERT_INT_EQ(p.n_null, N_PENDING);
        assert_each_once(&p);
        test_run_for(e, 100000);
        assert_each_once(&p);

        /* Freed from inside a reply handler with more pending. */
        ctx_open_server(&c, e, srv);
        p = (Pending) {};
        for (unsigned i = 0; i < 3; i++) {
                slots[i] = (Slot) { &p, i };
                ASSERT_OK(redis_command(c.redis, on_free_in_handler, &slots[i], i < 2 ? "PING" : "BLPOP nolist 0"));
        }
        ASSERT_TRUE(test_run_until(e, first_called, &p, 5 * SEC));
        test_run_for(e, 100000);
        ASSERT_INT_EQ(p.n_reply, 1);
        ASSERT_INT_EQ(p.n_null, 2);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_INT_EQ(p.calls[i], 1);

        /* Freed from the state handler when the server dies. */
        ctx_open_server(&c, e, srv);
        c.free_on_down = true;
        p = (Pending) {};
        slots[0] = (Slot) { &p, 0 };
        ASSERT_OK(redis_command(c.redis, on_pending, &slots[0], "BLPOP nolist 0"));
        test_run_for(e, 50000);
        test_redis_kill(srv);
        ASSERT_TRUE(test_run_until(e, first_called, &p, 5 * SEC));
        ASSERT_NULL(c.redis);
        ASSERT_INT_EQ(p.n_null, 1);
        test_run_for(e, 100000);
        ASSERT_INT_EQ(p.calls[0], 1);
        ASSERT_OK(test_redis_start(srv));

        /* Freed from the message handler. */
        ctx_open_server(&c, e, srv);
        ASSERT_OK(redis_subscribe(c.redis, "chat:m"));
        wait_receivers(&c, "chat:m", 1);
        c.free_on_message = true;
        ASSERT_INT_EQ(publish(&c, "chat:m", "x"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_NULL(c.redis);
        test_run_for(e, 100000);
        ASSERT_INT_EQ(c.n_messages, 1);
}

static void test_refused_at_start(sd_event *e) {
        TestRedis later = {};
        char url[192];
        uint64_t t;
        Ctx c = { .event = e };

        ASSERT_OK(test_redis_init(&later, "later.sock"));
        snprintf(url, sizeof(url), "unix:%s", later.sock);
        ASSERT_OK(redis_new(&c.redis, e, url, on_state, on_message, &c));
        ASSERT_OK(redis_subscribe(c.redis, "early"));
        ASSERT_OK(redis_start(c.redis));
        test_run_for(e, 500000);
        ASSERT_FALSE(redis_is_connected(c.redis));
        ASSERT_INT_EQ(c.n_up + c.n_down, 0);
        ASSERT_ERROR(redis_command(c.redis, NULL, NULL, "PING"), ENOTCONN);
        ASSERT_TRUE(strlen(redis_last_error(c.redis)) > 0);

        ASSERT_OK(test_redis_start(&later));
        t = test_now_usec();
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        printf("redis: connected %.0f ms after the server came up (was refused at start)\n",
               (test_now_usec() - t) / 1000.0);
        ASSERT_INT_EQ(publish(&c, "early", "hi"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));

        c.redis = redis_free(c.redis);
        ASSERT_OK(test_redis_cleanup(&later));
}

static void redis_context_freep(redisContext **rc) {
        if (*rc)
                redisFree(*rc);
}

static void test_slow_subscriber(TestRedis *srv, sd_event *e) {
        _cleanup_(redis_context_freep) redisContext *rc = NULL;
        char url[192], *big;
        redisReply *rep;
        Ctx c;

        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        ctx_open(&c, e, url);
        ASSERT_OK(redis_subscribe(c.redis, "flood"));
        wait_receivers(&c, "flood", 1);

        /* While our loop does not run, a flood overflows Redis' output
         * buffer for the subscriber, and Redis drops it. */
        rc = redisConnectUnix(srv->sock);
        ASSERT_TRUE(rc && !rc->err);
        rep = redisCommand(rc, "CONFIG SET client-output-buffer-limit %s", "pubsub 64kb 32kb 1");
        ASSERT_TRUE(rep && rep->type == REDIS_REPLY_STATUS);
        freeReplyObject(rep);
        big = malloc(16384);
        ASSERT_NOT_NULL(big);
        memset(big, 'f', 16384);
        for (unsigned i = 0; i < 400; i++) {
                rep = redisCommand(rc, "PUBLISH flood %b", big, (size_t) 16384);
                ASSERT_NOT_NULL(rep);
                freeReplyObject(rep);
        }
        free(big);

        ASSERT_TRUE(test_run_until(e, is_down, &c, 5 * SEC));
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        ASSERT_INT_EQ(c.n_down, 1);
        ASSERT_INT_EQ(c.n_up, 2);
        c.n_messages = 0;
        ASSERT_INT_EQ(publish(&c, "flood", "ok"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "flood");

        rep = redisCommand(rc, "CONFIG SET client-output-buffer-limit %s", "pubsub 32mb 8mb 60");
        freeReplyObject(rep);
        c.redis = redis_free(c.redis);
}

typedef struct Barrier {
        unsigned calls, n_ok;
        unsigned messages_then;         /* messages received when it was confirmed */
        Ctx *ctx;
} Barrier;

static void on_barrier(Redis *r, bool ok, void *userdata) {
        Barrier *b = userdata;

        b->calls++;
        b->n_ok += ok;
        b->messages_then = b->ctx->n_messages;
}

static bool barrier_done(const void *p) {
        return ((const Barrier *) p)->calls > 0;
}

static bool all_messages(const void *p) {
        return ((const Ctx *) p)->n_messages >= 400;
}

/* Publishes 400 messages of 1 KiB on "backlog" while our loop does not run. */
static void publish_backlog(redisContext *rc) {
        char text[1024];
        redisReply *rep;

        memset(text, 'b', sizeof(text));
        for (unsigned i = 0; i < 400; i++)
                ASSERT_INT_EQ(redisAppendCommand(rc, "PUBLISH backlog %b", text, sizeof(text)), REDIS_OK);
        for (unsigned i = 0; i < 400; i++) {
                ASSERT_INT_EQ(redisGetReply(rc, (void **) &rep), REDIS_OK);
                ASSERT_INT_EQ(rep->type, REDIS_REPLY_INTEGER);
                ASSERT_INT_EQ(rep->integer, 1);
                freeReplyObject(rep);
        }
}

/* A subscriber that is slow to read a backlog (a busy daemon) gets its
 * probe answered only behind it, later than the command timeout: that is
 * no reason to drop the connection, and with it the backlog. */
static void test_backlog_is_life(TestRedis *srv, sd_event *e) {
        _cleanup_(redis_context_freep) redisContext *rc = NULL;
        Barrier b = {};
        char url[192];
        uint64_t t;
        Ctx c;

        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        rc = redisConnectUnix(srv->sock);
        ASSERT_TRUE(rc && !rc->err);

        /* 400 messages at 2.5 ms each: 1 s of reading, timeout 300 ms. The
         * loop sleeps past the ping interval first, so the idle probe goes
         * out behind the whole backlog. */
        ctx_open_timeouts(&c, e, url, 300000, 200000);
        ASSERT_OK(redis_subscribe(c.redis, "backlog"));
        wait_receivers(&c, "backlog", 1);
        publish_backlog(rc);
        usleep(400000);
        c.slow_usec = 2500;
        t = test_now_usec();
        ASSERT_TRUE(test_run_until(e, all_messages, &c, 10 * SEC));
        printf("redis: a backlog of 400 messages read in %.0f ms (command timeout 300 ms)\n",
               (test_now_usec() - t) / 1000.0);
        ASSERT_INT_EQ(c.n_messages, 400);
        ASSERT_INT_EQ(c.n_down, 0);
        ASSERT_TRUE(redis_is_connected(c.redis));

        /* The same behind a barrier: it is confirmed after the backlog. */
        c.n_messages = 0;
        b.ctx = &c;
        publish_backlog(rc);
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &b));
        ASSERT_TRUE(test_run_until(e, barrier_done, &b, 10 * SEC));
        ASSERT_INT_EQ(b.calls, 1);
        ASSERT_INT_EQ(b.n_ok, 1);
        ASSERT_INT_EQ(b.messages_then, 400);
        ASSERT_INT_EQ(c.n_down, 0);

        /* A loop that stalls longer than the timeout in one handler, with a
         * probe out and the rest of the backlog unread in the socket: late
         * is our fault, not Redis'. */
        c.n_messages = 0;
        c.slow_usec = 0;
        c.stall_once_usec = 600000;
        b = (Barrier) { .ctx = &c };
        publish_backlog(rc);
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &b));
        ASSERT_TRUE(test_run_until(e, barrier_done, &b, 10 * SEC));
        ASSERT_INT_EQ(b.n_ok, 1);
        ASSERT_INT_EQ(c.n_messages, 400);
        ASSERT_INT_EQ(c.n_down, 0);

        /* Still, a Redis that stops sending anything is dropped, backlog or not. */
        c.slow_usec = 2500;
        publish_backlog(rc);
        b = (Barrier) { .ctx = &c };
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &b));
        test_run_for(e, 20000);
        ASSERT_INT_EQ(kill(srv->pid, SIGSTOP), 0);
        t = test_now_usec();
        ASSERT_TRUE(test_run_until(e, barrier_done, &b, 10 * SEC));
        t = test_now_usec() - t;
        ASSERT_INT_EQ(kill(srv->pid, SIGCONT), 0);
        printf("redis: stopped server noticed by the subscriber behind a backlog after %.0f ms\n", t / 1000.0);
        ASSERT_TRUE(t < 3 * SEC);
        ASSERT_INT_EQ(b.calls, 1);
        ASSERT_INT_EQ(b.n_ok, 0);
        c.slow_usec = 0;
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        c.redis = redis_free(c.redis);
}

typedef struct SlowReplies {
        unsigned n_reply, n_null;
} SlowReplies;

static void on_slow_reply(Redis *r, const redisReply *reply, void *userdata) {
        SlowReplies *s = userdata;

        if (reply)
                s->n_reply++;
        else
                s->n_null++;
        usleep(2500);
}

static bool slow_replies_done(const void *p) {
        const SlowReplies *s = p;
        return s->n_reply + s->n_null >= 400;
}

/* The same on the command connection: 400 pipelined commands whose replies
 * we handle slowly. The last ones are answered long after the timeout, but
 * replies arrive all the while. */
static void test_slow_replies(TestRedis *srv, sd_event *e) {
        SlowReplies s = {};
        char url[192], text[1024];
        Ctx c;

        /* 1 KiB each, so that they take many reads. */
        memset(text, 'r', sizeof(text));
        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        ctx_open_timeouts(&c, e, url, 300000, 200000);
        for (unsigned i = 0; i < 400; i++)
                ASSERT_OK(redis_command(c.redis, on_slow_reply, &s, "ECHO %b", text, sizeof(text)));
        ASSERT_TRUE(test_run_until(e, slow_replies_done, &s, 10 * SEC));
        ASSERT_INT_EQ(s.n_reply, 400);
        ASSERT_INT_EQ(s.n_null, 0);
        ASSERT_INT_EQ(c.n_down, 0);
        c.redis = redis_free(c.redis);
}

static void test_barrier(TestRedis *srv, sd_event *e) {
        Barrier b = {}, b2 = {};
        char url[192];
        Ctx c = { .event = e };

        snprintf(url, sizeof(url), "unix:%s", srv->sock);

        /* Down: refused, the handler never runs. */
        ASSERT_OK(redis_new(&c.redis, e, url, on_state, on_message, &c));
        ASSERT_ERROR(redis_subscriber_barrier(c.redis, on_barrier, &b), ENOTCONN);
        ASSERT_ERROR(redis_subscriber_barrier(c.redis, NULL, &b), EINVAL);
        c.redis = redis_free(c.redis);
        ASSERT_INT_EQ(b.calls, 0);

        /* Once confirmed, the SUBSCRIBE sent before it is in effect: a
         * message published right then arrives. */
        ctx_open(&c, e, url);
        b.ctx = &c;
        ASSERT_OK(redis_subscribe(c.redis, "after-barrier"));
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &b));
        ASSERT_TRUE(test_run_until(e, barrier_done, &b, 5 * SEC));
        ASSERT_INT_EQ(b.n_ok, 1);
        ASSERT_INT_EQ(test_redis_integer(srv, "PUBLISH after-barrier now"), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "after-barrier");

        /* Lost with the connection: called once, not ok; and once more
         * not ok when redis_free() runs with one pending. */
        b = (Barrier) { .ctx = &c };
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &b));
        test_redis_kill(srv);
        ASSERT_TRUE(test_run_until(e, barrier_done, &b, 5 * SEC));
        ASSERT_INT_EQ(b.calls, 1);
        ASSERT_INT_EQ(b.n_ok, 0);
        ASSERT_OK(test_redis_start(srv));
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        b2.ctx = &c;
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &b2));
        c.redis = redis_free(c.redis);
        ASSERT_INT_EQ(b2.calls, 1);
        ASSERT_INT_EQ(b2.n_ok, 0);
        test_run_for(e, 100000);
        ASSERT_INT_EQ(b.calls, 1);
        ASSERT_INT_EQ(b2.calls, 1);
}

static bool got_messages_2(const void *p) {
        return ((const Ctx *) p)->n_messages >= 2;
}

static void barrier_sync(Ctx *c) {
        Barrier b = { .ctx = c };

        ASSERT_OK(redis_subscriber_barrier(c->redis, on_barrier, &b));
        ASSERT_TRUE(test_run_until(c->event, barrier_done, &b, 5 * SEC));
        ASSERT_INT_EQ(b.n_ok, 1);
}

/* Sharded pub/sub on one Redis: SPUBLISH reaches SSUBSCRIBE, the barrier
 * covers it, and it survives a restart of Redis. */
static void test_sharded_pubsub(TestRedis *srv, sd_event *e) {
        char url[192], longname[REDIS_CHANNEL_MAX + 2];
        Ctx c = { .event = e };

        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        ASSERT_OK(redis_new(&c.redis, e, url, on_state, on_message, &c));
        /* Before the start: sent with the setup. */
        ASSERT_OK(redis_ssubscribe(c.redis, "mc:{r1}:ch"));
        ASSERT_OK(redis_start(c.redis));
        ASSERT_TRUE(test_run_until(e, is_up, &c, 5 * SEC));
        ASSERT_OK(redis_ssubscribe(c.redis, "mc:{r1}:ch"));
        ASSERT_OK(redis_subscribe(c.redis, "classic"));
        barrier_sync(&c);

        ASSERT_INT_EQ(test_redis_integer(srv, "SPUBLISH mc:{r1}:ch %b", "hi\0there", (size_t) 8), 1);
        ASSERT_TRUE(test_run_until(e, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "mc:{r1}:ch");
        ASSERT_INT_EQ(c.len, 8);
        ASSERT_TRUE(memcmp(c.data, "hi\0there", 8) == 0);

        /* A sharded channel is not the classic channel of the same name. */
        ASSERT_INT_EQ(test_redis_integer(srv, "PUBLISH mc:{r1}:ch x"), 0);
        ASSERT_INT_EQ(test_redis_integer(srv, "SPUBLISH classic x"), 0);
        ASSERT_ERROR(redis_unsubscribe(c.redis, "mc:{r1}:ch"), ENOENT);
        ASSERT_ERROR(redis_sunsubscribe(c.redis, "classic"), ENOENT);

        /* Classic and sharded messages arrive on the one connection, in order. */
        c.n_messages = 0;
        ASSERT_INT_EQ(test_redis_integer(srv, "PUBLISH classic 1"), 1);
        ASSERT_INT_EQ(test_redis_integer(srv, "SPUBLISH mc:{r1}:ch 2"), 1);
        ASSERT_TRUE(test_run_until(e, got_messages_2, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "mc:{r1}:ch");
        ASSERT_INT_EQ(c.n_messages, 2);

        /* Counted: the first unsubscribe keeps it, the second ends it. */
        ASSERT_OK(redis_sunsubscribe(c.redis, "mc:{r1}:ch"));
        barrier_sync(&c);
        ASSERT_INT_EQ(test_redis_integer(srv, "SPUBLISH mc:{r1}:ch x"), 1);
        ASSERT_OK(redis_sunsubscribe(c.redis, "mc:{r1}:ch"));
        barrier_sync(&c);
        ASSERT_INT_EQ(test_redis_integer(srv, "SPUBLISH mc:{r1}:ch x"), 0);
        ASSERT_ERROR(redis_sunsubscribe(c.redis, "mc:{r1}:ch"), ENOENT);

        /* Bad names. */
        memset(longname, 'x', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        ASSERT_ERROR(redis_ssubscribe(c.redis, ""), EINVAL);
        ASSERT_ERROR(redis_ssubscribe(c.redis, NULL), EINVAL);
        ASSERT_ERROR(redis_ssubscribe(c.redis, longname), EINVAL);
        ASSERT_ERROR(redis_sunsubscribe(c.redis, NULL), EINVAL);

        /* Resubscribed after Redis restarted. */
        ASSERT_OK(redis_ssubscribe(c.redis, "mc:{r2}:ch"));
        barrier_sync(&c);
        test_redis_kill(srv);
        ASSERT_TRUE(test_run_until(e, is_down, &c, 5 * SEC));
        ASSERT_OK(test_redis_start(srv));
        ASSERT_TRUE(test_run_until(e, is_up, &c, 10 * SEC));
        barrier_sync(&c);
        c.n_messages = 0;
        ASSERT_INT_EQ(test_redis_integer(srv, "SPUBLISH mc:{r2}:ch back"), 1);
        ASSERT_INT_EQ(test_redis_integer(srv, "PUBLISH classic back"), 1);
        ASSERT_TRUE(test_run_until(e, got_messages_2, &c, 5 * SEC));

        c.redis = redis_free(c.redis);
}

/* A subscriber connection whose subscription Redis refuses (here an ACL
 * without the channel; a Redis before 7 refuses SSUBSCRIBE alike) never
 * counts as up, and says why. */
static void test_subscription_refused(TestRedis *srv, sd_event *e) {
        RedisOptions o = { .user = "nochan", .password = "pw" };
        char url[192];
        Ctx c = { .event = e };

        /* Only the probe's channel is allowed: what is refused is the SSUBSCRIBE. */
        freeReplyObject(test_redis_command(srv, "ACL SETUSER nochan on >pw ~* +@all resetchannels &__multichat:redis-probe__"));
        snprintf(url, sizeof(url), "unix:%s", srv->sock);
        o.url = url;
        ASSERT_OK(redis_new_with_options(&c.redis, e, &o, on_state, on_message, &c));
        ASSERT_OK(redis_ssubscribe(c.redis, "mc:{r1}:ch"));
        ASSERT_OK(redis_start(c.redis));
        test_run_for(e, 500000);
        ASSERT_INT_EQ(c.n_up, 0);
        ASSERT_TRUE(strstr(redis_last_error(c.redis), "NOPERM"));
        c.redis = redis_free(c.redis);
        freeReplyObject(test_redis_command(srv, "ACL DELUSER nochan"));
}

static void test_tcp(sd_event *e) {
        TestRedis tcp = {};
        char url[320], host[256];
        struct addrinfo *ai = NULL, hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
        TestReply a;
        Ctx c;

        ASSERT_OK(test_redis_init(&tcp, "tcp.sock"));
        tcp.port = test_free_tcp_port();
        ASSERT_OK(test_redis_start(&tcp));

        snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", tcp.port);
        ctx_open(&c, e, url);
        COMMAND(&c, &a, "CLIENT", "INFO");
        ASSERT_NOT_NULL(strstr(a.str, " db=2 "));
        c.redis = redis_free(c.redis);

        snprintf(url, sizeof(url), "redis://localhost:%d", tcp.port);
        ctx_open(&c, e, url);
        c.redis = redis_free(c.redis);

        /* A name goes through the resolver thread. */
        ASSERT_INT_EQ(gethostname(host, sizeof(host) - 1), 0);
        host[sizeof(host) - 1] = '\0';
        if (getaddrinfo(host, NULL, &hints, &ai) == 0 &&
            (ntohl(((struct sockaddr_in *) ai->ai_addr)->sin_addr.s_addr) >> 24) == 127) {
                snprintf(url, sizeof(url), "redis://%s:%d", host, tcp.port);
                ctx_open(&c, e, url);
                printf("redis: connected by name to %s\n", url);
                c.redis = redis_free(c.redis);
        } else
                printf("redis: skipping the by-name test: %s does not resolve to 127.x\n", host);
        if (ai)
                freeaddrinfo(ai);

        /* A TCP port nobody listens on: refused, retried, never up. */
        test_redis_kill(&tcp);
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tcp.port);
        ASSERT_OK(redis_new(&c.redis, e, url, on_state, on_message, &c));
        ASSERT_OK(redis_start(c.redis));
        test_run_for(e, 400000);
        ASSERT_FALSE(redis_is_connected(c.redis));
        ASSERT_TRUE(strlen(redis_last_error(c.redis)) > 0);
        c.redis = redis_free(c.redis);

        ASSERT_OK(test_redis_cleanup(&tcp));
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TestRedis srv;

        test_sha1();
        test_redis_init_or_skip(&srv, "redis.sock");
        ASSERT_OK(sd_event_new(&e));
        test_url(e);

        ASSERT_OK(test_redis_start(&srv));

        test_commands(&srv, e);
        test_pipeline(&srv, e);
        test_pubsub(&srv, e);
        test_eval(&srv, e);
        test_eval_slots(&srv, e);
        test_free_pending(&srv, e);
        test_kill_restart(&srv, e);
        test_slow_subscriber(&srv, e);
        test_barrier(&srv, e);
        test_sharded_pubsub(&srv, e);
        test_subscription_refused(&srv, e);
        test_backlog_is_life(&srv, e);
        test_slow_replies(&srv, e);
        test_refused_at_start(e);
        test_tcp(e);
        test_timeout(&srv, e);

        ASSERT_OK(test_redis_cleanup(&srv));
        return 0;
}
