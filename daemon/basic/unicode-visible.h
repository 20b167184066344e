/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether text shows anything: code points that render as nothing, from Unicode's own data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True for White_Space, Default_Ignorable_Code_Point (zero-width and
 * format characters, variation selectors, the Hangul fillers, tags),
 * control characters (Cc) and blank glyphs such as U+2800 BRAILLE PATTERN
 * BLANK. The table is generated from the Unicode data at build time
 * (tools/gen-unicode-invisible.py). */
bool unicode_is_invisible(uint32_t cp);

/* True when s[0..n) holds at least one code point that is not invisible,
 * i.e. the text would show something. Combining marks, emoji with U+FE0F,
 * right-to-left and CJK text count as visible. Callers validate UTF-8
 * first; a byte that starts no valid sequence counts as visible, and
 * nothing past s + n is read. */
bool utf8_has_visible(const char *s, size_t n);
