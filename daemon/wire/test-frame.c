/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for refcounted frames: payload and headroom, references, and the "own" splice. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "wire/frame.h"
#include "basic/macro.h"
#include "wire/protocol.h"
#include "test/test.h"

static void test_new(void) {
        static const char payload[] = "{\"msg_type\": 0, \"message\": \"a\\u0000b\"}";
        Frame *f = NULL;

        ASSERT_OK(frame_new(&f, payload, strlen(payload)));
        ASSERT_NOT_NULL(f);
        ASSERT_INT_EQ(f->n_ref, 1);
        ASSERT_INT_EQ(f->len, strlen(payload));
        ASSERT_TRUE(memcmp(frame_payload(f), payload, f->len) == 0);
        /* NUL-terminated for free, so it can be logged or parsed as a string. */
        ASSERT_INT_EQ(frame_payload(f)[f->len], 0);
        /* The payload sits exactly LWS_PRE bytes in, its RFC 6455 header
         * (FIN + text, 7-bit length) right before it. */
        ASSERT_TRUE(frame_payload(f) == f->data + LWS_PRE);
        ASSERT_INT_EQ(frame_wire_len(f), 2 + strlen(payload));
        ASSERT_INT_EQ(frame_wire(f)[0], 0x81);
        ASSERT_INT_EQ(frame_wire(f)[1], strlen(payload));
        f = frame_unref(f);
        ASSERT_NULL(f);

        /* Binary-safe: embedded NUL bytes are copied, the length is kept. */
        ASSERT_OK(frame_new(&f, "a\0b", 3));
        ASSERT_INT_EQ(f->len, 3);
        ASSERT_TRUE(memcmp(frame_payload(f), "a\0b", 4) == 0);
        frame_unref(f);

        /* Empty payload. */
        ASSERT_OK(frame_new(&f, "", 0));
        ASSERT_INT_EQ(f->len, 0);
        ASSERT_INT_EQ(frame_payload(f)[0], 0);
        frame_unref(f);

        /* Large payload. */
        {
                size_t n = 1024 * 1024;
                _cleanup_free_ char *big = malloc(n);

                ASSERT_NOT_NULL(big);
                memset(big, 'x', n);
                ASSERT_OK(frame_new(&f, big, n));
                ASSERT_INT_EQ(f->len, n);
                ASSERT_TRUE(memcmp(frame_payload(f), big, n) == 0);
                /* 64-bit length: 127, then 0x0000000000100000. */
                ASSERT_INT_EQ(frame_wire_len(f), 10 + n);
                ASSERT_INT_EQ(frame_wire(f)[1], 127);
                ASSERT_INT_EQ(frame_wire(f)[7], 0x10);
                ASSERT_INT_EQ(frame_wire(f)[9], 0);
                frame_unref(f);

                /* 16-bit length: 126, then 0x012c. */
                ASSERT_OK(frame_new(&f, big, 300));
                ASSERT_INT_EQ(frame_wire_len(f), 4 + 300);
                ASSERT_INT_EQ(frame_wire(f)[1], 126);
                ASSERT_INT_EQ(frame_wire(f)[2], 0x01);
                ASSERT_INT_EQ(frame_wire(f)[3], 0x2c);
                frame_unref(f);
        }
}

static void test_take(void) {
        Frame *f = NULL;
        char *s = strdup("{\"a\": 1}");

        ASSERT_NOT_NULL(s);
        ASSERT_OK(frame_new_take(&f, s));        /* s is freed by frame_new_take (ASan checks) */
        ASSERT_INT_EQ(f->len, 8);
        ASSERT_STREQ((char *) frame_payload(f), "{\"a\": 1}");
        frame_unref(f);

        /* NULL is what a failed json_dumps() returns: reported as ENOMEM, ret untouched. */
        f = (Frame *) 0x1;
        ASSERT_ERROR(frame_new_take(&f, NULL), ENOMEM);
        ASSERT_TRUE(f == (Frame *) 0x1);
}

static void test_refs(void) {
        Frame *f = NULL, *g;

        ASSERT_OK(frame_new(&f, "x", 1));
        g = frame_ref(f);
        ASSERT_TRUE(g == f);
        ASSERT_INT_EQ(f->n_ref, 2);
        frame_ref(f);
        ASSERT_INT_EQ(f->n_ref, 3);
        ASSERT_NULL(frame_unref(f));
        ASSERT_INT_EQ(f->n_ref, 2);
        ASSERT_NULL(frame_unref(f));
        ASSERT_INT_EQ(f->n_ref, 1);
        ASSERT_NULL(frame_unref(f));     /* freed here: ASan would flag any later use or a leak */

        ASSERT_NULL(frame_ref(NULL));
        ASSERT_NULL(frame_unref(NULL));

        /* The cleanup helper. */
        {
                _cleanup_(frame_unrefp) Frame *c = NULL;
                _cleanup_(frame_unrefp) Frame *d = NULL;

                ASSERT_OK(frame_new(&c, "y", 1));
        }
}

static json_t *frame_json(Frame *f) {
        json_error_t err;
        json_t *j = json_loadb((const char *) frame_payload(f), f->len, 0, &err);

        if (!j)
                fprintf(stderr, "not JSON (%s): %.*s\n", err.text, (int) f->len, (const char *) frame_payload(f));
        return j;
}

static void test_own(void) {
        static const char msg[] = "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"}\"}";
        Frame *f = NULL, *o = NULL;
        json_t *a, *b;

        ASSERT_OK(frame_new(&f, msg, strlen(msg)));
        ASSERT_OK(frame_new_own(&o, f));
        ASSERT_TRUE(o != f);
        ASSERT_INT_EQ(o->n_ref, 1);
        ASSERT_INT_EQ(f->n_ref, 1);
        ASSERT_STREQ((char *) frame_payload(o),
                     "{\"msg_type\": 0, \"room\": \"1\", \"username\": \"alice\", \"message\": \"}\", \"own\": true}");
        ASSERT_INT_EQ(o->len, strlen((char *) frame_payload(o)));
        /* The original is untouched. */
        ASSERT_STREQ((char *) frame_payload(f), msg);

        /* Equal to the source object plus "own": true, as JSON. */
        a = frame_json(o);
        ASSERT_NOT_NULL(a);
        b = frame_json(f);
        ASSERT_NOT_NULL(b);
        ASSERT_TRUE(json_is_true(json_object_get(a, "own")));
        ASSERT_OK(json_object_set_new(b, "own", json_true()));
        ASSERT_TRUE(json_equal(a, b));
        json_decref(a);
        json_decref(b);
        frame_unref(o);
        frame_unref(f);

        /* What chat.c actually does: splicing protocol_format_message()
         * gives, byte for byte, the event serialized with own = true (the
         * v1 wire format is Python's json.dumps, so bytes matter). */
        {
                ChatMessage m = {
                        .room = "7", .id = "1700000000000-3", .username = "bob",
                        .message = "quote \" brace } backslash \\ \xc3\xa9", .ts = 1700000000000,
                        .edited = true,
                };
                const char *own_s = "{\"msg_type\": 0, \"room\": \"7\", \"username\": \"bob\", "
                                    "\"message\": \"quote \\\" brace } backslash \\\\ \\u00e9\", "
                                    "\"id\": \"1700000000000-3\", \"ts\": 1700000000000, \"edited\": true, \"own\": true}";

                ASSERT_OK(frame_new_take(&f, protocol_format_message(&m)));
                ASSERT_OK(frame_new_own(&o, f));
                ASSERT_STREQ((char *) frame_payload(o), own_s);
                ASSERT_INT_EQ(o->len, strlen(own_s));
                frame_unref(o);
                frame_unref(f);
        }

        /* Not an object ending in '}': refused, ret untouched. */
        o = NULL;
        ASSERT_OK(frame_new(&f, "[1, 2]", 6));
        ASSERT_ERROR(frame_new_own(&o, f), EINVAL);
        ASSERT_NULL(o);
        frame_unref(f);
        ASSERT_OK(frame_new(&f, "}", 1));
        ASSERT_ERROR(frame_new_own(&o, f), EINVAL);
        frame_unref(f);
        ASSERT_OK(frame_new(&f, "", 0));
        ASSERT_ERROR(frame_new_own(&o, f), EINVAL);
        frame_unref(f);
        ASSERT_OK(frame_new(&f, "{\"a\": 1} ", 9));
        ASSERT_ERROR(frame_new_own(&o, f), EINVAL);
        frame_unref(f);
        ASSERT_NULL(o);
}

static void test_ping(void) {
        Frame *f = NULL;

        ASSERT_OK(frame_new_ping(&f));
        /* FIN + opcode 9, unmasked, a payload (lws reports only pongs
         * that have one), at most 125 bytes (RFC 6455 5.5). */
        ASSERT_INT_EQ(frame_wire(f)[0], 0x89);
        ASSERT_TRUE(f->len > 0 && f->len <= 125);
        ASSERT_INT_EQ(frame_wire(f)[1], f->len);
        ASSERT_INT_EQ(frame_wire_len(f), 2 + f->len);
        frame_unref(f);
}

int main(void) {
        test_new();
        test_ping();
        test_take();
        test_refs();
        test_own();
        return 0;
}
