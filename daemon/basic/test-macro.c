/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the greedy array growth: how it grows, what it keeps, and sizes it refuses. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "basic/macro.h"
#include "test/test.h"

/* Under ASan, an allocation too large to make fails with NULL, as glibc's
 * does, instead of aborting: the refusal is what is tested here. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
        return "allocator_may_return_null=1";
}

static void test_growth(void) {
        _cleanup_free_ int *a = NULL;
        size_t allocated = 0, reallocs = 0;
        int *last = NULL;

        /* The first allocation leaves room for a few. */
        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 1));
        ASSERT_NOT_NULL(a);
        ASSERT_INT_EQ(allocated, 4);

        /* Enough is enough: no reallocation. */
        last = a;
        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 4));
        ASSERT_TRUE(a == last);
        ASSERT_INT_EQ(allocated, 4);
        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 0));
        ASSERT_INT_EQ(allocated, 4);

        /* One past doubles. */
        for (int i = 0; i < 4; i++)
                a[i] = i;
        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 5));
        ASSERT_INT_EQ(allocated, 8);
        for (int i = 0; i < 4; i++)
                ASSERT_INT_EQ(a[i], i);

        /* Far past takes what is asked. */
        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 100));
        ASSERT_INT_EQ(allocated, 100);

        /* Appending one at a time reallocates O(log n) times. */
        for (size_t n = 1; n <= 100000; n++) {
                size_t before = allocated;

                ASSERT_TRUE(GREEDY_REALLOC(a, allocated, n));
                ASSERT_TRUE(allocated >= n);
                a[n - 1] = (int) n;
                if (allocated != before)
                        reallocs++;
        }
        ASSERT_TRUE(reallocs <= 11);
        for (size_t n = 1; n <= 100000; n += 9999)
                ASSERT_INT_EQ(a[n - 1], n);
}

/* A count whose size in bytes overflows is refused, and the array is left
 * as it was (reallocarray checks the multiplication). */
static void test_overflow(void) {
        _cleanup_free_ uint64_t *a = NULL;
        size_t allocated = 0;
        uint64_t *before;

        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 3));
        a[0] = 42;
        before = a;

        ASSERT_FALSE(GREEDY_REALLOC(a, allocated, SIZE_MAX / sizeof(uint64_t) + 1));
        ASSERT_TRUE(a == before);
        ASSERT_INT_EQ(allocated, 4);
        ASSERT_FALSE(GREEDY_REALLOC(a, allocated, SIZE_MAX));
        ASSERT_TRUE(a == before);
        ASSERT_INT_EQ(allocated, 4);
        ASSERT_INT_EQ(a[0], 42);

        /* A huge count of single bytes: the allocation fails, nothing changes. */
        ASSERT_FALSE(greedy_realloc((void **) &a, &allocated, SIZE_MAX / 2 + 2, 1));
        ASSERT_TRUE(a == before);
        ASSERT_INT_EQ(allocated, 4);
        ASSERT_INT_EQ(a[0], 42);

        /* Still usable afterwards. */
        ASSERT_TRUE(GREEDY_REALLOC(a, allocated, 5));
        ASSERT_INT_EQ(a[0], 42);
}

int main(void) {
        test_growth();
        test_overflow();
        return 0;
}
