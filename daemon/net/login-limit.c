/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Login attempt limits per client address and per username: attempts per minute and attempts in flight. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "net/login-limit.h"
#include "basic/hash.h"
#include "basic/macro.h"

/* A fixed table: an attacker cycling through addresses or names evicts
 * old entries instead of growing our memory. */
#define LOGIN_LIMIT_SLOTS 4096
#define LOGIN_LIMIT_KEY_MAX 80

typedef struct LimitSlot {
        char key[LOGIN_LIMIT_KEY_MAX];      /* "a:" address or "u:" username; "" free */
        uint64_t window_start;
        unsigned attempts;
        unsigned in_flight;
} LimitSlot;

struct LoginLimiter {
        unsigned attempts_per_window;
        uint64_t seed;                /* random: nobody can compute keys that collide */
        LimitSlot slots[LOGIN_LIMIT_SLOTS];
};

int login_limiter_new(LoginLimiter **ret, unsigned attempts_per_window) {
        LoginLimiter *l = calloc(1, sizeof *l);

        if (!l)
                return -ENOMEM;
        l->attempts_per_window = attempts_per_window;
        if (getrandom(&l->seed, sizeof l->seed, 0) != (ssize_t) sizeof l->seed) {
                free(l);
                return -errno;
        }
        *ret = l;
        return 0;
}

void login_limiter_set_limit(LoginLimiter *l, unsigned attempts_per_window) {
        l->attempts_per_window = attempts_per_window;
}

LoginLimiter *login_limiter_free(LoginLimiter *l) {
        return mfree(l);
}

static uint32_t hash_key(uint64_t seed, const char *s) {
        return hash_finish(hash_fnv1a(HASH_FNV1A_INIT ^ seed, s, strlen(s)));
}

/* Linear probing over a few slots; a full neighbourhood reuses its oldest
 * window, which only ever forgets attempts, never invents them. */
static LimitSlot *limiter_slot(LoginLimiter *l, char prefix, const char *value, uint64_t now, bool create,
                               const LimitSlot *keep) {
        char key[LOGIN_LIMIT_KEY_MAX];
        LimitSlot *oldest = NULL;
        uint32_t h;

        key[0] = prefix;
        key[1] = ':';
        strncpy(key + 2, value, sizeof key - 3);
        key[sizeof key - 1] = 0;
        h = hash_key(l->seed, key);

        for (unsigned i = 0; i < 8; i++) {
                LimitSlot *s = &l->slots[(h + i) % LOGIN_LIMIT_SLOTS];

                if (streq(s->key, key))
                        return s;
                if (s == keep)
                        continue;
                if (!s->key[0] || (s->in_flight == 0 && now - s->window_start > LOGIN_LIMIT_WINDOW_USEC)) {
                        if (!oldest || oldest->key[0])
                                oldest = s;
                } else if (s->in_flight == 0 && (!oldest || (oldest->key[0] && s->window_start < oldest->window_start)))
                        oldest = s;
        }
        if (!create || !oldest)
                return NULL;
        *oldest = (LimitSlot) { .window_start = now };
        strcpy(oldest->key, key);
        return oldest;
}

static bool slot_over(LoginLimiter *l, LimitSlot *s, uint64_t now, unsigned *retry) {
        if (now - s->window_start > LOGIN_LIMIT_WINDOW_USEC) {
                s->window_start = now;
                s->attempts = 0;
        }
        if (s->in_flight >= LOGIN_LIMIT_IN_FLIGHT) {
                *retry = MAX(*retry, 1u);
                return true;
        }
        if (s->attempts >= l->attempts_per_window) {
                *retry = MAX(*retry, (unsigned) ((s->window_start + LOGIN_LIMIT_WINDOW_USEC - now) / 1000000) + 1);
                return true;
        }
        return false;
}

int login_limiter_begin(LoginLimiter *l, const char *address, const char *username, uint64_t now_usec,
                        unsigned *ret_retry_after_sec) {
        LimitSlot *a = limiter_slot(l, 'a', address, now_usec, true, NULL);
        LimitSlot *u = a ? limiter_slot(l, 'u', username, now_usec, true, a) : NULL;
        unsigned retry = 0;
        bool over = false;

        if (!a || !u) {
                *ret_retry_after_sec = 1;
                return -EBUSY;
        }
        over |= slot_over(l, a, now_usec, &retry);
        over |= slot_over(l, u, now_usec, &retry);
        if (over) {
                *ret_retry_after_sec = retry;
                return -EBUSY;
        }
        a->attempts++;
        a->in_flight++;
        u->attempts++;
        u->in_flight++;
        return 0;
}

void login_limiter_end(LoginLimiter *l, const char *address, const char *username) {
        LimitSlot *a = limiter_slot(l, 'a', address, 0, false, NULL);
        LimitSlot *u = limiter_slot(l, 'u', username, 0, false, NULL);

        if (a && a->in_flight > 0)
                a->in_flight--;
        if (u && u->in_flight > 0)
                u->in_flight--;
}
