/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Seeded hashing for in-memory tables whose keys come from outside. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV1A_INIT UINT64_C(14695981039346656037)

/* FNV-1a over n more bytes: start with HASH_FNV1A_INIT ^ a secret seed,
 * so that nobody outside can pick keys that collide. */
static inline uint64_t hash_fnv1a(uint64_t h, const void *p, size_t n) {
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++)
                h = (h ^ b[i]) * UINT64_C(1099511628211);
        return h;
}

/* splitmix64's finalizer: FNV's low bits alone spread poorly over a
 * power-of-two table. */
static inline uint32_t hash_finish(uint64_t h) {
        h ^= h >> 30;
        h *= UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 27;
        h *= UINT64_C(0x94d049bb133111eb);
        h ^= h >> 31;
        return (uint32_t) h;
}
