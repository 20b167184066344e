/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* NULL-terminated string vectors (char **): the lists in the configuration. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/strv.h"

char **strv_free(char **l) {
        if (!l)
                return NULL;
        for (char **s = l; *s; s++)
                free(*s);
        free(l);
        return NULL;
}

size_t strv_length(char * const *l) {
        size_t n = 0;

        if (!l)
                return 0;
        while (l[n])
                n++;
        return n;
}

int strv_extend(char ***l, const char *value) {
        size_t n = strv_length(*l);
        char **c, *v;

        if (n >= SIZE_MAX / sizeof(char *) - 2)
                return -ENOMEM;

        v = strdup(value);
        if (!v)
                return -ENOMEM;

        c = realloc(*l, (n + 2) * sizeof(char *));
        if (!c) {
                free(v);
                return -ENOMEM;
        }
        c[n] = v;
        c[n + 1] = NULL;
        *l = c;
        return 0;
}

bool strv_contains(char * const *l, const char *value) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], value))
                        return true;
        return false;
}

bool strv_equal(char * const *a, char * const *b) {
        size_t n = strv_length(a);

        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}

int strv_copy(char * const *l, char ***ret) {
        size_t n = strv_length(l);
        _cleanup_(strv_freep) char **c = NULL;

        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}
