/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Intrusive doubly linked lists: an item carries name##_prev and name##_next. */
#pragma once

#include <stddef.h>

#define LIST_FIELDS(t, name) t *name##_prev, *name##_next

#define LIST_PREPEND(name, head, item)                                  \
        do {                                                            \
                typeof(*(head)) **_head = &(head), *_item = (item);     \
                if ((_item->name##_next = *_head))                      \
                        _item->name##_next->name##_prev = _item;        \
                _item->name##_prev = NULL;                              \
                *_head = _item;                                         \
        } while (0)

#define LIST_REMOVE(name, head, item)                                   \
        do {                                                            \
                typeof(*(head)) **_head = &(head), *_item = (item);     \
                if (_item->name##_next)                                 \
                        _item->name##_next->name##_prev = _item->name##_prev; \
                if (_item->name##_prev)                                 \
                        _item->name##_prev->name##_next = _item->name##_next; \
                else                                                    \
                        *_head = _item->name##_next;                    \
                _item->name##_next = _item->name##_prev = NULL;         \
        } while (0)

#define LIST_FOREACH(name, i, head) \
        for (typeof(*(head)) *i = (head); i; i = i->name##_next)

/* Safe against removing i inside the loop. */
#define LIST_FOREACH_SAFE(name, i, n, head) \
        for (typeof(*(head)) *i = (head), *n = i ? i->name##_next : NULL; i; i = n, n = i ? i->name##_next : NULL)

/* Queues: a list with a tail pointer too, appended at the tail in O(1). */
#define LIST_APPEND_TAIL(name, head, tail, item)                        \
        do {                                                            \
                typeof(*(head)) **_head = &(head), **_tail = &(tail), *_item = (item); \
                _item->name##_next = NULL;                              \
                if ((_item->name##_prev = *_tail))                      \
                        (*_tail)->name##_next = _item;                  \
                else                                                    \
                        *_head = _item;                                 \
                *_tail = _item;                                         \
        } while (0)

#define LIST_REMOVE_TAIL(name, head, tail, item)                        \
        do {                                                            \
                typeof(*(head)) **_tail = &(tail), *_it = (item);       \
                if (!_it->name##_next)                                  \
                        *_tail = _it->name##_prev;                      \
                LIST_REMOVE(name, head, _it);                           \
        } while (0)
