/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the store's unit tests share: a private redis-server, the store's connections under test, and waiting on sd-event for their replies and publications. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/time-util.h"
#include "store/store.h"
#include "store/test-store-env.h"
#include "test/test.h"

int store_env_server_start(TestRedis *s) {
        int r;

        r = test_redis_init(s, "redis.sock");
        if (r == -ENOENT) {
                fprintf(stderr, "redis-server not found (Debian package redis-server), skipping\n");
                return r;
        }
        ASSERT_OK(r);
        ASSERT_OK(test_redis_start(s));
        return 0;
}

void store_env_run_until(sd_event *event, const bool *done, uint64_t timeout) {
        uint64_t end = now_usec(CLOCK_MONOTONIC) + timeout;

        while (!*done && now_usec(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(event, 50 * USEC_PER_MSEC));
        ASSERT_TRUE(*done);
}

redisReply *store_env_reply_dup(const redisReply *r) {
        redisReply *c = calloc(1, sizeof *c);

        ASSERT_NOT_NULL(c);
        c->type = r->type;
        c->integer = r->integer;
        if (r->str) {
                c->str = malloc(r->len + 1);
                ASSERT_NOT_NULL(c->str);
                memcpy(c->str, r->str, r->len);
                c->str[r->len] = 0;
                c->len = r->len;
        }
        if (r->type == REDIS_REPLY_ARRAY) {
                c->elements = r->elements;
                c->element = calloc(MAX(r->elements, (size_t) 1), sizeof(redisReply *));
                ASSERT_NOT_NULL(c->element);
                for (size_t i = 0; i < r->elements; i++)
                        c->element[i] = store_env_reply_dup(r->element[i]);
        }
        return c;
}

void store_env_on_reply(Redis *r, const redisReply *reply, void *userdata) {
        PendingReply *p = userdata;

        ASSERT_FALSE(p->done);
        p->done = true;
        p->reply = reply ? store_env_reply_dup(reply) : NULL;
}

redisReply *store_env_wait_reply(sd_event *event, PendingReply *p) {
        store_env_run_until(event, &p->done, 5 * USEC_PER_SEC);
        ASSERT_NOT_NULL(p->reply);
        return TAKE_PTR(p->reply);
}

static void on_state(Redis *r, bool connected, void *userdata) {
        StoreEnv *t = userdata;

        if (r == t->cmd)
                t->cmd_up = connected;
        else
                t->sub_up = connected;
}

static void on_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        StoreEnv *t = userdata;
        StoreMsg *m;

        ASSERT_TRUE(GREEDY_REALLOC(t->msgs, t->n_allocated, t->n_msgs + 1));
        m = &t->msgs[t->n_msgs++];
        m->channel = strdup(channel);
        m->data = malloc(len + 1);
        ASSERT_TRUE(m->channel && m->data);
        memcpy(m->data, data, len);
        m->data[len] = 0;
        m->len = len;
}

void store_env_open(StoreEnv *t, const TestRedis *s) {
        _cleanup_free_ char *url = NULL;

        *t = (StoreEnv) {};
        ASSERT_OK(sd_event_new(&t->event));
        ASSERT_TRUE(asprintf(&url, "unix:%s", s->sock) >= 0);
        ASSERT_OK(redis_new(&t->cmd, t->event, url, on_state, NULL, t));
        ASSERT_OK(redis_new(&t->sub, t->event, url, on_state, on_message, t));
        ASSERT_OK(redis_subscribe(t->sub, STORE_EVENTS_CHANNEL));
}

void store_env_start(StoreEnv *t) {
        uint64_t end = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;

        ASSERT_OK(redis_start(t->cmd));
        ASSERT_OK(redis_start(t->sub));
        while (!(t->cmd_up && t->sub_up) && now_usec(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(t->event, 50 * USEC_PER_MSEC));
        ASSERT_TRUE(t->cmd_up && t->sub_up);
}

const StoreMsg *store_env_next_msg(StoreEnv *t, uint64_t timeout) {
        uint64_t end = now_usec(CLOCK_MONOTONIC) + timeout;

        while (t->consumed >= t->n_msgs && now_usec(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(t->event, 50 * USEC_PER_MSEC));
        if (t->consumed >= t->n_msgs) {
                fprintf(stderr, "no message arrived\n");
                ASSERT_TRUE(!"message expected");
        }
        return &t->msgs[t->consumed++];
}

void store_env_close(StoreEnv *t) {
        t->cmd = redis_free(t->cmd);
        t->sub = redis_free(t->sub);
        t->event = sd_event_unref(t->event);
        for (size_t i = 0; i < t->n_msgs; i++) {
                free(t->msgs[i].channel);
                free(t->msgs[i].data);
        }
        t->msgs = mfree(t->msgs);
        t->n_msgs = t->n_allocated = t->consumed = 0;
}
