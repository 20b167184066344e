/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How late messages reach us from Redis, and whether to refuse new ones until we catch up. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* A measured lag counts this long; after that, with nothing new arriving,
 * the backlog it measured is gone. */
#define OVERLOAD_SAMPLE_TTL_USEC (1000 * 1000ULL)

/* How often the share of new messages let in is adjusted. */
#define OVERLOAD_STEP_USEC (100 * 1000ULL)
/* The smallest share let in: someone's message still gets through now and
 * then, and each one relayed is a fresh measurement. */
#define OVERLOAD_ADMIT_MIN 0.01
/* Let in this much more each step while on time: back to all in 2 s. */
#define OVERLOAD_ADMIT_STEP 0.05

typedef struct Overload {
        int64_t clock_offset_usec;    /* Redis's clock minus ours */
        bool clock_known;
        uint64_t lag_usec;            /* of the newest message relayed */
        uint64_t lag_at_usec;         /* CLOCK_MONOTONIC, when measured */
        double admit;                 /* share of new messages let in; 0 means 1 (not started) */
        double credit;
        uint64_t adjusted_at_usec;
        bool active;                  /* letting in less than all */
} Overload;

/* A TIME answer: Redis said redis_usec between our sent and received
 * (CLOCK_REALTIME). Message ids carry Redis's clock, so lags are measured
 * on it, whatever ours says. */
void overload_clock_sample(Overload *o, uint64_t sent_usec, uint64_t redis_usec, uint64_t received_usec);

/* A live message with this id (milliseconds of Redis's clock) is being
 * relayed now. */
void overload_note_message(Overload *o, uint64_t id_ms, uint64_t now_realtime_usec, uint64_t now_monotonic_usec);

/* Adjusts the share of new messages let in, like TCP's congestion window:
 * halved every step while messages are relayed later than max_lag_usec,
 * raised by a little every step while they are not, all of them again
 * once nothing late was measured for OVERLOAD_SAMPLE_TTL_USEC. Returns 1
 * when this starts letting in less than all, -1 when it lets in all again,
 * 0 otherwise (for logging). */
int overload_update(Overload *o, uint64_t max_lag_usec, uint64_t now_monotonic_usec);

/* Whether to let in one new message, spreading the share evenly. */
bool overload_admit(Overload *o);
