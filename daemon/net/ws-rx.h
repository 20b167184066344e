/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Putting a WebSocket message together from the pieces lws hands over, within a limit. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* One piece of a message. *buf and *len hold what came before (NULL and 0
 * at a message's start; the caller resets them there). final: the last
 * piece. Returns 1 when the message is complete: *ret and *ret_len point at
 * it (at in itself when it came in one piece, so that most commands are
 * never copied; else at *buf, NUL-terminated), valid until the caller frees
 * *buf; 0 when more is to come; -EMSGSIZE when the message would pass
 * limit bytes; -ENOMEM. */
int ws_reassemble(char **buf, size_t *len, const void *in, size_t n, bool final, size_t limit,
                  const char **ret, size_t *ret_len);
