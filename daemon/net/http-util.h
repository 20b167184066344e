/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pure HTTP helpers: request heads, forms, cookies, escaping, redirect and origin checks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest decoded form value or cookie value we hand out. */
#define HTTP_VALUE_MAX 4096
/* Longest redirect target accepted from a login form. */
#define HTTP_REDIRECT_MAX 2048

/* Percent-decodes s[0..n) into a new NUL-terminated string. '+' stays '+'
 * (path semantics). Returns -EINVAL on a malformed %-escape, a decoded NUL
 * byte or invalid UTF-8, -ENOMEM. */
int http_url_decode(const char *s, size_t n, char **ret);

/* Looks up key in an application/x-www-form-urlencoded body. '+' is a space,
 * %XX is decoded, names are compared after decoding, the first occurrence
 * wins, a pair without '=' has an empty value. The whole body must be well
 * formed: any malformed %-escape, NUL byte or invalid UTF-8 in any name or
 * value gives -EINVAL. -ENOENT when absent, -E2BIG when the value decodes to
 * more than HTTP_VALUE_MAX bytes, -ENOMEM. */
int http_form_get(const char *body, size_t len, const char *key, char **ret);

/* Looks up a cookie in an RFC 6265 Cookie request header ("a=1; b=2").
 * Whitespace around pairs is tolerated, a value in double quotes is
 * unquoted, names are case-sensitive and the first occurrence wins. Other
 * cookies may be malformed (they belong to other applications on the host)
 * and are skipped. -ENOENT when absent (or header is NULL), -EINVAL when the
 * value holds a byte outside cookie-octet, -E2BIG over HTTP_VALUE_MAX, -ENOMEM. */
int http_cookie_get(const char *header, const char *name, char **ret);

/* Escapes & < > " ' as HTML entities (&amp; &lt; &gt; &quot; &#39;), safe in
 * element content and in quoted attributes. NULL on ENOMEM (or s NULL, EINVAL). */
char *html_escape(const char *s);

/* True when next is a same-origin absolute path that is safe to put in a
 * Location header: starts with "/" but not "//" or "/\", every byte is
 * printable ASCII 0x21..0x7e (no spaces, controls, backslashes or raw
 * non-ASCII — browsers strip tabs and newlines and treat "\" as "/", which
 * would turn "/\t/evil" into "//evil"), at most HTTP_REDIRECT_MAX bytes. */
bool http_redirect_is_safe(const char *next);

/* True when a WebSocket handshake's Origin header is the page's own origin,
 * i.e. "http(s)://" + the Host header with the scheme matching tls (scheme
 * and host compared case-insensitively, default ports 80/443 equal to no
 * port, IPv6 literals in brackets), or is exactly (byte for byte) one of the
 * NULL-terminated allowed list (which may be NULL). Origin NULL or "null"
 * (sandboxed frames, file: pages) → false even when listed; an Origin with
 * a path, userinfo, query or fragment never equals the page's origin. */
bool http_origin_allowed(const char *origin, const char *host, bool tls, char *const *allowed);

/* The cookie names: browsers only accept the __Host- prefix over TLS (it
 * promises Secure, Path=/ and no Domain). */
#define HTTP_SESSION_COOKIE_NAME "multichat_session"
#define HTTP_SESSION_COOKIE_NAME_TLS "__Host-multichat_session"

/* The session cookie's name for a plain or a TLS listener. */
const char *http_session_cookie_name(bool tls);

/* "name=value; Path=/[; Max-Age=N]; HttpOnly; SameSite=Strict[; Secure]".
 * max_age_usec: 0 = a session cookie (no Max-Age), UINT64_MAX = delete it
 * (Max-Age=0), else whole seconds (at least 1). -EINVAL when name is not an
 * HTTP token or value holds bytes outside RFC 6265 cookie-octets, -ENOMEM. */
int http_cookie_format(char **ret, const char *name, const char *value, bool tls, uint64_t max_age_usec);

/* The longest request target (path and query) a request line may carry. */
#define HTTP_URI_MAX 4096
/* Header lines one request head may carry (lws 4.1 has room for about as
 * many; past that it drops the connection without a word). */
#define HTTP_HEADER_LINES_MAX 64
/* The methods we serve, for 405's Allow header. */
#define HTTP_ALLOWED_METHODS "GET, HEAD, POST"

/* Checks the first request head of a connection, buf[0..len) being what
 * the client sent so far, against what lws 4.1 would otherwise drop without
 * an answer. Returns 0 when the head is complete (it ends within max_bytes)
 * and may go to lws, -EAGAIN when more bytes are needed, or the status to
 * refuse it with: 400 (malformed request line or header line, a Content-
 * Length that is no number, two that differ, or one with Transfer-Encoding),
 * 405 (a method other than GET, HEAD and POST), 414 (a target longer than
 * HTTP_URI_MAX), 431 (longer than max_bytes, or more than
 * HTTP_HEADER_LINES_MAX header lines). */
int http_head_check(const char *buf, size_t len, size_t max_bytes);
