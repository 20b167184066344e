/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes how the Redis client reads its subscriber connection: any RESP reply is a message, the probe, or ignored. */

#include <stdbool.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "fuzz.h"
#include "redis/redis.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static void check_reply(const redisReply *reply) {
        RedisPush m = {};

        switch (redis_subscriber_reply_parse(reply, &m)) {
        case REDIS_PUSH_MESSAGE:
                /* What the owner gets points into the reply, whole. */
                FUZZ_CHECK(reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3);
                FUZZ_CHECK(m.channel && m.data);
                FUZZ_CHECK(strcmp(m.channel, "__multichat:redis-probe__") != 0);
                for (size_t i = 0; i < reply->elements; i++)
                        if (reply->element[i]->str == m.data)
                                FUZZ_CHECK((size_t) reply->element[i]->len == m.len);
                break;
        case REDIS_PUSH_PROBE:
                FUZZ_CHECK(reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3);
                break;
        default:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        redisReader *reader;
        void *reply = NULL;

        FUZZ_CHECK(redis_subscriber_reply_parse(NULL, &(RedisPush) {}) == REDIS_PUSH_OTHER);
        if (fuzz_resp_too_large(data, size))
                return 0;
        reader = redisReaderCreate();
        FUZZ_CHECK(reader);
        if (redisReaderFeed(reader, (const char *) data, size) == REDIS_OK)
                while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply) {
                        check_reply(reply);
                        freeReplyObject(reply);
                        reply = NULL;
                }
        redisReaderFree(reader);
        return 0;
}
