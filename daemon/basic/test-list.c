/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the intrusive list macros: order, links, removal anywhere, removal while iterating. */

#include <stddef.h>

#include "basic/list.h"
#include "basic/macro.h"
#include "test/test.h"

typedef struct Item Item;
struct Item {
        int value;
        LIST_FIELDS(Item, items);
        LIST_FIELDS(Item, other);
};

/* The list from head, checked both ways, as values. */
static size_t collect(Item *head, int *ret, size_t max) {
        Item *prev = NULL;
        size_t n = 0;

        LIST_FOREACH(items, i, head) {
                ASSERT_TRUE(i->items_prev == prev);
                ASSERT_TRUE(n < max);
                ret[n++] = i->value;
                prev = i;
        }
        return n;
}

static void assert_list(Item *head, size_t n, const int *want) {
        int got[16];

        ASSERT_INT_EQ(collect(head, got, ELEMENTSOF(got)), n);
        for (size_t i = 0; i < n; i++)
                ASSERT_INT_EQ(got[i], want[i]);
}

static void test_prepend_remove(void) {
        Item a = { .value = 1 }, b = { .value = 2 }, c = { .value = 3 };
        Item *head = NULL;

        LIST_FOREACH(items, i, head)
                ASSERT_TRUE(!"an empty list has no items");

        LIST_PREPEND(items, head, &a);
        assert_list(head, 1, (int[]) { 1 });
        ASSERT_NULL(a.items_next);
        LIST_PREPEND(items, head, &b);
        LIST_PREPEND(items, head, &c);
        assert_list(head, 3, (int[]) { 3, 2, 1 });

        /* the middle */
        LIST_REMOVE(items, head, &b);
        assert_list(head, 2, (int[]) { 3, 1 });
        ASSERT_NULL(b.items_next);
        ASSERT_NULL(b.items_prev);
        /* the head */
        LIST_REMOVE(items, head, &c);
        ASSERT_TRUE(head == &a);
        assert_list(head, 1, (int[]) { 1 });
        /* the tail, after putting one back before it */
        LIST_PREPEND(items, head, &b);
        LIST_REMOVE(items, head, &a);
        assert_list(head, 1, (int[]) { 2 });
        ASSERT_NULL(b.items_next);
        /* the last */
        LIST_REMOVE(items, head, &b);
        ASSERT_NULL(head);
}

/* One item on two lists at once: the link fields are per list. */
static void test_two_lists(void) {
        Item a = { .value = 1 }, b = { .value = 2 };
        Item *h1 = NULL, *h2 = NULL;
        int n = 0;

        LIST_PREPEND(items, h1, &a);
        LIST_PREPEND(items, h1, &b);
        LIST_PREPEND(other, h2, &a);
        LIST_REMOVE(items, h1, &a);
        assert_list(h1, 1, (int[]) { 2 });
        LIST_FOREACH(other, i, h2) {
                ASSERT_TRUE(i == &a);
                n++;
        }
        ASSERT_INT_EQ(n, 1);
}

static void test_foreach_safe(void) {
        Item items[8];
        Item *head = NULL;
        int seen = 0;

        for (int k = 7; k >= 0; k--) {
                items[k] = (Item) { .value = k };
                LIST_PREPEND(items, head, &items[k]);
        }
        assert_list(head, 8, (int[]) { 0, 1, 2, 3, 4, 5, 6, 7 });

        /* Removing the current item (here: every odd one, the first and the
         * last) leaves the walk intact. */
        LIST_FOREACH_SAFE(items, i, n, head) {
                ASSERT_INT_EQ(i->value, seen);
                seen++;
                if (i->value % 2 == 1 || i->value == 0)
                        LIST_REMOVE(items, head, i);
        }
        ASSERT_INT_EQ(seen, 8);
        assert_list(head, 3, (int[]) { 2, 4, 6 });

        /* Removing everything while walking. */
        seen = 0;
        LIST_FOREACH_SAFE(items, i, n, head) {
                LIST_REMOVE(items, head, i);
                seen++;
        }
        ASSERT_INT_EQ(seen, 3);
        ASSERT_NULL(head);

        LIST_FOREACH_SAFE(items, i, n, head)
                ASSERT_TRUE(!"an empty list has no items");
}

int main(void) {
        test_prepend_remove();
        test_two_lists();
        test_foreach_safe();
        return 0;
}
