/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* NULL-terminated string vectors (char **): the lists in the configuration. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "basic/macro.h"

/* Frees every string and the vector; accepts NULL, returns NULL. */
char **strv_free(char **l);
DEFINE_CLEANUP_FUNC(char **, strv_free);

/* Number of strings before the terminating NULL; 0 for NULL. */
size_t strv_length(char * const *l);

/* Appends a copy of value; *l may be NULL (an empty list). On failure *l is
 * unchanged. Returns 0 or -ENOMEM. */
int strv_extend(char ***l, const char *value);

/* Whether value is one of the strings; false for a NULL list. */
bool strv_contains(char * const *l, const char *value);

/* Same strings in the same order; NULL equals an empty list. */
bool strv_equal(char * const *a, char * const *b);

/* A deep copy; a NULL or empty list copies to an empty (non-NULL) list.
 * Returns 0 or -ENOMEM, *ret written only on success. */
int strv_copy(char * const *l, char ***ret);

#define STRV_FOREACH(s, l) for (char **s = (l); s && *s; s++)
