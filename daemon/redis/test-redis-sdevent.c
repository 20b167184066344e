/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the hiredis ↔ sd-event adapter against a real redis-server. */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis-sdevent.h"
#include "test/test-redis-client.h"
#include "test/test-redis-server.h"
#include "test/test.h"

typedef struct State {
        sd_event *event;
        redisAsyncContext *ac;
        unsigned n_replies, n_null, n_disconnect, n_connect_err, n_connect_ok;
        long long last_int;
        bool order_ok;
        bool done;
        unsigned expect;
} State;

static void on_connect(const redisAsyncContext *ac, int status) {
        State *st = ac->data;
        if (status == REDIS_OK)
                st->n_connect_ok++;
        else {
                st->n_connect_err++;
                st->done = true;
        }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
        State *st = ac->data;
        st->n_disconnect++;
        st->done = true;
}

static redisAsyncContext *connect_unix(State *st, const char *path) {
        redisAsyncContext *ac = redisAsyncConnectUnix(path);

        ASSERT_NOT_NULL(ac);
        ASSERT_INT_EQ(ac->err, 0);
        ac->data = st;
        ASSERT_OK(redis_sdevent_attach(ac, st->event));
        ASSERT_INT_EQ(redisAsyncSetConnectCallback(ac, on_connect), REDIS_OK);
        ASSERT_INT_EQ(redisAsyncSetDisconnectCallback(ac, on_disconnect), REDIS_OK);
        st->ac = ac;
        return ac;
}

/* ---- tests ---- */

static void on_get(redisAsyncContext *ac, void *reply_, void *privdata) {
        State *st = ac->data;
        redisReply *reply = reply_;

        ASSERT_NOT_NULL(reply);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_STRING);
        ASSERT_INT_EQ(reply->len, 5);
        ASSERT_TRUE(memcmp(reply->str, "v\0lue", 5) == 0);
        ASSERT_STREQ(privdata, "get");
        st->n_replies++;
        st->done = true;
}

static void on_status(redisAsyncContext *ac, void *reply_, void *privdata) {
        State *st = ac->data;
        redisReply *reply = reply_;

        ASSERT_NOT_NULL(reply);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_STATUS);
        ASSERT_STREQ(reply->str, "OK");
        st->n_replies++;
}

static void test_commands(TestRedis *srv, sd_event *e) {
        State st = { .event = e };
        redisAsyncContext *ac = connect_unix(&st, srv->sock);

        ASSERT_INT_EQ(redisAsyncCommand(ac, on_status, NULL, "SET k %b", "v\0lue", (size_t) 5), REDIS_OK);
        ASSERT_INT_EQ(redisAsyncCommand(ac, on_get, (void *) "get", "GET k"), REDIS_OK);
        ASSERT_TRUE(test_run_until_set(e, &st.done, 5000000));
        ASSERT_INT_EQ(st.n_connect_ok, 1);
        ASSERT_INT_EQ(st.n_replies, 2);

        /* Attaching twice, or a context that failed, is refused. */
        ASSERT_ERROR(redis_sdevent_attach(ac, e), EINVAL);

        st.done = false;
        redisAsyncDisconnect(ac);
        ASSERT_TRUE(test_run_until_set(e, &st.done, 5000000));
        ASSERT_INT_EQ(st.n_disconnect, 1);
}

static void on_incr(redisAsyncContext *ac, void *reply_, void *privdata) {
        State *st = ac->data;
        redisReply *reply = reply_;

        ASSERT_NOT_NULL(reply);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_INTEGER);
        if (reply->integer != st->last_int + 1)
                st->order_ok = false;
        st->last_int = reply->integer;
        if (++st->n_replies == st->expect)
                st->done = true;
}

static void test_pipeline(TestRedis *srv, sd_event *e) {
        State st = { .event = e, .order_ok = true, .expect = 10000 };
        redisAsyncContext *ac = connect_unix(&st, srv->sock);
        uint64_t t;

        ASSERT_INT_EQ(redisAsyncCommand(ac, NULL, NULL, "DEL counter"), REDIS_OK);
        t = test_now_usec();
        for (unsigned i = 0; i < st.expect; i++)
                ASSERT_INT_EQ(redisAsyncCommand(ac, on_incr, NULL, "INCR counter"), REDIS_OK);
        ASSERT_TRUE(test_run_until_set(e, &st.done, 10000000));
        t = test_now_usec() - t;
        ASSERT_TRUE(st.order_ok);
        ASSERT_INT_EQ(st.last_int, 10000);
        printf("pipelined: %u INCR in %.1f ms = %.0f commands/s\n", st.expect, t / 1000.0,
               st.expect * 1e6 / (double) t);

        /* The same, one at a time, for comparison. */
        st.done = false;
        st.n_replies = 0;
        st.expect = 2000;
        t = test_now_usec();
        for (unsigned i = 0; i < st.expect; i++) {
                unsigned want = st.n_replies + 1;
                ASSERT_INT_EQ(redisAsyncCommand(ac, on_incr, NULL, "INCR counter"), REDIS_OK);
                while (st.n_replies < want)
                        ASSERT_OK(sd_event_run(e, 1000000));
        }
        t = test_now_usec() - t;
        ASSERT_TRUE(st.order_ok);
        printf("request/response: %u INCR in %.1f ms = %.0f commands/s\n", st.expect, t / 1000.0,
               st.expect * 1e6 / (double) t);

        redisAsyncFree(ac);
        ASSERT_INT_EQ(st.n_disconnect, 1);
}

static void on_free_in_callback(redisAsyncContext *ac, void *reply_, void *privdata) {
        State *st = ac->data;

        if (!reply_) {
                st->n_null++;
                return;
        }
        st->n_replies++;
        /* Frees the context while hiredis and our adapter are on the stack:
         * the adapter must survive until its IO handler unwinds. */
        redisAsyncFree(ac);
        st->done = true;
}

static void test_free_in_callback(TestRedis *srv, sd_event *e) {
        State st = { .event = e };
        redisAsyncContext *ac = connect_unix(&st, srv->sock);

        for (unsigned i = 0; i < 5; i++)
                ASSERT_INT_EQ(redisAsyncCommand(ac, on_free_in_callback, NULL, "PING"), REDIS_OK);
        ASSERT_TRUE(test_run_until_set(e, &st.done, 5000000));
        ASSERT_INT_EQ(st.n_replies, 1);
        ASSERT_INT_EQ(st.n_null, 4);
        ASSERT_INT_EQ(st.n_disconnect, 1);

        /* The loop keeps running without the freed source. */
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(sd_event_run(e, 10000));
}

static void on_null_expected(redisAsyncContext *ac, void *reply_, void *privdata) {
        State *st = ac->data;

        if (reply_)
                st->n_replies++;
        else
                st->n_null++;
}

static void test_server_killed(TestRedis *srv, sd_event *e) {
        State st = { .event = e };
        redisAsyncContext *ac = connect_unix(&st, srv->sock);

        /* Blocks forever in Redis: only the server's death answers it. */
        ASSERT_INT_EQ(redisAsyncCommand(ac, on_null_expected, NULL, "BLPOP nolist 0"), REDIS_OK);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(sd_event_run(e, 20000));
        ASSERT_INT_EQ(st.n_connect_ok, 1);

        test_redis_kill(srv);
        ASSERT_TRUE(test_run_until_set(e, &st.done, 5000000));
        ASSERT_INT_EQ(st.n_null, 1);
        ASSERT_INT_EQ(st.n_replies, 0);
        ASSERT_INT_EQ(st.n_disconnect, 1);

        ASSERT_OK(test_redis_start(srv));
}

static void test_connect_refused(TestRedis *srv, sd_event *e) {
        char path[160];
        redisAsyncContext *ac;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        /* No socket file: the error is there at once, nothing to attach. */
        snprintf(path, sizeof(path), "%s/missing.sock", srv->dir);
        ac = redisAsyncConnectUnix(path);
        ASSERT_NOT_NULL(ac);
        ASSERT_TRUE(ac->err != 0);
        ASSERT_ERROR(redis_sdevent_attach(ac, e), EINVAL);
        redisAsyncFree(ac);

        /* A socket file without a listener. */
        snprintf(path, sizeof(path), "%s/dead.sock", srv->dir);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        ASSERT_TRUE(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        close(fd);
        ac = redisAsyncConnectUnix(path);
        ASSERT_NOT_NULL(ac);
        if (ac->err == 0) {
                /* Some kernels report it later: then onConnect(REDIS_ERR). */
                State st = { .event = e };
                ac->data = &st;
                ASSERT_OK(redis_sdevent_attach(ac, e));
                ASSERT_INT_EQ(redisAsyncSetConnectCallback(ac, on_connect), REDIS_OK);
                ASSERT_INT_EQ(redisAsyncSetDisconnectCallback(ac, on_disconnect), REDIS_OK);
                ASSERT_TRUE(test_run_until_set(e, &st.done, 5000000));
                ASSERT_INT_EQ(st.n_connect_err, 1);
                ASSERT_INT_EQ(st.n_disconnect, 0);
        } else
                redisAsyncFree(ac);
        (void) unlink(path);
}

static int on_free_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        State *st = userdata;

        /* Outside any hiredis callback: freed at once, handlers get NULL. */
        redisAsyncFree(st->ac);
        st->done = true;
        return 0;
}

static void test_free_from_timer(TestRedis *srv, sd_event *e) {
        State st = { .event = e };
        redisAsyncContext *ac = connect_unix(&st, srv->sock);
        _cleanup_(sd_event_source_unrefp) sd_event_source *t = NULL;

        ASSERT_INT_EQ(redisAsyncCommand(ac, on_null_expected, NULL, "BLPOP nolist 0"), REDIS_OK);
        ASSERT_OK(sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, 50000, 1, on_free_timer, &st));
        ASSERT_TRUE(test_run_until_set(e, &st.done, 5000000));
        ASSERT_INT_EQ(st.n_null, 1);
        ASSERT_INT_EQ(st.n_disconnect, 1);
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TestRedis srv;

        test_redis_init_or_skip(&srv, "redis.sock");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(test_redis_start(&srv));

        test_commands(&srv, e);
        test_pipeline(&srv, e);
        test_free_in_callback(&srv, e);
        test_free_from_timer(&srv, e);
        test_server_killed(&srv, e);
        test_connect_refused(&srv, e);

        ASSERT_OK(test_redis_cleanup(&srv));
        return 0;
}
