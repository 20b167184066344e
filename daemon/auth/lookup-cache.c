/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The auth helper's short-lived memory of successful account lookups: a FIFO with a hash index. */

/* Every entry gets the same lifetime, so the order of insertion is the
 * order of expiry: the oldest entry is always the first to expire and the
 * first to make room. A queue in insertion order plus a chained hash index
 * is all the bookkeeping this needs — no timer, no heap. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "auth/lookup-cache.h"
#include "basic/hash.h"
#include "basic/list.h"
#include "basic/macro.h"

/* Far above what the helper asks for; keeps the bucket count in 32 bits. */
#define LOOKUP_CACHE_ENTRIES_LIMIT (1U << 24)

typedef struct Entry Entry;
struct Entry {
        LIST_FIELDS(Entry, fifo);
        Entry *bucket_next;
        uint32_t hash;
        uint64_t expires;
        LookupKey key;
        UserInfo value;
};

struct LookupCache {
        uint64_t ttl;
        size_t max_entries;
        size_t n_entries;
        /* Random, so that nobody can pick names that share a bucket. Only
         * existing accounts get in, which limits that anyway. */
        uint64_t seed;
        uint32_t n_buckets;             /* a power of two */
        Entry **buckets;
        Entry *oldest, *newest;
};

int lookup_cache_new(LookupCache **ret, size_t max_entries, uint64_t ttl_usec) {
        _cleanup_(freep) LookupCache *c = NULL;
        uint32_t n = 1;

        if (max_entries == 0 || max_entries > LOOKUP_CACHE_ENTRIES_LIMIT || ttl_usec == 0)
                return -EINVAL;
        while (n < max_entries)
                n <<= 1;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        if (getrandom(&c->seed, sizeof c->seed, 0) != (ssize_t) sizeof c->seed)
                return -errno;
        c->buckets = calloc(n, sizeof *c->buckets);
        if (!c->buckets)
                return -ENOMEM;
        c->n_buckets = n;
        c->max_entries = max_entries;
        c->ttl = ttl_usec;
        *ret = TAKE_PTR(c);
        return 0;
}

LookupCache *lookup_cache_free(LookupCache *c) {
        if (!c)
                return NULL;
        while (c->oldest) {
                Entry *e = c->oldest;
                LIST_REMOVE_TAIL(fifo, c->oldest, c->newest, e);
                free(e);
        }
        free(c->buckets);
        return mfree(c);
}

static int key_set_group(LookupKey *k, const char *group) {
        size_t n = group ? strlen(group) : 0;

        if (n >= sizeof k->group)
                return -EINVAL;
        memcpy(k->group, group ?: "", n + 1);
        return 0;
}

int lookup_key_by_name(LookupKey *ret, const char *name, const char *group) {
        LookupKey k = {};
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n >= sizeof k.name || key_set_group(&k, group) < 0)
                return -EINVAL;
        memcpy(k.name, name, n + 1);
        *ret = k;
        return 0;
}

int lookup_key_by_uid(LookupKey *ret, uint32_t uid, const char *group) {
        LookupKey k = { .by_uid = true, .uid = uid };

        if (key_set_group(&k, group) < 0)
                return -EINVAL;
        *ret = k;
        return 0;
}

/* FNV-1a over the seed and the key's fields (each string with its NUL, so
 * "ab"+"c" and "a"+"bc" differ). */
static uint32_t key_hash(const LookupCache *c, const LookupKey *k) {
        uint8_t by_uid = k->by_uid;
        uint64_t h = HASH_FNV1A_INIT ^ c->seed;

        h = hash_fnv1a(h, &by_uid, 1);
        if (k->by_uid)
                h = hash_fnv1a(h, &k->uid, sizeof k->uid);
        else
                h = hash_fnv1a(h, k->name, strlen(k->name) + 1);
        h = hash_fnv1a(h, k->group, strlen(k->group) + 1);
        return hash_finish(h);
}

static bool key_equal(const LookupKey *a, const LookupKey *b) {
        if (a->by_uid != b->by_uid || !streq(a->group, b->group))
                return false;
        return a->by_uid ? a->uid == b->uid : streq(a->name, b->name);
}

static Entry **bucket_of(LookupCache *c, uint32_t hash) {
        return &c->buckets[hash & (c->n_buckets - 1)];
}

static Entry *cache_find(LookupCache *c, const LookupKey *key, uint32_t hash) {
        for (Entry *e = *bucket_of(c, hash); e; e = e->bucket_next)
                if (e->hash == hash && key_equal(&e->key, key))
                        return e;
        return NULL;
}

static void cache_remove(LookupCache *c, Entry *e) {
        Entry **p = bucket_of(c, e->hash);

        while (*p != e)
                p = &(*p)->bucket_next;
        *p = e->bucket_next;
        LIST_REMOVE_TAIL(fifo, c->oldest, c->newest, e);
        c->n_entries--;
        free(e);
}

int lookup_cache_get(LookupCache *c, const LookupKey *key, uint64_t now, UserInfo *ret) {
        Entry *e = cache_find(c, key, key_hash(c, key));

        if (!e || e->expires <= now)
                return 0;
        *ret = e->value;
        return 1;
}

int lookup_cache_put(LookupCache *c, const LookupKey *key, const UserInfo *value, uint64_t now) {
        uint32_t hash = key_hash(c, key);
        Entry *e, **b;

        while (c->oldest && c->oldest->expires <= now)
                cache_remove(c, c->oldest);
        e = cache_find(c, key, hash);
        if (e)
                cache_remove(c, e);
        else if (c->n_entries >= c->max_entries)
                cache_remove(c, c->oldest);

        e = malloc(sizeof *e);
        if (!e)
                return -ENOMEM;
        *e = (Entry) {
                .hash = hash,
                .expires = now + c->ttl,
                .key = *key,
                .value = *value,
        };
        b = bucket_of(c, hash);
        e->bucket_next = *b;
        *b = e;
        LIST_APPEND_TAIL(fifo, c->oldest, c->newest, e);
        c->n_entries++;
        return 0;
}

size_t lookup_cache_size(const LookupCache *c) {
        return c->n_entries;
}
