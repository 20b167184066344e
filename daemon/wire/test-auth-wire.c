/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for auth-wire: round trips, limits, and every kind of malformed datagram. */

#include <errno.h>
#include <string.h>

#include "wire/auth-wire.h"
#include "test/test.h"

static void fill(char *s, char c, size_t n) {
        memset(s, c, n);
        s[n] = '\0';
}

static void test_validators(void) {
        char s[AUTH_WIRE_PASSWORD_MAX + 2];

        ASSERT_TRUE(auth_wire_username_is_valid("alice"));
        ASSERT_TRUE(auth_wire_username_is_valid("a.b_c-d9"));
        ASSERT_TRUE(auth_wire_username_is_valid("A"));
        ASSERT_FALSE(auth_wire_username_is_valid(""));
        ASSERT_FALSE(auth_wire_username_is_valid(NULL));
        ASSERT_FALSE(auth_wire_username_is_valid("-alice"));
        ASSERT_FALSE(auth_wire_username_is_valid("al ice"));
        ASSERT_FALSE(auth_wire_username_is_valid("alice\n"));
        ASSERT_FALSE(auth_wire_username_is_valid("al/ice"));
        ASSERT_FALSE(auth_wire_username_is_valid("al:ice"));
        ASSERT_FALSE(auth_wire_username_is_valid("älice"));
        fill(s, 'a', 64);
        ASSERT_TRUE(auth_wire_username_is_valid(s));
        fill(s, 'a', 65);
        ASSERT_FALSE(auth_wire_username_is_valid(s));
        ASSERT_TRUE(auth_wire_group_is_valid("multichat-staff"));
        ASSERT_FALSE(auth_wire_group_is_valid("-x"));

        ASSERT_TRUE(auth_wire_password_is_valid(""));
        fill(s, 'p', AUTH_WIRE_PASSWORD_MAX);
        ASSERT_TRUE(auth_wire_password_is_valid(s));
        fill(s, 'p', AUTH_WIRE_PASSWORD_MAX + 1);
        ASSERT_FALSE(auth_wire_password_is_valid(s));
        ASSERT_FALSE(auth_wire_password_is_valid(NULL));

        ASSERT_TRUE(auth_wire_remote_is_valid(""));
        ASSERT_TRUE(auth_wire_remote_is_valid("[2001:db8::1]:443"));
        ASSERT_FALSE(auth_wire_remote_is_valid("1.2.3.4 x"));
        ASSERT_FALSE(auth_wire_remote_is_valid("1.2.3.4\r\n"));
        fill(s, '1', AUTH_WIRE_REMOTE_MAX + 1);
        ASSERT_FALSE(auth_wire_remote_is_valid(s));
}

static size_t encode_auth(uint8_t *buf, size_t size, const char *user, const char *pw) {
        AuthWireRequest req = { .type = AUTH_WIRE_AUTHENTICATE, .id = 0x01020304 };
        size_t len;

        strcpy(req.username, user);
        strcpy(req.password, pw);
        strcpy(req.remote, "192.0.2.7");
        ASSERT_OK(auth_wire_request_encode(&req, buf, size, &len));
        return len;
}

static void test_request_roundtrip(void) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        AuthWireRequest req = {}, out;
        size_t len;

        len = encode_auth(buf, sizeof buf, "alice", "s3cret");
        /* The header is the documented one, byte for byte. */
        ASSERT_TRUE(memcmp(buf, "MCAU\x01\x01\x00\x00\x04\x03\x02\x01", 12) == 0);
        ASSERT_INT_EQ(len, 12 + 2 + 5 + 2 + 6 + 2 + 9);
        ASSERT_OK(auth_wire_request_decode(&out, buf, len));
        ASSERT_INT_EQ(out.type, AUTH_WIRE_AUTHENTICATE);
        ASSERT_INT_EQ(out.id, 0x01020304);
        ASSERT_STREQ(out.username, "alice");
        ASSERT_STREQ(out.password, "s3cret");
        ASSERT_STREQ(out.remote, "192.0.2.7");
        auth_wire_request_erase(&out);
        ASSERT_STREQ(out.password, "");

        req = (AuthWireRequest) { .type = AUTH_WIRE_LOOKUP, .id = 7 };
        strcpy(req.username, "bob");
        ASSERT_OK(auth_wire_request_encode(&req, buf, sizeof buf, &len));
        ASSERT_OK(auth_wire_request_decode(&out, buf, len));
        ASSERT_INT_EQ(out.type, AUTH_WIRE_LOOKUP);
        ASSERT_STREQ(out.username, "bob");
        ASSERT_STREQ(out.group, "");
        strcpy(req.group, "multichat-admin");
        ASSERT_OK(auth_wire_request_encode(&req, buf, sizeof buf, &len));
        ASSERT_OK(auth_wire_request_decode(&out, buf, len));
        ASSERT_STREQ(out.group, "multichat-admin");

        req = (AuthWireRequest) { .type = AUTH_WIRE_LOOKUP_UID, .id = UINT32_MAX, .uid = 0 };
        ASSERT_OK(auth_wire_request_encode(&req, buf, sizeof buf, &len));
        ASSERT_OK(auth_wire_request_decode(&out, buf, len));
        ASSERT_INT_EQ(out.type, AUTH_WIRE_LOOKUP_UID);
        ASSERT_INT_EQ(out.id, UINT32_MAX);
        ASSERT_INT_EQ(out.uid, 0);
}

static void test_request_limits(void) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        AuthWireRequest req = { .type = AUTH_WIRE_AUTHENTICATE, .id = 1 }, out;
        size_t len;

        /* The largest request fits the datagram size with room to spare. */
        fill(req.username, 'u', USERNAME_MAX);
        fill(req.password, 'p', AUTH_WIRE_PASSWORD_MAX);
        fill(req.remote, 'r', AUTH_WIRE_REMOTE_MAX);
        ASSERT_OK(auth_wire_request_encode(&req, buf, sizeof buf, &len));
        ASSERT_TRUE(len < AUTH_WIRE_DATAGRAM_MAX);
        ASSERT_OK(auth_wire_request_decode(&out, buf, len));
        ASSERT_INT_EQ(strlen(out.password), AUTH_WIRE_PASSWORD_MAX);

        /* A buffer too small fails without writing past it. */
        buf[100] = 0xAA;
        ASSERT_ERROR(auth_wire_request_encode(&req, buf, 100, &len), ENOBUFS);
        ASSERT_INT_EQ(buf[100], 0xAA);

        /* Invalid fields are refused on the way out too. */
        strcpy(req.username, "-rf");
        ASSERT_ERROR(auth_wire_request_encode(&req, buf, sizeof buf, &len), EINVAL);
        strcpy(req.username, "ok");
        strcpy(req.remote, "a b");
        ASSERT_ERROR(auth_wire_request_encode(&req, buf, sizeof buf, &len), EINVAL);
        req = (AuthWireRequest) { .type = AUTH_WIRE_LOOKUP_UID, .uid = AUTH_WIRE_UID_INVALID };
        ASSERT_ERROR(auth_wire_request_encode(&req, buf, sizeof buf, &len), EINVAL);
        req = (AuthWireRequest) { .type = 9 };
        ASSERT_ERROR(auth_wire_request_encode(&req, buf, sizeof buf, &len), EINVAL);
}

static void test_request_malformed(void) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX], bad[AUTH_WIRE_DATAGRAM_MAX];
        AuthWireRequest out;
        uint32_t id;
        size_t len;

        len = encode_auth(buf, sizeof buf, "alice", "pw");

        /* Every truncation fails, and never leaves a password behind. */
        for (size_t n = 0; n < len; n++) {
                int r = auth_wire_request_decode(&out, buf, n);
                ASSERT_TRUE(r == -EINVAL || r == -EBADMSG);
                ASSERT_INT_EQ(out.password[0], 0);
                ASSERT_INT_EQ(r == -EBADMSG, n < AUTH_WIRE_HEADER_SIZE);
        }
        /* Trailing garbage. */
        memcpy(bad, buf, len);
        bad[len] = 0;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len + 1), EINVAL);

        /* Header: magic, version, reserved. */
        memcpy(bad, buf, len), bad[0] = 'X';
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EBADMSG);
        ASSERT_ERROR(auth_wire_peek_id(bad, len, &id), EBADMSG);
        memcpy(bad, buf, len), bad[4] = 2;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EBADMSG);
        memcpy(bad, buf, len), bad[7] = 1;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EBADMSG);

        /* Unknown type and a reply where a request belongs: the header is
         * fine, so the id can still be answered. */
        memcpy(bad, buf, len), bad[5] = 77;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        ASSERT_OK(auth_wire_peek_id(bad, len, &id));
        ASSERT_INT_EQ(id, 0x01020304);
        memcpy(bad, buf, len), bad[5] = AUTH_WIRE_REPLY;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);

        /* A NUL inside the username (offset 14 is its first byte). */
        memcpy(bad, buf, len), bad[15] = 0;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        /* A NUL inside the password. */
        memcpy(bad, buf, len), bad[12 + 2 + 5 + 2] = 0;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        /* A username with a character outside the set. */
        memcpy(bad, buf, len), bad[14] = '/';
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        memcpy(bad, buf, len), bad[14] = '-';
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        /* A string length that runs past the end, and one over the limit. */
        memcpy(bad, buf, len), bad[12] = 200;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        memcpy(bad, buf, len), bad[12] = 0xff, bad[13] = 0xff;
        ASSERT_ERROR(auth_wire_request_decode(&out, bad, len), EINVAL);
        /* An empty username. */
        {
                const uint8_t empty[] = "MCAU\x01\x01\x00\x00\x01\x00\x00\x00" "\x00\x00" "\x02\x00pw" "\x00\x00";
                ASSERT_ERROR(auth_wire_request_decode(&out, empty, sizeof empty - 1), EINVAL);
        }
        /* A password one byte over the limit, written by hand. */
        {
                size_t n = 0;
                memcpy(bad, "MCAU\x01\x01\x00\x00\x01\x00\x00\x00", 12), n = 12;
                bad[n++] = 1, bad[n++] = 0, bad[n++] = 'a';
                bad[n++] = (AUTH_WIRE_PASSWORD_MAX + 1) & 0xff, bad[n++] = (AUTH_WIRE_PASSWORD_MAX + 1) >> 8;
                memset(bad + n, 'p', AUTH_WIRE_PASSWORD_MAX + 1), n += AUTH_WIRE_PASSWORD_MAX + 1;
                bad[n++] = 0, bad[n++] = 0;
                ASSERT_ERROR(auth_wire_request_decode(&out, bad, n), EINVAL);
        }
        /* LOOKUP_UID for the invalid uid. */
        {
                const uint8_t u[] = "MCAU\x01\x03\x00\x00\x01\x00\x00\x00" "\xff\xff\xff\xff" "\x00\x00";
                ASSERT_ERROR(auth_wire_request_decode(&out, u, sizeof u - 1), EINVAL);
        }
        ASSERT_ERROR(auth_wire_request_decode(&out, NULL, 0), EBADMSG);
        ASSERT_ERROR(auth_wire_peek_id(NULL, 0, &id), EBADMSG);
}

/* Flipping any bit of a valid datagram must either decode to something
 * valid or fail cleanly: the sanitizers catch what a crash would show. */
static void test_bitflips(void) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX], bad[AUTH_WIRE_DATAGRAM_MAX];
        AuthWireRequest out;
        size_t len = encode_auth(buf, sizeof buf, "alice", "pw");

        for (size_t i = 0; i < len; i++)
                for (int b = 0; b < 8; b++) {
                        int r;

                        memcpy(bad, buf, len);
                        bad[i] ^= (uint8_t) (1 << b);
                        r = auth_wire_request_decode(&out, bad, len);
                        if (r >= 0) {
                                ASSERT_TRUE(auth_wire_username_is_valid(out.username));
                                ASSERT_TRUE(auth_wire_remote_is_valid(out.remote));
                        } else
                                ASSERT_TRUE(r == -EINVAL || r == -EBADMSG);
                }
}

static void test_reply(void) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX], bad[AUTH_WIRE_DATAGRAM_MAX];
        AuthWireReply rep = {
                .id = 42, .result = 0, .uid = 1001, .staff = true, .in_group = false,
                .fail_delay_usec = 0, .username = "alice",
        }, out;
        size_t len;

        ASSERT_OK(auth_wire_reply_encode(&rep, buf, sizeof buf, &len));
        ASSERT_INT_EQ(len, 12 + 4 + 4 + 1 + 3 + 8 + 2 + 5);
        ASSERT_OK(auth_wire_reply_decode(&out, buf, len));
        ASSERT_INT_EQ(out.id, 42);
        ASSERT_INT_EQ(out.result, 0);
        ASSERT_INT_EQ(out.uid, 1001);
        ASSERT_TRUE(out.staff);
        ASSERT_FALSE(out.in_group);
        ASSERT_STREQ(out.username, "alice");

        /* A reply is not a request, and the other way round. */
        {
                AuthWireRequest req;
                ASSERT_ERROR(auth_wire_request_decode(&req, buf, len), EINVAL);
        }
        len = encode_auth(bad, sizeof bad, "alice", "pw");
        ASSERT_ERROR(auth_wire_reply_decode(&out, bad, len), EINVAL);

        /* Failures carry only the error and the delay. */
        rep = (AuthWireReply) { .id = 9, .result = -EACCES, .uid = AUTH_WIRE_UID_INVALID,
                                .fail_delay_usec = 2000000 };
        ASSERT_OK(auth_wire_reply_encode(&rep, buf, sizeof buf, &len));
        ASSERT_OK(auth_wire_reply_decode(&out, buf, len));
        ASSERT_INT_EQ(out.result, -EACCES);
        ASSERT_INT_EQ(out.fail_delay_usec, 2000000);
        ASSERT_STREQ(out.username, "");
        rep.staff = true;
        ASSERT_ERROR(auth_wire_reply_encode(&rep, buf, sizeof buf, &len), EINVAL);
        rep.staff = false, rep.uid = 5;
        ASSERT_ERROR(auth_wire_reply_encode(&rep, buf, sizeof buf, &len), EINVAL);
        rep.uid = AUTH_WIRE_UID_INVALID, rep.result = 5;
        ASSERT_ERROR(auth_wire_reply_encode(&rep, buf, sizeof buf, &len), EINVAL);
        rep.result = -EACCES, rep.fail_delay_usec = AUTH_WIRE_FAIL_DELAY_MAX_USEC + 1;
        ASSERT_ERROR(auth_wire_reply_encode(&rep, buf, sizeof buf, &len), EINVAL);
        /* Success needs a uid and a name. */
        rep = (AuthWireReply) { .id = 1, .uid = AUTH_WIRE_UID_INVALID, .username = "x" };
        ASSERT_ERROR(auth_wire_reply_encode(&rep, buf, sizeof buf, &len), EINVAL);
        rep = (AuthWireReply) { .id = 1, .uid = 1 };
        ASSERT_ERROR(auth_wire_reply_encode(&rep, buf, sizeof buf, &len), EINVAL);

        /* Byte-level tampering with a good reply. */
        rep = (AuthWireReply) { .id = 42, .uid = 1001, .username = "alice" };
        ASSERT_OK(auth_wire_reply_encode(&rep, buf, sizeof buf, &len));
        memcpy(bad, buf, len), bad[20] = 0x04;          /* unknown flag */
        ASSERT_ERROR(auth_wire_reply_decode(&out, bad, len), EINVAL);
        memcpy(bad, buf, len), bad[22] = 1;             /* reserved */
        ASSERT_ERROR(auth_wire_reply_decode(&out, bad, len), EINVAL);
        memcpy(bad, buf, len), bad[12] = 1;             /* positive result */
        ASSERT_ERROR(auth_wire_reply_decode(&out, bad, len), EINVAL);
        memcpy(bad, buf, len), bad[31] = 0x10;          /* huge delay */
        ASSERT_ERROR(auth_wire_reply_decode(&out, bad, len), EINVAL);
        ASSERT_ERROR(auth_wire_reply_decode(&out, buf, len - 1), EINVAL);
        ASSERT_ERROR(auth_wire_reply_decode(&out, buf, 3), EBADMSG);
        for (size_t n = 0; n < len; n++)
                ASSERT_TRUE(auth_wire_reply_decode(&out, buf, n) < 0);
}

int main(void) {
        test_validators();
        test_request_roundtrip();
        test_request_limits();
        test_request_malformed();
        test_bitflips();
        test_reply();
        return 0;
}
