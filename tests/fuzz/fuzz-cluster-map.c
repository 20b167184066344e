/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes what a Redis Cluster says about itself: CLUSTER SHARDS and CLUSTER SLOTS answers, MOVED and ASK errors. */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "fuzz.h"
#include "redis/cluster-map.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

/* A map that parsed points only at nodes it has, each with a host and a port. */
static void check_map(const ClusterMap *map) {
        FUZZ_CHECK(map->n_nodes <= CLUSTER_MAP_NODES_MAX);
        for (size_t i = 0; i < map->n_nodes; i++) {
                size_t n = strnlen(map->node[i].host, sizeof map->node[i].host);

                FUZZ_CHECK(n > 0 && n < sizeof map->node[i].host);
                FUZZ_CHECK(map->node[i].port > 0 && map->node[i].port <= 65535);
        }
        for (size_t s = 0; s < CLUSTER_SLOTS; s++)
                FUZZ_CHECK(map->slot_node[s] >= -1 && map->slot_node[s] < (int) map->n_nodes);
}

static void check_reply(const redisReply *reply, ClusterMap *map) {
        if (cluster_map_from_shards(map, reply, "asked") >= 0)
                check_map(map);
        if (cluster_map_from_slots(map, reply, "asked") >= 0)
                check_map(map);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ClusterMap *map;
        ClusterRedirect d;
        redisReader *reader;
        void *reply = NULL;

        /* The input as an error text, too. */
        if (cluster_redirect_parse((const char *) data, size, "asked", &d) >= 0) {
                FUZZ_CHECK(d.slot >= 0 && d.slot < CLUSTER_SLOTS);
                FUZZ_CHECK(d.to.port > 0 && d.to.port <= 65535);
                FUZZ_CHECK(d.to.host[0] && strnlen(d.to.host, sizeof d.to.host) < sizeof d.to.host);
        }

        if (fuzz_resp_too_large(data, size))
                return 0;
        map = malloc(sizeof(*map));
        FUZZ_CHECK(map);
        reader = redisReaderCreate();
        FUZZ_CHECK(reader);
        if (redisReaderFeed(reader, (const char *) data, size) == REDIS_OK)
                while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply) {
                        check_reply(reply, map);
                        freeReplyObject(reply);
                        reply = NULL;
                }
        redisReaderFree(reader);
        free(map);
        return 0;
}
