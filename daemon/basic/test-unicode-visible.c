/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for unicode-visible.c: text with nothing visible is told apart from real text. */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "test/test.h"
#include "basic/unicode-visible.h"

static bool has_visible(const char *s) {
        return utf8_has_visible(s, strlen(s));
}

/* Each alone, twice, and all of them together: nothing to see. */
static void test_invisible(void) {
        static const char *const invisible[] = {
                " ", "\t", "\n", "\r", "\x0b", "\x0c",
                "\x01", "\x1f", "\x7f",
                "\xc2\x85",             /* U+0085 NEXT LINE */
                "\xc2\x9f",             /* U+009F, a C1 control */
                "\xc2\xa0",             /* U+00A0 NO-BREAK SPACE */
                "\xc2\xad",             /* U+00AD SOFT HYPHEN */
                "\xcd\x8f",             /* U+034F COMBINING GRAPHEME JOINER */
                "\xd8\x9c",             /* U+061C ARABIC LETTER MARK */
                "\xe1\x85\x9f",         /* U+115F HANGUL CHOSEONG FILLER */
                "\xe1\x85\xa0",         /* U+1160 HANGUL JUNGSEONG FILLER */
                "\xe1\x9a\x80",         /* U+1680 OGHAM SPACE MARK */
                "\xe1\x9e\xb4",         /* U+17B4 KHMER VOWEL INHERENT AQ */
                "\xe1\xa0\x8e",         /* U+180E MONGOLIAN VOWEL SEPARATOR */
                "\xe2\x80\x80",         /* U+2000 EN QUAD */
                "\xe2\x80\x8b",         /* U+200B ZERO WIDTH SPACE */
                "\xe2\x80\x8c",         /* U+200C ZERO WIDTH NON-JOINER */
                "\xe2\x80\x8d",         /* U+200D ZERO WIDTH JOINER */
                "\xe2\x80\x8e",         /* U+200E LEFT-TO-RIGHT MARK */
                "\xe2\x80\x8f",         /* U+200F RIGHT-TO-LEFT MARK */
                "\xe2\x80\xa8",         /* U+2028 LINE SEPARATOR */
                "\xe2\x80\xa9",         /* U+2029 PARAGRAPH SEPARATOR */
                "\xe2\x80\xaa",         /* U+202A LEFT-TO-RIGHT EMBEDDING */
                "\xe2\x80\xae",         /* U+202E RIGHT-TO-LEFT OVERRIDE */
                "\xe2\x80\xaf",         /* U+202F NARROW NO-BREAK SPACE */
                "\xe2\x81\x9f",         /* U+205F MEDIUM MATHEMATICAL SPACE */
                "\xe2\x81\xa0",         /* U+2060 WORD JOINER */
                "\xe2\x81\xa3",         /* U+2063 INVISIBLE SEPARATOR */
                "\xe2\x81\xa6",         /* U+2066 LEFT-TO-RIGHT ISOLATE */
                "\xe2\x81\xa9",         /* U+2069 POP DIRECTIONAL ISOLATE */
                "\xe2\xa0\x80",         /* U+2800 BRAILLE PATTERN BLANK */
                "\xe3\x80\x80",         /* U+3000 IDEOGRAPHIC SPACE */
                "\xe3\x85\xa4",         /* U+3164 HANGUL FILLER */
                "\xef\xb8\x80",         /* U+FE00 VARIATION SELECTOR-1 */
                "\xef\xb8\x8f",         /* U+FE0F VARIATION SELECTOR-16 */
                "\xef\xbb\xbf",         /* U+FEFF ZERO WIDTH NO-BREAK SPACE */
                "\xef\xbe\xa0",         /* U+FFA0 HALFWIDTH HANGUL FILLER */
                "\xf0\x9b\xb2\xa0",     /* U+1BCA0 SHORTHAND FORMAT LETTER OVERLAP */
                "\xf0\x9d\x85\xb3",     /* U+1D173 MUSICAL SYMBOL BEGIN BEAM */
                "\xf3\xa0\x80\x81",     /* U+E0001 LANGUAGE TAG */
                "\xf3\xa0\x80\xa0",     /* U+E0020 TAG SPACE */
                "\xf3\xa0\x87\xaf",     /* U+E01EF VARIATION SELECTOR-256 */
                "\xf3\xa0\xbf\xbf",     /* U+E0FFF, reserved default-ignorable */
        };
        char all[512] = "";

        ASSERT_FALSE(has_visible(""));
        ASSERT_FALSE(utf8_has_visible(NULL, 0));
        /* A NUL is a control character too. */
        ASSERT_FALSE(utf8_has_visible("\0\0", 2));

        for (size_t i = 0; i < ELEMENTSOF(invisible); i++) {
                char twice[16];

                if (has_visible(invisible[i]))
                        fprintf(stderr, "visible: case %zu\n", i);
                ASSERT_FALSE(has_visible(invisible[i]));
                snprintf(twice, sizeof(twice), "%s%s", invisible[i], invisible[i]);
                ASSERT_FALSE(has_visible(twice));
                ASSERT_TRUE(strlen(all) + strlen(invisible[i]) < sizeof(all));
                strcat(all, invisible[i]);
        }
        ASSERT_FALSE(has_visible(all));
}

static void test_visible(void) {
        static const char *const visible[] = {
                "a", ".", "~", "0",
                "\xc3\xa9",                             /* é */
                "e\xcc\x81",                            /* e + COMBINING ACUTE ACCENT */
                "\xcc\x81",                             /* a combining mark alone still draws */
                "\xe2\x9d\xa4\xef\xb8\x8f",             /* ❤️: U+2764 + VS16 */
                "\xe2\x98\xba\xef\xb8\x8f",             /* ☺️ */
                "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",     /* 👍🏽 */
                "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", /* family, ZWJ */
                "\xf0\x9f\x8f\xb4\xf3\xa0\x81\xa7\xf3\xa0\x81\xa2\xf3\xa0\x81\xbf", /* a flag of tags */
                "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",     /* שלום */
                "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7", /* مرحبا */
                "\xe2\x80\x8f\xd7\xa9",                 /* RLM + ש */
                "\xe4\xbd\xa0\xe5\xa5\xbd",             /* 你好 */
                "\xe3\x81\x93\xe3\x82\x93",             /* こん */
                "\xea\xb0\x80",                         /* 가, a Hangul syllable */
                "\xe3\x84\xb1",                         /* ㄱ, a Hangul compatibility jamo */
                "\xe2\xa0\x81",                         /* ⠁ BRAILLE PATTERN DOTS-1 */
                "\xef\xbf\xbc",                         /* U+FFFC OBJECT REPLACEMENT CHARACTER */
                "\xee\x80\x80",                         /* U+E000, private use: a font may draw it */
                "\xf0\x9f\x98\x80",                     /* 😀 */
        };

        for (size_t i = 0; i < ELEMENTSOF(visible); i++) {
                if (!has_visible(visible[i]))
                        fprintf(stderr, "invisible: case %zu\n", i);
                ASSERT_TRUE(has_visible(visible[i]));
        }

        /* One visible character among many invisible ones is enough. */
        ASSERT_TRUE(has_visible("\xe3\x85\xa4\xe2\x80\x8e \xe2\xa0\x80x\xef\xb8\x8f\xe2\x80\xae"));
        ASSERT_TRUE(has_visible(" \t\n\xe2\x80\x8b\xe3\x85\xa4\xe4\xbd\xa0"));
}

/* Only the n bytes given are read, and broken input never counts as blank. */
static void test_bounds(void) {
        ASSERT_FALSE(utf8_has_visible(" x", 1));
        ASSERT_FALSE(utf8_has_visible("\xe3\x85\xa4" "a", 3));
        ASSERT_TRUE(utf8_has_visible("\xe3\x85", 2));   /* truncated */
        ASSERT_TRUE(utf8_has_visible("\xff", 1));
        ASSERT_TRUE(utf8_has_visible("\xc0\xa0", 2));   /* overlong space */
        ASSERT_TRUE(utf8_has_visible("\xed\xa0\x80", 3)); /* surrogate */
        ASSERT_TRUE(utf8_has_visible("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
}

static void test_code_points(void) {
        ASSERT_TRUE(unicode_is_invisible(0));
        ASSERT_TRUE(unicode_is_invisible(0x20));
        ASSERT_FALSE(unicode_is_invisible(0x21));
        ASSERT_TRUE(unicode_is_invisible(0x3164));
        ASSERT_TRUE(unicode_is_invisible(0x2800));
        ASSERT_FALSE(unicode_is_invisible(0x2801));
        ASSERT_FALSE(unicode_is_invisible(0x27ff));
        ASSERT_TRUE(unicode_is_invisible(0xe0fff));
        ASSERT_FALSE(unicode_is_invisible(0xe1000));
        ASSERT_FALSE(unicode_is_invisible(0x10ffff));
        ASSERT_FALSE(unicode_is_invisible(0xffffffff));
}

int main(void) {
        test_invisible();
        test_visible();
        test_bounds();
        test_code_points();
        return 0;
}
