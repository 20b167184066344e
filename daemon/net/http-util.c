/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pure HTTP helpers: request heads, forms, cookies, escaping, redirect and origin checks. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "basic/utf8.h"
#include "net/http-util.h"
#include "basic/macro.h"
#include "basic/time-util.h"

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes s[0..n) into out (room for at least n bytes) and validates the
 * result; the decoded form is never longer than the input. */
static int url_decode_into(const char *s, size_t n, bool plus_is_space, char *out, size_t *ret_len) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (c == '%') {
                        int hi, lo;

                        if (n - i < 3)
                                return -EINVAL;
                        hi = unhex(s[i + 1]);
                        lo = unhex(s[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        c = (char) (hi << 4 | lo);
                        i += 2;
                } else if (c == '+' && plus_is_space)
                        c = ' ';

                if (c == '\0')
                        return -EINVAL;
                out[k++] = c;
        }

        if (!utf8_is_valid(out, k))
                return -EINVAL;

        *ret_len = k;
        return 0;
}

int http_url_decode(const char *s, size_t n, char **ret) {
        _cleanup_(freep) char *buf = NULL;
        size_t k;
        int r;

        if (!s && n > 0)
                return -EINVAL;

        buf = malloc(n + 1);
        if (!buf)
                return -ENOMEM;

        r = url_decode_into(s, n, /* plus_is_space= */ false, buf, &k);
        if (r < 0)
                return r;
        buf[k] = '\0';

        *ret = TAKE_PTR(buf);
        return 0;
}

int http_form_get(const char *body, size_t len, const char *key, char **ret) {
        _cleanup_(freep) char *buf = NULL, *found = NULL;
        size_t key_len;
        bool have = false;

        if (!key || (!body && len > 0))
                return -EINVAL;
        if (len == 0)
                return -ENOENT;

        key_len = strlen(key);

        /* One scratch buffer serves every segment: none decodes longer than the body. */
        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;

        for (size_t i = 0; i < len;) {
                const char *pair = body + i, *amp, *eq;
                size_t pair_len, name_len, value_len, k;
                int r;

                amp = memchr(pair, '&', len - i);
                pair_len = amp ? (size_t) (amp - pair) : len - i;
                i += pair_len + 1;
                if (pair_len == 0)
                        continue;

                eq = memchr(pair, '=', pair_len);
                name_len = eq ? (size_t) (eq - pair) : pair_len;
                value_len = eq ? pair_len - name_len - 1 : 0;

                /* Every name and value is validated, even after a match, so
                 * a malformed body is rejected as a whole. */
                r = url_decode_into(pair, name_len, true, buf, &k);
                if (r < 0)
                        return r;
                bool match = !have && k == key_len && memcmp(buf, key, k) == 0;

                r = url_decode_into(eq ? eq + 1 : "", value_len, true, buf, &k);
                if (r < 0)
                        return r;
                if (!match)
                        continue;

                have = true;
                if (k > HTTP_VALUE_MAX)
                        continue; /* reported after the body was validated */
                found = strndup(buf, k);
                if (!found)
                        return -ENOMEM;
        }

        if (!have)
                return -ENOENT;
        if (!found)
                return -E2BIG;

        *ret = TAKE_PTR(found);
        return 0;
}

static bool is_cookie_octet(unsigned char c) {
        /* RFC 6265 4.1.1: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
        return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

int http_cookie_get(const char *header, const char *name, char **ret) {
        size_t name_len;

        if (!name || !*name)
                return -EINVAL;
        if (!header)
                return -ENOENT;

        name_len = strlen(name);

        for (const char *p = header; *p;) {
                const char *pair, *end, *eq, *v;
                size_t pair_len, v_len;

                while (is_ows(*p))
                        p++;
                pair = p;
                end = strchrnul(p, ';');
                p = *end ? end + 1 : end;

                pair_len = end - pair;
                while (pair_len > 0 && is_ows(pair[pair_len - 1]))
                        pair_len--;

                eq = memchr(pair, '=', pair_len);
                if (!eq)
                        continue;

                /* Browsers may send "name = value": ignore whitespace around '='. */
                size_t n_len = eq - pair;
                while (n_len > 0 && is_ows(pair[n_len - 1]))
                        n_len--;
                if (n_len != name_len || memcmp(pair, name, n_len) != 0)
                        continue;

                v = eq + 1;
                v_len = pair_len - (v - pair);
                while (v_len > 0 && is_ows(*v))
                        v++, v_len--;
                if (v_len >= 2 && v[0] == '"' && v[v_len - 1] == '"')
                        v++, v_len -= 2;

                for (size_t k = 0; k < v_len; k++)
                        if (!is_cookie_octet((unsigned char) v[k]))
                                return -EINVAL;
                if (v_len > HTTP_VALUE_MAX)
                        return -E2BIG;

                char *s = strndup(v, v_len);
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }

        return -ENOENT;
}

char *html_escape(const char *s) {
        size_t n = 0;
        char *buf, *q;

        if (!s) {
                errno = EINVAL;
                return NULL;
        }

        for (const char *p = s; *p; p++)
                switch (*p) {
                case '&':
                        n += 5;
                        break;
                case '<':
                case '>':
                        n += 4;
                        break;
                case '"':
                        n += 6;
                        break;
                case '\'':
                        n += 5;
                        break;
                default:
                        n += 1;
                }

        buf = malloc(n + 1);
        if (!buf)
                return NULL;

        q = buf;
        for (const char *p = s; *p; p++)
                switch (*p) {
                case '&':
                        q = stpcpy(q, "&amp;");
                        break;
                case '<':
                        q = stpcpy(q, "&lt;");
                        break;
                case '>':
                        q = stpcpy(q, "&gt;");
                        break;
                case '"':
                        q = stpcpy(q, "&quot;");
                        break;
                case '\'':
                        q = stpcpy(q, "&#39;");
                        break;
                default:
                        *q++ = *p;
                }
        *q = '\0';
        return buf;
}

bool http_redirect_is_safe(const char *next) {
        size_t n;

        if (!next || next[0] != '/')
                return false;
        if (next[1] == '/' || next[1] == '\\')
                return false;

        n = strnlen(next, HTTP_REDIRECT_MAX + 1);
        if (n > HTTP_REDIRECT_MAX)
                return false;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = next[i];

                if (c < 0x21 || c > 0x7e || c == '\\')
                        return false;
        }
        return true;
}

typedef struct Authority {
        const char *host;
        size_t host_len;
        unsigned port;  /* 0: none given */
} Authority;

static bool is_host_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_';
}

static bool is_ipv6_char(char c) {
        return unhex(c) >= 0 || c == ':' || c == '.';
}

/* Parses "host[:port]" or "[v6]:port" spanning exactly s[0..n). */
static bool authority_parse(const char *s, size_t n, Authority *ret) {
        size_t h;

        if (n == 0)
                return false;

        if (s[0] == '[') {
                const char *close = memchr(s, ']', n);

                if (!close || close == s + 1)
                        return false;
                h = close - s + 1;
                for (size_t i = 1; i < h - 1; i++)
                        if (!is_ipv6_char(s[i]))
                                return false;
        } else {
                for (h = 0; h < n && s[h] != ':'; h++)
                        if (!is_host_char(s[h]))
                                return false;
                if (h == 0)
                        return false;
        }

        unsigned port = 0;
        if (h < n) {
                if (s[h] != ':' || h + 1 == n || n - h - 1 > 5)
                        return false;
                for (size_t i = h + 1; i < n; i++) {
                        if (s[i] < '0' || s[i] > '9')
                                return false;
                        port = port * 10 + (unsigned) (s[i] - '0');
                }
                if (port == 0 || port > 65535)
                        return false;
        }

        *ret = (Authority) { .host = s, .host_len = h, .port = port };
        return true;
}

bool http_origin_allowed(const char *origin, const char *host, bool tls, char *const *allowed) {
        const char *scheme = tls ? "https://" : "http://";
        unsigned default_port = tls ? 443 : 80;
        size_t scheme_len = strlen(scheme);
        Authority a, b;

        /* "null" comes from sandboxed frames, file: pages and redirects: never trusted. */
        if (!origin || streq(origin, "null"))
                return false;

        for (char *const *p = allowed; p && *p; p++)
                if (streq(origin, *p))
                        return true;

        if (!host || strncasecmp(origin, scheme, scheme_len) != 0)
                return false;
        if (!authority_parse(origin + scheme_len, strlen(origin + scheme_len), &a))
                return false;
        if (!authority_parse(host, strlen(host), &b))
                return false;

        if (a.host_len != b.host_len || strncasecmp(a.host, b.host, a.host_len) != 0)
                return false;
        return (a.port ?: default_port) == (b.port ?: default_port);
}

const char *http_session_cookie_name(bool tls) {
        return tls ? HTTP_SESSION_COOKIE_NAME_TLS : HTTP_SESSION_COOKIE_NAME;
}

/* RFC 7230 tchar. */
static bool cookie_name_is_valid(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
                      strchr("!#$%&'*+-.^_`|~", *s)))
                        return false;
        return true;
}

/* RFC 6265 cookie-octet: printable ASCII but space, DQUOTE, comma, semicolon, backslash. */
static bool cookie_value_is_valid(const char *s) {
        if (!s)
                return false;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\')
                        return false;
        }
        return true;
}

int http_cookie_format(char **ret, const char *name, const char *value, bool tls, uint64_t max_age_usec) {
        char max_age[48] = "";
        char *s;

        if (!ret || !cookie_name_is_valid(name) || !cookie_value_is_valid(value))
                return -EINVAL;
        if (strlen(value) > HTTP_VALUE_MAX)
                return -EINVAL;

        if (max_age_usec == UINT64_MAX)
                strcpy(max_age, "; Max-Age=0");
        else if (max_age_usec > 0)
                snprintf(max_age, sizeof max_age, "; Max-Age=%" PRIu64,
                         MAX(max_age_usec / USEC_PER_SEC, UINT64_C(1)));

        if (asprintf(&s, "%s=%s; Path=/%s; HttpOnly; SameSite=Strict%s",
                     name, value, max_age, tls ? "; Secure" : "") < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool http_is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

/* The line starting at p: its length without the line break, or -EAGAIN
 * when the break has not arrived. */
static ssize_t head_line(const char *p, const char *end, const char **ret_next) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t n;

        if (!nl)
                return -EAGAIN;
        n = (size_t) (nl - p);
        if (n > 0 && p[n - 1] == '\r')
                n--;
        *ret_next = nl + 1;
        return (ssize_t) n;
}

/* "METHOD SP TARGET SP HTTP/1.x": judged as soon as a part is known, so a
 * method we never serve or an endless target is answered without waiting. */
static int head_check_request_line(const char *buf, size_t len, const char **ret_next) {
        const char *end = buf + len, *p = buf, *target, *sp;
        ssize_t n;
        size_t m;

        while (p < end && http_is_tchar(*p))
                p++;
        if (p == end)
                return p - buf > 16 ? 405 : -EAGAIN;
        m = (size_t) (p - buf);
        if (*p != ' ' || m == 0)
                return 400;
        if (!((m == 3 && memcmp(buf, "GET", 3) == 0) || (m == 4 && memcmp(buf, "HEAD", 4) == 0) ||
              (m == 4 && memcmp(buf, "POST", 4) == 0)))
                return 405;

        target = p + 1;
        sp = memchr(target, ' ', (size_t) (end - target));
        m = (size_t) ((sp ?: end) - target);
        if (m > HTTP_URI_MAX)
                return 414;
        n = head_line(target, end, ret_next);
        if (!sp || (n >= 0 && (size_t) n < m))
                return n >= 0 ? 400 : -EAGAIN;           /* no version: HTTP/0.9, which we do not speak */
        if (m == 0 || target[0] != '/')
                return 400;
        if (n < 0)
                return (size_t) (end - sp) > 16 ? 400 : -EAGAIN;
        if ((size_t) n != m + 9 || (memcmp(sp + 1, "HTTP/1.1", 8) != 0 && memcmp(sp + 1, "HTTP/1.0", 8) != 0))
                return 400;
        for (const char *q = target; q < sp; q++)
                if ((unsigned char) *q <= ' ' || *q == 0x7f)
                        return 400;
        return 0;
}

static int head_parse_content_length(const char *v, size_t n, uint64_t *ret) {
        uint64_t x = 0;

        if (n == 0 || n > 18)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (v[i] < '0' || v[i] > '9')
                        return -EINVAL;
                x = x * 10 + (uint64_t) (v[i] - '0');
        }
        *ret = x;
        return 0;
}

typedef struct HeadFields {
        unsigned lines;
        bool has_length, has_transfer_encoding;
        uint64_t length;
} HeadFields;

/* One "Name: value" line; returns 0 or the status to refuse with. */
static int head_check_field(const char *p, size_t n, HeadFields *f) {
        const char *colon = memchr(p, ':', n), *v, *e = p + n;
        uint64_t length;

        if (++f->lines > HTTP_HEADER_LINES_MAX)
                return 431;
        if (!colon || colon == p)
                return 400;                             /* also obs-fold: a line starting with a space */
        for (const char *q = p; q < colon; q++)
                if (!http_is_tchar(*q))
                        return 400;
        for (v = colon + 1; v < e && (*v == ' ' || *v == '\t'); v++)
                ;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
        for (const char *q = v; q < e; q++)
                if (((unsigned char) *q < ' ' && *q != '\t') || *q == 0x7f)
                        return 400;
        if ((size_t) (colon - p) == 17 && strncasecmp(p, "transfer-encoding", 17) == 0)
                f->has_transfer_encoding = true;
        if ((size_t) (colon - p) != 14 || strncasecmp(p, "content-length", 14) != 0)
                return 0;
        if (head_parse_content_length(v, (size_t) (e - v), &length) < 0)
                return 400;
        if (f->has_length && f->length != length)
                return 400;
        f->has_length = true;
        f->length = length;
        return 0;
}

int http_head_check(const char *buf, size_t len, size_t max_bytes) {
        const char *end = buf + MIN(len, max_bytes), *p, *next;
        HeadFields f = {};
        int r;

        r = head_check_request_line(buf, (size_t) (end - buf), &p);
        if (r == -EAGAIN)
                return len >= max_bytes ? 431 : -EAGAIN;
        if (r != 0)
                return r;
        for (;;) {
                ssize_t n = head_line(p, end, &next);

                if (n < 0)
                        return len >= max_bytes ? 431 : -EAGAIN;
                if (n == 0)
                        break;
                r = head_check_field(p, (size_t) n, &f);
                if (r != 0)
                        return r;
                p = next;
        }
        if (f.has_length && f.has_transfer_encoding)
                return 400;
        return 0;
}
