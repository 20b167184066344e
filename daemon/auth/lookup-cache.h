/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The auth helper's short-lived memory of successful account lookups: a FIFO with a hash index. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire/auth-wire.h"

/* An account as a lookup answers it. */
typedef struct UserInfo {
        uid_t uid;
        bool staff;
        bool in_group;
        char name[USERNAME_MAX + 1];
} UserInfo;

/* The question: by name or by uid, and the optional extra group ("" = none). */
typedef struct LookupKey {
        bool by_uid;
        uint32_t uid;                                   /* by_uid */
        char name[USERNAME_MAX + 1];                    /* !by_uid */
        char group[AUTH_WIRE_GROUP_MAX + 1];
} LookupKey;

typedef struct LookupCache LookupCache;

/* Every entry lives ttl_usec (> 0) from when it was put; at most
 * max_entries (> 0) entries, the oldest making room for a new one. Not
 * thread-safe: the caller locks. */
int lookup_cache_new(LookupCache **ret, size_t max_entries, uint64_t ttl_usec);
LookupCache *lookup_cache_free(LookupCache *c);

/* -EINVAL when a name or group would not fit the wire's bounds. */
int lookup_key_by_name(LookupKey *ret, const char *name, const char *group);
int lookup_key_by_uid(LookupKey *ret, uint32_t uid, const char *group);

/* 1 and the answer when key has one that has not expired at now
 * (CLOCK_MONOTONIC µs), 0 when not. */
int lookup_cache_get(LookupCache *c, const LookupKey *key, uint64_t now, UserInfo *ret);

/* Remembers the answer until now + ttl, replacing any answer the key has.
 * Drops what expired by now, and the oldest entry when full. */
int lookup_cache_put(LookupCache *c, const LookupKey *key, const UserInfo *value, uint64_t now);

size_t lookup_cache_size(const LookupCache *c);
