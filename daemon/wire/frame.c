/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refcounted, pre-serialized outgoing WebSocket text frames shared by every receiver. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/frame.h"
#include "basic/macro.h"

#define OWN_SUFFIX ", \"own\": true}"

#define OPCODE_TEXT 0x1
#define OPCODE_PING 0x9

/* RFC 6455 5.2: FIN + opcode, then a 7-bit, 16-bit or 64-bit length;
 * a server does not mask. */
static unsigned frame_write_header(unsigned char *end, unsigned opcode, size_t len) {
        unsigned char first = (unsigned char) (0x80 | opcode);

        if (len < 126) {
                end[-2] = first;
                end[-1] = (unsigned char) len;
                return 2;
        }
        if (len <= 0xffff) {
                end[-4] = first;
                end[-3] = 126;
                end[-2] = (unsigned char) (len >> 8);
                end[-1] = (unsigned char) len;
                return 4;
        }
        end[-10] = first;
        end[-9] = 127;
        for (unsigned i = 0; i < 8; i++)
                end[-1 - (int) i] = (unsigned char) ((uint64_t) len >> (8 * i));
        return 10;
}

static int frame_alloc(Frame **ret, unsigned opcode, size_t len) {
        Frame *f;

        f = malloc(sizeof *f + LWS_PRE + len + 1);
        if (!f)
                return -ENOMEM;
        f->n_ref = 1;
        f->len = len;
        f->header_len = frame_write_header(f->data + LWS_PRE, opcode, len);
        f->data[LWS_PRE + len] = 0;
        *ret = f;
        return 0;
}

static int frame_new_opcode(Frame **ret, unsigned opcode, const void *payload, size_t len) {
        Frame *f;
        int r;

        r = frame_alloc(&f, opcode, len);
        if (r < 0)
                return r;
        memcpy(frame_payload(f), payload, len);
        *ret = f;
        return 0;
}

int frame_new(Frame **ret, const char *payload, size_t len) {
        return frame_new_opcode(ret, OPCODE_TEXT, payload, len);
}

/* The pong echoes the payload (RFC 6455 5.5.3); lws 4.1 tells us of a
 * pong only when it has one. */
#define PING_PAYLOAD "mc"

int frame_new_ping(Frame **ret) {
        return frame_new_opcode(ret, OPCODE_PING, PING_PAYLOAD, strlen(PING_PAYLOAD));
}

int frame_new_take(Frame **ret, char *payload) {
        _cleanup_free_ char *p = payload;

        if (!p)
                return -ENOMEM;
        return frame_new(ret, p, strlen(p));
}

int frame_new_own(Frame **ret, const Frame *message) {
        const unsigned char *src = message->data + LWS_PRE;
        Frame *f;
        int r;

        /* A message event has keys, so "{...}" with something inside. */
        if (message->len < 3 || src[0] != '{' || src[message->len - 1] != '}')
                return -EINVAL;

        r = frame_alloc(&f, OPCODE_TEXT, message->len - 1 + strlen(OWN_SUFFIX));
        if (r < 0)
                return r;
        memcpy(frame_payload(f), src, message->len - 1);
        memcpy(frame_payload(f) + message->len - 1, OWN_SUFFIX, strlen(OWN_SUFFIX));
        *ret = f;
        return 0;
}

Frame *frame_ref(Frame *f) {
        if (f)
                f->n_ref++;
        return f;
}

Frame *frame_unref(Frame *f) {
        if (f && --f->n_ref == 0)
                free(f);
        return NULL;
}
