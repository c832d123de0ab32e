/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* String-vector helpers used across migd. */
#include "util.h"

size_t strv_length(char *const *l) {
        size_t n = 0;

        if (!l)
                return 0;
        while (l[n])
                n++;
        return n;
}

int strv_extend(char ***l, const char *s) {
        size_t n;
        char *copy, **grown;

        assert(l);
        assert(s);

        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        n = strv_length(*l);
        grown = realloc(*l, (n + 2) * sizeof(char *));
        if (!grown) {
                free(copy);
                return -ENOMEM;
        }
        grown[n] = copy;
        grown[n + 1] = NULL;
        *l = grown;
        return 0;
}

char **strv_copy(char *const *l) {
        _cleanup_strv_free_ char **result = NULL;

        result = calloc(1, sizeof(char *));
        if (!result)
                return NULL;
        for (char *const *i = l; i && *i; i++)
                if (strv_extend(&result, *i) < 0)
                        return NULL;
        return TAKE_PTR(result);
}

bool strv_contains(char *const *l, const char *s) {
        for (char *const *i = l; i && *i; i++)
                if (streq(*i, s))
                        return true;
        return false;
}

int strv_split(const char *s, const char *separators, char ***ret) {
        _cleanup_strv_free_ char **result = NULL;
        int r;

        assert(s);
        assert(separators);
        assert(ret);

        result = calloc(1, sizeof(char *));
        if (!result)
                return -ENOMEM;
        while (*s) {
                size_t n = strcspn(s, separators);
                if (n > 0) {
                        _cleanup_free_ char *item = strndup(s, n);
                        if (!item)
                                return -ENOMEM;
                        r = strv_extend(&result, item);
                        if (r < 0)
                                return r;
                }
                s += n;
                s += strspn(s, separators);
        }
        *ret = TAKE_PTR(result);
        return 0;
}

char *strv_join(char *const *l, const char *separator) {
        size_t len = 1, seplen = strlen(separator);
        char *result, *p;

        for (char *const *i = l; i && *i; i++)
                len += strlen(*i) + seplen;
        result = malloc(len);
        if (!result)
                return NULL;
        p = result;
        for (char *const *i = l; i && *i; i++) {
                if (i != l)
                        p = stpcpy(p, separator);
                p = stpcpy(p, *i);
        }
        *p = '\0';
        return result;
}
