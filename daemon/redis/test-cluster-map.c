/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for reading a cluster's slot map and redirections, from RESP as Redis sends it. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/cluster-map.h"
#include "test/test.h"

static redisReply *parse_n(const char *resp, size_t len) {
        redisReader *reader = redisReaderCreate();
        void *reply = NULL;

        ASSERT_NOT_NULL(reader);
        ASSERT_INT_EQ(redisReaderFeed(reader, resp, len), REDIS_OK);
        ASSERT_INT_EQ(redisReaderGetReply(reader, &reply), REDIS_OK);
        ASSERT_NOT_NULL(reply);
        redisReaderFree(reader);
        return reply;
}

static int from_slots(ClusterMap *map, const char *resp) {
        redisReply *reply = parse_n(resp, strlen(resp));
        int r = cluster_map_from_slots(map, reply, "10.0.0.9");

        freeReplyObject(reply);
        return r;
}

static int from_shards(ClusterMap *map, const char *resp) {
        redisReply *reply = parse_n(resp, strlen(resp));
        int r = cluster_map_from_shards(map, reply, "10.0.0.9");

        freeReplyObject(reply);
        return r;
}

static void test_slots(void) {
        _cleanup_free_ ClusterMap *map = malloc(sizeof(*map));

        ASSERT_NOT_NULL(map);
        /* Two ranges of one master, one of another (with a replica), one
         * announced with an empty host: the node asked. */
        ASSERT_OK(from_slots(map,
                "*3\r\n"
                "*4\r\n:0\r\n:5000\r\n*3\r\n$3\r\nn-a\r\n:7000\r\n$2\r\nid\r\n*3\r\n$3\r\nn-r\r\n:7003\r\n$2\r\nid\r\n"
                "*3\r\n:5001\r\n:10000\r\n*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n"
                "*3\r\n:10001\r\n:16383\r\n*3\r\n$3\r\nn-a\r\n:7000\r\n$2\r\nid\r\n"));
        ASSERT_INT_EQ(map->n_nodes, 2);
        ASSERT_STREQ(map->node[0].host, "n-a");
        ASSERT_INT_EQ(map->node[0].port, 7000);
        ASSERT_STREQ(map->node[1].host, "10.0.0.9");
        ASSERT_INT_EQ(map->node[1].port, 7001);
        ASSERT_INT_EQ(map->slot_node[0], 0);
        ASSERT_INT_EQ(map->slot_node[5001], 1);
        ASSERT_INT_EQ(map->slot_node[16383], 0);
        ASSERT_TRUE(cluster_map_is_complete(map));

        /* A gap: not complete. */
        ASSERT_OK(from_slots(map, "*1\r\n*3\r\n:0\r\n:100\r\n*3\r\n$1\r\nh\r\n:1\r\n$2\r\nid\r\n"));
        ASSERT_FALSE(cluster_map_is_complete(map));
        ASSERT_INT_EQ(map->slot_node[101], -1);

        /* Malformed. */
        ASSERT_ERROR(from_slots(map, "+OK\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n:1\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*2\r\n:0\r\n:1\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:5\r\n:1\r\n*3\r\n$1\r\nh\r\n:1\r\n$2\r\nid\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:0\r\n:16384\r\n*3\r\n$1\r\nh\r\n:1\r\n$2\r\nid\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:-1\r\n:1\r\n*3\r\n$1\r\nh\r\n:1\r\n$2\r\nid\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:0\r\n:1\r\n*3\r\n$1\r\nh\r\n:0\r\n$2\r\nid\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:0\r\n:1\r\n*3\r\n$1\r\nh\r\n:65536\r\n$2\r\nid\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:0\r\n:1\r\n*3\r\n$1\r\nh\r\n$4\r\n7000\r\n$2\r\nid\r\n"), EBADMSG);
        ASSERT_ERROR(from_slots(map, "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n"), EBADMSG);

        /* A NUL inside the host. */
        static const char nul[] = "*1\r\n*3\r\n:0\r\n:1\r\n*3\r\n$3\r\na\0b\r\n:1\r\n$2\r\nid\r\n";
        redisReply *reply = parse_n(nul, sizeof nul - 1);
        ASSERT_ERROR(cluster_map_from_slots(map, reply, "asked"), EBADMSG);
        freeReplyObject(reply);
}

static void test_too_many_nodes(void) {
        _cleanup_free_ ClusterMap *map = malloc(sizeof(*map));
        _cleanup_free_ char *resp = malloc(64 * (CLUSTER_MAP_NODES_MAX + 2));
        size_t n = 0;

        ASSERT_NOT_NULL(map);
        ASSERT_NOT_NULL(resp);
        n += (size_t) sprintf(resp + n, "*%d\r\n", CLUSTER_MAP_NODES_MAX + 1);
        for (int i = 0; i <= CLUSTER_MAP_NODES_MAX; i++)
                n += (size_t) sprintf(resp + n, "*3\r\n:%d\r\n:%d\r\n*3\r\n$1\r\nh\r\n:%d\r\n$2\r\nid\r\n", i, i, i + 1);
        ASSERT_ERROR(from_slots(map, resp), E2BIG);
}

/* CLUSTER SHARDS as RESP2: maps are flat arrays. */
#define SHARD_NODE(ip, endpoint, port, role, health)                                    \
        "*12\r\n$2\r\nid\r\n$1\r\nx\r\n$4\r\nport\r\n:" port "\r\n$2\r\nip\r\n$" ip "\r\n" \
        "$8\r\nendpoint\r\n$" endpoint "\r\n$4\r\nrole\r\n$" role "\r\n$6\r\nhealth\r\n$" health "\r\n"

static void test_shards(void) {
        _cleanup_free_ ClusterMap *map = malloc(sizeof(*map));

        ASSERT_NOT_NULL(map);
        /* Shard 1: replica listed first, then its master; shard 2: the
         * master failed, its replica not yet promoted; shard 3: no slots. */
        ASSERT_OK(from_shards(map,
                "*3\r\n"
                "*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:100\r\n:200\r\n:16383\r\n$5\r\nnodes\r\n*2\r\n"
                SHARD_NODE("8\r\n10.0.0.2", "8\r\n10.0.0.2", "7003", "7\r\nreplica", "6\r\nonline")
                SHARD_NODE("8\r\n10.0.0.1", "6\r\nnode-1", "7000", "6\r\nmaster", "6\r\nonline")
                "*4\r\n$5\r\nslots\r\n*2\r\n:101\r\n:199\r\n$5\r\nnodes\r\n*1\r\n"
                SHARD_NODE("8\r\n10.0.0.3", "8\r\n10.0.0.3", "7001", "6\r\nmaster", "4\r\nfail")
                "*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n"
                SHARD_NODE("8\r\n10.0.0.4", "0\r\n", "7002", "6\r\nmaster", "6\r\nonline")));
        ASSERT_INT_EQ(map->n_nodes, 1);
        ASSERT_STREQ(map->node[0].host, "node-1");      /* the endpoint, not the ip */
        ASSERT_INT_EQ(map->node[0].port, 7000);
        ASSERT_INT_EQ(map->slot_node[100], 0);
        ASSERT_INT_EQ(map->slot_node[101], -1);
        ASSERT_INT_EQ(map->slot_node[16383], 0);
        ASSERT_FALSE(cluster_map_is_complete(map));

        /* An empty endpoint: the node asked. */
        ASSERT_OK(from_shards(map,
                "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n"
                SHARD_NODE("0\r\n", "0\r\n", "7002", "6\r\nmaster", "6\r\nonline")));
        ASSERT_STREQ(map->node[0].host, "10.0.0.9");
        ASSERT_TRUE(cluster_map_is_complete(map));

        ASSERT_ERROR(from_shards(map, ":1\r\n"), EBADMSG);
        ASSERT_ERROR(from_shards(map, "*1\r\n*2\r\n$5\r\nslots\r\n*1\r\n:0\r\n"), EBADMSG);
        ASSERT_ERROR(from_shards(map, "*1\r\n*2\r\n$5\r\nnodes\r\n*0\r\n"), EBADMSG);
        ASSERT_ERROR(from_shards(map, "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n:3\r\n"), EBADMSG);
        ASSERT_ERROR(from_shards(map, "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n$1\r\n0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
                                      SHARD_NODE("1\r\nh", "1\r\nh", "1", "6\r\nmaster", "6\r\nonline")), EBADMSG);
        ASSERT_ERROR(from_shards(map, "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
                                      SHARD_NODE("1\r\nh", "1\r\nh", "0", "6\r\nmaster", "6\r\nonline")), EBADMSG);
        ASSERT_ERROR(from_shards(map, "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:9\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
                                      SHARD_NODE("1\r\nh", "1\r\nh", "1", "6\r\nmaster", "6\r\nonline")), EBADMSG);
}

static void test_redirect(void) {
        ClusterRedirect d;

        ASSERT_OK(cluster_redirect_parse("MOVED 3999 127.0.0.1:6381", 25, "asked", &d));
        ASSERT_FALSE(d.ask);
        ASSERT_INT_EQ(d.slot, 3999);
        ASSERT_STREQ(d.to.host, "127.0.0.1");
        ASSERT_INT_EQ(d.to.port, 6381);
        ASSERT_OK(cluster_redirect_parse("ASK 0 node-2.example:7000", 25, "asked", &d));
        ASSERT_TRUE(d.ask);
        ASSERT_INT_EQ(d.slot, 0);
        ASSERT_STREQ(d.to.host, "node-2.example");
        ASSERT_OK(cluster_redirect_parse("MOVED 16383 fd00::1:7000", 24, "asked", &d));
        ASSERT_STREQ(d.to.host, "fd00::1");
        ASSERT_INT_EQ(d.slot, 16383);
        /* No host: the node that answered. */
        ASSERT_OK(cluster_redirect_parse("MOVED 1 :7000", 13, "asked", &d));
        ASSERT_STREQ(d.to.host, "asked");

        static const char *const bad[] = {
                "MOVED", "MOVED ", "MOVED 1", "MOVED 1 ", "MOVED 16384 h:1", "MOVED -1 h:1", "MOVED x h:1",
                "MOVED 1 h", "MOVED 1 h:", "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 h:1x", "MOVED  1 h:1",
                "MOVED 1 a b:1", "ASK1 h:1", "moved 1 h:1", "ERR MOVED 1 h:1", "TRYAGAIN", "",
                "MOVED 99999999999999999999 h:1", "MOVED 1 h:99999999999999999999",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_ERROR(cluster_redirect_parse(bad[i], strlen(bad[i]), "asked", &d), EINVAL);
        ASSERT_ERROR(cluster_redirect_parse("MOVED 1 :7000", 13, "", &d), EINVAL);
        ASSERT_ERROR(cluster_redirect_parse("MOVED 1 a\0b:1", 13, "asked", &d), EINVAL);
}

int main(void) {
        test_slots();
        test_too_many_nodes();
        test_shards();
        test_redirect();
        return 0;
}
