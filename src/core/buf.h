/* A growable byte buffer with a hard cap. Everything the network feeds lands in one
 * of these, so every append says whether it fit: a buffer never grows past `max`.
 * buf_cleanup frees the storage (the buffer stays usable), so idle connections hold no
 * buffer memory; buf_reset empties it and keeps the storage for reuse. */
#ifndef SHOPD_CORE_BUF_H
#define SHOPD_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = unlimited (for server-built output whose size we control) */
} buf_t;

void buf_init(buf_t *b, size_t max);
/* Empties the buffer and frees its storage; the buffer stays usable (same cap). */
void buf_cleanup(buf_t *b);

/* The paths of buf_append and buf_reserve that grow the storage or check the cap. */
int buf_append_grow(buf_t *b, const void *p, size_t n);
char *buf_reserve_grow(buf_t *b, size_t n);

/* Whether n more bytes (and the NUL after them) fit in the storage and under the cap. */
static inline int buf_room(const buf_t *b, size_t n) {
    return n < b->cap - b->len && (!b->max || n <= b->max - b->len);
}

/* Appends n bytes. Returns 0, or -1 (and appends nothing) when the cap would be passed.
 * Inline while the bytes fit: JSON writing appends many short pieces. */
static inline int buf_append(buf_t *b, const void *p, size_t n) {
    if (buf_room(b, n)) {
        if (n) memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return buf_append_grow(b, p, n);
}
int buf_append_str(buf_t *b, const char *s);
static inline int buf_append_char(buf_t *b, char c) { return buf_append(b, &c, 1); }
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Removes the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
/* Makes room for n more bytes and returns a pointer to them (NULL when the cap would be
 * passed); commit with buf_commit. */
static inline char *buf_reserve(buf_t *b, size_t n) {
    return buf_room(b, n) ? b->data + b->len : buf_reserve_grow(b, n);
}
static inline void buf_commit(buf_t *b, size_t n) {
    b->len += n;
    b->data[b->len] = '\0';
}
/* Empties the buffer and keeps its storage (for long-lived scratch buffers). */
void buf_reset(buf_t *b);
/* Returns the contents as a NUL-terminated string (the NUL is not counted in len). */
const char *buf_cstr(buf_t *b);
/* Hands the storage to the caller (NUL-terminated) and leaves the buffer empty. */
char *buf_take(buf_t *b, size_t *len_out);

#endif
