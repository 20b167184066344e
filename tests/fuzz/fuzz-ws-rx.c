/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the reassembly of WebSocket messages: pieces in, whole messages out, never past the limit. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "fuzz.h"
#include "net/ws-rx.h"

/* Small, so that inputs reach it. */
#define LIMIT 300

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

/* The input is pieces as lws hands them over: a flags byte (bit 0 the
 * first piece of a message, bit 1 the last), a length byte, the bytes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *buf = NULL;
        char model[LIMIT + 256];
        size_t len = 0, model_len = 0, i = 0;

        while (i + 2 <= size) {
                bool first = data[i] & 1, final = data[i] & 2;
                size_t n = MIN((size_t) data[i + 1], size - i - 2);
                const uint8_t *in = data + i + 2;
                const char *msg = NULL;
                size_t msg_len = 0;
                int r;

                i += 2 + n;
                if (first) {
                        buf = mfree(buf);
                        len = model_len = 0;
                }
                r = ws_reassemble(&buf, &len, in, n, final, LIMIT, &msg, &msg_len);
                if (r == -EMSGSIZE) {
                        FUZZ_CHECK(model_len + n > LIMIT);
                        buf = mfree(buf);
                        len = model_len = 0;
                        continue;
                }
                FUZZ_CHECK(r >= 0);
                FUZZ_CHECK(model_len + n <= LIMIT);
                memcpy(model + model_len, in, n);
                model_len += n;
                FUZZ_CHECK(len == (r == 1 && msg == (const char *) in ? 0 : model_len));
                if (r == 0)
                        continue;
                FUZZ_CHECK(final);
                FUZZ_CHECK(msg_len == model_len && memcmp(msg, model, model_len) == 0);
                if (msg != (const char *) in)
                        FUZZ_CHECK(msg[msg_len] == 0);
                buf = mfree(buf);
                len = model_len = 0;
        }
        return 0;
}
