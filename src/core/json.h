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

/* Appends the serialisation of v (NULL writes null). */
void json_write(buf_t *out, const json_t *v);
/* Appends a JSON string literal for s (len bytes, valid UTF-8 expected). */
void json_write_string(buf_t *out, const char *s, size_t len);
/* Appends a number in the shortest form that reads back as the same double. */
void json_write_double(buf_t *out, double d);
/* Returns a newly allocated NUL-terminated serialisation; *len_out gets its length. */
char *json_write_dup(const json_t *v, size_t *len_out);

#endif
