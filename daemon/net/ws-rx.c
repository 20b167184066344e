/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Putting a WebSocket message together from the pieces lws hands over, within a limit. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws-rx.h"

int ws_reassemble(char **buf, size_t *len, const void *in, size_t n, bool final, size_t limit,
                  const char **ret, size_t *ret_len) {
        char *b;

        if (final && *len == 0) {
                if (n > limit)
                        return -EMSGSIZE;
                *ret = in;
                *ret_len = n;
                return 1;
        }
        if (n > limit || *len > limit - n)
                return -EMSGSIZE;
        b = realloc(*buf, *len + n + 1);
        if (!b)
                return -ENOMEM;
        if (n > 0)
                memcpy(b + *len, in, n);
        *buf = b;
        *len += n;
        b[*len] = 0;
        if (!final)
                return 0;
        *ret = b;
        *ret_len = *len;
        return 1;
}
