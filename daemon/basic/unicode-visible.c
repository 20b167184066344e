/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether text shows anything: code points that render as nothing, from Unicode's own data. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/macro.h"
#include "basic/unicode-visible.h"

typedef struct UnicodeRange {
        uint32_t first, last;
} UnicodeRange;

#include "unicode-invisible-table.h"

bool unicode_is_invisible(uint32_t cp) {
        size_t lo = 0, hi = ELEMENTSOF(unicode_invisible_ranges);

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (cp < unicode_invisible_ranges[mid].first)
                        hi = mid;
                else if (cp > unicode_invisible_ranges[mid].last)
                        lo = mid + 1;
                else
                        return true;
        }
        return false;
}

/* Decodes the sequence at s[0..n) (n >= 1) into *ret and returns its
 * length, or 0 when it is not well-formed UTF-8. */
static size_t utf8_decode_bounded(const unsigned char *s, size_t n, uint32_t *ret) {
        size_t len;
        uint32_t cp;

        if (s[0] < 0x80) {
                *ret = s[0];
                return 1;
        }
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                len = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (len > n)
                return 0;

        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;

        *ret = cp;
        return len;
}

bool utf8_has_visible(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_decode_bounded(p + i, n - i, &cp);

                if (len == 0 || !unicode_is_invisible(cp))
                        return true;
                i += len;
        }
        return false;
}
