/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the pub/sub event codec: every kind as the scripts and the daemon write it, and what it refuses. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "basic/macro.h"
#include "wire/events.h"
#include "test/test.h"

static void parse_ok(const char *json, Event *ret) {
        int r = event_parse(json, strlen(json), ret);

        if (r < 0)
                fprintf(stderr, "refused: %s\n", json);
        ASSERT_OK(r);
        ASSERT_NOT_NULL(ret->root);
}

static void parse_bad(const char *json) {
        Event e = { .root = NULL };
        int r = event_parse(json, strlen(json), &e);

        if (r != -EBADMSG)
                fprintf(stderr, "accepted: %s\n", json);
        ASSERT_INT_EQ(r, -EBADMSG);
        /* Nothing was handed out. */
        ASSERT_NULL(e.root);
}

/* Fields a kind does not have stay empty. */
static void assert_only(const Event *e, bool id, bool user, bool text, bool room, bool session) {
        ASSERT_TRUE(!!e->id == id);
        ASSERT_TRUE(!!e->user == user);
        ASSERT_TRUE(!!e->text == text);
        ASSERT_TRUE(!!e->room == room);
        ASSERT_TRUE(!!e->session_id == session);
}

/* Byte for byte what store/store.c's scripts publish (Lua cjson: compact,
 * '/' escaped as "\/", integers without a fraction) and what the
 * event_format_*() encoders write. */
static void test_kinds(void) {
        Event e;

        parse_ok("[\"m\",\"1700000000000-0\",\"alice\",\"hello\\/world\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_MESSAGE);
        ASSERT_STREQ(e.id, "1700000000000-0");
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.text, "hello/world");
        assert_only(&e, true, true, true, false, false);
        event_done(&e);
        ASSERT_NULL(e.root);

        parse_ok("[\"e\",\"1700000000000-15\",\"bob\",\"fixed \\u00e9 \\\"q\\\"\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_EDITED);
        ASSERT_STREQ(e.id, "1700000000000-15");
        ASSERT_STREQ(e.user, "bob");
        ASSERT_STREQ(e.text, "fixed \xc3\xa9 \"q\"");
        assert_only(&e, true, true, true, false, false);
        event_done(&e);

        parse_ok("[\"d\",\"1-0\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_DELETED);
        ASSERT_STREQ(e.id, "1-0");
        assert_only(&e, true, false, false, false, false);
        event_done(&e);

        for (int level = EVENT_NOTICE_LEVEL_MIN; level <= EVENT_NOTICE_LEVEL_MAX; level++) {
                char json[64];

                snprintf(json, sizeof json, "[\"n\",%d,\"maintenance at 5\"]", level);
                parse_ok(json, &e);
                ASSERT_INT_EQ(e.kind, EVENT_NOTICE);
                ASSERT_INT_EQ(e.level, level);
                ASSERT_STREQ(e.text, "maintenance at 5");
                assert_only(&e, false, false, true, false, false);
                event_done(&e);
        }

        parse_ok("[\"t\",\"carol\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_TYPING);
        ASSERT_STREQ(e.user, "carol");
        assert_only(&e, false, true, false, false, false);
        event_done(&e);

        parse_ok("[\"p\",\"12\",\"dave\",1,1]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_PRESENCE);
        ASSERT_STREQ(e.room, "12");
        ASSERT_STREQ(e.user, "dave");
        ASSERT_INT_EQ(e.count, 1);
        ASSERT_INT_EQ(e.change, 1);
        assert_only(&e, false, true, false, true, false);
        event_done(&e);
        parse_ok("[\"p\",\"12\",\"dave\",0,-1]", &e);
        ASSERT_INT_EQ(e.count, 0);
        ASSERT_INT_EQ(e.change, -1);
        event_done(&e);
        parse_ok("[\"p\",\"12\",\"dave\",3,0]", &e);
        ASSERT_INT_EQ(e.count, 3);
        ASSERT_INT_EQ(e.change, 0);
        event_done(&e);

        parse_ok("[\"rooms\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_ROOMS);
        assert_only(&e, false, false, false, false, false);
        event_done(&e);

        parse_ok("[\"deleted\",\"7\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_ROOM_DELETED);
        ASSERT_STREQ(e.room, "7");
        assert_only(&e, false, false, false, true, false);
        event_done(&e);

        parse_ok("[\"kick\",\"eve\",\"3\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_KICK);
        ASSERT_STREQ(e.user, "eve");
        ASSERT_STREQ(e.room, "3");
        event_done(&e);
        parse_ok("[\"kick\",\"eve\",\"\"]", &e);
        ASSERT_STREQ(e.room, "");
        assert_only(&e, false, true, false, true, false);
        event_done(&e);

        parse_ok("[\"logout\",\"c2Vzc2lvbg\"]", &e);
        ASSERT_INT_EQ(e.kind, EVENT_LOGOUT);
        ASSERT_STREQ(e.session_id, "c2Vzc2lvbg");
        assert_only(&e, false, false, false, false, true);
        event_done(&e);

        /* Whitespace is JSON too (a hand-made PUBLISH from redis-cli). */
        parse_ok(" [ \"t\" , \"carol\" ] \n", &e);
        ASSERT_INT_EQ(e.kind, EVENT_TYPING);
        event_done(&e);
}

/* The limits, exactly at and one past. */
static void test_bounds(void) {
        char user[USERNAME_MAX + 2], json[512];
        Event e;

        memset(user, 'u', USERNAME_MAX);
        user[USERNAME_MAX] = 0;
        snprintf(json, sizeof json, "[\"t\",\"%s\"]", user);
        parse_ok(json, &e);
        event_done(&e);
        snprintf(json, sizeof json, "[\"m\",\"1-0\",\"%s\",\"x\"]", user);
        parse_ok(json, &e);
        event_done(&e);

        strcat(user, "u");
        snprintf(json, sizeof json, "[\"t\",\"%s\"]", user);
        parse_bad(json);
        snprintf(json, sizeof json, "[\"m\",\"1-0\",\"%s\",\"x\"]", user);
        parse_bad(json);
        snprintf(json, sizeof json, "[\"e\",\"1-0\",\"%s\",\"x\"]", user);
        parse_bad(json);
        snprintf(json, sizeof json, "[\"p\",\"1\",\"%s\",1,1]", user);
        parse_bad(json);
        snprintf(json, sizeof json, "[\"kick\",\"%s\",\"\"]", user);
        parse_bad(json);

        /* Room ids: 1..20 digits, no leading zero. */
        parse_ok("[\"deleted\",\"99999999999999999999\"]", &e);
        event_done(&e);
        parse_bad("[\"deleted\",\"999999999999999999999\"]");
        parse_bad("[\"p\",\"999999999999999999999\",\"a\",1,1]");
        parse_bad("[\"kick\",\"a\",\"999999999999999999999\"]");
        parse_bad("[\"deleted\",\"0\"]");
        parse_bad("[\"deleted\",\"01\"]");
        parse_bad("[\"deleted\",\"\"]");
        parse_bad("[\"p\",\"\",\"a\",1,1]");
        parse_bad("[\"deleted\",\"1a\"]");
        parse_bad("[\"deleted\",\" 1\"]");
        parse_bad("[\"deleted\",\"-1\"]");
        parse_bad("[\"kick\",\"a\",\"x\"]");

        /* Message ids: <1..20 digits>-<1..20 digits>. */
        parse_ok("[\"d\",\"18446744073709551615-18446744073709551615\"]", &e);
        event_done(&e);
        parse_bad("[\"d\",\"184467440737095516150-0\"]");
        parse_bad("[\"d\",\"1-184467440737095516150\"]");
        parse_bad("[\"d\",\"1\"]");
        parse_bad("[\"d\",\"1-\"]");
        parse_bad("[\"d\",\"-1\"]");
        parse_bad("[\"d\",\"a-1\"]");
        parse_bad("[\"d\",\"1-a\"]");
        parse_bad("[\"d\",\"1-1-1\"]");
        parse_bad("[\"d\",\"1-1 \"]");
        parse_bad("[\"d\",\"\"]");
        parse_bad("[\"m\",\"1_0\",\"a\",\"x\"]");
        parse_bad("[\"e\",\"x\",\"a\",\"x\"]");

        /* Notice levels 1..3, presence changes -1..1, counts >= 0. */
        parse_bad("[\"n\",0,\"x\"]");
        parse_bad("[\"n\",4,\"x\"]");
        parse_bad("[\"n\",-1,\"x\"]");
        parse_bad("[\"n\",4294967297,\"x\"]");
        parse_bad("[\"p\",\"1\",\"a\",1,2]");
        parse_bad("[\"p\",\"1\",\"a\",1,-2]");
        parse_bad("[\"p\",\"1\",\"a\",1,4294967297]");
        parse_bad("[\"p\",\"1\",\"a\",-1,0]");
}

static void test_malformed(void) {
        Event e;

        /* Not JSON, not an array. */
        parse_bad("");
        parse_bad("[");
        parse_bad("[\"t\",\"a\"");
        parse_bad("[\"t\",\"a\"]x");
        parse_bad("{\"t\":\"a\"}");
        parse_bad("\"t\"");
        parse_bad("1");
        parse_bad("null");
        parse_bad("[]");
        parse_bad("[\"t\",\"a\\u0000b\"]");     /* NUL inside a string */
        parse_bad("[\"t\",\"\xff\"]");           /* not UTF-8 */

        /* Unknown kinds, kinds of the wrong type. */
        parse_bad("[\"x\",\"a\"]");
        parse_bad("[\"M\",\"1-0\",\"a\",\"b\"]");
        parse_bad("[\"room\"]");
        parse_bad("[\"\"]");
        parse_bad("[1,\"a\"]");
        parse_bad("[null]");
        parse_bad("[[\"t\"],\"a\"]");

        /* Wrong arity. */
        parse_bad("[\"m\",\"1-0\",\"a\"]");
        parse_bad("[\"m\",\"1-0\",\"a\",\"b\",\"c\"]");
        parse_bad("[\"d\"]");
        parse_bad("[\"d\",\"1-0\",\"1-1\"]");
        parse_bad("[\"n\",1]");
        parse_bad("[\"t\"]");
        parse_bad("[\"t\",\"a\",\"b\"]");
        parse_bad("[\"p\",\"1\",\"a\",1]");
        parse_bad("[\"p\",\"1\",\"a\",1,1,1]");
        parse_bad("[\"rooms\",\"1\"]");
        parse_bad("[\"deleted\"]");
        parse_bad("[\"kick\",\"a\"]");
        parse_bad("[\"logout\"]");
        parse_bad("[\"logout\",\"a\",\"b\"]");

        /* Wrong types. */
        parse_bad("[\"m\",1,\"a\",\"b\"]");
        parse_bad("[\"m\",\"1-0\",null,\"b\"]");
        parse_bad("[\"m\",\"1-0\",\"a\",1]");
        parse_bad("[\"m\",\"1-0\",\"a\",[\"b\"]]");
        parse_bad("[\"n\",\"1\",\"x\"]");
        parse_bad("[\"n\",1.0,\"x\"]");
        parse_bad("[\"n\",true,\"x\"]");
        parse_bad("[\"n\",1,2]");
        parse_bad("[\"t\",{}]");
        parse_bad("[\"p\",1,\"a\",1,1]");
        parse_bad("[\"p\",\"1\",\"a\",\"1\",1]");
        parse_bad("[\"p\",\"1\",\"a\",1,\"1\"]");
        parse_bad("[\"p\",\"1\",\"a\",1.5,1]");
        parse_bad("[\"p\",\"1\",\"a\",1,false]");
        parse_bad("[\"deleted\",7]");
        parse_bad("[\"kick\",\"a\",null]");
        parse_bad("[\"kick\",\"a\",3]");
        parse_bad("[\"logout\",1]");

        /* Duplicate keys: refused by the reader before any shape check. */
        parse_bad("[\"t\",{\"a\":1,\"a\":2}]");
        parse_bad("[\"rooms\",{\"k\":1,\"k\":1}]");

        /* The length given is what is read, not up to a NUL. */
        ASSERT_ERROR(event_parse("[\"rooms\"]", 5, &e), EBADMSG);
        ASSERT_OK(event_parse("[\"rooms\"]garbage", 9, &e));
        ASSERT_INT_EQ(e.kind, EVENT_ROOMS);
        event_done(&e);
}

/* What the daemon publishes reads back as the same event. */
static void test_encoders(void) {
        _cleanup_free_ char *typing = NULL, *notice = NULL, *kick = NULL, *kick_all = NULL, *logout = NULL,
                            *bad_notice = NULL, *odd = NULL;
        Event e;

        typing = event_format_typing("alice");
        ASSERT_STREQ(typing, "[\"t\",\"alice\"]");
        parse_ok(typing, &e);
        ASSERT_INT_EQ(e.kind, EVENT_TYPING);
        ASSERT_STREQ(e.user, "alice");
        event_done(&e);

        notice = event_format_notice(2, "be nice \xc3\xa9/\"");
        parse_ok(notice, &e);
        ASSERT_INT_EQ(e.kind, EVENT_NOTICE);
        ASSERT_INT_EQ(e.level, 2);
        ASSERT_STREQ(e.text, "be nice \xc3\xa9/\"");
        event_done(&e);

        kick = event_format_kick("bob", "42");
        ASSERT_STREQ(kick, "[\"kick\",\"bob\",\"42\"]");
        parse_ok(kick, &e);
        ASSERT_INT_EQ(e.kind, EVENT_KICK);
        ASSERT_STREQ(e.user, "bob");
        ASSERT_STREQ(e.room, "42");
        event_done(&e);

        kick_all = event_format_kick("bob", NULL);
        ASSERT_STREQ(kick_all, "[\"kick\",\"bob\",\"\"]");
        parse_ok(kick_all, &e);
        ASSERT_STREQ(e.room, "");
        event_done(&e);

        logout = event_format_logout("S3ss10n-id_");
        parse_ok(logout, &e);
        ASSERT_INT_EQ(e.kind, EVENT_LOGOUT);
        ASSERT_STREQ(e.session_id, "S3ss10n-id_");
        event_done(&e);

        /* An encoder does not validate: what it cannot say, the reader refuses. */
        bad_notice = event_format_notice(4, "x");
        ASSERT_NOT_NULL(bad_notice);
        parse_bad(bad_notice);
        odd = event_format_kick("bob", "01");
        ASSERT_NOT_NULL(odd);
        parse_bad(odd);

        /* Not UTF-8: jansson refuses to encode it. */
        ASSERT_NULL(event_format_typing("\xff"));
}

/* Strings point into the root: a copy keeps them alive after the first
 * holder is done (ASan reports a use after free otherwise). */
static void test_refcount(void) {
        static const char json[] = "[\"m\",\"5-1\",\"alice\",\"held back\"]";
        Event a, b, c;
        json_t *root;

        ASSERT_OK(event_parse(json, strlen(json), &a));
        root = a.root;
        ASSERT_INT_EQ(root->refcount, 1);

        event_copy(&b, &a);
        ASSERT_TRUE(b.root == root);
        ASSERT_INT_EQ(root->refcount, 2);
        ASSERT_TRUE(b.text == a.text);
        ASSERT_INT_EQ(b.kind, EVENT_MESSAGE);

        event_copy(&c, &b);
        ASSERT_INT_EQ(root->refcount, 3);

        event_done(&a);
        ASSERT_NULL(a.root);
        ASSERT_INT_EQ(root->refcount, 2);
        ASSERT_STREQ(b.text, "held back");
        ASSERT_STREQ(b.id, "5-1");

        event_done(&b);
        ASSERT_INT_EQ(root->refcount, 1);
        ASSERT_STREQ(c.user, "alice");
        event_done(&c);
        ASSERT_NULL(c.root);

        /* Done twice is harmless: the second finds no root. */
        event_done(&c);
}

/* Version 2: the user events. */
static int parse_user_event(const char *s, Event *e) {
        return event_parse(s, strlen(s), e);
}

static void test_user_events(void) {
        Event e;

        ASSERT_OK(parse_user_event("[\"uj\",\"alice\",\"12\"]", &e));
        ASSERT_INT_EQ(e.kind, EVENT_USER_JOINED);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.room, "12");
        event_done(&e);

        ASSERT_OK(parse_user_event("[\"ul\", \"alice\", \"3\", \"\"]", &e));
        ASSERT_INT_EQ(e.kind, EVENT_USER_LEFT);
        ASSERT_STREQ(e.user, "alice");
        ASSERT_STREQ(e.room, "3");
        ASSERT_STREQ(e.reason, "");
        event_done(&e);
        ASSERT_OK(parse_user_event("[\"ul\",\"bob\",\"3\",\"kicked\"]", &e));
        ASSERT_STREQ(e.reason, "kicked");
        event_done(&e);
        ASSERT_OK(parse_user_event("[\"ul\",\"bob\",\"3\",\"deleted\"]", &e));
        ASSERT_STREQ(e.reason, "deleted");
        event_done(&e);

        ASSERT_OK(parse_user_event("[\"ur\",\"alice\",\"1\",\"1700000000000-5\"]", &e));
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
                ASSERT_INT_EQ(parse_user_event(bad[i], &e), -EBADMSG);
}

int main(void) {
        test_user_events();
        test_user_events_bad();
        test_kinds();
        test_bounds();
        test_malformed();
        test_encoders();
        test_refcount();
        return 0;
}
