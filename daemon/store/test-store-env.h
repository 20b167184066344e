/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the store's unit tests share: a private redis-server, the store's connections under test, and waiting on sd-event for their replies and publications. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis.h"
#include "test/test-redis-server.h"
#include "test/test.h"

DEFINE_CLEANUP_FUNC(redisReply *, freeReplyObject);

/* Starts a private redis-server on the unix socket "redis.sock";
 * -ENOENT (said on stderr) when redis-server is not installed, and the
 * caller skips. Any other failure aborts the test. */
int store_env_server_start(TestRedis *s);

/* Runs the loop until *done, failing the test after timeout µs. */
void store_env_run_until(sd_event *event, const bool *done, uint64_t timeout);

/* A deep copy: hiredis frees a reply when its callback returns. */
redisReply *store_env_reply_dup(const redisReply *r);

/* One command's reply, copied out of store_env_on_reply(). */
typedef struct PendingReply {
        bool done;
        redisReply *reply;
} PendingReply;

/* A reply callback for a PendingReply; fails the test if called twice. */
void store_env_on_reply(Redis *r, const redisReply *reply, void *userdata);
/* The reply of a command sent with store_env_on_reply and p; never NULL. */
redisReply *store_env_wait_reply(sd_event *event, PendingReply *p);

/* Calls fn, a function that takes a reply callback and its userdata last,
 * and waits for the reply, which the caller frees. */
#define STORE_ENV_CALL(event, fn, ...)                                          \
        ({                                                                      \
                PendingReply _p = {};                                           \
                ASSERT_OK(fn(__VA_ARGS__, store_env_on_reply, &_p));            \
                store_env_wait_reply((event), &_p);                             \
        })

typedef struct StoreMsg {
        char *channel;
        char *data;
        size_t len;
} StoreMsg;

/* A command connection and a subscriber on one loop, and what the
 * subscriber received, in order. */
typedef struct StoreEnv {
        sd_event *event;
        Redis *cmd, *sub;
        bool cmd_up, sub_up;
        StoreMsg *msgs;
        size_t n_msgs, n_allocated, consumed;
} StoreEnv;

/* Makes the loop and both connections to s, the subscriber on
 * STORE_EVENTS_CHANNEL; subscribe to more before store_env_start(). */
void store_env_open(StoreEnv *t, const TestRedis *s);
/* Connects both and waits until they are up. */
void store_env_start(StoreEnv *t);
/* The next message not yet consumed, waiting up to timeout µs for it;
 * none arriving fails the test. */
const StoreMsg *store_env_next_msg(StoreEnv *t, uint64_t timeout);
void store_env_close(StoreEnv *t);
