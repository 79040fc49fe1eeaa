/* JSON output in the form JavaScript's JSON.stringify produces, straight into a
 * buf_t: object members in insertion order, numbers in their shortest round-trip
 * form (0.1, not 0.10000000000000001; 2.0 as 2; exponents as 1e-7; whole numbers
 * from 2^53 up in exponent form, which 64-bit integer parsers read back), strings with
 * only the required escapes. Clients of the reference server compare frames
 * textually at times, and money sums must print as people expect. */
#ifndef SHOPD_CORE_JSON_H
#define SHOPD_CORE_JSON_H

#include <jansson.h>

#include "core/buf.h"

typedef enum { JSON_PARSE_OK, JSON_PARSE_SYNTAX, JSON_PARSE_TOO_DEEP } json_parse_status_t;

/* Parses len bytes of JSON text (any value at the top) as json_loadb(JSON_DECODE_ANY)
 * would, faster. A value nested more than max_depth levels (the top value is level
 * 1; scalars count) is refused with JSON_PARSE_TOO_DEEP. Returns a new reference, or
 * NULL with *status (may be NULL) saying why. */
json_t *json_parse(const char *text, size_t len, int max_depth, json_parse_status_t *status);

/* Appends the serialisation of v (NULL writes null). */
void json_write(buf_t *out, const json_t *v);
/* Appends a JSON string literal for s (len bytes, valid UTF-8 expected). */
void json_write_string(buf_t *out, const char *s, size_t len);
/* Appends a number in the shortest form that reads back as the same double. */
void json_write_double(buf_t *out, double d);
/* Appends the decimal digits of v (no printf). */
void json_write_int(buf_t *out, int64_t v);
/* Reads members of one object in the order they were inserted: a get that names the
 * next member costs a string compare instead of a hash lookup (records are built and
 * stored in their schema's field order); any other name falls back to json_object_get.
 * The object must not change during the walk. */
typedef struct {
    json_t *obj;
    void *it;
} json_walk_t;
void json_walk_init(json_walk_t *w, const json_t *obj);
json_t *json_walk_get(json_walk_t *w, const char *name);
/* Where the text of a member's value went in out: [start, end). */
typedef struct {
    const json_t *value;
    size_t start, end;
} json_span_t;
/* json_write of an object that also records, for up to max of its members whose values
 * are objects or arrays, where their text went; returns how many it recorded. The
 * store binds those texts to the typed columns of such fields instead of writing them
 * a second time. */
size_t json_write_spans(buf_t *out, const json_t *obj, json_span_t *spans, size_t max);
/* Returns a newly allocated NUL-terminated serialisation; *len_out gets its length. */
char *json_write_dup(const json_t *v, size_t *len_out);

#endif
