/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Login attempt limits per client address and per username: attempts per minute and attempts in flight. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct LoginLimiter LoginLimiter;

#define LOGIN_LIMIT_WINDOW_USEC (60 * 1000000ULL)
#define LOGIN_LIMIT_IN_FLIGHT 4

int login_limiter_new(LoginLimiter **ret, unsigned attempts_per_window);
LoginLimiter *login_limiter_free(LoginLimiter *l);
/* A new limit (on reload): attempts already counted stay counted. */
void login_limiter_set_limit(LoginLimiter *l, unsigned attempts_per_window);

/* Counts an attempt for both keys when neither is over its limit and
 * returns 0; otherwise returns -EBUSY and the seconds until a retry may
 * succeed. Every successful begin is paired with one end. */
int login_limiter_begin(LoginLimiter *l, const char *address, const char *username, uint64_t now_usec,
                        unsigned *ret_retry_after_sec);
void login_limiter_end(LoginLimiter *l, const char *address, const char *username);

static inline void login_limiter_freep(LoginLimiter **l) {
        login_limiter_free(*l);
}
