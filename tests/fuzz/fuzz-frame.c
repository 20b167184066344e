/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the outgoing WebSocket frames: every header must read back (RFC 6455) as the payload given. */

#include <string.h>

#include "wire/frame.h"
#include "fuzz.h"
#include "basic/macro.h"

/* Past 65,535 bytes, so that the 64-bit length form is reached from short
 * inputs (the payload repeats the input). */
#define STRETCH_MAX (70 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

/* Reads the header that ends the headroom the way a client does. */
static void check_wire(const Frame *f, unsigned opcode, const uint8_t *payload, size_t len) {
        const uint8_t *w = frame_wire(f);
        size_t got = 0;
        unsigned ext;

        FUZZ_CHECK(f->header_len == 2 || f->header_len == 4 || f->header_len == 10);
        FUZZ_CHECK(f->header_len <= LWS_PRE);
        FUZZ_CHECK(frame_wire_len(f) == f->header_len + len);
        FUZZ_CHECK(w[0] == (0x80 | opcode));    /* FIN, no RSV bits */
        FUZZ_CHECK((w[1] & 0x80) == 0);         /* a server never masks */

        ext = w[1] & 0x7f;
        if (ext < 126) {
                FUZZ_CHECK(f->header_len == 2);
                got = ext;
        } else if (ext == 126) {
                FUZZ_CHECK(f->header_len == 4);
                got = (size_t) w[2] << 8 | w[3];
                FUZZ_CHECK(got >= 126);         /* minimal form, RFC 6455 5.2 */
        } else {
                FUZZ_CHECK(f->header_len == 10);
                FUZZ_CHECK((w[2] & 0x80) == 0);
                for (unsigned i = 2; i < 10; i++)
                        got = got << 8 | w[i];
                FUZZ_CHECK(got > 0xffff);
        }
        FUZZ_CHECK(got == len);
        FUZZ_CHECK(memcmp(w + f->header_len, payload, len) == 0);
}

static void check_frame(const uint8_t *payload, size_t len) {
        _cleanup_(frame_unrefp) Frame *f = NULL, *own = NULL;
        int r;

        FUZZ_CHECK(frame_new(&f, (const char *) payload, len) >= 0);
        check_wire(f, 0x1, payload, len);
        FUZZ_CHECK(frame_ref(f) == f && f->n_ref == 2);
        frame_unref(f);

        r = frame_new_own(&own, f);
        if (len < 3 || payload[0] != '{' || payload[len - 1] != '}') {
                FUZZ_CHECK(r == -EINVAL);
                return;
        }
        FUZZ_CHECK(r >= 0);
        FUZZ_CHECK(own->len == len - 1 + strlen(", \"own\": true}"));
        FUZZ_CHECK(memcmp(frame_payload(own), payload, len - 1) == 0);
        FUZZ_CHECK(memcmp(frame_payload(own) + len - 1, ", \"own\": true}", strlen(", \"own\": true}")) == 0);
        check_wire(own, 0x1, frame_payload(own), own->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ uint8_t *big = NULL;
        size_t len;

        check_frame(data, size);

        /* The first two bytes pick a length up to STRETCH_MAX, filled with
         * the rest of the input over and over. */
        if (size < 3)
                return 0;
        len = ((size_t) data[0] << 8 | data[1]) * (STRETCH_MAX / 0xffff + 1) % (STRETCH_MAX + 1);
        big = malloc(len + 1);
        FUZZ_CHECK(big);
        for (size_t i = 0; i < len; i++)
                big[i] = data[2 + i % (size - 2)];
        check_frame(big, len);
        return 0;
}
