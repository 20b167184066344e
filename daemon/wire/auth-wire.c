/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The datagrams between the daemon and multichat-auth: encode, decode, validate. */

#include <errno.h>
#include <string.h>

#include "wire/auth-wire.h"
#include "basic/macro.h"

typedef struct Writer {
        uint8_t *p;
        size_t size;
        size_t len;
        bool overflow;
} Writer;

typedef struct Reader {
        const uint8_t *p;
        size_t len;
        size_t pos;
        bool bad;
} Reader;

static bool name_is_valid(const char *s, size_t max) {
        size_t n;

        if (!s || s[0] == '\0' || s[0] == '-')
                return false;
        n = strnlen(s, max + 1);
        if (n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

bool auth_wire_username_is_valid(const char *s) {
        return name_is_valid(s, USERNAME_MAX);
}

bool auth_wire_group_is_valid(const char *s) {
        return name_is_valid(s, AUTH_WIRE_GROUP_MAX);
}

bool auth_wire_password_is_valid(const char *s) {
        return s && strnlen(s, AUTH_WIRE_PASSWORD_MAX + 1) <= AUTH_WIRE_PASSWORD_MAX;
}

bool auth_wire_remote_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, AUTH_WIRE_REMOTE_MAX + 1);
        if (n > AUTH_WIRE_REMOTE_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= ' ' || s[i] > '~')
                        return false;
        return true;
}

static void put_bytes(Writer *w, const void *p, size_t n) {
        if (w->overflow || n > w->size - w->len) {
                w->overflow = true;
                return;
        }
        memcpy(w->p + w->len, p, n);
        w->len += n;
}

static void put_u8(Writer *w, uint8_t v) {
        put_bytes(w, &v, 1);
}

static void put_u16(Writer *w, uint16_t v) {
        uint8_t b[2] = { v & 0xff, v >> 8 };
        put_bytes(w, b, sizeof b);
}

static void put_u32(Writer *w, uint32_t v) {
        uint8_t b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
        put_bytes(w, b, sizeof b);
}

static void put_u64(Writer *w, uint64_t v) {
        put_u32(w, (uint32_t) v);
        put_u32(w, (uint32_t) (v >> 32));
}

static void put_str(Writer *w, const char *s) {
        size_t n = strlen(s);
        put_u16(w, (uint16_t) n);
        put_bytes(w, s, n);
}

static void put_header(Writer *w, uint8_t type, uint32_t id) {
        put_bytes(w, AUTH_WIRE_MAGIC, 4);
        put_u8(w, AUTH_WIRE_VERSION);
        put_u8(w, type);
        put_u16(w, 0);
        put_u32(w, id);
}

static const uint8_t *get_bytes(Reader *r, size_t n) {
        const uint8_t *p;

        if (r->bad || n > r->len - r->pos) {
                r->bad = true;
                return NULL;
        }
        p = r->p + r->pos;
        r->pos += n;
        return p;
}

static uint8_t get_u8(Reader *r) {
        const uint8_t *p = get_bytes(r, 1);
        return p ? p[0] : 0;
}

static uint16_t get_u16(Reader *r) {
        const uint8_t *p = get_bytes(r, 2);
        return p ? (uint16_t) (p[0] | p[1] << 8) : 0;
}

static uint32_t get_u32(Reader *r) {
        const uint8_t *p = get_bytes(r, 4);
        return p ? (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24 : 0;
}

static uint64_t get_u64(Reader *r) {
        uint64_t lo = get_u32(r);
        return lo | (uint64_t) get_u32(r) << 32;
}

/* Copies a string of at most max bytes into out (max + 1 bytes) and fails
 * on embedded NULs, so that C code downstream sees exactly what was sent. */
static void get_str(Reader *r, char *out, size_t max) {
        uint16_t n = get_u16(r);
        const uint8_t *p;

        if (n > max) {
                r->bad = true;
                return;
        }
        p = get_bytes(r, n);
        if (!p)
                return;
        if (memchr(p, '\0', n)) {
                r->bad = true;
                return;
        }
        memcpy(out, p, n);
        out[n] = '\0';
}

static int get_header(Reader *r, uint8_t *ret_type, uint32_t *ret_id) {
        const uint8_t *magic = get_bytes(r, 4);
        uint8_t version = get_u8(r), type = get_u8(r);
        uint16_t reserved = get_u16(r);
        uint32_t id = get_u32(r);

        if (r->bad || memcmp(magic, AUTH_WIRE_MAGIC, 4) != 0 || version != AUTH_WIRE_VERSION || reserved != 0)
                return -EBADMSG;
        *ret_type = type;
        *ret_id = id;
        return 0;
}

int auth_wire_peek_id(const void *buf, size_t len, uint32_t *ret_id) {
        Reader r = { .p = buf, .len = len };
        uint8_t type;
        uint32_t id;
        int k;

        if (!buf)
                return -EBADMSG;
        k = get_header(&r, &type, &id);
        if (k < 0)
                return k;
        if (ret_id)
                *ret_id = id;
        return 0;
}

static bool request_is_valid(const AuthWireRequest *req) {
        switch (req->type) {
        case AUTH_WIRE_AUTHENTICATE:
                return auth_wire_username_is_valid(req->username) &&
                        auth_wire_password_is_valid(req->password) &&
                        auth_wire_remote_is_valid(req->remote);
        case AUTH_WIRE_LOOKUP:
                return auth_wire_username_is_valid(req->username) &&
                        (req->group[0] == '\0' || auth_wire_group_is_valid(req->group));
        case AUTH_WIRE_LOOKUP_UID:
                return req->uid != AUTH_WIRE_UID_INVALID &&
                        (req->group[0] == '\0' || auth_wire_group_is_valid(req->group));
        default:
                return false;
        }
}

static bool reply_is_valid(const AuthWireReply *rep) {
        if (rep->result > 0 || rep->result < -4095)
                return false;
        if (rep->fail_delay_usec > AUTH_WIRE_FAIL_DELAY_MAX_USEC)
                return false;
        if (rep->result == 0)
                return rep->uid != AUTH_WIRE_UID_INVALID && auth_wire_username_is_valid(rep->username);
        /* A failure carries nothing but the error and the delay, so no
         * field of it can tell an attacker more than "no". */
        return rep->uid == AUTH_WIRE_UID_INVALID && !rep->staff && !rep->in_group && rep->username[0] == '\0';
}

int auth_wire_request_encode(const AuthWireRequest *req, void *buf, size_t size, size_t *ret_len) {
        Writer w = { .p = buf, .size = size };

        if (!req || !buf || !request_is_valid(req))
                return -EINVAL;

        put_header(&w, (uint8_t) req->type, req->id);
        switch (req->type) {
        case AUTH_WIRE_AUTHENTICATE:
                put_str(&w, req->username);
                put_str(&w, req->password);
                put_str(&w, req->remote);
                break;
        case AUTH_WIRE_LOOKUP:
                put_str(&w, req->username);
                put_str(&w, req->group);
                break;
        case AUTH_WIRE_LOOKUP_UID:
                put_u32(&w, req->uid);
                put_str(&w, req->group);
                break;
        default:
                return -EINVAL;
        }
        if (w.overflow) {
                explicit_bzero(buf, size);
                return -ENOBUFS;
        }
        if (ret_len)
                *ret_len = w.len;
        return 0;
}

int auth_wire_reply_encode(const AuthWireReply *rep, void *buf, size_t size, size_t *ret_len) {
        Writer w = { .p = buf, .size = size };

        if (!rep || !buf || !reply_is_valid(rep))
                return -EINVAL;

        put_header(&w, AUTH_WIRE_REPLY, rep->id);
        put_u32(&w, (uint32_t) rep->result);
        put_u32(&w, rep->uid);
        put_u8(&w, (rep->staff ? AUTH_WIRE_FLAG_STAFF : 0) | (rep->in_group ? AUTH_WIRE_FLAG_IN_GROUP : 0));
        put_bytes(&w, (const uint8_t[3]) {}, 3);
        put_u64(&w, rep->fail_delay_usec);
        put_str(&w, rep->username);
        if (w.overflow)
                return -ENOBUFS;
        if (ret_len)
                *ret_len = w.len;
        return 0;
}

int auth_wire_request_decode(AuthWireRequest *req, const void *buf, size_t len) {
        Reader r = { .p = buf, .len = len };
        uint8_t type;
        int k;

        if (!req)
                return -EINVAL;
        memset(req, 0, sizeof *req);
        if (!buf)
                return -EBADMSG;

        k = get_header(&r, &type, &req->id);
        if (k < 0)
                goto fail;
        k = -EINVAL;
        req->type = type;
        switch (type) {
        case AUTH_WIRE_AUTHENTICATE:
                get_str(&r, req->username, USERNAME_MAX);
                get_str(&r, req->password, AUTH_WIRE_PASSWORD_MAX);
                get_str(&r, req->remote, AUTH_WIRE_REMOTE_MAX);
                break;
        case AUTH_WIRE_LOOKUP:
                get_str(&r, req->username, USERNAME_MAX);
                get_str(&r, req->group, AUTH_WIRE_GROUP_MAX);
                break;
        case AUTH_WIRE_LOOKUP_UID:
                req->uid = get_u32(&r);
                get_str(&r, req->group, AUTH_WIRE_GROUP_MAX);
                break;
        default:
                goto fail;
        }
        if (r.bad || r.pos != r.len || !request_is_valid(req))
                goto fail;
        return 0;

fail:
        explicit_bzero(req, sizeof *req);
        return k;
}

int auth_wire_reply_decode(AuthWireReply *rep, const void *buf, size_t len) {
        Reader r = { .p = buf, .len = len };
        const uint8_t *reserved;
        uint8_t type, flags;
        int k;

        if (!rep)
                return -EINVAL;
        memset(rep, 0, sizeof *rep);
        if (!buf)
                return -EBADMSG;

        k = get_header(&r, &type, &rep->id);
        if (k < 0)
                goto fail;
        k = -EINVAL;
        if (type != AUTH_WIRE_REPLY)
                goto fail;
        rep->result = (int32_t) get_u32(&r);
        rep->uid = get_u32(&r);
        flags = get_u8(&r);
        reserved = get_bytes(&r, 3);
        rep->fail_delay_usec = get_u64(&r);
        get_str(&r, rep->username, USERNAME_MAX);
        if (r.bad || r.pos != r.len)
                goto fail;
        if ((flags & ~(AUTH_WIRE_FLAG_STAFF | AUTH_WIRE_FLAG_IN_GROUP)) != 0 ||
            reserved[0] != 0 || reserved[1] != 0 || reserved[2] != 0)
                goto fail;
        rep->staff = flags & AUTH_WIRE_FLAG_STAFF;
        rep->in_group = flags & AUTH_WIRE_FLAG_IN_GROUP;
        if (!reply_is_valid(rep))
                goto fail;
        return 0;

fail:
        memset(rep, 0, sizeof *rep);
        return k;
}

void auth_wire_request_erase(AuthWireRequest *req) {
        if (req)
                explicit_bzero(req->password, sizeof req->password);
}
