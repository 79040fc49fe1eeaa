/* Allocation helpers. shopd is a server, not a library: when the allocator fails
 * there is nothing sensible left to do, so these abort instead of returning NULL. */
#ifndef SHOPD_CORE_MEM_H
#define SHOPD_CORE_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

#endif
