/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The load generator's RFC 6455 client side: handshake key, masked frames out, server frames in, HTTP heads. */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lg-ws.h"

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static uint32_t rol32(uint32_t x, unsigned n) {
        return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p) {
        uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

        for (unsigned i = 0; i < 16; i++)
                w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 |
                       (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
        for (unsigned i = 16; i < 80; i++)
                w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        for (unsigned i = 0; i < 80; i++) {
                uint32_t f, k;
                if (i < 20)
                        f = (b & c) | (~b & d), k = 0x5A827999;
                else if (i < 40)
                        f = b ^ c ^ d, k = 0x6ED9EBA1;
                else if (i < 60)
                        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
                else
                        f = b ^ c ^ d, k = 0xCA62C1D6;
                uint32_t t = rol32(a, 5) + f + e + k + w[i];
                e = d, d = c, c = rol32(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void lg_sha1(const void *data, size_t len, uint8_t out[static 20]) {
        uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
        const uint8_t *p = data;
        uint8_t tail[128] = {};
        size_t full = len / 64 * 64, rest = len - full, tail_len;

        for (size_t i = 0; i < full; i += 64)
                sha1_block(h, p + i);
        memcpy(tail, p + full, rest);
        tail[rest] = 0x80;
        tail_len = rest + 9 <= 64 ? 64 : 128;
        for (unsigned i = 0; i < 8; i++)
                tail[tail_len - 1 - i] = (uint8_t) ((uint64_t) len * 8 >> (8 * i));
        sha1_block(h, tail);
        if (tail_len == 128)
                sha1_block(h, tail + 64);
        for (unsigned i = 0; i < 20; i++)
                out[i] = (uint8_t) (h[i / 4] >> (24 - 8 * (i % 4)));
}

size_t lg_base64(const uint8_t *in, size_t n, char *out) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t o = 0;

        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16 | (i + 1 < n ? (uint32_t) in[i + 1] << 8 : 0) |
                             (i + 2 < n ? in[i + 2] : 0);
                out[o++] = tab[v >> 18 & 63];
                out[o++] = tab[v >> 12 & 63];
                out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
                out[o++] = i + 2 < n ? tab[v & 63] : '=';
        }
        out[o] = 0;
        return o;
}

void ws_make_key(uint64_t seed, char key[static WS_KEY_LEN + 1], char accept[static WS_ACCEPT_LEN + 1]) {
        uint8_t raw[16], digest[20];
        char buf[WS_KEY_LEN + sizeof(WS_GUID)];

        for (unsigned i = 0; i < 16; i++) {
                /* splitmix64: the key only has to look random to the server. */
                seed += 0x9E3779B97F4A7C15ULL;
                uint64_t z = seed;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
                raw[i] = (uint8_t) (z ^ (z >> 31));
        }
        lg_base64(raw, sizeof(raw), key);
        memcpy(buf, key, WS_KEY_LEN);
        memcpy(buf + WS_KEY_LEN, WS_GUID, sizeof(WS_GUID) - 1);
        lg_sha1(buf, WS_KEY_LEN + sizeof(WS_GUID) - 1, digest);
        lg_base64(digest, sizeof(digest), accept);
}

size_t ws_frame_build(uint8_t *out, unsigned opcode, const void *payload, size_t len, uint32_t mask_key) {
        const uint8_t *p = payload;
        uint8_t mask[4] = { mask_key >> 24, mask_key >> 16, mask_key >> 8, mask_key };
        size_t h = 0;

        out[h++] = 0x80 | (opcode & 0x0F);
        if (len < 126)
                out[h++] = 0x80 | (uint8_t) len;
        else if (len <= 0xFFFF) {
                out[h++] = 0x80 | 126;
                out[h++] = (uint8_t) (len >> 8);
                out[h++] = (uint8_t) len;
        } else {
                out[h++] = 0x80 | 127;
                for (int i = 7; i >= 0; i--)
                        out[h++] = (uint8_t) ((uint64_t) len >> (8 * i));
        }
        memcpy(out + h, mask, 4);
        h += 4;
        for (size_t i = 0; i < len; i++)
                out[h + i] = p[i] ^ mask[i & 3];
        return h + len;
}

int ws_frame_parse(const uint8_t *buf, size_t n, size_t max_len, WsFrame *ret) {
        size_t h = 2;
        uint64_t len;

        if (n < 2)
                return 0;
        if (buf[0] & 0x70)
                return -EPROTO;         /* RSV bits: we negotiated no extension */
        if (buf[1] & 0x80)
                return -EPROTO;         /* servers never mask (RFC 6455 5.1) */
        len = buf[1] & 0x7F;
        if (len == 126) {
                if (n < 4)
                        return 0;
                len = (uint64_t) buf[2] << 8 | buf[3];
                h = 4;
        } else if (len == 127) {
                if (n < 10)
                        return 0;
                len = 0;
                for (unsigned i = 0; i < 8; i++)
                        len = len << 8 | buf[2 + i];
                h = 10;
        }
        if (len > max_len)
                return -EMSGSIZE;
        if (n - h < len)
                return 0;
        *ret = (WsFrame) {
                .opcode = buf[0] & 0x0F,
                .fin = buf[0] & 0x80,
                .payload = buf + h,
                .len = (size_t) len,
                .frame_len = h + (size_t) len,
        };
        return 1;
}

int http_head_parse(const char *buf, size_t n, HttpHead *ret) {
        const char *end, *v;
        size_t vlen;
        int status;

        end = memmem(buf, n, "\r\n\r\n", 4);
        if (!end)
                return n > 65536 ? -EBADMSG : 0;
        if (n < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
            !isdigit((unsigned char) buf[9]) || !isdigit((unsigned char) buf[10]) ||
            !isdigit((unsigned char) buf[11]))
                return -EBADMSG;
        status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');

        HttpHead h = {
                .status = status,
                .head_len = (size_t) (end - buf) + 4,
                .content_length = -1,
        };
        v = http_head_find(buf, h.head_len, "content-length", NULL, &vlen);
        if (v) {
                char tmp[24];
                char *e;
                if (vlen == 0 || vlen >= sizeof(tmp))
                        return -EBADMSG;
                memcpy(tmp, v, vlen);
                tmp[vlen] = 0;
                errno = 0;
                h.content_length = strtoll(tmp, &e, 10);
                if (errno || *e || h.content_length < 0)
                        return -EBADMSG;
        }
        *ret = h;
        return 1;
}

const char *http_head_find(const char *head, size_t head_len, const char *name, const char *after,
                           size_t *ret_len) {
        size_t nl = strlen(name);
        const char *p = after ? after : head, *end = head + head_len;

        for (;;) {
                const char *line = memmem(p, (size_t) (end - p), "\r\n", 2);
                if (!line)
                        return NULL;
                line += 2;
                if ((size_t) (end - line) < nl + 1)
                        return NULL;
                if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
                        const char *v = line + nl + 1, *e;
                        while (v < end && (*v == ' ' || *v == '\t'))
                                v++;
                        e = memmem(v, (size_t) (end - v), "\r\n", 2);
                        if (!e)
                                return NULL;
                        *ret_len = (size_t) (e - v);
                        return v;
                }
                p = line;
        }
}

int http_set_cookie_value(const char *head, size_t head_len, const char *name, char *out, size_t outsz) {
        size_t nl = strlen(name), vlen;
        const char *v = NULL;

        while ((v = http_head_find(head, head_len, "set-cookie", v, &vlen))) {
                if (vlen > nl && memcmp(v, name, nl) == 0 && v[nl] == '=') {
                        const char *s = v + nl + 1, *e = memchr(s, ';', vlen - nl - 1);
                        size_t len = e ? (size_t) (e - s) : vlen - nl - 1;
                        if (len + 1 > outsz)
                                return -ENOBUFS;
                        memcpy(out, s, len);
                        out[len] = 0;
                        return (int) len;
                }
        }
        return -ENOENT;
}
