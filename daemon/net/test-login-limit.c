/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the login attempt limiter: per-address and per-user windows, in-flight caps, bounded memory. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/login-limit.h"
#include "basic/macro.h"
#include "test/test.h"

#define SEC 1000000ULL
#define T0 (1000 * SEC)         /* an arbitrary monotonic "now" */

static void test_window(void) {
        _cleanup_(login_limiter_freep) LoginLimiter *l = NULL;
        unsigned retry = 12345;

        ASSERT_OK(login_limiter_new(&l, 5));

        /* Five attempts in a minute, each finished, then no more. */
        for (unsigned i = 0; i < 5; i++) {
                ASSERT_OK(login_limiter_begin(l, "192.0.2.1", "alice", T0 + i * SEC, &retry));
                login_limiter_end(l, "192.0.2.1", "alice");
        }
        ASSERT_INT_EQ(retry, 12345);    /* untouched on success */
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.1", "alice", T0 + 10 * SEC, &retry), EBUSY);
        /* The window opened at T0: 50 s left, rounded up. */
        ASSERT_TRUE(retry >= 50 && retry <= 51);
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.1", "alice", T0 + 59 * SEC, &retry), EBUSY);
        ASSERT_TRUE(retry >= 1 && retry <= 2);
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.1", "alice", T0 + 60 * SEC, &retry), EBUSY);
        ASSERT_TRUE(retry >= 1);

        /* Refused attempts do not count: the next window is full again. */
        ASSERT_OK(login_limiter_begin(l, "192.0.2.1", "alice", T0 + 60 * SEC + 1, &retry));
        login_limiter_end(l, "192.0.2.1", "alice");
        for (unsigned i = 1; i < 5; i++) {
                ASSERT_OK(login_limiter_begin(l, "192.0.2.1", "alice", T0 + 61 * SEC, &retry));
                login_limiter_end(l, "192.0.2.1", "alice");
        }
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.1", "alice", T0 + 62 * SEC, &retry), EBUSY);
        ASSERT_TRUE(retry >= 59 && retry <= 60);

        /* Other keys are not affected. */
        ASSERT_OK(login_limiter_begin(l, "192.0.2.2", "bob", T0 + 62 * SEC, &retry));
        login_limiter_end(l, "192.0.2.2", "bob");
}

static void test_set_limit(void) {
        _cleanup_(login_limiter_freep) LoginLimiter *l = NULL;
        unsigned retry = 0;

        ASSERT_OK(login_limiter_new(&l, 2));
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_OK(login_limiter_begin(l, "192.0.2.1", "alice", T0, &retry));
                login_limiter_end(l, "192.0.2.1", "alice");
        }
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.1", "alice", T0, &retry), EBUSY);
        /* Raised: the two counted stay counted, one more fits. */
        login_limiter_set_limit(l, 3);
        ASSERT_OK(login_limiter_begin(l, "192.0.2.1", "alice", T0, &retry));
        login_limiter_end(l, "192.0.2.1", "alice");
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.1", "alice", T0, &retry), EBUSY);
        /* Lowered below what was counted: refused for the rest of the window. */
        login_limiter_set_limit(l, 1);
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.3", "alice", T0, &retry), EBUSY);
        ASSERT_OK(login_limiter_begin(l, "192.0.2.3", "bob", T0, &retry));
        login_limiter_end(l, "192.0.2.3", "bob");
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.3", "carol", T0, &retry), EBUSY);
}

static void test_per_key(void) {
        _cleanup_(login_limiter_freep) LoginLimiter *l = NULL;
        char a[64], u[64];
        unsigned retry = 0;

        ASSERT_OK(login_limiter_new(&l, 3));

        /* One address guessing many users. */
        for (unsigned i = 0; i < 3; i++) {
                snprintf(u, sizeof u, "user%u", i);
                ASSERT_OK(login_limiter_begin(l, "2001:db8::1", u, T0, &retry));
                login_limiter_end(l, "2001:db8::1", u);
        }
        ASSERT_ERROR(login_limiter_begin(l, "2001:db8::1", "fresh", T0, &retry), EBUSY);
        ASSERT_TRUE(retry >= 59 && retry <= 61);

        /* Many addresses guessing one user. */
        for (unsigned i = 0; i < 3; i++) {
                snprintf(a, sizeof a, "198.51.100.%u", i);
                ASSERT_OK(login_limiter_begin(l, a, "victim", T0, &retry));
                login_limiter_end(l, a, "victim");
        }
        ASSERT_ERROR(login_limiter_begin(l, "198.51.100.200", "victim", T0 + SEC, &retry), EBUSY);
        ASSERT_TRUE(retry >= 58 && retry <= 60);

        /* A refusal because of one key does not count against the other:
         * "carol" was refused ten times from the exhausted address and
         * still has all three attempts elsewhere. */
        for (unsigned i = 0; i < 10; i++)
                ASSERT_ERROR(login_limiter_begin(l, "2001:db8::1", "carol", T0 + 2 * SEC, &retry), EBUSY);
        for (unsigned i = 0; i < 3; i++) {
                snprintf(a, sizeof a, "203.0.113.%u", i);
                ASSERT_OK(login_limiter_begin(l, a, "carol", T0 + 2 * SEC, &retry));
                login_limiter_end(l, a, "carol");
        }
        ASSERT_ERROR(login_limiter_begin(l, "203.0.113.99", "carol", T0 + 2 * SEC, &retry), EBUSY);

        /* Address and user keys live in separate namespaces. */
        ASSERT_OK(login_limiter_begin(l, "victim", "2001:db8::1", T0 + 3 * SEC, &retry));
        login_limiter_end(l, "victim", "2001:db8::1");
}

static void test_in_flight(void) {
        _cleanup_(login_limiter_freep) LoginLimiter *l = NULL;
        unsigned retry = 0;
        char a[64];

        ASSERT_OK(login_limiter_new(&l, 100));

        for (unsigned i = 0; i < LOGIN_LIMIT_IN_FLIGHT; i++)
                ASSERT_OK(login_limiter_begin(l, "192.0.2.7", "alice", T0, &retry));
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.7", "bob", T0, &retry), EBUSY);
        ASSERT_INT_EQ(retry, 1);
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.8", "alice", T0, &retry), EBUSY);
        ASSERT_INT_EQ(retry, 1);

        login_limiter_end(l, "192.0.2.7", "alice");
        ASSERT_OK(login_limiter_begin(l, "192.0.2.7", "alice", T0, &retry));
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.7", "alice", T0, &retry), EBUSY);
        for (unsigned i = 0; i < LOGIN_LIMIT_IN_FLIGHT; i++)
                login_limiter_end(l, "192.0.2.7", "alice");

        /* An end without a begin never goes below zero. */
        for (unsigned i = 0; i < 10; i++)
                login_limiter_end(l, "192.0.2.7", "alice");
        login_limiter_end(l, "never-seen", "nobody");
        for (unsigned i = 0; i < LOGIN_LIMIT_IN_FLIGHT; i++)
                ASSERT_OK(login_limiter_begin(l, "192.0.2.7", "alice", T0, &retry));
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.7", "alice", T0, &retry), EBUSY);

        /* In-flight attempts survive a flood of other keys: their slots are
         * never reused while a login is pending. */
        for (unsigned i = 0; i < 50000; i++) {
                char u[32];

                snprintf(a, sizeof a, "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
                snprintf(u, sizeof u, "flood%u", i);
                if (login_limiter_begin(l, a, u, T0 + SEC, &retry) >= 0)
                        login_limiter_end(l, a, u);
        }
        ASSERT_ERROR(login_limiter_begin(l, "192.0.2.7", "alice", T0 + SEC, &retry), EBUSY);
        ASSERT_INT_EQ(retry, 1);
        for (unsigned i = 0; i < LOGIN_LIMIT_IN_FLIGHT; i++)
                login_limiter_end(l, "192.0.2.7", "alice");
        ASSERT_OK(login_limiter_begin(l, "192.0.2.7", "alice", T0 + SEC, &retry));
        login_limiter_end(l, "192.0.2.7", "alice");
}

static void test_flood(void) {
        _cleanup_(login_limiter_freep) LoginLimiter *l = NULL;
        unsigned retry = 0, refused = 0;

        ASSERT_OK(login_limiter_new(&l, 5));

        /* Far more distinct keys than slots: memory is fixed, and a key seen
         * for the first time is never refused because of someone else's
         * attempts (forgetting is allowed, inventing is not). */
        for (unsigned i = 0; i < 100000; i++) {
                char a[64], u[32];

                snprintf(a, sizeof a, "2001:db8::%x:%x", i >> 16, i & 0xffff);
                snprintf(u, sizeof u, "u%u", i);
                if (login_limiter_begin(l, a, u, T0 + (i / 1000) * SEC, &retry) < 0)
                        refused++;
                else
                        login_limiter_end(l, a, u);
        }
        ASSERT_INT_EQ(refused, 0);

        /* Long keys are cut, not overflowed (ASan). */
        {
                char big[1000];

                memset(big, 'x', sizeof big - 1);
                big[sizeof big - 1] = 0;
                ASSERT_OK(login_limiter_begin(l, big, big, T0 + 200 * SEC, &retry));
                login_limiter_end(l, big, big);
        }
        ASSERT_OK(login_limiter_begin(l, "", "", T0 + 200 * SEC, &retry));
        login_limiter_end(l, "", "");
}

/* The table's hash (FNV-1a of "a:"/"u:" + key over 4096 slots) is
 * replicated here only to build colliding keys; with a different hash the
 * keys below merely stop colliding and the assertions still hold. */
static unsigned home_slot(char prefix, const char *value) {
        char key[80] = { prefix, ':' };
        uint32_t h = 2166136261u;

        for (size_t i = 0; i + 3 < sizeof key && value[i]; i++)
                key[i + 2] = value[i];
        for (const char *s = key; *s; s++)
                h = (h ^ (uint8_t) *s) * 16777619u;
        return h % 4096;
}

static unsigned slot_distance(unsigned a, unsigned b) {
        unsigned d = (a - b) % 4096;

        return MIN(d, 4096 - d);
}

/* Finds the n-th address (counting from *i) whose key starts probing at slot. */
static void find_address(unsigned slot, unsigned *i, char *buf, size_t size) {
        for (;; (*i)++) {
                snprintf(buf, size, "2001:db8:%x::%x", *i >> 16, *i & 0xffff);
                if (home_slot('a', buf) == slot) {
                        (*i)++;
                        return;
                }
        }
}

static void find_far_user(unsigned slot, unsigned *i, char *buf, size_t size) {
        for (;; (*i)++) {
                snprintf(buf, size, "filler%u", *i);
                if (slot_distance(home_slot('u', buf), slot) > 16) {
                        (*i)++;
                        return;
                }
        }
}

/* An attempt whose address and username slots fall in one neighbourhood
 * that is otherwise full of pending logins: creating the username's slot
 * must not evict the address slot just created for the same attempt, or
 * both would alias one slot and login_limiter_end() would give back only
 * one of two in-flight counts, leaving the username a pending login
 * forever (addresses that collide with a chosen username are easy to
 * compute). */
static void test_alias(void) {
        _cleanup_(login_limiter_freep) LoginLimiter *l = NULL;
        unsigned slot = home_slot('u', "victim"), ia = 0, iu = 0, retry = 0;
        char fill_a[7][64], fill_u[7][64], a[64];

        ASSERT_OK(login_limiter_new(&l, 1000));

        /* Seven pending logins fill the victim's neighbourhood but one slot. */
        for (unsigned k = 0; k < 7; k++) {
                find_address(slot, &ia, fill_a[k], sizeof fill_a[k]);
                find_far_user(slot, &iu, fill_u[k], sizeof fill_u[k]);
                ASSERT_OK(login_limiter_begin(l, fill_a[k], fill_u[k], T0, &retry));
        }
        /* One attempt for the victim from an address of the same neighbourhood. */
        find_address(slot, &ia, a, sizeof a);
        ASSERT_OK(login_limiter_begin(l, a, "victim", T0, &retry));
        login_limiter_end(l, a, "victim");
        for (unsigned k = 0; k < 7; k++)
                login_limiter_end(l, fill_a[k], fill_u[k]);

        /* Nothing is pending now: the victim may have the full number of
         * logins in flight again. */
        for (unsigned k = 0; k < LOGIN_LIMIT_IN_FLIGHT; k++) {
                snprintf(a, sizeof a, "192.0.2.%u", 100 + k);
                ASSERT_OK(login_limiter_begin(l, a, "victim", T0 + SEC, &retry));
        }
}

int main(void) {
        test_set_limit();
        test_window();
        test_per_key();
        test_in_flight();
        test_flood();
        test_alias();
        return 0;
}
