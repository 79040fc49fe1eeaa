/* Aborting allocation helpers (see mem.h). */
#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mem_oom(size_t n) {
    fprintf(stderr, "shopd: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) mem_oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n) {
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) mem_oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) mem_oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

void *xmemdup(const void *p, size_t n) {
    void *d = xmalloc(n);
    if (n) memcpy(d, p, n);
    return d;
}
