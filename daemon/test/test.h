/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A tiny assertion kit for the unit tests: a failed check prints where and aborts. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT_TRUE(expr)                                                               \
        do {                                                                            \
                if (!(expr)) {                                                          \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n",                \
                                __FILE__, __LINE__, #expr);                             \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_INT_EQ(a, b)                                                             \
        do {                                                                            \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                      \
                if (_a != _b) {                                                         \
                        fprintf(stderr, "%s:%d: %s == %s failed: %jd != %jd\n",         \
                                __FILE__, __LINE__, #a, #b, _a, _b);                    \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_OK(expr)                                                                 \
        do {                                                                            \
                intmax_t _r = (intmax_t) (expr);                                        \
                if (_r < 0) {                                                           \
                        fprintf(stderr, "%s:%d: %s failed: %jd (%s)\n",                 \
                                __FILE__, __LINE__, #expr, _r, strerror((int) -_r));    \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_ERROR(expr, err) ASSERT_INT_EQ((expr), -(err))

#define ASSERT_STREQ(a, b)                                                              \
        do {                                                                            \
                const char *_a = (a), *_b = (b);                                        \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                \
                        fprintf(stderr, "%s:%d: %s == %s failed:\n  \"%s\"\n  \"%s\"\n",\
                                __FILE__, __LINE__, #a, #b, _a ? _a : "(null)",         \
                                _b ? _b : "(null)");                                    \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

/* Exit code that meson reads as "skipped". */
#define EXIT_TEST_SKIP 77
