/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the lookup cache: keys, expiry, replacement, the bound and the order of eviction. */

#include <stdio.h>
#include <string.h>

#include "auth/lookup-cache.h"
#include "basic/macro.h"
#include "test/test.h"

#define TTL 1000

static LookupKey name_key(const char *name, const char *group) {
        LookupKey k;

        ASSERT_OK(lookup_key_by_name(&k, name, group));
        return k;
}

static LookupKey uid_key(uint32_t uid, const char *group) {
        LookupKey k;

        ASSERT_OK(lookup_key_by_uid(&k, uid, group));
        return k;
}

static UserInfo user(const char *name, uid_t uid, bool staff, bool in_group) {
        UserInfo u = { .uid = uid, .staff = staff, .in_group = in_group };

        ASSERT_TRUE(strlen(name) < sizeof u.name);
        strcpy(u.name, name);
        return u;
}

static void put(LookupCache *c, LookupKey k, UserInfo u, uint64_t now) {
        ASSERT_OK(lookup_cache_put(c, &k, &u, now));
}

static void assert_hit(LookupCache *c, LookupKey k, uint64_t now, const char *name, uid_t uid, bool staff,
                       bool in_group) {
        UserInfo u = {};

        ASSERT_INT_EQ(lookup_cache_get(c, &k, now, &u), 1);
        ASSERT_STREQ(u.name, name);
        ASSERT_INT_EQ(u.uid, uid);
        ASSERT_INT_EQ(u.staff, staff);
        ASSERT_INT_EQ(u.in_group, in_group);
}

static void assert_miss(LookupCache *c, LookupKey k, uint64_t now) {
        UserInfo u = user("untouched", 7, true, true);

        ASSERT_INT_EQ(lookup_cache_get(c, &k, now, &u), 0);
        ASSERT_STREQ(u.name, "untouched");
        ASSERT_INT_EQ(u.uid, 7);
}

static void test_new_invalid(void) {
        LookupCache *c = NULL;

        ASSERT_ERROR(lookup_cache_new(&c, 0, TTL), EINVAL);
        ASSERT_ERROR(lookup_cache_new(&c, 16, 0), EINVAL);
        ASSERT_ERROR(lookup_cache_new(&c, (size_t) 1 << 25, TTL), EINVAL);
        ASSERT_NULL(c);
        ASSERT_NULL(lookup_cache_free(NULL));
}

static void test_keys(void) {
        char long_name[USERNAME_MAX + 2], long_group[AUTH_WIRE_GROUP_MAX + 2];
        LookupKey k = {};

        memset(long_name, 'a', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = 0;
        memset(long_group, 'g', sizeof long_group - 1);
        long_group[sizeof long_group - 1] = 0;

        ASSERT_ERROR(lookup_key_by_name(&k, NULL, NULL), EINVAL);
        ASSERT_ERROR(lookup_key_by_name(&k, "", NULL), EINVAL);
        ASSERT_ERROR(lookup_key_by_name(&k, long_name, NULL), EINVAL);
        ASSERT_ERROR(lookup_key_by_name(&k, "alice", long_group), EINVAL);
        ASSERT_ERROR(lookup_key_by_uid(&k, 1001, long_group), EINVAL);
        /* The longest that fit. */
        long_name[USERNAME_MAX] = 0;
        long_group[AUTH_WIRE_GROUP_MAX] = 0;
        ASSERT_OK(lookup_key_by_name(&k, long_name, long_group));
        ASSERT_INT_EQ(strlen(k.name), USERNAME_MAX);
        ASSERT_INT_EQ(strlen(k.group), AUTH_WIRE_GROUP_MAX);
        /* No group and the empty group are the same question. */
        ASSERT_OK(lookup_key_by_uid(&k, 5, NULL));
        ASSERT_STREQ(k.group, "");
}

static void test_hit_miss(void) {
        LookupCache *c = NULL;

        ASSERT_OK(lookup_cache_new(&c, 16, TTL));
        assert_miss(c, name_key("alice", NULL), 0);

        put(c, name_key("alice", NULL), user("alice", 1001, true, false), 100);
        ASSERT_INT_EQ(lookup_cache_size(c), 1);
        assert_hit(c, name_key("alice", NULL), 100, "alice", 1001, true, false);
        assert_hit(c, name_key("alice", ""), 100, "alice", 1001, true, false);
        /* Each part of the key counts. */
        assert_miss(c, name_key("alice", "multichat-admin"), 100);
        assert_miss(c, name_key("alicE", NULL), 100);
        assert_miss(c, name_key("alic", NULL), 100);
        assert_miss(c, uid_key(1001, NULL), 100);

        put(c, uid_key(1001, "multichat-admin"), user("alice", 1001, true, true), 100);
        assert_hit(c, uid_key(1001, "multichat-admin"), 100, "alice", 1001, true, true);
        assert_miss(c, uid_key(1001, NULL), 100);
        assert_miss(c, uid_key(1002, "multichat-admin"), 100);
        assert_miss(c, name_key("alice", "multichat-admin"), 100);
        ASSERT_INT_EQ(lookup_cache_size(c), 2);

        /* Alive until just before now + ttl. */
        assert_hit(c, name_key("alice", NULL), 100 + TTL - 1, "alice", 1001, true, false);
        assert_miss(c, name_key("alice", NULL), 100 + TTL);
        assert_miss(c, uid_key(1001, "multichat-admin"), 100 + TTL);
        c = lookup_cache_free(c);
        ASSERT_NULL(c);
}

static void test_replace(void) {
        LookupCache *c = NULL;
        LookupKey a = name_key("alice", NULL);

        ASSERT_OK(lookup_cache_new(&c, 3, TTL));
        put(c, a, user("alice", 1001, true, false), 0);
        put(c, name_key("bob", NULL), user("bob", 1002, false, false), 10);
        put(c, name_key("carol", NULL), user("carol", 1003, false, false), 20);
        /* A newer answer replaces the old one and lives its own full time. */
        put(c, a, user("alice", 1001, false, false), 30);
        ASSERT_INT_EQ(lookup_cache_size(c), 3);
        assert_hit(c, a, 30, "alice", 1001, false, false);
        assert_hit(c, a, 30 + TTL - 1, "alice", 1001, false, false);
        /* ...and is now the newest: the next to go when full is bob. */
        put(c, name_key("dave", NULL), user("dave", 1004, false, false), 40);
        ASSERT_INT_EQ(lookup_cache_size(c), 3);
        assert_miss(c, name_key("bob", NULL), 40);
        assert_hit(c, name_key("carol", NULL), 40, "carol", 1003, false, false);
        assert_hit(c, name_key("dave", NULL), 40, "dave", 1004, false, false);
        assert_hit(c, a, 40, "alice", 1001, false, false);
        lookup_cache_free(c);
}

static void test_expired_dropped_on_put(void) {
        LookupCache *c = NULL;
        char name[16];

        ASSERT_OK(lookup_cache_new(&c, 100, TTL));
        for (unsigned i = 0; i < 10; i++) {
                snprintf(name, sizeof name, "u%u", i);
                put(c, name_key(name, NULL), user(name, 2000 + i, false, false), i * 100);
        }
        ASSERT_INT_EQ(lookup_cache_size(c), 10);
        /* At 1450, u0..u4 (put at 0..400) have expired and go. */
        put(c, uid_key(1, NULL), user("x", 1, false, false), 1450);
        ASSERT_INT_EQ(lookup_cache_size(c), 6);
        assert_miss(c, name_key("u4", NULL), 1450);
        assert_hit(c, name_key("u5", NULL), 1450, "u5", 2005, false, false);
        /* Much later everything but the new entry has gone. */
        put(c, uid_key(2, NULL), user("y", 2, false, false), 1450 + TTL - 1);
        ASSERT_INT_EQ(lookup_cache_size(c), 2);
        lookup_cache_free(c);
}

/* More keys than the bound, in far fewer buckets than keys when max is
 * small: the newest max stay, in insertion order, all others are gone, and
 * every answer belongs to its own key. */
static void test_bound(size_t max, unsigned n) {
        LookupCache *c = NULL;
        char name[16];

        ASSERT_OK(lookup_cache_new(&c, max, 1000000));
        for (unsigned i = 0; i < n; i++) {
                snprintf(name, sizeof name, "user%u", i);
                put(c, name_key(name, NULL), user(name, 10000 + i, i % 2, i % 3 == 0), i);
                put(c, uid_key(10000 + i, "g"), user(name, 10000 + i, i % 2, true), i);
                ASSERT_INT_EQ(lookup_cache_size(c), MIN((size_t) 2 * (i + 1), max));
        }
        /* Put number 2i is the name's, 2i + 1 the uid's; of 2n, the last max stay. */
        for (unsigned i = 0; i < n; i++) {
                snprintf(name, sizeof name, "user%u", i);
                if ((size_t) 2 * i + max >= (size_t) 2 * n)
                        assert_hit(c, name_key(name, NULL), n, name, 10000 + i, i % 2, i % 3 == 0);
                else
                        assert_miss(c, name_key(name, NULL), n);
                if ((size_t) 2 * i + 1 + max >= (size_t) 2 * n)
                        assert_hit(c, uid_key(10000 + i, "g"), n, name, 10000 + i, i % 2, true);
                else
                        assert_miss(c, uid_key(10000 + i, "g"), n);
        }
        lookup_cache_free(c);
}

int main(void) {
        test_new_invalid();
        test_keys();
        test_hit_miss();
        test_replace();
        test_expired_dropped_on_put();
        test_bound(1, 10);
        test_bound(7, 100);
        test_bound(1000, 5000);
        test_bound(65536, 40000);
        return 0;
}
