/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a Redis Cluster tells about itself: its slot map (CLUSTER SHARDS, CLUSTER SLOTS) and redirections (MOVED, ASK). */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/cluster-map.h"

static bool is_string(const redisReply *e) {
        return e && (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) && e->str;
}

static int parse_port(long long v) {
        return v > 0 && v <= 65535 ? (int) v : -EBADMSG;
}

static void map_init(ClusterMap *map) {
        map->n_nodes = 0;
        for (size_t s = 0; s < CLUSTER_SLOTS; s++)
                map->slot_node[s] = -1;
}

/* The index of host:port in map, added if new. */
static int map_node(ClusterMap *map, const char *host, size_t len, const char *asked_host, int port) {
        if (port < 0)
                return port;
        if (len == 0 || (len == 1 && host[0] == '?')) {
                host = asked_host;
                len = strlen(asked_host);
        }
        if (len == 0 || len >= CLUSTER_HOST_MAX || memchr(host, '\0', len))
                return -EBADMSG;
        for (size_t i = 0; i < map->n_nodes; i++)
                if (map->node[i].port == port && strlen(map->node[i].host) == len &&
                    memcmp(map->node[i].host, host, len) == 0)
                        return (int) i;
        if (map->n_nodes >= CLUSTER_MAP_NODES_MAX)
                return -E2BIG;
        memcpy(map->node[map->n_nodes].host, host, len);
        map->node[map->n_nodes].host[len] = '\0';
        map->node[map->n_nodes].port = port;
        return (int) map->n_nodes++;
}

static int map_assign(ClusterMap *map, long long from, long long to, int node) {
        if (from < 0 || to < from || to >= CLUSTER_SLOTS)
                return -EBADMSG;
        for (long long s = from; s <= to; s++)
                map->slot_node[s] = (int16_t) node;
        return 0;
}

/* CLUSTER SLOTS: [[from, to, [host, port, id, ...], replicas...], ...] */
int cluster_map_from_slots(ClusterMap *map, const redisReply *reply, const char *asked_host) {
        map_init(map);
        if (!reply || reply->type != REDIS_REPLY_ARRAY)
                return -EBADMSG;
        for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *range = reply->element[i], *master;
                int k;

                if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
                    range->element[0]->type != REDIS_REPLY_INTEGER || range->element[1]->type != REDIS_REPLY_INTEGER)
                        return -EBADMSG;
                master = range->element[2];
                if (master->type != REDIS_REPLY_ARRAY || master->elements < 2 || !is_string(master->element[0]) ||
                    master->element[1]->type != REDIS_REPLY_INTEGER)
                        return -EBADMSG;
                k = map_node(map, master->element[0]->str, master->element[0]->len, asked_host,
                             parse_port(master->element[1]->integer));
                if (k < 0)
                        return k;
                k = map_assign(map, range->element[0]->integer, range->element[1]->integer, k);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* A RESP2 map is a flat array of names and values. */
static const redisReply *field(const redisReply *m, const char *name) {
        if (m->type != REDIS_REPLY_ARRAY)
                return NULL;
        for (size_t i = 0; i + 1 < m->elements; i += 2)
                if (is_string(m->element[i]) && strcasecmp(m->element[i]->str, name) == 0)
                        return m->element[i + 1];
        return NULL;
}

static bool field_is(const redisReply *m, const char *name, const char *value) {
        const redisReply *v = field(m, name);
        return is_string(v) && strcasecmp(v->str, value) == 0;
}

/* The shard's master that is not failed, as the index in map; -ENOENT if none. */
static int shard_master(ClusterMap *map, const redisReply *nodes, const char *asked_host) {
        if (!nodes || nodes->type != REDIS_REPLY_ARRAY)
                return -EBADMSG;
        for (size_t i = 0; i < nodes->elements; i++) {
                const redisReply *n = nodes->element[i], *host, *port;

                if (!field_is(n, "role", "master") || field_is(n, "health", "fail"))
                        continue;
                host = field(n, "endpoint");
                if (!is_string(host))
                        host = field(n, "ip");
                port = field(n, "port");
                if (!is_string(host) || !port || port->type != REDIS_REPLY_INTEGER)
                        return -EBADMSG;
                return map_node(map, host->str, host->len, asked_host, parse_port(port->integer));
        }
        return -ENOENT;
}

/* CLUSTER SHARDS: [["slots", [from, to, ...], "nodes", [[name, value, ...], ...]], ...] */
int cluster_map_from_shards(ClusterMap *map, const redisReply *reply, const char *asked_host) {
        map_init(map);
        if (!reply || reply->type != REDIS_REPLY_ARRAY)
                return -EBADMSG;
        for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *shard = reply->element[i], *slots = field(shard, "slots");
                int node, k;

                if (!slots || slots->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0)
                        return -EBADMSG;
                if (slots->elements == 0)
                        continue;       /* a shard without slots: nothing to route there */
                node = shard_master(map, field(shard, "nodes"), asked_host);
                if (node == -ENOENT)
                        continue;       /* its master failed: its slots stay unserved */
                if (node < 0)
                        return node;
                for (size_t s = 0; s < slots->elements; s += 2) {
                        if (slots->element[s]->type != REDIS_REPLY_INTEGER ||
                            slots->element[s + 1]->type != REDIS_REPLY_INTEGER)
                                return -EBADMSG;
                        k = map_assign(map, slots->element[s]->integer, slots->element[s + 1]->integer, node);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

bool cluster_map_is_complete(const ClusterMap *map) {
        for (size_t s = 0; s < CLUSTER_SLOTS; s++)
                if (map->slot_node[s] < 0)
                        return false;
        return true;
}

int cluster_redirect_parse(const char *error, size_t len, const char *asked_host, ClusterRedirect *ret) {
        ClusterRedirect d = {};
        const char *p, *end = error + len, *colon = NULL;
        unsigned long v = 0;
        size_t hn;

        if (len >= 6 && memcmp(error, "MOVED ", 6) == 0)
                p = error + 6;
        else if (len >= 4 && memcmp(error, "ASK ", 4) == 0) {
                d.ask = true;
                p = error + 4;
        } else
                return -EINVAL;

        for (; p < end && *p >= '0' && *p <= '9' && v < CLUSTER_SLOTS; p++)
                v = v * 10 + (unsigned long) (*p - '0');
        if (p == end || *p != ' ' || v >= CLUSTER_SLOTS || p[-1] == ' ')
                return -EINVAL;
        d.slot = (int) v;
        p++;
        for (const char *q = p; q < end; q++)
                if (*q == ':')
                        colon = q;
        if (!colon || colon + 1 == end)
                return -EINVAL;
        v = 0;
        for (const char *q = colon + 1; q < end; q++) {
                if (*q < '0' || *q > '9' || v > 65535)
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*q - '0');
        }
        if (v == 0 || v > 65535)
                return -EINVAL;
        d.to.port = (int) v;
        hn = (size_t) (colon - p);
        if (hn == 0) {
                p = asked_host;
                hn = strlen(asked_host);
        }
        if (hn == 0 || hn >= sizeof d.to.host || memchr(p, '\0', hn) || memchr(p, ' ', hn))
                return -EINVAL;
        memcpy(d.to.host, p, hn);
        d.to.host[hn] = '\0';
        *ret = d;
        return 0;
}
