/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the daemon ↔ multichat-auth datagrams in both directions: strict decode, exact re-encode. */

#include <errno.h>
#include <string.h>

#include "wire/auth-wire.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static const uint8_t zeroes[sizeof(AuthWireRequest)];

/* The helper reads requests: a request it accepts is one the daemon could
 * have sent, byte for byte. */
static void check_request(const uint8_t *data, size_t size) {
        AuthWireRequest req;
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        size_t n;
        int r;

        memset(&req, 0xaa, sizeof(req));
        r = auth_wire_request_decode(&req, data, size);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL || r == -EBADMSG);
                FUZZ_CHECK(memcmp(&req, zeroes, sizeof(req)) == 0);
                return;
        }
        FUZZ_CHECK(size <= AUTH_WIRE_DATAGRAM_MAX);
        FUZZ_CHECK(auth_wire_request_encode(&req, buf, sizeof(buf), &n) >= 0);
        FUZZ_CHECK(n == size && memcmp(buf, data, size) == 0);
        auth_wire_request_erase(&req);
}

/* The daemon reads replies: the same promise the other way. */
static void check_reply(const uint8_t *data, size_t size) {
        AuthWireReply rep;
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        size_t n;
        int r;

        memset(&rep, 0xaa, sizeof(rep));
        r = auth_wire_reply_decode(&rep, data, size);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL || r == -EBADMSG);
                FUZZ_CHECK(memcmp(&rep, zeroes, sizeof(rep)) == 0);
                return;
        }
        FUZZ_CHECK(rep.fail_delay_usec <= AUTH_WIRE_FAIL_DELAY_MAX_USEC);
        FUZZ_CHECK(rep.result <= 0);
        if (rep.result == 0)
                FUZZ_CHECK(auth_wire_username_is_valid(rep.username));
        else
                FUZZ_CHECK(rep.username[0] == '\0' && rep.uid == AUTH_WIRE_UID_INVALID);
        FUZZ_CHECK(auth_wire_reply_encode(&rep, buf, sizeof(buf), &n) >= 0);
        FUZZ_CHECK(n == size && memcmp(buf, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint32_t id;
        int r;

        r = auth_wire_peek_id(data, size, &id);
        FUZZ_CHECK(r >= 0 || r == -EBADMSG);
        check_request(data, size);
        check_reply(data, size);
        return 0;
}
