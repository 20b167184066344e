/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for string vectors: length, extend, contains, copy, and NULL as the empty list. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/strv.h"
#include "test/test.h"

static void test_empty(void) {
        _cleanup_(strv_freep) char **c = NULL;
        char *empty[] = { NULL };

        ASSERT_INT_EQ(strv_length(NULL), 0);
        ASSERT_INT_EQ(strv_length(empty), 0);
        ASSERT_FALSE(strv_contains(NULL, "a"));
        ASSERT_FALSE(strv_contains(empty, "a"));
        ASSERT_NULL(strv_free(NULL));
        STRV_FOREACH(s, (char **) NULL)
                ASSERT_TRUE(!"nothing to walk");

        ASSERT_OK(strv_copy(NULL, &c));
        ASSERT_NOT_NULL(c);
        ASSERT_NULL(c[0]);
}

static void test_extend(void) {
        _cleanup_(strv_freep) char **l = NULL, **c = NULL;
        char word[] = "alpha";
        size_t n = 0;

        ASSERT_OK(strv_extend(&l, word));
        /* a copy, not the caller's buffer */
        word[0] = 'A';
        ASSERT_STREQ(l[0], "alpha");
        ASSERT_OK(strv_extend(&l, "beta"));
        ASSERT_OK(strv_extend(&l, ""));
        ASSERT_INT_EQ(strv_length(l), 3);
        ASSERT_NULL(l[3]);

        ASSERT_TRUE(strv_contains(l, "beta"));
        ASSERT_TRUE(strv_contains(l, ""));
        ASSERT_FALSE(strv_contains(l, "bet"));
        ASSERT_FALSE(strv_contains(l, "Alpha"));

        STRV_FOREACH(s, l)
                ASSERT_TRUE(streq(*s, l[n++]));
        ASSERT_INT_EQ(n, 3);

        ASSERT_OK(strv_copy(l, &c));
        ASSERT_TRUE(c != l);
        ASSERT_INT_EQ(strv_length(c), 3);
        for (size_t i = 0; i < 3; i++) {
                ASSERT_TRUE(c[i] != l[i]);
                ASSERT_STREQ(c[i], l[i]);
        }
        l = strv_free(l);
        ASSERT_NULL(l);
        /* the copy owns its strings (ASan: no use after free) */
        ASSERT_STREQ(c[1], "beta");
}

static void test_many(void) {
        _cleanup_(strv_freep) char **l = NULL;
        char buf[16];

        for (unsigned i = 0; i < 1000; i++) {
                snprintf(buf, sizeof buf, "item%u", i);
                ASSERT_OK(strv_extend(&l, buf));
        }
        ASSERT_INT_EQ(strv_length(l), 1000);
        ASSERT_STREQ(l[999], "item999");
        ASSERT_TRUE(strv_contains(l, "item500"));
        ASSERT_FALSE(strv_contains(l, "item1000"));
}

int main(void) {
        test_empty();
        test_extend();
        test_many();
        return 0;
}
