/* String-keyed open-addressing hash map (see strmap.h). */
#include "core/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static char strmap_tombstone_;
#define TOMB (&strmap_tombstone_)

static uint64_t strmap_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void strmap_init(strmap_t *m) { memset(m, 0, sizeof *m); }

void strmap_cleanup(strmap_t *m) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMB) free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static strmap_entry_t *strmap_find(const strmap_t *m, const char *key, size_t len) {
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1, i = strmap_hash(key, len) & mask;
    for (;;) {
        strmap_entry_t *e = &m->slots[i];
        if (!e->key) return NULL;
        if (e->key != TOMB && strncmp(e->key, key, len) == 0 && e->key[len] == '\0') return e;
        i = (i + 1) & mask;
    }
}

static void strmap_grow(strmap_t *m) {
    size_t ncap = m->cap ? m->cap * 2 : 16;
    if (m->count * 2 < m->cap) ncap = m->cap; /* mostly tombstones: rehash in place size */
    strmap_entry_t *old = m->slots;
    size_t ocap = m->cap;
    m->slots = xcalloc(ncap, sizeof *m->slots);
    m->cap = ncap;
    m->used = m->count;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].key || old[i].key == TOMB) continue;
        size_t j = strmap_hash(old[i].key, strlen(old[i].key)) & (ncap - 1);
        while (m->slots[j].key) j = (j + 1) & (ncap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

void *strmap_put(strmap_t *m, const char *key, void *value) {
    size_t len = strlen(key);
    strmap_entry_t *e = strmap_find(m, key, len);
    if (e) {
        void *prev = e->value;
        e->value = value;
        return prev;
    }
    if ((m->used + 1) * 4 >= m->cap * 3) strmap_grow(m);
    size_t mask = m->cap - 1, i = strmap_hash(key, len) & mask;
    while (m->slots[i].key && m->slots[i].key != TOMB) i = (i + 1) & mask;
    if (!m->slots[i].key) m->used++;
    m->slots[i].key = xstrndup(key, len);
    m->slots[i].value = value;
    m->count++;
    return NULL;
}

void *strmap_getn(const strmap_t *m, const char *key, size_t len) {
    strmap_entry_t *e = strmap_find(m, key, len);
    return e ? e->value : NULL;
}

void *strmap_get(const strmap_t *m, const char *key) { return strmap_getn(m, key, strlen(key)); }

void *strmap_del(strmap_t *m, const char *key) {
    strmap_entry_t *e = strmap_find(m, key, strlen(key));
    if (!e) return NULL;
    void *v = e->value;
    free(e->key);
    e->key = TOMB;
    e->value = NULL;
    m->count--;
    return v;
}

int strmap_next(const strmap_t *m, size_t *iter, const char **key, void **value) {
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->slots[i].key && m->slots[i].key != TOMB) {
            if (key) *key = m->slots[i].key;
            if (value) *value = m->slots[i].value;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
