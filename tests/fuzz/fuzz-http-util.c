/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the HTTP helpers: query strings and forms, cookies, escaping, redirect targets, origins. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "basic/utf8.h"
#include "net/http-util.h"
#include "basic/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static void check_value(int r, char *value) {
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL || r == -ENOENT || r == -E2BIG || r == -ENOMEM);
                return;
        }
        FUZZ_CHECK(value);
        FUZZ_CHECK(strlen(value) <= HTTP_VALUE_MAX);
        FUZZ_CHECK(utf8_is_valid(value, strlen(value)));
        free(value);
}

static void check_form(const char *s, size_t n) {
        static const char *const keys[] = { "username", "password", "csrf", "next", "" };
        char *decoded = NULL;
        int r;

        r = http_url_decode(s, n, &decoded);
        if (r >= 0) {
                /* No NUL can be decoded: the length tells. */
                FUZZ_CHECK(strlen(decoded) <= n);
                FUZZ_CHECK(utf8_is_valid(decoded, strlen(decoded)));
                free(decoded);
        } else
                FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                char *v = NULL;
                int k = http_form_get(s, n, keys[i], &v);

                check_value(k, v);
        }
}

static void check_text(const char *s) {
        static const char *const cookies[] = { "multichat_session", "__Host-multichat_session", "multichat_csrf", "a" };
        char *escaped;

        for (size_t i = 0; i < ELEMENTSOF(cookies); i++) {
                char *v = NULL;
                int k = http_cookie_get(s, cookies[i], &v);

                check_value(k, v);
        }

        escaped = html_escape(s);
        FUZZ_CHECK(escaped);
        FUZZ_CHECK(!strpbrk(escaped, "<>\"'"));
        free(escaped);

        if (http_redirect_is_safe(s)) {
                FUZZ_CHECK(s[0] == '/' && s[1] != '/' && s[1] != '\\');
                FUZZ_CHECK(strlen(s) <= HTTP_REDIRECT_MAX);
                for (const char *p = s; *p; p++)
                        FUZZ_CHECK(*p >= 0x21 && *p <= 0x7e && *p != '\\');
        }
}

/* "ORIGIN\nHOST": against the Host, TLS or not, and an allowed list that
 * holds the input's own first line. */
static void check_origin(const char *s) {
        _cleanup_free_ char *origin = strdup(s);
        char *host;

        FUZZ_CHECK(origin);
        host = strchr(origin, '\n');
        if (!host)
                return;
        *host++ = '\0';

        char *allowed[] = { origin, NULL };
        for (int tls = 0; tls <= 1; tls++) {
                bool ok = http_origin_allowed(origin, host, tls, NULL);

                if (ok)
                        FUZZ_CHECK(strncasecmp(origin, tls ? "https://" : "http://", tls ? 8 : 7) == 0);
                /* The exact entry of the list always matches, but "null" never. */
                FUZZ_CHECK(http_origin_allowed(origin, host, tls, allowed) == !streq(origin, "null"));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;

        (void) utf8_is_valid((const char *) data, size);
        check_form((const char *) data, size);

        /* The rest take C strings, as the HTTP layer hands them over. */
        s = strndup((const char *) data, size);
        FUZZ_CHECK(s);
        check_text(s);
        check_origin(s);
        return 0;
}
