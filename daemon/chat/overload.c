/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How late messages reach us from Redis, and whether to refuse new ones until we catch up. */

#include "chat/overload.h"

void overload_clock_sample(Overload *o, uint64_t sent_usec, uint64_t redis_usec, uint64_t received_usec) {
        uint64_t mid;

        if (received_usec < sent_usec)
                return;         /* our clock was set back meanwhile */
        mid = sent_usec + (received_usec - sent_usec) / 2;
        o->clock_offset_usec = (int64_t) redis_usec - (int64_t) mid;
        o->clock_known = true;
}

void overload_note_message(Overload *o, uint64_t id_ms, uint64_t now_realtime_usec, uint64_t now_monotonic_usec) {
        int64_t lag;

        if (!o->clock_known || id_ms > UINT64_MAX / 1000 || now_realtime_usec > INT64_MAX)
                return;
        /* An id's millisecond is truncated: the message may be up to 1 ms
         * younger than it says. */
        lag = (int64_t) now_realtime_usec + o->clock_offset_usec - (int64_t) (id_ms * 1000) - 1000;
        o->lag_usec = lag > 0 ? (uint64_t) lag : 0;
        o->lag_at_usec = now_monotonic_usec;
}

static double overload_share(const Overload *o) {
        return o->admit > 0 ? o->admit : 1.0;
}

int overload_update(Overload *o, uint64_t max_lag_usec, uint64_t now_monotonic_usec) {
        bool fresh = o->lag_at_usec > 0 && now_monotonic_usec < o->lag_at_usec + OVERLOAD_SAMPLE_TTL_USEC;
        bool late = fresh && o->lag_usec > max_lag_usec;
        double share = overload_share(o);
        bool was = o->active;

        if (!fresh)
                share = 1.0;    /* nothing relayed lately: no backlog */
        else if (now_monotonic_usec >= o->adjusted_at_usec + OVERLOAD_STEP_USEC) {
                if (late)
                        share = share / 2 > OVERLOAD_ADMIT_MIN ? share / 2 : OVERLOAD_ADMIT_MIN;
                else if (share < 1.0)
                        share = share + OVERLOAD_ADMIT_STEP < 1.0 ? share + OVERLOAD_ADMIT_STEP : 1.0;
                else
                        return 0;
                o->adjusted_at_usec = now_monotonic_usec;
        }
        o->admit = share;
        o->active = share < 1.0;
        if (o->active == was)
                return 0;
        return o->active ? 1 : -1;
}

bool overload_admit(Overload *o) {
        o->credit += overload_share(o);
        if (o->credit < 1.0)
                return false;
        o->credit -= 1.0;
        return true;
}
