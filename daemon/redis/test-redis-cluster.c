/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the Redis client against a real Redis Cluster: hash slots, routing, MOVED/ASK, sharded pub/sub, failover. */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis.h"
#include "test/test-redis-server.h"
#include "test/test.h"

/* ---- hash slots ---- */

static void test_key_slot_vectors(void) {
        /* CRC16-XMODEM's check value is 0x31C3; the others are the
         * examples of the Redis documentation. */
        ASSERT_INT_EQ(redis_key_slot("123456789", 9), 0x31C3);
        ASSERT_INT_EQ(redis_key_slot("somekey", 7), 11058);
        ASSERT_INT_EQ(redis_key_slot("foo{hash_tag}", 13), 2515);
        ASSERT_INT_EQ(redis_key_slot("{hash_tag}", 10), redis_key_slot("hash_tag", 8));
        ASSERT_INT_EQ(redis_key_slot("{user1000}.following", 20), redis_key_slot("{user1000}.followers", 20));
        /* Only the first '{' and the first '}' after it count. */
        ASSERT_INT_EQ(redis_key_slot("foo{{bar}}zap", 13), redis_key_slot("{bar", 4));
        ASSERT_INT_EQ(redis_key_slot("foo{bar}{zap}", 13), redis_key_slot("bar", 3));
        /* An empty tag or a '{' without '}' hashes the whole key. */
        ASSERT_INT_EQ(redis_key_slot("foo{}{bar}", 10), 8363);
        ASSERT_TRUE(redis_key_slot("foo{}{bar}", 10) != redis_key_slot("bar", 3));
        ASSERT_TRUE(redis_key_slot("a{b", 3) != redis_key_slot("b", 1));
        ASSERT_INT_EQ(redis_key_slot("", 0), 0);
        ASSERT_INT_EQ(redis_key_slot(NULL, 0), 0);
        ASSERT_ERROR(redis_key_slot(NULL, 1), EINVAL);
        /* Binary keys: the length counts, not a NUL. */
        ASSERT_TRUE(redis_key_slot("a\0b", 3) != redis_key_slot("a", 1));
}

/* Random keys made mostly of the characters that matter: braces. */
static size_t random_key(char *buf, size_t size) {
        static const char alphabet[] = "{}{}ab\0\xff";
        uint8_t rnd[64];
        size_t n;

        ASSERT_INT_EQ(getrandom(rnd, sizeof rnd, 0), (ssize_t) sizeof rnd);
        n = rnd[0] % MIN(size, sizeof rnd - 1);
        for (size_t i = 0; i < n; i++)
                buf[i] = alphabet[rnd[i + 1] % (sizeof alphabet - 1)];
        return n;
}

static void test_key_slot_against_redis(TestRedisCluster *cl) {
        char key[40];

        for (unsigned i = 0; i < 400; i++) {
                size_t n = random_key(key, sizeof key);

                ASSERT_INT_EQ(redis_key_slot(key, n), test_redis_integer(&cl->node[i % TEST_CLUSTER_NODES],
                                                                         "CLUSTER KEYSLOT %b", key, n));
        }
        ASSERT_INT_EQ(redis_key_slot("mc:{r42}:ch", 11), test_redis_integer(&cl->node[0], "CLUSTER KEYSLOT mc:{r42}:ch"));
}

int main(void) {
        TestRedisCluster cl;
        int r;

        test_key_slot_vectors();

        r = test_redis_cluster_start(&cl);
        if (r == -ENOENT) {
                printf("skipping: redis-server or redis-cli not installed (apt-get install redis-server redis-tools)\n");
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(r);
        (void) signal(SIGPIPE, SIG_IGN);

        test_key_slot_against_redis(&cl);

        test_redis_cluster_cleanup(&cl);
        return 0;
}
