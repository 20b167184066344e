/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the Redis client's credentials, ROLE and READONLY checks and Sentinel failover, against real servers. */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis.h"
#include "redis/sentinel.h"
#include "test/test-redis-client.h"
#include "test/test-redis-server.h"
#include "test/test.h"

#define N_SENTINELS 3

typedef struct Ctx {
        sd_event *event;
        Redis *redis;
        unsigned n_up, n_down, n_problems, n_switches;
        RedisProblem last_problem;
        unsigned replies;
        int reply_type;
        char reply_str[128];
        unsigned n_messages, n_barriers;
        char channel[64];
} Ctx;

static void on_state(Redis *r, bool connected, void *userdata) {
        Ctx *c = userdata;

        ASSERT_INT_EQ(redis_is_connected(r), connected);
        if (connected)
                c->n_up++;
        else
                c->n_down++;
}

static void on_event(Redis *r, RedisEvent event, void *userdata) {
        Ctx *c = userdata;

        if (event == REDIS_EVENT_MASTER_SWITCHED) {
                c->n_switches++;
                return;
        }
        c->n_problems++;
        c->last_problem = redis_problem(r);
        ASSERT_TRUE(c->last_problem != REDIS_PROBLEM_NONE);
}

static void on_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        Ctx *c = userdata;

        c->n_messages++;
        snprintf(c->channel, sizeof c->channel, "%s", channel);
}

static void on_barrier(Redis *r, bool ok, void *userdata) {
        Ctx *c = userdata;

        c->n_barriers += ok;
}

static bool got_message(const void *p) {
        const Ctx *c = p;
        return c->n_messages > 0;
}

static bool barrier_passed(const void *p) {
        const Ctx *c = p;
        return c->n_barriers > 0;
}

static void on_reply(Redis *r, const redisReply *reply, void *userdata) {
        Ctx *c = userdata;

        c->replies++;
        c->reply_type = reply ? reply->type : -1;
        snprintf(c->reply_str, sizeof c->reply_str, "%s", reply && reply->str ? reply->str : "");
}

static bool is_up(const void *p) {
        const Ctx *c = p;
        return redis_is_connected(c->redis);
}

static bool has_problem(const void *p) {
        const Ctx *c = p;
        return c->n_problems > 0;
}

static bool credentials_refused(const void *p) {
        const Ctx *c = p;
        return c->last_problem == REDIS_PROBLEM_CREDENTIALS;
}

static bool replied(const void *p) {
        const Ctx *c = p;
        return c->replies > 0;
}

static void ctx_open(Ctx *c, sd_event *e, RedisOptions *o) {
        *c = (Ctx) { .event = e };
        o->on_event = on_event;
        ASSERT_OK(redis_new_with_options(&c->redis, e, o, on_state, on_message, c));
        ASSERT_OK(redis_set_timeouts(c->redis, 2 * SEC, 1 * SEC));
        ASSERT_OK(redis_start(c->redis));
}

/* SET through the client; returns the reply type (-1: no answer). */
static int set_key(Ctx *c, const char *value) {
        c->replies = 0;
        if (redis_command(c->redis, on_reply, c, "SET mc:test %s", value) < 0)
                return -1;
        ASSERT_TRUE(test_run_until(c->event, replied, c, 5 * SEC));
        return c->reply_type;
}

static void server_start(TestRedis *s, const char *name, const char *const *args) {
        ASSERT_OK(test_redis_init(s, name));
        s->port = test_free_tcp_port();
        s->args = args;
        ASSERT_OK(test_redis_start(s));
}

static void url_of(const TestRedis *s, char *buf, size_t size) {
        snprintf(buf, size, "redis://127.0.0.1:%d", s->port);
}

/* ---- credentials ---- */

static void test_auth(sd_event *e) {
        static const char *const args[] = { "--user", "mc", "on", ">right", "~mc:*", "&*", "+@all", NULL };
        TestRedis srv;
        char url[64];
        unsigned n;
        Ctx c;

        server_start(&srv, "redis.sock", args);
        url_of(&srv, url, sizeof url);

        /* The right password: both connections work, pub/sub included. */
        ctx_open(&c, e, &(RedisOptions) { .url = url, .user = "mc", .password = "right" });
        ASSERT_OK(redis_subscribe(c.redis, "mc:ch"));
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 5 * SEC));
        ASSERT_INT_EQ(set_key(&c, "v"), REDIS_REPLY_STATUS);
        ASSERT_INT_EQ(redis_problem(c.redis), REDIS_PROBLEM_NONE);
        ASSERT_TRUE(redis_was_connected(c.redis));
        c.redis = redis_free(c.redis);

        /* A wrong password: never connected, one event however many retries. */
        ctx_open(&c, e, &(RedisOptions) { .url = url, .user = "mc", .password = "wrong" });
        ASSERT_TRUE(test_run_until(c.event, has_problem, &c, 5 * SEC));
        test_run_for(c.event, 1500 * 1000);
        ASSERT_INT_EQ(c.n_problems, 1);
        ASSERT_INT_EQ(c.last_problem, REDIS_PROBLEM_CREDENTIALS);
        ASSERT_INT_EQ(c.n_up, 0);
        ASSERT_FALSE(redis_was_connected(c.redis));
        ASSERT_TRUE(strstr(redis_last_error(c.redis), "WRONGPASS"));
        c.redis = redis_free(c.redis);

        /* A key outside the user's patterns: NOPERM to that command only; the connection stays. */
        ctx_open(&c, e, &(RedisOptions) { .url = url, .user = "mc", .password = "right" });
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 5 * SEC));
        c.replies = 0;
        ASSERT_OK(redis_command(c.redis, on_reply, &c, "SET other:key x"));
        ASSERT_TRUE(test_run_until(c.event, replied, &c, 5 * SEC));
        ASSERT_INT_EQ(c.reply_type, REDIS_REPLY_ERROR);
        ASSERT_TRUE(strncmp(c.reply_str, "NOPERM", 6) == 0);

        /* The password changed while up: the loss, then the refusal once, however many retries. */
        freeReplyObject(test_redis_command(&srv, "ACL SETUSER mc resetpass >other"));
        freeReplyObject(test_redis_command(&srv, "CLIENT KILL USER mc"));
        ASSERT_TRUE(test_run_until(c.event, credentials_refused, &c, 5 * SEC));
        ASSERT_TRUE(redis_was_connected(c.redis));
        n = c.n_problems;
        test_run_for(c.event, 1500 * 1000);
        ASSERT_INT_EQ(c.n_problems, n);
        ASSERT_FALSE(redis_is_connected(c.redis));
        c.redis = redis_free(c.redis);

        /* A user but no password is refused at once. */
        ASSERT_ERROR(redis_new_with_options(&c.redis, e, &(RedisOptions) { .url = url, .user = "mc" },
                                            NULL, NULL, NULL), EINVAL);
        ASSERT_OK(test_redis_cleanup(&srv));
}

/* requirepass: AUTH with the password alone. */
static void test_auth_password_only(sd_event *e) {
        static const char *const args[] = { "--requirepass", "s3cret", NULL };
        TestRedis srv;
        char url[64];
        Ctx c;

        ASSERT_OK(test_redis_init(&srv, "redis.sock"));
        srv.port = test_free_tcp_port();
        srv.args = args;
        ASSERT_OK(test_redis_start(&srv));
        url_of(&srv, url, sizeof url);

        ctx_open(&c, e, &(RedisOptions) { .url = url, .password = "s3cret" });
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 5 * SEC));
        ASSERT_INT_EQ(set_key(&c, "v"), REDIS_REPLY_STATUS);
        c.redis = redis_free(c.redis);

        ctx_open(&c, e, &(RedisOptions) { .url = url });
        ASSERT_TRUE(test_run_until(c.event, has_problem, &c, 5 * SEC));
        ASSERT_INT_EQ(c.last_problem, REDIS_PROBLEM_CREDENTIALS);
        ASSERT_TRUE(strstr(redis_last_error(c.redis), "NOAUTH"));
        c.redis = redis_free(c.redis);
        ASSERT_OK(test_redis_cleanup(&srv));
}

/* ---- a replica is refused ---- */

static void test_role_and_readonly(sd_event *e) {
        TestRedis a, b;
        char url_a[64], url_b[64], port_a[8], port_b[8];
        Ctx c;

        server_start(&a, "a.sock", NULL);
        snprintf(port_a, sizeof port_a, "%d", a.port);
        server_start(&b, "b.sock", (const char *const[]) { "--replicaof", "127.0.0.1", port_a, NULL });
        snprintf(port_b, sizeof port_b, "%d", b.port);
        url_of(&a, url_a, sizeof url_a);
        url_of(&b, url_b, sizeof url_b);

        /* ROLE: a replica never counts as connected. */
        ctx_open(&c, e, &(RedisOptions) { .url = url_b });
        ASSERT_TRUE(test_run_until(c.event, has_problem, &c, 5 * SEC));
        ASSERT_INT_EQ(c.last_problem, REDIS_PROBLEM_REPLICA);
        test_run_for(c.event, 1 * SEC);
        ASSERT_INT_EQ(c.n_up, 0);
        ASSERT_INT_EQ(c.n_problems, 1);
        ASSERT_TRUE(strstr(redis_last_error(c.redis), "replica"));

        /* Promoted: the retries find a master and connect. */
        freeReplyObject(test_redis_command(&b, "REPLICAOF NO ONE"));
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 5 * SEC));
        ASSERT_INT_EQ(redis_problem(c.redis), REDIS_PROBLEM_NONE);
        c.redis = redis_free(c.redis);

        /* READONLY: the master we use becomes a replica under us. */
        ctx_open(&c, e, &(RedisOptions) { .url = url_a });
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 5 * SEC));
        freeReplyObject(test_redis_command(&a, "REPLICAOF 127.0.0.1 %s", port_b));
        ASSERT_INT_EQ(set_key(&c, "v"), REDIS_REPLY_ERROR);
        ASSERT_TRUE(strncmp(c.reply_str, "READONLY", 8) == 0);
        ASSERT_TRUE(test_run_until(c.event, has_problem, &c, 1 * SEC));
        ASSERT_INT_EQ(c.last_problem, REDIS_PROBLEM_REPLICA);
        ASSERT_INT_EQ(c.n_down, 1);
        ASSERT_FALSE(redis_is_connected(c.redis));
        c.redis = redis_free(c.redis);

        ASSERT_OK(test_redis_cleanup(&a));
        ASSERT_OK(test_redis_cleanup(&b));
}

/* ---- Sentinel ---- */

typedef struct Cluster {
        TestRedis data[2];
        TestRedis sentinel[N_SENTINELS];
        char address[N_SENTINELS][32];
        char *addresses[N_SENTINELS + 1];
} Cluster;

static long long sentinel_count(TestRedis *s, const char *what) {
        redisReply *reply = test_redis_command(s, "SENTINEL %s mc", what);
        long long n = reply->type == REDIS_REPLY_ARRAY ? (long long) reply->elements : -1;

        freeReplyObject(reply);
        return n;
}

/* A master (data[0]), its replica and three sentinels that all know each
 * other and the replica; a failover then takes about two seconds. */
static void cluster_start(Cluster *cl, const char *user_args_password) {
        char port0[8];

        *cl = (Cluster) {};
        server_start(&cl->data[0], "m.sock", NULL);
        snprintf(port0, sizeof port0, "%d", cl->data[0].port);
        server_start(&cl->data[1], "r.sock",
                     (const char *const[]) { "--replicaof", "127.0.0.1", port0, "--replica-priority", "100", NULL });

        for (unsigned i = 0; i < N_SENTINELS; i++) {
                TestRedis *s = &cl->sentinel[i];
                FILE *f;
                char path[128];

                ASSERT_OK(test_redis_init(s, "unused"));
                s->port = test_free_tcp_port();
                s->sentinel = true;
                snprintf(path, sizeof path, "%s/sentinel.conf", s->dir);
                ASSERT_NOT_NULL(f = fopen(path, "we"));
                fprintf(f, "sentinel monitor mc 127.0.0.1 %d 2\n"
                        "sentinel down-after-milliseconds mc 1000\n"
                        "sentinel failover-timeout mc 4000\n", cl->data[0].port);
                if (user_args_password)
                        fprintf(f, "requirepass %s\n", user_args_password);
                ASSERT_TRUE(fclose(f) == 0);
                ASSERT_OK(test_redis_start(s));
                s->password = user_args_password;
                snprintf(cl->address[i], sizeof cl->address[i], "127.0.0.1:%d", s->port);
                cl->addresses[i] = cl->address[i];
        }

        for (unsigned tries = 0;; tries++) {
                bool ready = true;

                for (unsigned i = 0; i < N_SENTINELS; i++)
                        ready = ready && sentinel_count(&cl->sentinel[i], "replicas") == 1 &&
                                sentinel_count(&cl->sentinel[i], "sentinels") == N_SENTINELS - 1;
                if (ready)
                        break;
                ASSERT_TRUE(tries < 300);
                usleep(100000);
        }
}

static void cluster_stop(Cluster *cl) {
        for (unsigned i = 0; i < N_SENTINELS; i++)
                ASSERT_OK(test_redis_cleanup(&cl->sentinel[i]));
        for (unsigned i = 0; i < 2; i++) {
                test_redis_signal(&cl->data[i], SIGCONT);
                ASSERT_OK(test_redis_cleanup(&cl->data[i]));
        }
}

static bool on_replica_port(const void *p) {
        const Ctx *c = p;
        return redis_is_connected(c->redis) && c->n_switches > 0;
}

/* How the client follows a failover that `how` starts on the cluster. */
static void test_failover(sd_event *e, const char *how) {
        char want[32];
        uint64_t t0, t1;
        Cluster cl;
        Ctx c;

        cluster_start(&cl, NULL);
        ctx_open(&c, e, &(RedisOptions) { .sentinels = cl.addresses, .master_name = "mc" });
        ASSERT_OK(redis_subscribe(c.redis, "mc:ch"));
        ASSERT_OK(redis_ssubscribe(c.redis, "mc:{r1}:ch"));
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 5 * SEC));
        snprintf(want, sizeof want, "127.0.0.1:%d", cl.data[0].port);
        ASSERT_STREQ(redis_master_address(c.redis), want);
        ASSERT_INT_EQ(set_key(&c, "before"), REDIS_REPLY_STATUS);

        t0 = test_now_usec();
        if (streq(how, "kill"))
                test_redis_kill(&cl.data[0]);
        else if (streq(how, "stop"))
                test_redis_signal(&cl.data[0], SIGSTOP);
        else
                freeReplyObject(test_redis_command(&cl.sentinel[0], "SENTINEL FAILOVER mc"));

        ASSERT_TRUE(test_run_until(c.event, on_replica_port, &c, 15 * SEC));
        t1 = test_now_usec();
        snprintf(want, sizeof want, "127.0.0.1:%d", cl.data[1].port);
        ASSERT_STREQ(redis_master_address(c.redis), want);
        ASSERT_INT_EQ(set_key(&c, "after"), REDIS_REPLY_STATUS);
        /* The sharded subscription followed the master too. */
        c.n_barriers = 0;
        ASSERT_OK(redis_subscriber_barrier(c.redis, on_barrier, &c));
        ASSERT_TRUE(test_run_until(c.event, barrier_passed, &c, 5 * SEC));
        c.n_messages = 0;
        ASSERT_INT_EQ(test_redis_integer(&cl.data[1], "SPUBLISH mc:{r1}:ch x"), 1);
        ASSERT_TRUE(test_run_until(c.event, got_message, &c, 5 * SEC));
        ASSERT_STREQ(c.channel, "mc:{r1}:ch");
        fprintf(stderr, "failover by %s: writable again on the new master %.2f s after the start\n",
                how, (double) (t1 - t0) / SEC);
        /* down-after 1 s, then the election: well within 10 s. */
        ASSERT_TRUE(t1 - t0 < 10 * SEC);

        c.redis = redis_free(c.redis);
        cluster_stop(&cl);
}

/* A sentinel that refuses our password; and one that does not know the name. */
static void test_sentinel_errors(sd_event *e) {
        Cluster cl;
        Ctx c;

        cluster_start(&cl, "sentinel-pass");
        ctx_open(&c, e, &(RedisOptions) { .sentinels = cl.addresses, .master_name = "mc",
                                         .sentinel_password = "wrong" });
        ASSERT_TRUE(test_run_until(c.event, has_problem, &c, 10 * SEC));
        ASSERT_INT_EQ(c.last_problem, REDIS_PROBLEM_CREDENTIALS);
        c.redis = redis_free(c.redis);

        ctx_open(&c, e, &(RedisOptions) { .sentinels = cl.addresses, .master_name = "mc",
                                         .sentinel_password = "sentinel-pass" });
        ASSERT_TRUE(test_run_until(c.event, is_up, &c, 10 * SEC));
        c.redis = redis_free(c.redis);

        ctx_open(&c, e, &(RedisOptions) { .sentinels = cl.addresses, .master_name = "nosuch",
                                         .sentinel_password = "sentinel-pass" });
        ASSERT_TRUE(test_run_until(c.event, has_problem, &c, 10 * SEC));
        ASSERT_INT_EQ(c.last_problem, REDIS_PROBLEM_UNREACHABLE);
        ASSERT_TRUE(strstr(redis_last_error(c.redis), "does not know a master named 'nosuch'"));
        c.redis = redis_free(c.redis);
        cluster_stop(&cl);
}

static void test_options(sd_event *e) {
        char *bad[] = { (char *) "localhost:26379", NULL };
        char *good[] = { (char *) "127.0.0.1:26379", (char *) "[::1]:26379", NULL };
        Redis *r = NULL;

        ASSERT_ERROR(redis_new_with_options(&r, e, &(RedisOptions) { .sentinels = good }, NULL, NULL, NULL), EINVAL);
        ASSERT_ERROR(redis_new_with_options(&r, e, &(RedisOptions) { .sentinels = bad, .master_name = "mc" },
                                            NULL, NULL, NULL), EINVAL);
        ASSERT_ERROR(redis_new_with_options(&r, e, &(RedisOptions) { .url = "unix:/x", .sentinels = good,
                                                                     .master_name = "mc" }, NULL, NULL, NULL), EINVAL);
        ASSERT_ERROR(redis_new_with_options(&r, e, &(RedisOptions) {}, NULL, NULL, NULL), EINVAL);
        ASSERT_ERROR(redis_new_with_options(&r, e, &(RedisOptions) { .sentinels = good, .master_name = "a b" },
                                            NULL, NULL, NULL), EINVAL);
        ASSERT_OK(redis_new_with_options(&r, e, &(RedisOptions) { .sentinels = good, .master_name = "mc" },
                                         NULL, NULL, NULL));
        ASSERT_STREQ(redis_master_address(r), "");
        r = redis_free(r);

        ASSERT_TRUE(sentinel_address_is_valid("127.0.0.1:1"));
        ASSERT_TRUE(sentinel_address_is_valid("[::1]:65535"));
        ASSERT_FALSE(sentinel_address_is_valid("127.0.0.1"));
        ASSERT_FALSE(sentinel_address_is_valid("127.0.0.1:0"));
        ASSERT_FALSE(sentinel_address_is_valid("127.0.0.1:65536"));
        ASSERT_FALSE(sentinel_address_is_valid("::1:26379"));
        ASSERT_FALSE(sentinel_address_is_valid("[::1]26379"));
        ASSERT_FALSE(sentinel_address_is_valid("host.example:26379"));
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TestRedis probe;

        if (test_redis_init(&probe, "probe.sock") == -ENOENT) {
                fprintf(stderr, "redis-server not installed; skipping\n");
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(test_redis_cleanup(&probe));
        (void) signal(SIGPIPE, SIG_IGN);
        ASSERT_OK(sd_event_new(&e));

        test_options(e);
        test_auth(e);
        test_auth_password_only(e);
        test_role_and_readonly(e);
        test_sentinel_errors(e);
        test_failover(e, "kill");
        test_failover(e, "stop");
        test_failover(e, "command");
        return EXIT_SUCCESS;
}
