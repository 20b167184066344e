/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The load generator's RFC 6455 client side: handshake key, masked frames out, server frames in, HTTP heads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
        WS_OP_CONT = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xA,
};

#define WS_KEY_LEN 24           /* base64 of 16 random bytes */
#define WS_ACCEPT_LEN 28        /* base64 of a SHA-1 */
#define WS_FRAME_HEAD_MAX 14    /* 2 + 8 (64-bit length) + 4 (mask) */

/* A client key and the Sec-WebSocket-Accept the server must answer it
 * with (RFC 6455 4.2.2: base64(SHA-1(key + GUID))). */
void ws_make_key(uint64_t seed, char key[static WS_KEY_LEN + 1], char accept[static WS_ACCEPT_LEN + 1]);

/* Writes one masked client frame (FIN set) into out, which has room for
 * WS_FRAME_HEAD_MAX + len bytes; returns the frame's length. mask_seed
 * feeds the 4-byte masking key. */
size_t ws_frame_build(uint8_t *out, unsigned opcode, const void *payload, size_t len, uint32_t mask_key);

typedef struct WsFrame {
        unsigned opcode;
        bool fin;
        const uint8_t *payload;
        size_t len;
        size_t frame_len;       /* header + payload: how far to advance */
} WsFrame;

/* Parses one server frame at the start of buf. Returns 1 with *ret filled,
 * 0 when buf holds only part of a frame, -EPROTO for a masked server frame
 * or reserved bits, -EMSGSIZE past max_len. */
int ws_frame_parse(const uint8_t *buf, size_t n, size_t max_len, WsFrame *ret);

typedef struct HttpHead {
        int status;
        size_t head_len;        /* through the empty line */
        long long content_length;       /* -1 when absent */
} HttpHead;

/* Parses the status line and Content-Length of a response. Returns 1 when
 * the head is complete, 0 when more bytes are needed, -EBADMSG. */
int http_head_parse(const char *buf, size_t n, HttpHead *ret);

/* Finds header name (case-insensitive, "name:" at a line start) within the
 * head; returns its value (leading blanks skipped) and its length up to
 * the line end, or NULL. start is where to search from, for repeated
 * headers (pass NULL first, then the returned pointer). */
const char *http_head_find(const char *head, size_t head_len, const char *name, const char *after,
                           size_t *ret_len);

/* Finds cookie `name` among the Set-Cookie headers; copies its value into
 * out (size outsz). Returns the length, -ENOENT, or -ENOBUFS. */
int http_set_cookie_value(const char *head, size_t head_len, const char *name, char *out, size_t outsz);

/* SHA-1 of data (for the accept key; exposed for the self-test). */
void lg_sha1(const void *data, size_t len, uint8_t out[static 20]);
size_t lg_base64(const uint8_t *in, size_t n, char *out);
