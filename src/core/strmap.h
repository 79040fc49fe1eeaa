/* A string-keyed hash map (open addressing, linear probing). Keys are copied and
 * owned by the map; values are borrowed pointers whose lifetime the caller manages.
 * Used for dispatch tables, bucket and query registries and other name lookups. */
#ifndef SHOPD_CORE_STRMAP_H
#define SHOPD_CORE_STRMAP_H

#include <stddef.h>

typedef struct {
    char *key; /* NULL = empty slot; STRMAP_TOMBSTONE = deleted */
    void *value;
} strmap_entry_t;

typedef struct {
    strmap_entry_t *slots;
    size_t cap;   /* power of two, or 0 */
    size_t count; /* live entries */
    size_t used;  /* live + tombstones */
} strmap_t;

void strmap_init(strmap_t *m);
/* Frees the map's storage and keys (not the values). */
void strmap_cleanup(strmap_t *m);
/* Inserts or replaces; returns the previous value or NULL. */
void *strmap_put(strmap_t *m, const char *key, void *value);
void *strmap_get(const strmap_t *m, const char *key);
void *strmap_getn(const strmap_t *m, const char *key, size_t len);
/* Removes key; returns its value or NULL. */
void *strmap_del(strmap_t *m, const char *key);

/* Iteration: for (size_t i = 0; strmap_next(m, &i, &k, &v);) — order is unspecified;
 * the map must not change during iteration. */
int strmap_next(const strmap_t *m, size_t *iter, const char **key, void **value);

#endif
