/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a Redis Cluster tells about itself: its slot map (CLUSTER SHARDS, CLUSTER SLOTS) and redirections (MOVED, ASK). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define CLUSTER_SLOTS 16384
#define CLUSTER_MAP_NODES_MAX 256       /* masters in one map; more is refused */
#define CLUSTER_HOST_MAX 256            /* bytes of a host name, with its NUL */

typedef struct ClusterAddress {
        char host[CLUSTER_HOST_MAX];
        int port;
} ClusterAddress;

/* Which master serves each slot. node[slot_node[s]] serves slot s; -1:
 * nobody (the cluster is not fully covered). */
typedef struct ClusterMap {
        size_t n_nodes;
        ClusterAddress node[CLUSTER_MAP_NODES_MAX];
        int16_t slot_node[CLUSTER_SLOTS];
} ClusterMap;

/* Fills map from the answer to CLUSTER SHARDS (Redis 7+, as RESP2 arrays)
 * or CLUSTER SLOTS. A node announced with an empty or "?" host is the one
 * that was asked: asked_host. Only masters that are not marked failed
 * count. -EBADMSG for a malformed answer, -E2BIG over CLUSTER_MAP_NODES_MAX
 * masters. */
int cluster_map_from_shards(ClusterMap *map, const redisReply *reply, const char *asked_host);
int cluster_map_from_slots(ClusterMap *map, const redisReply *reply, const char *asked_host);

/* True when every slot has a master. */
bool cluster_map_is_complete(const ClusterMap *map);

/* "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" (the host may
 * be an IPv6 address, the last ':' separates the port; an empty host means
 * the node that answered: asked_host). -EINVAL for any other error. */
typedef struct ClusterRedirect {
        bool ask;
        int slot;
        ClusterAddress to;
} ClusterRedirect;

int cluster_redirect_parse(const char *error, size_t len, const char *asked_host, ClusterRedirect *ret);
