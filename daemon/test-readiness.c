/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the readiness state machine: the bus name after the rooms, READY=1 after the name, once. */

#include "readiness.h"
#include "test/test.h"

static void test_in_order(void) {
        Readiness r = {};

        ASSERT_INT_EQ(r.state, READINESS_WAITING_CHAT);
        /* Nothing before the chat is ready, whatever the bus does. */
        ASSERT_INT_EQ(readiness_bus_changed(&r, false), 0u);
        ASSERT_INT_EQ(readiness_chat_changed(&r, true), READINESS_START_BUS);
        ASSERT_INT_EQ(r.state, READINESS_WAITING_BUS);
        ASSERT_INT_EQ(readiness_bus_changed(&r, true), READINESS_SEND_READY);
        ASSERT_INT_EQ(r.state, READINESS_READY);
        ASSERT_STREQ(readiness_state_to_string(r.state), "ready");
}

static void test_redis_comes_and_goes(void) {
        Readiness r = {};

        ASSERT_INT_EQ(readiness_chat_changed(&r, true), READINESS_START_BUS);
        /* Redis lost before the name came: the bus is not started twice. */
        ASSERT_INT_EQ(readiness_chat_changed(&r, false), 0u);
        ASSERT_INT_EQ(readiness_chat_changed(&r, true), 0u);
        ASSERT_INT_EQ(readiness_bus_changed(&r, true), READINESS_SEND_READY);
        /* Once ready, a Redis outage changes the status, not readiness:
         * READY=1 is never sent twice. */
        ASSERT_INT_EQ(readiness_chat_changed(&r, false), 0u);
        ASSERT_INT_EQ(readiness_chat_changed(&r, true), 0u);
        ASSERT_INT_EQ(r.state, READINESS_READY);
}

static void test_stopping(void) {
        Readiness r = {};

        readiness_stopping(&r);
        ASSERT_INT_EQ(readiness_chat_changed(&r, true), 0u);
        ASSERT_INT_EQ(readiness_bus_changed(&r, true), 0u);
        ASSERT_INT_EQ(r.state, READINESS_STOPPING);
}

static void test_bus_first(void) {
        Readiness r = {};

        /* A name that arrives before the chat (it cannot today: the bus is
         * started by the chat's readiness) still gives one READY=1. */
        ASSERT_INT_EQ(readiness_bus_changed(&r, true), 0u);
        ASSERT_INT_EQ(readiness_chat_changed(&r, true), READINESS_START_BUS | READINESS_SEND_READY);
}

int main(void) {
        test_in_order();
        test_redis_comes_and_goes();
        test_stopping();
        test_bus_first();
        return 0;
}
