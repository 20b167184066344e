/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for overload detection: clock offset from TIME, lag of relayed messages, start and end. */

#include "chat/overload.h"
#include "test/test.h"

#define SEC 1000000ULL
#define MS 1000ULL

static void test_unknown_clock(void) {
        Overload o = {};

        /* Without a TIME answer there is no measuring: never overloaded. */
        overload_note_message(&o, 1000, 1000 * SEC, 5 * SEC);
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 5 * SEC), 0);
        ASSERT_TRUE(!o.active);
}

static void test_lag_and_skew(void) {
        Overload o = {};
        /* Redis's clock is 10 s behind ours; TIME took 2 ms there and back. */
        uint64_t ours = 1700000000 * SEC;

        overload_clock_sample(&o, ours, ours - 10 * SEC + 1 * MS, ours + 2 * MS);
        ASSERT_TRUE(o.clock_known);
        ASSERT_TRUE(o.clock_offset_usec == -(int64_t) (10 * SEC));

        /* A message stamped 5 ms ago on Redis's clock: 4-5 ms late, fine. */
        overload_note_message(&o, (ours - 10 * SEC - 5 * MS) / MS, ours, 100 * SEC);
        ASSERT_TRUE(o.lag_usec >= 4 * MS && o.lag_usec <= 5 * MS);
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 100 * SEC), 0);
        ASSERT_TRUE(!o.active);

        /* The skew alone would look like 10 s of lag; it must not. A
         * message stamped 800 ms ago is. */
        overload_note_message(&o, (ours - 10 * SEC - 800 * MS) / MS, ours, 101 * SEC);
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 101 * SEC), 1);
        ASSERT_TRUE(o.active);
        ASSERT_TRUE(o.admit == 0.5);
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 101 * SEC + 100 * MS), 0);
        ASSERT_TRUE(o.active);
        ASSERT_TRUE(o.admit == 0.25);

        /* On time again: the share grows back a step at a time, not all at
         * once (all at once would build the backlog again). */
        overload_note_message(&o, (ours + 1 * SEC - 10 * SEC) / MS, ours + 1 * SEC + 1 * MS, 102 * SEC);
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 102 * SEC), 0);
        ASSERT_TRUE(o.active);
        ASSERT_TRUE(o.admit > 0.29 && o.admit < 0.31);
        for (unsigned i = 1; i <= 20; i++) {
                overload_note_message(&o, (ours + 1 * SEC - 10 * SEC) / MS, ours + 1 * SEC + 1 * MS,
                                      102 * SEC + i * OVERLOAD_STEP_USEC);
                if (overload_update(&o, 250 * MS, 102 * SEC + i * OVERLOAD_STEP_USEC) < 0)
                        break;
        }
        ASSERT_TRUE(!o.active);
        ASSERT_TRUE(o.admit == 1.0);

        /* A message from the future (clock moved) counts as on time. */
        overload_note_message(&o, (ours + 60 * SEC) / MS, ours, 103 * SEC);
        ASSERT_TRUE(o.lag_usec == 0);
}

static void test_floor_and_admit(void) {
        Overload o = {};
        unsigned in = 0;

        overload_clock_sample(&o, 10 * SEC, 10 * SEC, 10 * SEC);
        /* Late for a long time: halved down to the floor, never to zero. */
        for (unsigned i = 0; i < 30; i++) {
                overload_note_message(&o, 9000, 10 * SEC, 50 * SEC + i * OVERLOAD_STEP_USEC);
                (void) overload_update(&o, 250 * MS, 50 * SEC + i * OVERLOAD_STEP_USEC);
        }
        ASSERT_TRUE(o.admit == OVERLOAD_ADMIT_MIN);
        /* The share is spread evenly: 1 in 100. */
        for (unsigned i = 0; i < 1000; i++)
                in += overload_admit(&o);
        ASSERT_TRUE(in >= 9 && in <= 11);

        /* Not started: everything is let in. */
        o = (Overload) {};
        for (unsigned i = 0; i < 10; i++)
                ASSERT_TRUE(overload_admit(&o));
}

static void test_stale_sample_expires(void) {
        Overload o = {};

        overload_clock_sample(&o, 10 * SEC, 10 * SEC, 10 * SEC);
        overload_note_message(&o, 9000, 10 * SEC, 50 * SEC);       /* 1 s late */
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 50 * SEC), 1);
        /* Nothing arrives any more (everyone is refused, the backlog is
         * gone): the old measurement must not keep us refusing forever. */
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 50 * SEC + OVERLOAD_SAMPLE_TTL_USEC - 1), 0);
        ASSERT_INT_EQ(overload_update(&o, 250 * MS, 50 * SEC + OVERLOAD_SAMPLE_TTL_USEC), -1);
}

static void test_clock_set_back(void) {
        Overload o = {};

        overload_clock_sample(&o, 10 * SEC, 5 * SEC, 9 * SEC);      /* received before sent */
        ASSERT_TRUE(!o.clock_known);
}

int main(void) {
        test_unknown_clock();
        test_lag_and_skew();
        test_floor_and_admit();
        test_stale_sample_expires();
        test_clock_set_back();
        return 0;
}
