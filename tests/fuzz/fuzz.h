/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every fuzz target defines, and its checks that stay on in release builds. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* libFuzzer's entry points; fuzz-main.c calls them the same way without it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the parser that must hold for every input: abort() makes
 * libFuzzer keep the input as a crash, like a sanitizer report would. */
#define FUZZ_CHECK(expr)                                                                \
        do {                                                                            \
                if (!(expr)) {                                                          \
                        fprintf(stderr, "%s:%d: check failed: %s\n",                    \
                                __FILE__, __LINE__, #expr);                             \
                        abort();                                                        \
                }                                                                       \
        } while (0)

/* hiredis allocates an aggregate's element array as its header declares
 * it (0.14 with no limit, 1.2 up to 2^32 - 1): a header of a million
 * elements only measures hiredis's allocator, so RESP targets skip inputs
 * that declare one over 4096 (what the daemon reads is far smaller). The
 * aggregates are RESP2's array and, in hiredis 1.2, RESP3's set, map,
 * push and attribute. */
static inline bool fuzz_resp_too_large(const uint8_t *data, size_t size) {
        for (size_t i = 0; i < size; i++) {
                unsigned long long n = 0;
                size_t k = i + 1;

                if (data[i] != '*' && data[i] != '~' && data[i] != '%' && data[i] != '>' && data[i] != '|')
                        continue;
                while (k < size && data[k] >= '0' && data[k] <= '9' && n <= 4096)
                        n = n * 10 + (data[k++] - '0');
                if (n > 4096)
                        return true;
        }
        return false;
}
