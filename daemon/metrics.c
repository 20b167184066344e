/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /metrics: who may scrape, and the Prometheus text exposition of every part's counters. */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/strv.h"
#include "basic/time-util.h"
#include "chat/chat.h"
#include "metrics.h"
#include "net/web.h"
#include "net/ws.h"
#include "redis/redis.h"

void metrics_collect(MetricsSnapshot *ret, Chat *chat, Web *web, const WebStats *stats, Redis *redis,
                     uint64_t redis_reconnects) {
        *ret = (MetricsSnapshot) {
                .connections = ws_hub_count(web_hub(web)),
                .peers = web_peer_count(web),
                .rooms = chat_room_count(chat),
                .ready = chat_is_ready(chat),
                .redis_connected = redis_is_connected(redis),
                .redis_reconnects = redis_reconnects,
                .relay_lag_usec = chat_relay_lag_usec(chat),
                .overloaded = chat_is_overloaded(chat),
                .messages_received = chat_messages_received(chat),
                .deliveries = chat_messages_relayed(chat),
                .web = *stats,
        };
        for (ProtocolError e = PROTOCOL_OK + 1; e < _PROTOCOL_ERROR_MAX; e++)
                ret->refusals[e] = chat_refusals(chat, e) + stats->refusals[e];
}

static void metric_head(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_u64(FILE *f, const char *name, const char *type, const char *help, uint64_t v) {
        metric_head(f, name, type, help);
        fprintf(f, "%s %" PRIu64 "\n", name, v);
}

int metrics_format(const MetricsSnapshot *s, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        metric_u64(f, "multichat_connections", "gauge", "WebSocket connections open.", s->connections);
        metric_u64(f, "multichat_connections_opened_total", "counter",
                   "WebSocket connections accepted since start.", s->web.connections_opened);
        metric_u64(f, "multichat_http_connections", "gauge",
                   "Accepted connections open, HTTP or WebSocket.", s->peers);
        metric_u64(f, "multichat_rooms", "gauge", "Rooms known.", s->rooms);
        metric_u64(f, "multichat_ready", "gauge", "1 while the chat is served: Redis up, rooms loaded.", s->ready);
        metric_u64(f, "multichat_messages_received_total", "counter",
                   "Live messages received from Redis.", s->messages_received);
        metric_u64(f, "multichat_deliveries_total", "counter",
                   "Messages delivered to WebSocket connections, one per receiver.", s->deliveries);

        metric_head(f, "multichat_refusals_total", "counter", "Commands answered with an error, by error code.");
        for (ProtocolError e = PROTOCOL_OK + 1; e < _PROTOCOL_ERROR_MAX; e++)
                fprintf(f, "multichat_refusals_total{reason=\"%s\"} %" PRIu64 "\n",
                        protocol_error_to_string(e), s->refusals[e]);

        metric_u64(f, "multichat_slow_readers_cut_total", "counter",
                   "WebSocket connections closed with 1013 because they read too slowly.", s->web.slow_readers_cut);

        metric_head(f, "multichat_logins_total", "counter", "Login attempts, by outcome.");
        fprintf(f, "multichat_logins_total{result=\"accepted\"} %" PRIu64 "\n", s->web.logins_accepted);
        fprintf(f, "multichat_logins_total{result=\"refused\"} %" PRIu64 "\n", s->web.logins_refused);
        fprintf(f, "multichat_logins_total{result=\"throttled\"} %" PRIu64 "\n", s->web.logins_throttled);

        metric_u64(f, "multichat_redis_connected", "gauge", "1 while connected to Redis.", s->redis_connected);
        metric_u64(f, "multichat_redis_reconnects_total", "counter",
                   "Connections to Redis made again after one was lost.", s->redis_reconnects);
        metric_head(f, "multichat_relay_lag_seconds", "gauge",
                    "How late the newest live message from Redis was relayed, on Redis's clock.");
        fprintf(f, "multichat_relay_lag_seconds %" PRIu64 ".%06" PRIu64 "\n",
                s->relay_lag_usec / USEC_PER_SEC, s->relay_lag_usec % USEC_PER_SEC);
        metric_u64(f, "multichat_overloaded", "gauge",
                   "1 while new messages are refused in part because relaying is late.", s->overloaded);

        r = fflush(f) == 0 && !ferror(f) ? 0 : -ENOMEM;
        fclose(f);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(buf);
        return 0;
}

typedef struct Address {
        int family;
        unsigned char bytes[16];
} Address;

/* IPv4-mapped IPv6 (::ffff:a.b.c.d, what a dual-stack socket reports for
 * an IPv4 client) is read as the IPv4 address. */
static int address_parse(const char *s, Address *ret) {
        static const unsigned char v4_mapped[12] = { [10] = 0xff, [11] = 0xff };
        Address a = {};

        if (inet_pton(AF_INET, s, a.bytes) == 1)
                a.family = AF_INET;
        else if (inet_pton(AF_INET6, s, a.bytes) == 1) {
                a.family = AF_INET6;
                if (memcmp(a.bytes, v4_mapped, sizeof v4_mapped) == 0) {
                        memmove(a.bytes, a.bytes + 12, 4);
                        memset(a.bytes + 4, 0, 12);
                        a.family = AF_INET;
                }
        } else
                return -EINVAL;
        *ret = a;
        return 0;
}

static unsigned address_bits(const Address *a) {
        return a->family == AF_INET ? 32 : 128;
}

/* "ADDR" or "ADDR/PREFIX"; a bare address is its whole length. */
static int allow_entry_parse(const char *s, Address *ret, unsigned *ret_prefix) {
        char buf[INET6_ADDRSTRLEN + 1];
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t) (slash - s) : strlen(s);
        unsigned long prefix;
        char *end;
        Address a;

        if (n == 0 || n >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = 0;
        /* A mapped address in the list would silently mean IPv4: refuse it. */
        if (strchr(buf, ':') && strchr(buf, '.'))
                return -EINVAL;
        if (address_parse(buf, &a) < 0)
                return -EINVAL;
        prefix = address_bits(&a);
        if (slash) {
                if (slash[1] < '0' || slash[1] > '9' || (slash[1] == '0' && slash[2]))
                        return -EINVAL;
                errno = 0;
                prefix = strtoul(slash + 1, &end, 10);
                if (errno || *end || prefix > address_bits(&a))
                        return -EINVAL;
        }
        *ret = a;
        *ret_prefix = (unsigned) prefix;
        return 0;
}

bool metrics_allow_entry_is_valid(const char *s) {
        Address a;
        unsigned p;

        return allow_entry_parse(s, &a, &p) >= 0;
}

static bool address_in(const Address *peer, const Address *net, unsigned prefix) {
        unsigned whole = prefix / 8, rest = prefix % 8;

        if (peer->family != net->family)
                return false;
        if (memcmp(peer->bytes, net->bytes, whole) != 0)
                return false;
        if (rest == 0)
                return true;
        return ((peer->bytes[whole] ^ net->bytes[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

bool metrics_peer_is_allowed(char **allow, const char *peer) {
        Address p, net;
        unsigned prefix;

        if (!peer || address_parse(peer, &p) < 0)
                return false;
        STRV_FOREACH(e, allow)
                if (allow_entry_parse(*e, &net, &prefix) >= 0 && address_in(&p, &net, prefix))
                        return true;
        return false;
}
