/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* UTF-8 validation: what protocol, HTTP and sessions accept as text. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8: rejects overlong forms, surrogates (U+D800..U+DFFF), code
 * points above U+10FFFF and truncated sequences. NUL bytes are valid UTF-8
 * here; callers that care reject them separately. */
bool utf8_is_valid(const char *s, size_t n);

/* Length of the UTF-8 sequence at s and its code point; 0 if invalid
 * (overlong forms, surrogates and values past U+10FFFF included). */
size_t utf8_decode(const unsigned char *s, uint32_t *ret);
