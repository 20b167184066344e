/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refcounted, pre-serialized outgoing WebSocket text frames shared by every receiver. */
#pragma once

#include <stddef.h>
#include <libwebsockets.h>

typedef struct Frame {
        unsigned n_ref;
        size_t len;
        /* LWS_PRE bytes of headroom that lws_write() may scribble on, then
         * the payload. Receivers of one broadcast share one Frame. */
        unsigned char data[];
} Frame;

int frame_new(Frame **ret, const char *payload, size_t len);
/* Takes ownership of a malloc'd JSON string (NULL means ENOMEM). */
int frame_new_take(Frame **ret, char *payload);
/* The same message event with `"own": true` spliced in before the final
 * brace, for the connections of the user who wrote it. */
int frame_new_own(Frame **ret, const Frame *message);

Frame *frame_ref(Frame *f);
Frame *frame_unref(Frame *f);

static inline unsigned char *frame_payload(Frame *f) {
        return f->data + LWS_PRE;
}

static inline void frame_unrefp(Frame **f) {
        frame_unref(*f);
}
