/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refcounted, pre-serialized outgoing WebSocket text frames shared by every receiver. */
#pragma once

#include <stddef.h>
#include <libwebsockets.h>

typedef struct Frame {
        unsigned n_ref;
        size_t len;
        unsigned header_len;          /* of the WebSocket header that ends the headroom */
        /* LWS_PRE bytes of headroom, then the payload. Receivers of one
         * broadcast share one Frame. The headroom ends with the frame's
         * RFC 6455 header (FIN, opcode, unmasked length), so header and
         * payload go out as they are, with no per-receiver work. */
        unsigned char data[];
} Frame;

int frame_new(Frame **ret, const char *payload, size_t len);
/* Takes ownership of a malloc'd JSON string (NULL means ENOMEM). */
int frame_new_take(Frame **ret, char *payload);
/* The same message event with `"own": true` spliced in before the final
 * brace, for the connections of the user who wrote it. */
int frame_new_own(Frame **ret, const Frame *message);
/* A ping with a short payload, for the keep-alive. */
int frame_new_ping(Frame **ret);

Frame *frame_ref(Frame *f);
Frame *frame_unref(Frame *f);

static inline unsigned char *frame_payload(Frame *f) {
        return f->data + LWS_PRE;
}

/* Header and payload as they go on the wire: frames are written raw, one
 * or several in one go. */
static inline const unsigned char *frame_wire(const Frame *f) {
        return f->data + LWS_PRE - f->header_len;
}

static inline size_t frame_wire_len(const Frame *f) {
        return f->header_len + f->len;
}

static inline void frame_unrefp(Frame **f) {
        frame_unref(*f);
}
