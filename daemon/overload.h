/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How late messages reach us from Redis, and whether to refuse new ones until we catch up. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* A measured lag counts this long; after that, with nothing new arriving,
 * the backlog it measured is gone. */
#define OVERLOAD_SAMPLE_TTL_USEC (1000 * 1000ULL)

typedef struct Overload {
        int64_t clock_offset_usec;    /* Redis's clock minus ours */
        bool clock_known;
        uint64_t lag_usec;            /* of the newest message relayed */
        uint64_t lag_at_usec;         /* CLOCK_MONOTONIC, when measured */
        bool active;
} Overload;

/* A TIME answer: Redis said redis_usec between our sent and received
 * (CLOCK_REALTIME). Message ids carry Redis's clock, so lags are measured
 * on it, whatever ours says. */
void overload_clock_sample(Overload *o, uint64_t sent_usec, uint64_t redis_usec, uint64_t received_usec);

/* A live message with this id (milliseconds of Redis's clock) is being
 * relayed now. */
void overload_note_message(Overload *o, uint64_t id_ms, uint64_t now_realtime_usec, uint64_t now_monotonic_usec);

/* Whether new messages should be refused: the newest relayed message was
 * more than max_lag_usec late, and that is recent. Returns 1 when this
 * starts an overload, -1 when it ends one, 0 otherwise (for logging). */
int overload_update(Overload *o, uint64_t max_lag_usec, uint64_t now_monotonic_usec);
