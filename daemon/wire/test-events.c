/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for events.c: the shapes of the user events of version 2 and what is refused. */

#include <errno.h>
#include <string.h>

#include "basic/macro.h"
#include "test/test.h"
#include "wire/events.h"

static int parse(const char *s, Event *e) {
        return event_parse(s, strlen(s), e);
}

static void test_user_events(void) {
        Event e;

        ASSERT_OK(parse("[\"uj\",\"alice\",\"12\"]", &e));
        ASSERT_INT_EQ(e.kind, EVENT_USER_JOINED);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.room, "12");
        event_done(&e);

        ASSERT_OK(parse("[\"ul\", \"alice\", \"3\", \"\"]", &e));
        ASSERT_INT_EQ(e.kind, EVENT_USER_LEFT);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.room, "3");
        ASSERT_STREQ(e.reason, "");
        event_done(&e);
        ASSERT_OK(parse("[\"ul\",\"bob\",\"3\",\"kicked\"]", &e));
        ASSERT_STREQ(e.reason, "kicked");
        event_done(&e);
        ASSERT_OK(parse("[\"ul\",\"bob\",\"3\",\"deleted\"]", &e));
        ASSERT_STREQ(e.reason, "deleted");
        event_done(&e);

        ASSERT_OK(parse("[\"ur\",\"alice\",\"1\",\"1700000000000-5\"]", &e));
        ASSERT_INT_EQ(e.kind, EVENT_USER_READ);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.room, "1");
        ASSERT_STREQ(e.id, "1700000000000-5");
        event_done(&e);
}

static void test_user_events_bad(void) {
        static const char *const bad[] = {
                "[\"uj\",\"alice\"]",
                "[\"uj\",\"alice\",\"1\",\"x\"]",
                "[\"uj\",\"alice\",1]",
                "[\"uj\",\"alice\",\"01\"]",
                "[\"uj\",\"alice\",\"\"]",
                "[\"uj\",\"alice\",\"1a\"]",
                "[\"uj\",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"1\"]",
                "[\"ul\",\"alice\",\"1\"]",
                "[\"ul\",\"alice\",\"1\",\"banned\"]",
                "[\"ul\",\"alice\",\"1\",null]",
                "[\"ur\",\"alice\",\"1\",\"x\"]",
                "[\"ur\",\"alice\",\"1\",\"1-\"]",
                "[\"ur\",\"alice\",\"1\"]",
                "[\"ur\",\"alice\",\"1\",5]",
                "{\"ur\":1}",
        };
        Event e;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_INT_EQ(parse(bad[i], &e), -EBADMSG);
}

int main(void) {
        test_user_events();
        test_user_events_bad();
        return 0;
}
