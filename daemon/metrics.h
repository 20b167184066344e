/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /metrics: who may scrape, and the Prometheus text exposition of every part's counters. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/services.h"
#include "wire/protocol.h"

typedef struct Chat Chat;
typedef struct Redis Redis;
typedef struct Web Web;

/* One reading of every part, taken at once so the exposition is coherent. */
typedef struct MetricsSnapshot {
        unsigned connections;            /* WebSockets open */
        unsigned peers;                  /* accepted connections, HTTP or WebSocket */
        size_t rooms;
        bool ready;                      /* Redis up and rooms loaded */
        bool redis_connected;
        uint64_t redis_reconnects;
        uint64_t relay_lag_usec;
        bool overloaded;
        uint64_t messages_received;
        uint64_t deliveries;
        uint64_t refusals[_PROTOCOL_ERROR_MAX];   /* the chat's and the web front's together */
        WebStats web;
} MetricsSnapshot;

void metrics_collect(MetricsSnapshot *ret, Chat *chat, Web *web, const WebStats *stats, Redis *redis,
                     uint64_t redis_reconnects);

/* The text format, version 0.0.4, malloc'd. */
int metrics_format(const MetricsSnapshot *s, char **ret);

/* An allow-list entry: a numeric IPv4 or IPv6 address, optionally with a
 * /PREFIX (0-32, 0-128). */
bool metrics_allow_entry_is_valid(const char *s);
/* Whether peer (a numeric address; IPv4-mapped IPv6 counts as IPv4)
 * matches an entry. An empty or NULL list allows nobody. */
bool metrics_peer_is_allowed(char **allow, const char *peer);
