/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for strict UTF-8: validation and decoding, with overlong forms, surrogates, > U+10FFFF and truncation. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/utf8.h"
#include "test/test.h"

typedef struct Utf8Case {
        const char *s;
        size_t n;       /* 0: strlen */
        bool valid;
} Utf8Case;

static void test_utf8(void) {
        static const Utf8Case table[] = {
                { "", 0, true },
                { "plain ascii ~", 0, true },
                { "\x7f", 0, true },
                { "h\xc3\xa9", 0, true },                       /* é */
                { "\xc2\x80", 0, true },                        /* U+0080, smallest 2-byte */
                { "\xdf\xbf", 0, true },                        /* U+07FF */
                { "\xe0\xa0\x80", 0, true },                    /* U+0800, smallest 3-byte */
                { "\xed\x9f\xbf", 0, true },                    /* U+D7FF */
                { "\xee\x80\x80", 0, true },                    /* U+E000 */
                { "\xef\xbf\xbf", 0, true },                    /* U+FFFF */
                { "\xf0\x90\x80\x80", 0, true },                /* U+10000 */
                { "\xf0\x9f\x98\x80", 0, true },                /* 😀 */
                { "\xf4\x8f\xbf\xbf", 0, true },                /* U+10FFFF */
                { "a\0b", 3, true },                            /* NUL is UTF-8 */
                { "\x80", 0, false },                           /* lone continuation */
                { "\xbf", 0, false },
                { "\xc3", 0, false },                           /* truncated */
                { "\xe2\x82", 0, false },
                { "\xf0\x9f\x98", 0, false },
                { "\xc3\x28", 0, false },                       /* bad continuation */
                { "\xe2\x28\xa1", 0, false },
                { "\xf0\x9f\x28\x80", 0, false },
                { "\xc0\x80", 0, false },                       /* overlong NUL */
                { "\xc0\xaf", 0, false },                       /* overlong '/' */
                { "\xc1\xbf", 0, false },
                { "\xe0\x80\xaf", 0, false },
                { "\xe0\x9f\xbf", 0, false },                   /* overlong U+07FF */
                { "\xf0\x80\x80\xaf", 0, false },
                { "\xf0\x8f\xbf\xbf", 0, false },               /* overlong U+FFFF */
                { "\xed\xa0\x80", 0, false },                   /* U+D800 */
                { "\xed\xbf\xbf", 0, false },                   /* U+DFFF */
                { "\xed\xa0\xbd\xed\xb8\x80", 0, false },       /* CESU-8 surrogate pair */
                { "\xf4\x90\x80\x80", 0, false },               /* U+110000 */
                { "\xf5\x80\x80\x80", 0, false },
                { "\xf8\x88\x80\x80\x80", 0, false },           /* 5-byte form */
                { "\xfe", 0, false },
                { "\xff", 0, false },
                { "ok\xc3\xa9\xff", 0, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const Utf8Case *t = table + i;
                size_t n = t->n ?: strlen(t->s);

                if (utf8_is_valid(t->s, n) != t->valid)
                        fprintf(stderr, "utf8 case %zu\n", i);
                ASSERT_INT_EQ(utf8_is_valid(t->s, n), t->valid);
        }

        /* the length bounds the scan: a truncated view of a valid string is invalid */
        ASSERT_FALSE(utf8_is_valid("\xc3\xa9", 1));
        ASSERT_TRUE(utf8_is_valid("\xc3\xa9\xff", 2));
        ASSERT_TRUE(utf8_is_valid(NULL, 0));
        ASSERT_FALSE(utf8_is_valid(NULL, 1));
}

typedef struct DecodeCase {
        const char *s;
        size_t len;             /* 0: invalid */
        uint32_t cp;
} DecodeCase;

/* utf8_decode() reads one sequence of a NUL-terminated string. */
static void test_decode(void) {
        static const DecodeCase table[] = {
                { "A", 1, 0x41 },
                { "\x7f", 1, 0x7f },
                { "\xc2\x80", 2, 0x80 },
                { "\xc3\xa9x", 2, 0xe9 },                       /* stops after the sequence */
                { "\xdf\xbf", 2, 0x7ff },
                { "\xe0\xa0\x80", 3, 0x800 },
                { "\xe2\x82\xac", 3, 0x20ac },                  /* € */
                { "\xed\x9f\xbf", 3, 0xd7ff },
                { "\xee\x80\x80", 3, 0xe000 },
                { "\xef\xbf\xbf", 3, 0xffff },
                { "\xf0\x90\x80\x80", 4, 0x10000 },
                { "\xf0\x9f\x98\x80", 4, 0x1f600 },
                { "\xf4\x8f\xbf\xbf", 4, 0x10ffff },
                /* overlong */
                { "\xc0\x80", 0, 0 },
                { "\xc1\xbf", 0, 0 },
                { "\xe0\x80\x80", 0, 0 },
                { "\xe0\x9f\xbf", 0, 0 },
                { "\xf0\x80\x80\x80", 0, 0 },
                { "\xf0\x8f\xbf\xbf", 0, 0 },
                /* surrogates */
                { "\xed\xa0\x80", 0, 0 },
                { "\xed\xb0\x80", 0, 0 },
                { "\xed\xbf\xbf", 0, 0 },
                /* past U+10FFFF */
                { "\xf4\x90\x80\x80", 0, 0 },
                { "\xf5\x80\x80\x80", 0, 0 },
                { "\xf7\xbf\xbf\xbf", 0, 0 },
                { "\xf8\x88\x80\x80\x80", 0, 0 },
                /* truncated: the terminating NUL is no continuation byte */
                { "\xc3", 0, 0 },
                { "\xe2\x82", 0, 0 },
                { "\xf0\x9f\x98", 0, 0 },
                /* bad continuation, lone continuation, bytes never in UTF-8 */
                { "\xc3\x28", 0, 0 },
                { "\xe2\x28\xa1", 0, 0 },
                { "\xf0\x9f\x28\x80", 0, 0 },
                { "\x80", 0, 0 },
                { "\xbf", 0, 0 },
                { "\xfe", 0, 0 },
                { "\xff", 0, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const DecodeCase *t = table + i;
                uint32_t cp = 0xdeadbeef;
                size_t n = utf8_decode((const unsigned char *) t->s, &cp);

                if (n != t->len || (n > 0 && cp != t->cp))
                        fprintf(stderr, "decode case %zu: %zu U+%04X\n", i, n, (unsigned) cp);
                ASSERT_INT_EQ(n, t->len);
                if (n > 0)
                        ASSERT_INT_EQ(cp, t->cp);
                else
                        ASSERT_INT_EQ(cp, 0xdeadbeef);     /* not written on failure */
                /* The two functions agree on every sequence. */
                ASSERT_INT_EQ(utf8_is_valid(t->s, t->len > 0 ? t->len : strlen(t->s)), n > 0);
        }

        /* NUL decodes as U+0000, one byte. */
        {
                uint32_t cp = 1;

                ASSERT_INT_EQ(utf8_decode((const unsigned char *) "", &cp), 1);
                ASSERT_INT_EQ(cp, 0);
        }
}

/* Every code point encodes, validates and decodes back, except surrogates. */
static void test_all_code_points(void) {
        for (uint32_t c = 1; c <= 0x10ffff; c++) {
                unsigned char b[5] = {};
                size_t n;
                uint32_t cp = 0;

                if (c < 0x80)
                        b[0] = (unsigned char) c, n = 1;
                else if (c < 0x800)
                        b[0] = 0xc0 | (c >> 6), b[1] = 0x80 | (c & 0x3f), n = 2;
                else if (c < 0x10000)
                        b[0] = 0xe0 | (c >> 12), b[1] = 0x80 | ((c >> 6) & 0x3f), b[2] = 0x80 | (c & 0x3f), n = 3;
                else
                        b[0] = 0xf0 | (c >> 18), b[1] = 0x80 | ((c >> 12) & 0x3f),
                        b[2] = 0x80 | ((c >> 6) & 0x3f), b[3] = 0x80 | (c & 0x3f), n = 4;

                if (c >= 0xd800 && c <= 0xdfff) {
                        ASSERT_INT_EQ(utf8_decode(b, &cp), 0);
                        ASSERT_FALSE(utf8_is_valid((const char *) b, n));
                        continue;
                }
                ASSERT_INT_EQ(utf8_decode(b, &cp), n);
                ASSERT_INT_EQ(cp, c);
                ASSERT_TRUE(utf8_is_valid((const char *) b, n));
        }
}

int main(void) {
        test_utf8();
        test_decode();
        test_all_code_points();
        return 0;
}
