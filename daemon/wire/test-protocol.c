/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for protocol.c: command parsing rules and byte-exact event serialization. */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "basic/macro.h"
#include "wire/protocol.h"
#include "test/test.h"

#define MAX_MSG 16

static void test_error_strings(void) {
        static const char *const expected[] = {
                NULL,
                "USER_HAS_TO_LOGIN",
                "ROOM_INVALID",
                "ROOM_ACCESS_DENIED",
                "BAD_REQUEST",
                "MESSAGE_TOO_LONG",
                "RATE_LIMITED",
                "NOT_FOUND",
                "FORBIDDEN",
                "UNAVAILABLE",
                "OUTCOME_UNKNOWN",
        };

        ASSERT_INT_EQ(ELEMENTSOF(expected), _PROTOCOL_ERROR_MAX);
        ASSERT_NULL(protocol_error_to_string(PROTOCOL_OK));
        for (size_t i = 1; i < ELEMENTSOF(expected); i++)
                ASSERT_STREQ(protocol_error_to_string(i), expected[i]);
        ASSERT_NULL(protocol_error_to_string(_PROTOCOL_ERROR_MAX));
        ASSERT_NULL(protocol_error_to_string((ProtocolError) -1));

        ASSERT_STREQ(command_type_to_string(COMMAND_JOIN), "join");
        ASSERT_STREQ(command_type_to_string(COMMAND_TYPING), "typing");
        ASSERT_NULL(command_type_to_string(_COMMAND_TYPE_MAX));
}

typedef struct ParseOk {
        const char *json;
        CommandType type;
        const char *room;
        const char *id;
        const char *since;      /* NULL: has_since false */
        const char *before;     /* NULL: has_before false */
        unsigned limit;
        const char *message;
        const char *ref;        /* NULL: has_ref false */
} ParseOk;

static void test_parse_ok(void) {
        static const ParseOk table[] = {
                /* v1: the example sends a number or a string */
                { "{\"command\": \"join\", \"room\": 1}", COMMAND_JOIN, "1" },
                { "{\"command\": \"join\", \"room\": \"1\"}", COMMAND_JOIN, "1" },
                { "{\"command\":\"leave\",\"room\":42}", COMMAND_LEAVE, "42" },
                { " {\"room\": \"7\", \"command\": \"leave\"} \n", COMMAND_LEAVE, "7" },
                { "{\"command\": \"join\", \"room\": 9007199254740991}", COMMAND_JOIN, "9007199254740991" },
                { "{\"command\": \"join\", \"room\": \"12345678901234567890\"}", COMMAND_JOIN, "12345678901234567890" },
                { "{\"command\": \"join\", \"room\": \"99999999999999999999\"}", COMMAND_JOIN, "99999999999999999999" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"hi\"}", COMMAND_SEND, "1", .message = "hi" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"  hi  \"}", COMMAND_SEND, "1", .message = "  hi  " },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"h\\u00e9\"}", COMMAND_SEND, "1", .message = "h\xc3\xa9" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"h\xc3\xa9\"}", COMMAND_SEND, "1", .message = "h\xc3\xa9" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\ud83d\\ude00\"}", COMMAND_SEND, "1", .message = "\xf0\x9f\x98\x80" },
                /* exactly MAX_MSG bytes */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"0123456789abcdef\"}", COMMAND_SEND, "1", .message = "0123456789abcdef" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u0001x\"}", COMMAND_SEND, "1", .message = "\x01x" },
                /* something visible: emoji with U+FE0F, right-to-left and CJK text, one letter among fillers */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u2764\\ufe0f\"}", COMMAND_SEND, "1", .message = "\xe2\x9d\xa4\xef\xb8\x8f" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u05e9\\u05dc\\u05d5\\u05dd\"}", COMMAND_SEND, "1", .message = "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u200f\\u0645\\u0631\"}", COMMAND_SEND, "1", .message = "\xe2\x80\x8f\xd9\x85\xd8\xb1" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u4f60\\u597d\"}", COMMAND_SEND, "1", .message = "\xe4\xbd\xa0\xe5\xa5\xbd" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u3164x\\u2800\"}", COMMAND_SEND, "1", .message = "\xe3\x85\xa4x\xe2\xa0\x80" },
                { "{\"command\": \"edit\", \"room\": 1, \"id\": \"1-1\", \"message\": \"\\u2800\\u2801\"}", COMMAND_EDIT, "1", .id = "1-1", .message = "\xe2\xa0\x80\xe2\xa0\x81" },
                /* unknown keys are ignored, also nested ones */
                { "{\"command\": \"leave\", \"room\": 1, \"x\": {\"y\": [1, 2.5, null]}, \"message\": 5}", COMMAND_LEAVE, "1" },
                { "{\"command\": \"join\", \"room\": 1, \"since\": \"1700000000000-0\"}", COMMAND_JOIN, "1", .since = "1700000000000-0" },
                { "{\"command\": \"join\", \"room\": 1, \"since\": null}", COMMAND_JOIN, "1" },
                { "{\"command\": \"join\", \"room\": 1, \"since\": \"12345678901234567890-12345678901234567890\"}",
                  COMMAND_JOIN, "1", .since = "12345678901234567890-12345678901234567890" },
                { "{\"command\": \"history\", \"room\": \"3\"}", COMMAND_HISTORY, "3", .limit = 50 },
                { "{\"command\": \"history\", \"room\": \"3\", \"limit\": 1}", COMMAND_HISTORY, "3", .limit = 1 },
                { "{\"command\": \"history\", \"room\": \"3\", \"limit\": 100, \"before\": \"5-1\"}",
                  COMMAND_HISTORY, "3", .before = "5-1", .limit = 100 },
                { "{\"command\": \"history\", \"room\": \"3\", \"limit\": null, \"before\": null}", COMMAND_HISTORY, "3", .limit = 50 },
                { "{\"command\": \"edit\", \"room\": 2, \"id\": \"0-0\", \"message\": \"new\"}", COMMAND_EDIT, "2", .id = "0-0", .message = "new" },
                { "{\"command\": \"delete\", \"room\": 2, \"id\": \"17-3\"}", COMMAND_DELETE, "2", .id = "17-3" },
                { "{\"command\": \"typing\", \"room\": 2}", COMMAND_TYPING, "2" },
                /* fields of other commands are ignored, whatever their type */
                { "{\"command\": \"typing\", \"room\": 2, \"id\": 5, \"since\": [], \"limit\": \"x\"}", COMMAND_TYPING, "2" },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": \"abc\"}", COMMAND_JOIN, "1", .ref = "abc" },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": \"\"}", COMMAND_JOIN, "1", .ref = "" },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": null}", COMMAND_JOIN, "1" },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": \"0123456789012345678901234567890123456789012345678901234567890123\"}",
                  COMMAND_JOIN, "1", .ref = "0123456789012345678901234567890123456789012345678901234567890123" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const ParseOk *t = table + i;
                Command c;
                ProtocolError e;

                e = protocol_parse_command(t->json, strlen(t->json), MAX_MSG, &c);
                if (e != PROTOCOL_OK)
                        fprintf(stderr, "case %zu: %s → %s\n", i, t->json, protocol_error_to_string(e));
                ASSERT_INT_EQ(e, PROTOCOL_OK);
                ASSERT_INT_EQ(c.type, t->type);
                ASSERT_STREQ(c.room, t->room);
                ASSERT_STREQ(c.id, t->id ?: "");
                ASSERT_INT_EQ(c.has_since, !!t->since);
                ASSERT_STREQ(c.since, t->since ?: "");
                ASSERT_INT_EQ(c.has_before, !!t->before);
                ASSERT_STREQ(c.before, t->before ?: "");
                ASSERT_INT_EQ(c.limit, t->limit);
                if (t->message)
                        ASSERT_STREQ(c.message, t->message);
                else
                        ASSERT_NULL(c.message);
                ASSERT_INT_EQ(c.has_ref, !!t->ref);
                ASSERT_STREQ(c.ref, t->ref ?: "");
                command_done(&c);
                ASSERT_NULL(c.message);
        }
}

typedef struct ParseFail {
        const char *json;
        ProtocolError error;
        const char *ref;        /* echoed ref, NULL: none */
} ParseFail;

static void test_parse_fail(void) {
        static const ParseFail table[] = {
                /* not JSON, not an object */
                { "", PROTOCOL_ERROR_BAD_REQUEST },
                { "hello", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1}}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1} {}", PROTOCOL_ERROR_BAD_REQUEST },
                { "[\"join\", 1]", PROTOCOL_ERROR_BAD_REQUEST },
                { "\"join\"", PROTOCOL_ERROR_BAD_REQUEST },
                { "1", PROTOCOL_ERROR_BAD_REQUEST },
                { "null", PROTOCOL_ERROR_BAD_REQUEST },
                { "{'command': 'join', 'room': 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1,}", PROTOCOL_ERROR_BAD_REQUEST },
                /* duplicate keys are ambiguous: refused */
                { "{\"command\": \"join\", \"room\": 1, \"room\": 2}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"command\": \"leave\", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                /* command */
                { "{}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"dance\", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"JOIN\", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join \", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"\", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": 1, \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": null, \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": [\"join\"], \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                /* room: wrong JSON type */
                { "{\"command\": \"join\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1.7}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1.0}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1e2}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": true}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": false}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": null}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": [1]}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": {\"id\": 1}}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 99999999999999999999999}", PROTOCOL_ERROR_BAD_REQUEST },
                /* room: right type, not a room id */
                { "{\"command\": \"join\", \"room\": \" 1 \"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"01\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"0\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"abc\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"-1\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"+1\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"1.0\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"1a\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"\\u0661\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": \"123456789012345678901\"}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": 0}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": -0}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": -1}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": 9007199254740992}", PROTOCOL_ERROR_ROOM_INVALID },
                { "{\"command\": \"join\", \"room\": 9223372036854775807}", PROTOCOL_ERROR_ROOM_INVALID },
                /* message ids */
                { "{\"command\": \"delete\", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": null}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": 17}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"17\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"-\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"1-\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"-1\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"1-2-3\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"1-*\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \" 1-2\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"1-2 \"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"a-b\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"123456789012345678901-1\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"delete\", \"room\": 1, \"id\": \"1-123456789012345678901\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1, \"since\": 5}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1, \"since\": \"$\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"before\": \"+\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"before\": [\"1-1\"]}", PROTOCOL_ERROR_BAD_REQUEST },
                /* limit */
                { "{\"command\": \"history\", \"room\": 1, \"limit\": 0}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"limit\": 101}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"limit\": -5}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"limit\": 10.0}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"limit\": \"10\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"history\", \"room\": 1, \"limit\": true}", PROTOCOL_ERROR_BAD_REQUEST },
                /* message */
                { "{\"command\": \"send\", \"room\": 1}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": null}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": 5}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": [\"hi\"]}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": {}}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \" \\t\\r\\n \"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u00a0\\u3000\\u200b\\ufeff\\u2028\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u0001\\u007f\\u0085\"}", PROTOCOL_ERROR_BAD_REQUEST },
                /* nothing visible: fillers, marks, format characters (U+3164, U+200E, U+200F,
                 * U+202E, U+2066, U+00AD, U+FE0F, U+2800, U+115F, U+1160, U+FFA0, U+E0020) */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u3164\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u200e\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u200f\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u202e\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u2066\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u00ad\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\ufe0f\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u2800\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u115f\\u1160\\uffa0\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\udb40\\udc20\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u3164 \\u200f\\u2800\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"edit\", \"room\": 1, \"id\": \"1-1\", \"message\": \"\\u3164\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"edit\", \"room\": 1, \"id\": \"1-1\", \"message\": \"\\u2800\\u202e\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u0000\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"a\\u0000b\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\ud800\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\ude00\\ud83d\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"0123456789abcdefX\"}", PROTOCOL_ERROR_MESSAGE_TOO_LONG },
                /* 6 × 3 bytes = 18 > 16: bytes count, not characters */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\"}",
                  PROTOCOL_ERROR_MESSAGE_TOO_LONG },
                /* too long beats blank: the length is what the client must fix */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"                    \"}", PROTOCOL_ERROR_MESSAGE_TOO_LONG },
                { "{\"command\": \"edit\", \"room\": 1, \"id\": \"1-1\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"edit\", \"room\": 1, \"message\": \"x\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"edit\", \"room\": 1, \"id\": \"1-1\", \"message\": \" \"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"edit\", \"room\": 1, \"id\": \"1-1\", \"message\": \"0123456789abcdefX\"}", PROTOCOL_ERROR_MESSAGE_TOO_LONG },
                /* ref: invalid → BAD_REQUEST without echo */
                { "{\"command\": \"join\", \"room\": 1, \"ref\": 5}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": true}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": [\"x\"]}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1, \"ref\": \"01234567890123456789012345678901234567890123456789012345678901234\"}",
                  PROTOCOL_ERROR_BAD_REQUEST },
                /* ref: valid → echoed with any later error */
                { "{\"ref\": \"r1\"}", PROTOCOL_ERROR_BAD_REQUEST, "r1" },
                { "{\"command\": \"dance\", \"ref\": \"r2\"}", PROTOCOL_ERROR_BAD_REQUEST, "r2" },
                { "{\"command\": \"join\", \"room\": \"01\", \"ref\": \"r3\"}", PROTOCOL_ERROR_ROOM_INVALID, "r3" },
                { "{\"ref\": \"r4\", \"command\": \"send\", \"room\": 1, \"message\": \"0123456789abcdefX\"}",
                  PROTOCOL_ERROR_MESSAGE_TOO_LONG, "r4" },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"  \", \"ref\": \"\\u00e9\"}", PROTOCOL_ERROR_BAD_REQUEST, "\xc3\xa9" },
                { "{\"command\": \"history\", \"room\": 1, \"limit\": 0, \"ref\": \"\"}", PROTOCOL_ERROR_BAD_REQUEST, "" },
                /* nesting deeper than PROTOCOL_DEPTH_MAX, even in an ignored key */
                { "{\"command\": \"join\", \"room\": 1, \"x\": [[[[[[[[1]]]]]]]]}", PROTOCOL_ERROR_BAD_REQUEST },
                /* invalid UTF-8 in the frame */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\xc3\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\xc0\xaf\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"\xed\xa0\x80\"}", PROTOCOL_ERROR_BAD_REQUEST },
                { "{\"command\": \"join\", \"room\": 1, \"x\": \"\xff\"}", PROTOCOL_ERROR_BAD_REQUEST },
                /* raw control character inside a string */
                { "{\"command\": \"send\", \"room\": 1, \"message\": \"a\nb\"}", PROTOCOL_ERROR_BAD_REQUEST },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const ParseFail *t = table + i;
                Command c;
                ProtocolError e;

                memset(&c, 0xaa, sizeof(c));
                e = protocol_parse_command(t->json, strlen(t->json), MAX_MSG, &c);
                if (e != t->error)
                        fprintf(stderr, "case %zu: %s → %s\n", i, t->json, protocol_error_to_string(e) ?: "OK");
                ASSERT_INT_EQ(e, t->error);
                ASSERT_NULL(c.message);
                ASSERT_INT_EQ(c.has_ref, !!t->ref);
                ASSERT_STREQ(c.ref, t->ref ?: "");
                ASSERT_STREQ(c.room, "");
                command_done(&c);
        }
}

static void test_parse_limits(void) {
        Command c;
        char *big;
        size_t n;

        /* NULL data */
        ASSERT_INT_EQ(protocol_parse_command(NULL, 0, MAX_MSG, &c), PROTOCOL_ERROR_BAD_REQUEST);

        /* a NUL byte inside the frame: the length given counts, not strlen */
        static const char with_nul[] = "{\"command\": \"join\", \"room\": 1}\0";
        ASSERT_INT_EQ(protocol_parse_command(with_nul, sizeof(with_nul) - 1, MAX_MSG, &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(protocol_parse_command(with_nul, sizeof(with_nul) - 2, MAX_MSG, &c), PROTOCOL_OK);
        ASSERT_STREQ(c.room, "1");
        command_done(&c);
        /* a prefix of a valid frame is not valid */
        ASSERT_INT_EQ(protocol_parse_command(with_nul, 10, MAX_MSG, &c), PROTOCOL_ERROR_BAD_REQUEST);

        /* nesting: exactly PROTOCOL_DEPTH_MAX is fine, one more is not;
         * brackets inside strings do not count */
        static const char depth8[] = "{\"command\": \"join\", \"room\": 1, \"x\": [[[[[[[1]]]]]]], \"y\": \"[[[[[[[[[[\\\"[[[[[\"}";
        ASSERT_INT_EQ(protocol_parse_command(depth8, strlen(depth8), MAX_MSG, &c), PROTOCOL_OK);
        command_done(&c);

        /* a deep array far beyond jansson's own limit must not recurse */
        n = 100000;
        big = malloc(n * 2 + 1);
        ASSERT_NOT_NULL(big);
        memset(big, '[', n);
        memset(big + n, ']', n);
        big[2 * n] = '\0';
        ASSERT_INT_EQ(protocol_parse_command(big, 2 * n, MAX_MSG, &c), PROTOCOL_ERROR_BAD_REQUEST);
        free(big);

        /* size: a frame of exactly PROTOCOL_COMMAND_MAX bytes parses, one more does not */
        static const char head[] = "{\"command\": \"send\", \"room\": 1, \"message\": \"";
        n = PROTOCOL_COMMAND_MAX;
        big = malloc(n + 2);
        ASSERT_NOT_NULL(big);
        memcpy(big, head, strlen(head));
        memset(big + strlen(head), 'a', n - strlen(head) - 2);
        memcpy(big + n - 2, "\"}", 3);
        ASSERT_INT_EQ(protocol_parse_command(big, n, PROTOCOL_COMMAND_MAX, &c), PROTOCOL_OK);
        ASSERT_INT_EQ(strlen(c.message), n - strlen(head) - 2);
        command_done(&c);
        ASSERT_INT_EQ(protocol_parse_command(big, n, 1000, &c), PROTOCOL_ERROR_MESSAGE_TOO_LONG);
        memcpy(big + n - 2, "a\"}", 4);
        ASSERT_INT_EQ(protocol_parse_command(big, n + 1, PROTOCOL_COMMAND_MAX, &c), PROTOCOL_ERROR_BAD_REQUEST);
        free(big);

        /* max_message_bytes 0 refuses every message */
        static const char one[] = "{\"command\": \"send\", \"room\": 1, \"message\": \"x\"}";
        ASSERT_INT_EQ(protocol_parse_command(one, strlen(one), 0, &c), PROTOCOL_ERROR_MESSAGE_TOO_LONG);
        ASSERT_INT_EQ(protocol_parse_command(one, strlen(one), 1, &c), PROTOCOL_OK);
        command_done(&c);

        /* command_done() is safe on a zeroed and on a done Command */
        c = (Command) {};
        command_done(&c);
        command_done(&c);
        command_done(NULL);
}

static void assert_dump(char *s, const char *expected) {
        ASSERT_NOT_NULL(s);
        ASSERT_STREQ(s, expected);
        free(s);
}

/* A history as the chat keeps one: messages, whether each is the
 * receiver's own, and one the store cannot give (left out). */
typedef struct TestItem {
        ChatMessage m;
        bool own, missing;
} TestItem;

static int test_history_get(const void *userdata, size_t i, ChatMessage *ret, bool *ret_own, Mentions *mentions) {
        const TestItem *items = userdata;

        if (items[i].missing)
                return -ENOENT;
        *ret = items[i].m;
        *ret_own = items[i].own;
        return 0;
}

#define TEST_HISTORY(items) (&(ProtocolHistory) { .n = ELEMENTSOF(items), .get = test_history_get, .userdata = (items) })

/* A message as a history shows it, "own" as given: the element's text. */
static char *history_element(const ChatMessage *m, bool own) {
        static const char prefix[] = "{\"history\": [", suffix[] = "], \"room\": \"1\", \"complete\": false}";
        TestItem items[] = { { .m = *m, .own = own } };
        char *s = protocol_format_history("1", TEST_HISTORY(items), false, NULL);
        size_t n;

        if (!s)
                return NULL;
        n = strlen(s);
        ASSERT_TRUE(n > strlen(prefix) + strlen(suffix));
        ASSERT_INT_EQ(strncmp(s, prefix, strlen(prefix)), 0);
        ASSERT_STREQ(s + n - strlen(suffix), suffix);
        memmove(s, s + strlen(prefix), n - strlen(prefix) - strlen(suffix));
        s[n - strlen(prefix) - strlen(suffix)] = '\0';
        return s;
}

static void test_format_message(void) {
        ChatMessage m = {
                .room = "1",
                .id = "1700000000000-0",
                .username = "alice",
                .message = "hi",
                .ts = UINT64_C(1700000000000),
        };
        char *s, *own;
        size_t n;

        assert_dump(protocol_format_message(&m),
                    "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"hi\", "
                    "\"id\": \"1700000000000-0\", \"ts\": 1700000000000}");

        /* python3 -c 'import json; print(json.dumps({...}))' */
        m = (ChatMessage) {
                .room = "12",
                .id = "1-2",
                .username = "b\xc3\xa9" "a",
                .message = "h\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ / \x7f \x01\n\r\t\b\f \xe2\x80\xa8 \xef\xbf\xbf \xf4\x8f\xbf\xbf <&>",
                .ts = INT64_MAX,
                .edited = true,
        };
        assert_dump(protocol_format_message(&m),
                    "{\"msg_type\": 0, \"room\": \"12\", \"username\": \"b\\u00e9a\", "
                    "\"message\": \"h\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ / \\u007f \\u0001\\n\\r\\t\\b\\f \\u2028 \\uffff \\udbff\\udfff <&>\", "
                    "\"id\": \"1-2\", \"ts\": 9223372036854775807, \"edited\": true}");

        /* v1 shape without id */
        m = (ChatMessage) { .room = "1", .username = "alice", .message = "hi", .ts = 5 };
        assert_dump(protocol_format_message(&m),
                    "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"hi\"}");

        /* own in a history and via the frame layer's splice agree byte for byte */
        m = (ChatMessage) { .room = "1", .id = "5-0", .username = "alice", .message = "hi", .ts = 0 };
        own = history_element(&m, true);
        ASSERT_NOT_NULL(own);
        ASSERT_STREQ(own, "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"hi\", "
                          "\"id\": \"5-0\", \"ts\": 0, \"own\": true}");

        s = protocol_format_message(&m);
        ASSERT_NOT_NULL(s);
        n = strlen(s);
        ASSERT_TRUE(n > 0 && s[n - 1] == '}');
        ASSERT_NULL(strstr(s, "\"own\""));
        char spliced[256];
        ASSERT_TRUE(snprintf(spliced, sizeof(spliced), "%.*s, \"own\": true}", (int) (n - 1), s) < (int) sizeof(spliced));
        ASSERT_STREQ(spliced, own);
        free(s);
        free(own);

        /* a message whose text mentions "own" still has no own key */
        m.message = "\"own\": true";
        s = protocol_format_message(&m);
        ASSERT_NOT_NULL(s);
        ASSERT_NULL(strstr(s, "\"own\":"));
        free(s);

        /* invalid input */
        m = (ChatMessage) { .room = "1", .id = "1-0", .username = "alice", .message = "\xff", .ts = 1 };
        errno = 0;
        ASSERT_NULL(protocol_format_message(&m));
        ASSERT_INT_EQ(errno, EINVAL);
        m.message = NULL;
        ASSERT_NULL(protocol_format_message(&m));
        ASSERT_INT_EQ(errno, EINVAL);
        m.message = "x";
        m.ts = (uint64_t) INT64_MAX + 1;
        ASSERT_NULL(protocol_format_message(&m));
        ASSERT_INT_EQ(errno, EINVAL);
        ASSERT_NULL(history_element(&m, false));
        ASSERT_INT_EQ(errno, EINVAL);
        ASSERT_NULL(protocol_format_message(NULL));
        ASSERT_INT_EQ(errno, EINVAL);
}

static void test_format_events(void) {
        static const ChatMessage h1 = { .room = "1", .id = "1-0", .username = "alice", .message = "hi", .ts = 1 };
        static const ChatMessage h2 = { .room = "1", .id = "2-0", .username = "bob", .message = "yo", .ts = 2, .edited = true };
        char *names[] = { (char *) "alice", (char *) "b\xc3\xb6" "b", NULL };
        MemberPage members = { .names = names, .n = 2, .total = 130, .more = true };
        TestItem history[] = { { .m = h1 }, { .missing = true }, { .m = h2, .own = true } };
        TestItem one[] = { { .m = { .room = "1", .id = "1-1", .username = "a", .message = "m", .ts = 5 } } };
        TestItem bad[] = { { .m = h1 }, { .m = { .room = "1", .id = "3-0", .username = "c", .message = "\xff", .ts = 3 } } };

        assert_dump(protocol_format_notice(MSG_TYPE_ALERT, "3", "Server restarts in 5\xe2\x80\x89min"),
                    "{\"msg_type\": 2, \"room\": \"3\", \"message\": \"Server restarts in 5\\u2009min\"}");
        assert_dump(protocol_format_notice(MSG_TYPE_WARNING, "3", "w"),
                    "{\"msg_type\": 1, \"room\": \"3\", \"message\": \"w\"}");
        assert_dump(protocol_format_notice(MSG_TYPE_MUTED, "3", ""),
                    "{\"msg_type\": 3, \"room\": \"3\", \"message\": \"\"}");
        ASSERT_NULL(protocol_format_notice(MSG_TYPE_MESSAGE, "3", "x"));
        ASSERT_NULL(protocol_format_notice(MSG_TYPE_ENTER, "3", "x"));
        ASSERT_NULL(protocol_format_notice(MSG_TYPE_WARNING, NULL, "x"));

        assert_dump(protocol_format_presence(MSG_TYPE_ENTER, "3", "bob"),
                    "{\"msg_type\": 4, \"room\": \"3\", \"username\": \"bob\"}");
        assert_dump(protocol_format_presence(MSG_TYPE_LEAVE, "3", "bob"),
                    "{\"msg_type\": 5, \"room\": \"3\", \"username\": \"bob\"}");
        ASSERT_NULL(protocol_format_presence(MSG_TYPE_ALERT, "3", "bob"));
        ASSERT_NULL(protocol_format_presence(MSG_TYPE_ENTER, "3", NULL));

        assert_dump(protocol_format_joined("1", "Lobby", false, &members, TEST_HISTORY(history), 1, "x"),
                    "{\"join\": \"1\", \"title\": \"Lobby\", \"staff_only\": false, \"members\": [\"alice\", \"b\\u00f6b\"], "
                    "\"member_count\": 130, "
                    "\"history\": [{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"hi\", \"id\": \"1-0\", \"ts\": 1}, "
                    "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"bob\", \"message\": \"yo\", \"id\": \"2-0\", \"ts\": 2, \"edited\": true, \"own\": true}], "
                    "\"complete\": true, \"ref\": \"x\"}");
        assert_dump(protocol_format_joined("7", "", true, NULL, NULL, -1, NULL),
                    "{\"join\": \"7\", \"title\": \"\", \"staff_only\": true, \"members\": [], \"member_count\": 0, \"history\": []}");
        assert_dump(protocol_format_joined("7", "T", false, NULL, &(ProtocolHistory) {}, 0, NULL),
                    "{\"join\": \"7\", \"title\": \"T\", \"staff_only\": false, \"members\": [], \"member_count\": 0, \"history\": [], \"complete\": false}");
        /* A message that cannot be sent fails the whole event (ASan: nothing leaks). */
        errno = 0;
        ASSERT_NULL(protocol_format_joined("7", "T", false, NULL, TEST_HISTORY(bad), 0, NULL));
        ASSERT_INT_EQ(errno, EINVAL);
        ASSERT_NULL(protocol_format_joined(NULL, "T", false, NULL, NULL, 0, NULL));
        ASSERT_NULL(protocol_format_joined("7", NULL, false, NULL, NULL, 0, NULL));
        char *bad_names[] = { (char *) "ok", (char *) "\xc3", NULL };
        MemberPage bad_members = { .names = bad_names, .n = 2, .total = 2 };
        errno = 0;
        ASSERT_NULL(protocol_format_joined("7", "T", false, &bad_members, NULL, 0, NULL));
        ASSERT_INT_EQ(errno, EINVAL);

        /* A page is what n says, not up to a NULL: rooms hand out slices. */
        members.n = 1;
        members.more = false;
        assert_dump(protocol_format_members("1", &members, "m1"),
                    "{\"members\": [\"alice\"], \"room\": \"1\", \"more\": false, \"ref\": \"m1\"}");
        members.more = true;
        assert_dump(protocol_format_members("1", &members, NULL),
                    "{\"members\": [\"alice\"], \"room\": \"1\", \"more\": true}");
        assert_dump(protocol_format_members("1", NULL, NULL), "{\"members\": [], \"room\": \"1\", \"more\": false}");
        ASSERT_NULL(protocol_format_members("1", &bad_members, NULL));
        assert_dump(protocol_format_member_count("12", 10000), "{\"member_count\": 10000, \"room\": \"12\"}");
        ASSERT_NULL(protocol_format_member_count(NULL, 1));
        ASSERT_NULL(protocol_format_members(NULL, &members, NULL));

        assert_dump(protocol_format_left("1", LEAVE_REASON_NONE, NULL), "{\"leave\": \"1\"}");
        assert_dump(protocol_format_left("1", LEAVE_REASON_KICKED, "r1"), "{\"leave\": \"1\", \"reason\": \"kicked\", \"ref\": \"r1\"}");
        assert_dump(protocol_format_left("2", LEAVE_REASON_DELETED, NULL), "{\"leave\": \"2\", \"reason\": \"deleted\"}");
        ASSERT_NULL(protocol_format_left("2", _LEAVE_REASON_MAX, NULL));

        assert_dump(protocol_format_error(PROTOCOL_ERROR_ROOM_INVALID, NULL), "{\"error\": \"ROOM_INVALID\"}");
        assert_dump(protocol_format_error(PROTOCOL_ERROR_BAD_REQUEST, "\xc3\xa9\xf0\x9f\x98\x80"),
                    "{\"error\": \"BAD_REQUEST\", \"ref\": \"\\u00e9\\ud83d\\ude00\"}");
        assert_dump(protocol_format_error(PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL), "{\"error\": \"USER_HAS_TO_LOGIN\"}");
        assert_dump(protocol_format_error(PROTOCOL_ERROR_UNAVAILABLE, "a\"b"), "{\"error\": \"UNAVAILABLE\", \"ref\": \"a\\\"b\"}");
        errno = 0;
        ASSERT_NULL(protocol_format_error(PROTOCOL_OK, NULL));
        ASSERT_INT_EQ(errno, EINVAL);
        ASSERT_NULL(protocol_format_error(_PROTOCOL_ERROR_MAX, NULL));

        assert_dump(protocol_format_history("1", NULL, false, NULL), "{\"history\": [], \"room\": \"1\", \"complete\": false}");
        assert_dump(protocol_format_history("1", TEST_HISTORY(one), true, "h"),
                    "{\"history\": [{\"msg_type\": 0, \"room\": \"1\", \"username\": \"a\", \"message\": \"m\", \"id\": \"1-1\", \"ts\": 5}], "
                    "\"room\": \"1\", \"complete\": true, \"ref\": \"h\"}");
        ASSERT_NULL(protocol_format_history("1", TEST_HISTORY(bad), true, NULL));
        ASSERT_NULL(protocol_format_history(NULL, NULL, true, NULL));

        const RoomInfo rooms[] = {
                { .id = "1", .title = "Lobby" },
                { .id = "2", .title = "Staff \xe2\x98\x83", .staff_only = true },
        };
        assert_dump(protocol_format_rooms(rooms, ELEMENTSOF(rooms)),
                    "{\"rooms\": [{\"id\": \"1\", \"title\": \"Lobby\", \"staff_only\": false}, "
                    "{\"id\": \"2\", \"title\": \"Staff \\u2603\", \"staff_only\": true}]}");
        assert_dump(protocol_format_rooms(NULL, 0), "{\"rooms\": []}");
        ASSERT_NULL(protocol_format_rooms(NULL, 1));
        const RoomInfo bad_rooms[] = { { .id = "1", .title = "ok" }, { .id = "2", .title = NULL } };
        ASSERT_NULL(protocol_format_rooms(bad_rooms, 2));
        ASSERT_INT_EQ(errno, EINVAL);

        assert_dump(protocol_format_deleted("1", "1-0"), "{\"deleted\": \"1-0\", \"room\": \"1\"}");
        assert_dump(protocol_format_typing("1", "bob"), "{\"typing\": \"bob\", \"room\": \"1\"}");
        assert_dump(protocol_format_ok(NULL, "x"), "{\"ok\": true, \"ref\": \"x\"}");
        assert_dump(protocol_format_ok("1-0", "x"), "{\"ok\": true, \"id\": \"1-0\", \"ref\": \"x\"}");
        assert_dump(protocol_format_ok(NULL, NULL), "{\"ok\": true}");
        assert_dump(protocol_format_session("alice", true), "{\"username\": \"alice\", \"staff\": true}");
        assert_dump(protocol_format_session("bob", false), "{\"username\": \"bob\", \"staff\": false}");
        ASSERT_NULL(protocol_format_deleted(NULL, "1-0"));
        ASSERT_NULL(protocol_format_typing("1", "\xe0\x80\x80"));
}

static void test_json_dumps(void) {
        json_t *j;
        char *s;
        size_t n;

        j = json_loads("{\"a\": [1, -2, null, true, false, {}, [], {\"b\": []}]}", 0, NULL);
        ASSERT_NOT_NULL(j);
        assert_dump(protocol_json_dumps(j, NULL), "{\"a\": [1, -2, null, true, false, {}, [], {\"b\": []}]}");
        json_decref(j);

        /* an embedded NUL in a json_t string is escaped like Python does */
        j = json_pack("[s#]", "\0", (int) 1);
        ASSERT_NOT_NULL(j);
        s = protocol_json_dumps(j, &n);
        ASSERT_STREQ(s, "[\"\\u0000\"]");
        ASSERT_INT_EQ(n, 10);
        free(s);
        json_decref(j);

        /* reals are refused */
        j = json_pack("{s:f}", "x", 1.5);
        errno = 0;
        ASSERT_NULL(protocol_json_dumps(j, NULL));
        ASSERT_INT_EQ(errno, EINVAL);
        json_decref(j);

        /* invalid UTF-8 smuggled in with a nocheck constructor is refused */
        j = json_string_nocheck("\xed\xa0\x80");
        ASSERT_NULL(protocol_json_dumps(j, NULL));
        ASSERT_INT_EQ(errno, EINVAL);
        json_decref(j);

        /* nesting: 33 levels are refused, 32 are fine */
        j = json_array();
        for (int i = 0; i < 32; i++)
                j = json_pack("[o]", j);
        ASSERT_NULL(protocol_json_dumps(j, NULL));
        json_t *inner = json_incref(json_array_get(j, 0));
        json_decref(j);
        s = protocol_json_dumps(inner, NULL);
        ASSERT_NOT_NULL(s);
        ASSERT_INT_EQ(strlen(s), 64);
        free(s);
        json_decref(inner);

        ASSERT_NULL(protocol_json_dumps(NULL, NULL));
}

static size_t utf8_encode(uint32_t cp, char *out) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char) (0xc0 | cp >> 6);
                out[1] = (char) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char) (0xe0 | cp >> 12);
                out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char) (0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char) (0xf0 | cp >> 18);
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char) (0x80 | (cp & 0x3f));
        return 4;
}

/* Every code point: the escape Python's json.dumps (ensure_ascii) produces,
 * computed independently here, and a round trip through jansson. */
static void test_escape_all_code_points(void) {
        for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
                char in[4], expected[32], *out;
                size_t n;
                json_t *j, *back;

                if (cp >= 0xd800 && cp <= 0xdfff)
                        continue;

                n = utf8_encode(cp, in);
                j = json_stringn(in, n);
                ASSERT_NOT_NULL(j);
                out = protocol_json_dumps(j, NULL);
                ASSERT_NOT_NULL(out);

                if (cp == '"')
                        strcpy(expected, "\"\\\"\"");
                else if (cp == '\\')
                        strcpy(expected, "\"\\\\\"");
                else if (cp == '\n')
                        strcpy(expected, "\"\\n\"");
                else if (cp == '\r')
                        strcpy(expected, "\"\\r\"");
                else if (cp == '\t')
                        strcpy(expected, "\"\\t\"");
                else if (cp == '\b')
                        strcpy(expected, "\"\\b\"");
                else if (cp == '\f')
                        strcpy(expected, "\"\\f\"");
                else if (cp >= 0x20 && cp <= 0x7e)
                        sprintf(expected, "\"%c\"", (char) cp);
                else if (cp < 0x10000)
                        sprintf(expected, "\"\\u%04x\"", (unsigned) cp);
                else
                        sprintf(expected, "\"\\u%04x\\u%04x\"",
                                (unsigned) (0xd800 + ((cp - 0x10000) >> 10)),
                                (unsigned) (0xdc00 + ((cp - 0x10000) & 0x3ff)));
                if (strcmp(out, expected) != 0)
                        fprintf(stderr, "U+%04X: %s != %s\n", (unsigned) cp, out, expected);
                ASSERT_STREQ(out, expected);

                if (cp != 0) {
                        back = json_loads(out, JSON_DECODE_ANY, NULL);
                        ASSERT_NOT_NULL(back);
                        ASSERT_TRUE(json_equal(j, back));
                        json_decref(back);
                }
                free(out);
                json_decref(j);
        }
}

/* ---- version 2 ---- */

static ProtocolError parse(const char *json, Command *c) {
        return protocol_parse_command(json, strlen(json), MAX_MSG, c);
}

static void test_parse_hello(void) {
        Command c;

        ASSERT_INT_EQ(parse("{\"command\": \"hello\", \"version\": 2}", &c), PROTOCOL_OK);
        ASSERT_INT_EQ(c.type, COMMAND_HELLO);
        ASSERT_INT_EQ(c.version, 2);
        ASSERT_INT_EQ(c.n_rooms_since, 0);
        ASSERT_STREQ(c.room, "");
        command_done(&c);

        /* a higher version is accepted (answered with what we speak); huge ones clamp */
        ASSERT_INT_EQ(parse("{\"command\": \"hello\", \"version\": 7, \"since\": null, \"ref\": \"h\"}", &c),
                      PROTOCOL_OK);
        ASSERT_INT_EQ(c.version, 7);
        ASSERT_STREQ(c.ref, "h");
        command_done(&c);
        ASSERT_INT_EQ(parse("{\"command\": \"hello\", \"version\": 99999999999}", &c), PROTOCOL_OK);
        ASSERT_INT_EQ(c.version, UINT_MAX);
        command_done(&c);

        /* since: room -> message id, a room in the command is ignored */
        ASSERT_INT_EQ(parse("{\"command\": \"hello\", \"version\": 2, \"room\": \"x\", "
                            "\"since\": {\"1\": \"1700000000000-0\", \"30\": \"5-2\"}}", &c), PROTOCOL_OK);
        ASSERT_INT_EQ(c.n_rooms_since, 2);
        ASSERT_STREQ(c.rooms_since[0].room, "1");
        ASSERT_STREQ(c.rooms_since[0].id, "1700000000000-0");
        ASSERT_STREQ(c.rooms_since[1].room, "30");
        ASSERT_STREQ(c.rooms_since[1].id, "5-2");
        command_done(&c);
        ASSERT_INT_EQ(parse("{\"command\": \"hello\", \"version\": 1, \"since\": {}}", &c), PROTOCOL_OK);
        ASSERT_INT_EQ(c.n_rooms_since, 0);
        command_done(&c);

        static const char *const bad[] = {
                "{\"command\": \"hello\"}",
                "{\"command\": \"hello\", \"version\": null}",
                "{\"command\": \"hello\", \"version\": 0}",
                "{\"command\": \"hello\", \"version\": -2}",
                "{\"command\": \"hello\", \"version\": 2.0}",
                "{\"command\": \"hello\", \"version\": \"2\"}",
                "{\"command\": \"hello\", \"version\": true}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": []}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": \"1-0\"}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"01\": \"1-0\"}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"\": \"1-0\"}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\" 1\": \"1-0\"}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"123456789012345678901\": \"1-0\"}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"1\": \"1\"}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"1\": 1}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"1\": null}}",
                "{\"command\": \"hello\", \"version\": 2, \"since\": {\"1\": \"1-0\", \"1\": \"2-0\"}}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_INT_EQ(parse(bad[i], &c), PROTOCOL_ERROR_BAD_REQUEST);
                ASSERT_NULL(c.rooms_since);
        }
        /* an error still echoes the ref */
        ASSERT_INT_EQ(parse("{\"command\": \"hello\", \"version\": 0, \"ref\": \"r\"}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_TRUE(c.has_ref);
        ASSERT_STREQ(c.ref, "r");

        /* 100 entries in since at most */
        for (unsigned n = 100; n <= 101; n++) {
                char buf[8192];
                size_t len = (size_t) snprintf(buf, sizeof buf, "{\"command\": \"hello\", \"version\": 2, \"since\": {");

                for (unsigned i = 1; i <= n; i++)
                        len += (size_t) snprintf(buf + len, sizeof buf - len, "%s\"%u\": \"%u-0\"", i > 1 ? ", " : "", i, i);
                len += (size_t) snprintf(buf + len, sizeof buf - len, "}}");
                ASSERT_INT_EQ(protocol_parse_command(buf, len, MAX_MSG, &c),
                              n <= PROTOCOL_USER_ROOMS_MAX ? PROTOCOL_OK : PROTOCOL_ERROR_BAD_REQUEST);
                if (n <= PROTOCOL_USER_ROOMS_MAX) {
                        ASSERT_INT_EQ(c.n_rooms_since, n);
                        ASSERT_STREQ(c.rooms_since[n - 1].id, "100-0");
                }
                command_done(&c);
        }
}

static void test_parse_read(void) {
        Command c;

        ASSERT_INT_EQ(parse("{\"command\": \"read\", \"room\": \"3\", \"id\": \"1700000000000-5\", \"ref\": \"k1\"}", &c),
                      PROTOCOL_OK);
        ASSERT_INT_EQ(c.type, COMMAND_READ);
        ASSERT_STREQ(c.room, "3");
        ASSERT_STREQ(c.id, "1700000000000-5");
        command_done(&c);
        ASSERT_INT_EQ(parse("{\"command\": \"read\", \"room\": 3}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"read\", \"room\": 3, \"id\": \"x\"}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"read\", \"room\": 3, \"id\": null}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"read\", \"id\": \"1-0\"}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"read\", \"room\": \"01\", \"id\": \"1-0\"}", &c), PROTOCOL_ERROR_ROOM_INVALID);
}

static void test_parse_members(void) {
        char longest[USERNAME_MAX + 96];
        Command c;

        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"ref\": \"m\"}", &c), PROTOCOL_OK);
        ASSERT_INT_EQ(c.type, COMMAND_MEMBERS);
        ASSERT_STREQ(c.room, "3");
        ASSERT_FALSE(c.has_after);
        command_done(&c);
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"after\": null}", &c), PROTOCOL_OK);
        ASSERT_FALSE(c.has_after);
        command_done(&c);
        /* A cursor, not a name that must exist: any bounded string. */
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"after\": \"b\u00f6b \u263a\"}", &c), PROTOCOL_OK);
        ASSERT_TRUE(c.has_after);
        ASSERT_STREQ(c.after, "b\xc3\xb6" "b \xe2\x98\xba");
        command_done(&c);

        snprintf(longest, sizeof longest, "{\"command\": \"members\", \"room\": \"3\", \"after\": \"%0*d\"}", USERNAME_MAX, 7);
        ASSERT_INT_EQ(parse(longest, &c), PROTOCOL_OK);
        ASSERT_INT_EQ(strlen(c.after), USERNAME_MAX);
        command_done(&c);
        snprintf(longest, sizeof longest, "{\"command\": \"members\", \"room\": \"3\", \"after\": \"%0*d\"}", USERNAME_MAX + 1, 7);
        ASSERT_INT_EQ(parse(longest, &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"after\": \"\"}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"after\": \"a\\u0000b\"}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"after\": 5}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"3\", \"after\": [\"a\"]}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"members\"}", &c), PROTOCOL_ERROR_BAD_REQUEST);
        ASSERT_INT_EQ(parse("{\"command\": \"members\", \"room\": \"01\"}", &c), PROTOCOL_ERROR_ROOM_INVALID);
}

static void assert_mentions(const char *text, const char *joined) {
        char buf[MENTIONS_JOINED_MAX + 1];
        Mentions m;

        protocol_mentions_parse(text, &m);
        protocol_mentions_join(&m, buf);
        if (!streq(buf, joined))
                fprintf(stderr, "mentions of \"%s\": got \"%s\", want \"%s\"\n", text, buf, joined);
        ASSERT_STREQ(buf, joined);
}

static void test_mentions(void) {
        char many[1024] = "", name65[80];
        Mentions m;

        assert_mentions(NULL, "");
        assert_mentions("", "");
        assert_mentions("no one here", "");
        assert_mentions("@bob look", "bob");
        assert_mentions("hi @bob", "bob");
        assert_mentions("alice@example.org", "");          /* an address mentions nobody */
        assert_mentions("mail alice@example.org or @carol", "carol");
        assert_mentions("thanks @bob.", "bob");            /* a trailing dot ends the sentence */
        assert_mentions("thanks @bob...", "bob");
        assert_mentions("@bob.smith, hi", "bob.smith");
        assert_mentions("@a_b-c.d", "a_b-c.d");
        assert_mentions("@-bob", "");                      /* a name does not start with '-' */
        assert_mentions("@.bob", ".bob");
        assert_mentions("@@bob", "");                      /* '@' before the '@' */
        assert_mentions("x@bob _@bob -@bob .@bob 9@bob", "");
        assert_mentions("(@bob) [@carol] \"@dave\"", "bob carol dave");
        assert_mentions("\xc3\xa9@bob", "bob");              /* a non-ASCII letter before '@' is not a name character */
        assert_mentions("@", "");
        assert_mentions("@ bob", "");
        assert_mentions("@.", "");
        assert_mentions("@Bob @bob", "Bob bob");           /* case-sensitive */
        assert_mentions("@bob @carol @bob @dave @carol", "bob carol dave");   /* each once, in order */
        assert_mentions("@bob\xc3\xa9", "bob");
        assert_mentions("@bob\n@carol\t@dave", "bob carol dave");

        /* a name is at most 64 characters: the rest is not part of it */
        memset(name65, 'n', 65);
        name65[65] = 0;
        {
                char text[100], want[80];

                snprintf(text, sizeof text, "@%s", name65);
                snprintf(want, sizeof want, "%.64s", name65);
                assert_mentions(text, want);
        }

        /* at most 20, the first 20 distinct in order */
        for (unsigned i = 0; i < 25; i++)
                snprintf(many + strlen(many), sizeof many - strlen(many), "@u%u @u0 ", i);
        protocol_mentions_parse(many, &m);
        ASSERT_INT_EQ(m.n, MENTIONS_MAX);
        ASSERT_STREQ(m.names[0], "u0");
        ASSERT_STREQ(m.names[19], "u19");
        ASSERT_TRUE(protocol_mentions_has(&m, "u7"));
        ASSERT_FALSE(protocol_mentions_has(&m, "u20"));
        ASSERT_FALSE(protocol_mentions_has(&m, "u"));
        ASSERT_FALSE(protocol_mentions_has(NULL, "u0"));
}

static void test_format_v2(void) {
        char *rooms[] = { (char *) "1", (char *) "3", NULL };
        char *names[] = { (char *) "alice", NULL };
        MemberPage members = { .names = names, .n = 1, .total = 1 };
        Mentions m;
        ChatMessage msg = {
                .room = "1", .id = "1700000000000-0", .username = "alice", .message = "@bob look",
                .ts = UINT64_C(1700000000000), .mentions = &m,
        };

        assert_dump(protocol_format_hello(2, "alice", rooms, "h1"),
                    "{\"hello\": 2, \"username\": \"alice\", \"rooms\": [\"1\", \"3\"], \"ref\": \"h1\"}");
        assert_dump(protocol_format_hello(2, "alice", NULL, NULL),
                    "{\"hello\": 2, \"username\": \"alice\", \"rooms\": []}");

        protocol_mentions_parse(msg.message, &m);
        assert_dump(protocol_format_message(&msg),
                    "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"@bob look\", "
                    "\"id\": \"1700000000000-0\", \"ts\": 1700000000000, \"mentions\": [\"bob\"]}");
        msg.edited = true;
        assert_dump(history_element(&msg, true), "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"@bob look\", "
                       "\"id\": \"1700000000000-0\", \"ts\": 1700000000000, \"mentions\": [\"bob\"], "
                       "\"edited\": true, \"own\": true}");
        /* none: [], so that one serialization serves every receiver */
        msg.edited = false;
        protocol_mentions_parse("plain", &m);
        assert_dump(protocol_format_message(&msg),
                    "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"@bob look\", "
                    "\"id\": \"1700000000000-0\", \"ts\": 1700000000000, \"mentions\": []}");

        assert_dump(protocol_format_joined_v2("1", "Lobby", false, &members, NULL, 1,
                                              &(ReadState) { "1700000000000-0", 3, 1 }, "r1"),
                    "{\"join\": \"1\", \"title\": \"Lobby\", \"staff_only\": false, \"members\": [\"alice\"], \"member_count\": 1, "
                    "\"history\": [], \"complete\": true, \"read\": \"1700000000000-0\", \"unread\": 3, "
                    "\"mentions\": 1, \"ref\": \"r1\"}");
        assert_dump(protocol_format_joined_v2("1", "Lobby", true, NULL, NULL, -1, &(ReadState) { NULL, 0, 0 }, NULL),
                    "{\"join\": \"1\", \"title\": \"Lobby\", \"staff_only\": true, \"members\": [], \"member_count\": 0, "
                    "\"history\": [], \"read\": null, \"unread\": 0, \"mentions\": 0}");
        errno = 0;
        ASSERT_NULL(protocol_format_joined_v2("1", "Lobby", true, NULL, NULL, -1, NULL, NULL));
        ASSERT_INT_EQ(errno, EINVAL);

        assert_dump(protocol_format_unread("1", &(ReadState) { "1700000000000-5", 0, 0 }),
                    "{\"unread\": \"1\", \"read\": \"1700000000000-5\", \"count\": 0, \"mentions\": 0}");
        assert_dump(protocol_format_unread("12", &(ReadState) { "1-1", 999, 7 }),
                    "{\"unread\": \"12\", \"read\": \"1-1\", \"count\": 999, \"mentions\": 7}");
        ASSERT_NULL(protocol_format_unread("1", &(ReadState) { NULL, 0, 0 }));
}

int main(void) {
        test_error_strings();
        test_parse_ok();
        test_parse_fail();
        test_parse_limits();
        test_format_message();
        test_format_events();
        test_json_dumps();
        test_escape_all_code_points();
        test_parse_hello();
        test_parse_read();
        test_parse_members();
        test_mentions();
        test_format_v2();
        return EXIT_SUCCESS;
}
