/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for http-util.c: request heads, form and cookie parsing, cookie formatting, escaping, redirect and origin checks. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http-util.h"
#include "basic/macro.h"
#include "basic/time-util.h"
#include "test/test.h"

typedef struct DecodeCase {
        const char *in;
        int r;
        const char *out;
} DecodeCase;

static void test_url_decode(void) {
        static const DecodeCase table[] = {
                { "", 0, "" },
                { "abc", 0, "abc" },
                { "a+b", 0, "a+b" },                    /* '+' is literal outside forms */
                { "a%20b", 0, "a b" },
                { "%2f%2F", 0, "//" },
                { "%c3%A9", 0, "\xc3\xa9" },
                { "%", -EINVAL },
                { "%2", -EINVAL },
                { "%2g", -EINVAL },
                { "%g2", -EINVAL },
                { "a%", -EINVAL },
                { "%00", -EINVAL },
                { "%c3", -EINVAL },                     /* invalid UTF-8 after decoding */
                { "%c0%af", -EINVAL },
                { "%ed%a0%80", -EINVAL },
                { "\xff", -EINVAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const DecodeCase *t = table + i;
                char *out = NULL;

                ASSERT_INT_EQ(http_url_decode(t->in, strlen(t->in), &out), t->r);
                if (t->r >= 0)
                        ASSERT_STREQ(out, t->out);
                else
                        ASSERT_NULL(out);
                free(out);
        }

        /* only the given length is read */
        char *out = NULL;
        ASSERT_OK(http_url_decode("ab%zz", 2, &out));
        ASSERT_STREQ(out, "ab");
        free(out);
        out = NULL;
        ASSERT_ERROR(http_url_decode("a\0b", 3, &out), EINVAL);
        ASSERT_NULL(out);
}

typedef struct FormCase {
        const char *body;
        const char *key;
        int r;
        const char *value;
} FormCase;

static void test_form_get(void) {
        static const FormCase table[] = {
                { "username=alice&password=secret&csrf=tok", "username", 0, "alice" },
                { "username=alice&password=secret&csrf=tok", "password", 0, "secret" },
                { "username=alice&password=secret&csrf=tok", "csrf", 0, "tok" },
                { "username=alice&password=secret", "csrf", -ENOENT },
                { "", "username", -ENOENT },
                { "user=alice", "username", -ENOENT },
                { "usernamex=alice", "username", -ENOENT },
                { "password=p+w%2Bd%20x", "password", 0, "p w+d x" },
                { "password=%26%3D%25", "password", 0, "&=%" },
                { "name=h%C3%A9", "name", 0, "h\xc3\xa9" },
                { "name=h\xc3\xa9", "name", 0, "h\xc3\xa9" },
                { "a=1&a=2", "a", 0, "1" },                     /* first occurrence wins */
                { "a=&a=2", "a", 0, "" },
                { "a&b=2", "a", 0, "" },                        /* no '=': empty value */
                { "a", "a", 0, "" },
                { "a=1=2", "a", 0, "1=2" },
                { "&&a=1&&", "a", 0, "1" },
                { "=x", "", 0, "x" },
                { "user%6eame=alice", "username", 0, "alice" }, /* names decoded too */
                { "user+name=alice", "user name", 0, "alice" },
                /* malformed anywhere: the whole body is refused */
                { "a=%zz", "a", -EINVAL },
                { "a=%2", "a", -EINVAL },
                { "a=%", "a", -EINVAL },
                { "a=%00", "a", -EINVAL },
                { "a=1&b=%zz", "a", -EINVAL },
                { "b=%zz&a=1", "a", -EINVAL },
                { "%zz=1&a=1", "a", -EINVAL },
                { "a=%ff", "a", -EINVAL },
                { "a=%c0%af", "a", -EINVAL },
                { "a=%ed%a0%80", "a", -EINVAL },
                { "a=\xff", "a", -EINVAL },
                { "a=1&b=%c3", "b", -EINVAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const FormCase *t = table + i;
                char *v = NULL;
                int r;

                r = http_form_get(t->body, strlen(t->body), t->key, &v);
                if (r != t->r)
                        fprintf(stderr, "form case %zu: %s → %d\n", i, t->body, r);
                ASSERT_INT_EQ(r, t->r);
                if (t->r >= 0)
                        ASSERT_STREQ(v, t->value);
                else
                        ASSERT_NULL(v);
                free(v);
        }
}

static void test_form_limits(void) {
        char body[2 + 3 * (HTTP_VALUE_MAX + 1) + 16], *v = NULL;
        size_t n;

        /* a raw NUL byte within the given length */
        ASSERT_ERROR(http_form_get("a=1\0&b=2", 8, "a", &v), EINVAL);
        /* the length bounds the body: "b" lies beyond it */
        ASSERT_ERROR(http_form_get("a=1&b=2", 3, "b", &v), ENOENT);
        ASSERT_OK(http_form_get("a=12&b=2", 3, "a", &v));
        ASSERT_STREQ(v, "1");
        v = mfree(v);
        ASSERT_ERROR(http_form_get(NULL, 0, "a", &v), ENOENT);
        ASSERT_ERROR(http_form_get(NULL, 1, "a", &v), EINVAL);
        ASSERT_ERROR(http_form_get("a=1", 3, NULL, &v), EINVAL);

        /* exactly HTTP_VALUE_MAX decoded bytes pass, one more does not;
         * the limit is on the decoded value (%41 is one byte) */
        n = (size_t) sprintf(body, "v=");
        for (size_t i = 0; i < HTTP_VALUE_MAX; i++)
                n += (size_t) sprintf(body + n, "%%41");
        ASSERT_OK(http_form_get(body, n, "v", &v));
        ASSERT_INT_EQ(strlen(v), HTTP_VALUE_MAX);
        ASSERT_TRUE(v[0] == 'A' && v[HTTP_VALUE_MAX - 1] == 'A');
        v = mfree(v);

        n += (size_t) sprintf(body + n, "B");
        ASSERT_ERROR(http_form_get(body, n, "v", &v), E2BIG);
        ASSERT_NULL(v);
        /* a later, short duplicate does not win over the oversized first one */
        n += (size_t) sprintf(body + n, "&v=short");
        ASSERT_ERROR(http_form_get(body, n, "v", &v), E2BIG);
        /* other keys are unaffected by an oversized neighbour */
        n += (size_t) sprintf(body + n, "&w=ok");
        ASSERT_OK(http_form_get(body, n, "w", &v));
        ASSERT_STREQ(v, "ok");
        free(v);
}

typedef struct CookieCase {
        const char *header;
        const char *name;
        int r;
        const char *value;
} CookieCase;

static void test_cookie_get(void) {
        static const CookieCase table[] = {
                { "session=abc", "session", 0, "abc" },
                { "a=1; session=abc; b=2", "session", 0, "abc" },
                { "a=1;session=abc;b=2", "session", 0, "abc" },
                { "  a=1 ;  session=abc  ; b=2", "session", 0, "abc" },
                { "a=1; session = abc", "session", 0, "abc" },
                { "session=\"abc\"", "session", 0, "abc" },
                { "session=\"\"", "session", 0, "" },
                { "session=", "session", 0, "" },
                { "session=a=b", "session", 0, "a=b" },
                { "session=1; session=2", "session", 0, "1" },          /* first wins */
                { "__Host-mc=x1; mc=x2", "__Host-mc", 0, "x1" },
                { "__Host-mc=x1; mc=x2", "mc", 0, "x2" },
                { "Session=abc", "session", -ENOENT },                  /* case-sensitive */
                { "xsession=abc", "session", -ENOENT },
                { "sessionx=abc", "session", -ENOENT },
                { "a=1", "session", -ENOENT },
                { "", "session", -ENOENT },
                { ";;;", "session", -ENOENT },
                { "session", "session", -ENOENT },                      /* no '=' */
                /* other applications' broken cookies are skipped */
                { "junk=\"a b\\\"; x; =y; session=abc", "session", 0, "abc" },
                /* a broken value of the wanted cookie is an error */
                { "session=a b", "session", -EINVAL },
                { "session=a,b", "session", -EINVAL },
                { "session=a\\b", "session", -EINVAL },
                { "session=\"abc", "session", -EINVAL },
                { "session=abc\"", "session", -EINVAL },
                { "session=\"a\"b\"", "session", -EINVAL },
                { "session=a\x01", "session", -EINVAL },
                { "session=\xc3\xa9", "session", -EINVAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const CookieCase *t = table + i;
                char *v = NULL;
                int r;

                r = http_cookie_get(t->header, t->name, &v);
                if (r != t->r)
                        fprintf(stderr, "cookie case %zu: %s → %d\n", i, t->header, r);
                ASSERT_INT_EQ(r, t->r);
                if (t->r >= 0)
                        ASSERT_STREQ(v, t->value);
                else
                        ASSERT_NULL(v);
                free(v);
        }

        char *v = NULL;
        ASSERT_ERROR(http_cookie_get(NULL, "session", &v), ENOENT);
        ASSERT_ERROR(http_cookie_get("a=1", NULL, &v), EINVAL);
        ASSERT_ERROR(http_cookie_get("a=1", "", &v), EINVAL);

        /* value size limit */
        char header[16 + HTTP_VALUE_MAX + 2];
        int n = sprintf(header, "s=");
        memset(header + n, 'x', HTTP_VALUE_MAX);
        header[n + HTTP_VALUE_MAX] = '\0';
        ASSERT_OK(http_cookie_get(header, "s", &v));
        ASSERT_INT_EQ(strlen(v), HTTP_VALUE_MAX);
        v = mfree(v);
        strcat(header, "x");
        ASSERT_ERROR(http_cookie_get(header, "s", &v), E2BIG);
        ASSERT_NULL(v);
}

static void test_html_escape(void) {
        static const struct {
                const char *in, *out;
        } table[] = {
                { "", "" },
                { "plain", "plain" },
                { "&", "&amp;" },
                { "<script>alert('x')</script>", "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" },
                { "a \"b\" & 'c'", "a &quot;b&quot; &amp; &#39;c&#39;" },
                { "&amp;", "&amp;amp;" },
                { "h\xc3\xa9 \xf0\x9f\x98\x80", "h\xc3\xa9 \xf0\x9f\x98\x80" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                char *s = html_escape(table[i].in);
                ASSERT_STREQ(s, table[i].out);
                free(s);
        }

        errno = 0;
        ASSERT_NULL(html_escape(NULL));
        ASSERT_INT_EQ(errno, EINVAL);
}

static void test_redirect_is_safe(void) {
        static const struct {
                const char *next;
                bool safe;
        } table[] = {
                { "/", true },
                { "/chat", true },
                { "/chat/room?id=1&x=%2F#frag", true },
                { "/a//b", true },
                { "/%2F%2Fevil.example", true },        /* a path, not a host */
                { "/.", true },
                { NULL, false },
                { "", false },
                { "chat", false },
                { "//evil.example", false },
                { "//evil.example/", false },
                { "/\\evil.example", false },
                { "/a\\b", false },
                { "\\\\evil.example", false },
                { "http://evil.example", false },
                { "https:/evil.example", false },
                { "javascript:alert(1)", false },
                { " /chat", false },
                { "/chat page", false },
                { "/\t/evil.example", false },
                { "/\n/evil.example", false },
                { "/chat\r\nSet-Cookie: x=1", false },
                { "/\x7f", false },
                { "/\x01", false },
                { "/caf\xc3\xa9", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                if (http_redirect_is_safe(table[i].next) != table[i].safe)
                        fprintf(stderr, "redirect case %zu\n", i);
                ASSERT_INT_EQ(http_redirect_is_safe(table[i].next), table[i].safe);
        }

        char next[HTTP_REDIRECT_MAX + 2];
        next[0] = '/';
        memset(next + 1, 'a', HTTP_REDIRECT_MAX - 1);
        next[HTTP_REDIRECT_MAX] = '\0';
        ASSERT_TRUE(http_redirect_is_safe(next));
        next[HTTP_REDIRECT_MAX] = 'a';
        next[HTTP_REDIRECT_MAX + 1] = '\0';
        ASSERT_FALSE(http_redirect_is_safe(next));
}

typedef struct OriginCase {
        const char *origin;
        const char *host;
        bool tls;
        bool allowed;
} OriginCase;

static void test_origin_allowed(void) {
        static const OriginCase table[] = {
                { "http://chat.example", "chat.example", false, true },
                { "https://chat.example", "chat.example", true, true },
                { "HTTP://Chat.Example", "chat.example", false, true },
                { "http://chat.example", "CHAT.EXAMPLE", false, true },
                { "http://chat.example:80", "chat.example", false, true },
                { "http://chat.example", "chat.example:80", false, true },
                { "https://chat.example:443", "chat.example", true, true },
                { "https://chat.example", "chat.example:443", true, true },
                { "http://localhost:8080", "localhost:8080", false, true },
                { "http://127.0.0.1:8080", "127.0.0.1:8080", false, true },
                { "http://[::1]:8080", "[::1]:8080", false, true },
                { "http://[::1]", "[::1]:80", false, true },
                { "http://[FE80::1]", "[fe80::1]", false, true },
                /* scheme must match the connection */
                { "https://chat.example", "chat.example", false, false },
                { "http://chat.example", "chat.example", true, false },
                { "ws://chat.example", "chat.example", false, false },
                { "http://chat.example:443", "chat.example", true, false },
                { "https://chat.example:80", "chat.example", false, false },
                /* host and port must match */
                { "http://evil.example", "chat.example", false, false },
                { "http://chat.example.evil", "chat.example", false, false },
                { "http://evilchat.example", "chat.example", false, false },
                { "http://chat.example:8080", "chat.example", false, false },
                { "http://chat.example", "chat.example:8080", false, false },
                { "http://localhost:8081", "localhost:8080", false, false },
                { "http://[::1]:8080", "[::2]:8080", false, false },
                /* malformed origins */
                { NULL, "chat.example", false, false },
                { "", "chat.example", false, false },
                { "null", "chat.example", false, false },
                { "http://", "chat.example", false, false },
                { "http://chat.example/", "chat.example", false, false },
                { "http://chat.example/path", "chat.example", false, false },
                { "http://user@chat.example", "chat.example", false, false },
                { "http://chat.example@evil.example", "chat.example", false, false },
                { "http://chat.example:", "chat.example", false, false },
                { "http://chat.example:0", "chat.example", false, false },
                { "http://chat.example:65536", "chat.example", false, false },
                { "http://chat.example:000080", "chat.example", false, false },
                { "http://chat.example:8o", "chat.example", false, false },
                { "http://chat.example?x", "chat.example", false, false },
                { "http://chat.example#x", "chat.example", false, false },
                { "http://chat .example", "chat .example", false, false },
                { "http://[::1", "[::1", false, false },
                { "http://[]", "[]", false, false },
                { "http://[::1]x", "[::1]x", false, false },
                { "http://[::g]", "[::g]", false, false },
                /* missing or malformed host */
                { "http://chat.example", NULL, false, false },
                { "http://chat.example", "", false, false },
                { "http://chat.example", "chat.example/", false, false },
                { "http://:80", ":80", false, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const OriginCase *t = table + i;
                bool r = http_origin_allowed(t->origin, t->host, t->tls, NULL);

                if (r != t->allowed)
                        fprintf(stderr, "origin case %zu: %s / %s\n", i, t->origin, t->host);
                ASSERT_INT_EQ(r, t->allowed);
        }

        /* the allowed list is matched exactly */
        char *allowed[] = { (char *) "https://app.example", (char *) "http://localhost:3000", (char *) "null", NULL };
        char *empty[] = { NULL };
        ASSERT_TRUE(http_origin_allowed("https://app.example", "chat.example", false, allowed));
        ASSERT_TRUE(http_origin_allowed("http://localhost:3000", NULL, true, allowed));
        ASSERT_FALSE(http_origin_allowed("https://APP.example", "chat.example", false, allowed));
        ASSERT_FALSE(http_origin_allowed("https://app.example:443", "chat.example", false, allowed));
        ASSERT_FALSE(http_origin_allowed("https://app.example/", "chat.example", false, allowed));
        ASSERT_FALSE(http_origin_allowed("http://app.example", "chat.example", false, allowed));
        ASSERT_FALSE(http_origin_allowed("null", "chat.example", false, allowed));
        ASSERT_FALSE(http_origin_allowed(NULL, "chat.example", false, allowed));
        /* and does not replace the own-origin rule */
        ASSERT_TRUE(http_origin_allowed("http://chat.example", "chat.example", false, allowed));
        ASSERT_TRUE(http_origin_allowed("http://chat.example", "chat.example", false, empty));
        ASSERT_FALSE(http_origin_allowed("http://evil.example", "chat.example", false, empty));
}

static void test_cookies(void) {
        _cleanup_free_ char *s = NULL;

        ASSERT_STREQ(http_session_cookie_name(false), "multichat_session");
        ASSERT_STREQ(http_session_cookie_name(true), "__Host-multichat_session");

        ASSERT_OK(http_cookie_format(&s, http_session_cookie_name(false), "abc-_9", false, 0));
        ASSERT_STREQ(s, "multichat_session=abc-_9; Path=/; HttpOnly; SameSite=Strict");
        s = mfree(s);

        ASSERT_OK(http_cookie_format(&s, http_session_cookie_name(true), "abc", true, 0));
        ASSERT_STREQ(s, "__Host-multichat_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure");
        s = mfree(s);

        ASSERT_OK(http_cookie_format(&s, "multichat_session", "abc", true, 12 * USEC_PER_HOUR));
        ASSERT_STREQ(s, "multichat_session=abc; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure");
        s = mfree(s);

        ASSERT_OK(http_cookie_format(&s, "multichat_session", "abc", false, 500 * USEC_PER_MSEC));
        ASSERT_STREQ(s, "multichat_session=abc; Path=/; Max-Age=1; HttpOnly; SameSite=Strict");
        s = mfree(s);

        ASSERT_OK(http_cookie_format(&s, "multichat_session", "", false, UINT64_MAX));
        ASSERT_STREQ(s, "multichat_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
        s = mfree(s);

        ASSERT_OK(http_cookie_format(&s, "__Host-multichat_session", "", true, UINT64_MAX));
        ASSERT_STREQ(s, "__Host-multichat_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure");
        s = mfree(s);

        /* Header injection and cookie splitting are refused. */
        ASSERT_ERROR(http_cookie_format(&s, "n", "a b", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", "a;b", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", "a,b", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", "a\"b", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", "a\\b", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", "a\r\nSet-Cookie: x=y", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", "\xc3\xa9", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "n", NULL, false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "", "v", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "a=b", "v", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "a b", "v", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, "a;b", "v", false, 0), EINVAL);
        ASSERT_ERROR(http_cookie_format(&s, NULL, "v", false, 0), EINVAL);
        ASSERT_NULL(s);
}

typedef struct HeadCase {
        const char *head;
        int want;
} HeadCase;

static void test_head_check(void) {
        static const HeadCase table[] = {
                { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0 },
                { "GET / HTTP/1.0\n\n", 0 },
                { "HEAD /a?b=c HTTP/1.1\r\n\r\n", 0 },
                { "POST /login HTTP/1.1\r\nContent-Length: 5\r\ncontent-length:  5 \r\n\r\nuser=", 0 },
                { "", -EAGAIN },
                { "GE", -EAGAIN },
                { "GET /", -EAGAIN },
                { "GET / HTTP/1.1\r\nHost: x\r\n", -EAGAIN },
                { "GET / HTTP/1.1\r\nHost: x", -EAGAIN },
                { "TRACE / HTTP/1.1\r\n\r\n", 405 },
                { "CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n", 405 },
                { "OPTIONS * HTTP/1.1\r\n\r\n", 405 },
                { "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 405 },
                { "BREW ", 405 },
                { "get / HTTP/1.1\r\n\r\n", 405 },
                { "GETTINGLONGERANDLONGER", 405 },
                { " / HTTP/1.1\r\n\r\n", 400 },
                { "GET\t/ HTTP/1.1\r\n\r\n", 400 },
                { "GET /\r\n\r\n", 400 },
                { "GET / HTTP/1.1 x\r\n\r\n", 400 },
                { "GET / HTTP/2\r\n\r\n", 400 },
                { "GET x HTTP/1.1\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\n bad: fold\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\n: empty\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nA\x01: b\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400 },
                { "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n", 400 },
                { "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 400 },
                { "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400 },
                { "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400 },
                { "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400 },
                { "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
        };
        char big[40000];
        size_t n;

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int r = http_head_check(table[i].head, strlen(table[i].head), 16384);

                if (r != table[i].want)
                        fprintf(stderr, "head %zu: got %d, want %d\n", i, r, table[i].want);
                ASSERT_INT_EQ(r, table[i].want);
        }

        /* A target over HTTP_URI_MAX: 414 whether or not the line ended. */
        n = (size_t) snprintf(big, sizeof big, "GET /");
        memset(big + n, 'a', HTTP_URI_MAX);
        n += HTTP_URI_MAX;
        ASSERT_INT_EQ(http_head_check(big, n, 16384), 414);
        ASSERT_INT_EQ(http_head_check(big, n - 2, 16384), -EAGAIN);
        memcpy(big + n, " HTTP/1.1\r\n\r\n", 13);
        ASSERT_INT_EQ(http_head_check(big, n + 13, 16384), 414);
        ASSERT_INT_EQ(http_head_check(big, n - 1, 16384 - 1), -EAGAIN);

        /* The budget counts the whole head, its last line break included. */
        n = (size_t) snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: ");
        memset(big + n, 'h', 1000);
        n += 1000;
        memcpy(big + n, "\r\n\r\n", 4);
        n += 4;
        ASSERT_INT_EQ(http_head_check(big, n, n), 0);
        ASSERT_INT_EQ(http_head_check(big, n, n - 1), 431);
        ASSERT_INT_EQ(http_head_check(big, n - 1, n - 1), 431);
        ASSERT_INT_EQ(http_head_check(big, n - 1, n), -EAGAIN);

        /* Header lines: HTTP_HEADER_LINES_MAX pass, one more is 431. */
        n = (size_t) snprintf(big, sizeof big, "GET / HTTP/1.1\r\n");
        for (unsigned i = 0; i < HTTP_HEADER_LINES_MAX; i++)
                n += (size_t) snprintf(big + n, sizeof big - n, "X-%u: y\r\n", i);
        ASSERT_INT_EQ(http_head_check(big, n, 16384), -EAGAIN);
        ASSERT_INT_EQ(http_head_check(big, n + (size_t) snprintf(big + n, sizeof big - n, "\r\n"), 16384), 0);
        n += (size_t) snprintf(big + n, sizeof big - n, "X-last: y\r\n\r\n");
        ASSERT_INT_EQ(http_head_check(big, n, 16384), 431);
}

int main(void) {
        test_head_check();
        test_cookies();
        test_url_decode();
        test_form_get();
        test_form_limits();
        test_cookie_get();
        test_html_escape();
        test_redirect_is_safe();
        test_origin_allowed();
        return EXIT_SUCCESS;
}
