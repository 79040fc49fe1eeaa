/* JSON writer matching JSON.stringify's output (see json.h). */
#include "core/json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 for the bytes a JSON string must escape: '"', '\\' and the controls below 0x20. */
static const unsigned char must_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/* How many leading bytes of s need no escape. Eight bytes at a time: a word has a byte
 * below 0x20, or equal to '"' or '\\', exactly when one of these three tests is
 * non-zero (bytes of 0x80 and above, UTF-8, never are); the word that has one is then
 * read byte by byte. */
static size_t clean_prefix(const char *s, size_t len) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        if (((x - ones * 0x20) | (q - ones) | (b - ones)) & ~x & ~q & ~b & highs) {
            /* a candidate: the exact answer comes from the table below */
            break;
        }
    }
    while (i < len && !must_escape[(unsigned char)s[i]]) i++;
    return i;
}

void json_write_string(buf_t *out, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    /* Most strings (ids, names, currencies, keys) need no escape: one copy. */
    size_t clean = clean_prefix(s, len);
    if (clean == len) {
        char *p = buf_reserve(out, len + 2);
        if (!p) return;
        p[0] = '"';
        memcpy(p + 1, s, len);
        p[len + 1] = '"';
        buf_commit(out, len + 2);
        return;
    }
    /* The clean runs between escapes are found eight bytes at a time too: a stored
     * answer (an idempotency record) escapes a quote every few bytes. */
    buf_append_char(out, '"');
    buf_append(out, s, clean);
    for (size_t i = clean; i < len;) {
        unsigned char c = (unsigned char)s[i++];
        switch (c) {
        case '"': buf_append(out, "\\\"", 2); break;
        case '\\': buf_append(out, "\\\\", 2); break;
        case '\b': buf_append(out, "\\b", 2); break;
        case '\f': buf_append(out, "\\f", 2); break;
        case '\n': buf_append(out, "\\n", 2); break;
        case '\r': buf_append(out, "\\r", 2); break;
        case '\t': buf_append(out, "\\t", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 6);
        }
        }
        size_t run = clean_prefix(s + i, len - i);
        buf_append(out, s + i, run);
        i += run;
    }
    buf_append_char(out, '"');
}

/* Decimal digits of v without printf: ids, versions and timestamps are in every answer. */
void json_write_int(buf_t *out, int64_t v) {
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) { /* two digits per division */
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = pairs[d + 1];
        *--p = pairs[d];
    }
    if (u >= 10) {
        *--p = pairs[u * 2 + 1];
        *--p = pairs[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    buf_append(out, p, (size_t)(tmp + sizeof tmp - p));
}

void json_write_double(buf_t *out, double d) {
    char tmp[40];
    if (!isfinite(d)) {
        buf_append(out, "null", 4); /* what JSON.stringify does with NaN and Infinity */
        return;
    }
    if (d == 0) {
        buf_append_char(out, '0');
        return;
    }
    /* Whole numbers print as integers while they are exact (below 2^53); larger ones
     * use the exponent form, which every JSON parser reads back as a double (JavaScript
     * would write their digits out, which overflows 64-bit integer parsers). */
    if (d == trunc(d) && fabs(d) < 9007199254740992.0) {
        json_write_int(out, (int64_t)d);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* Turn C's exponent "e-07"/"e+21" into JavaScript's "e-7"/"e+21". */
    char *e = strchr(tmp, 'e');
    if (e) {
        char *digits = e + 2;
        char *nz = digits;
        while (*nz == '0' && nz[1]) nz++;
        memmove(digits, nz, strlen(nz) + 1);
    }
    buf_append_str(out, tmp);
}

/* An object's members; with spans, records where container values went (see
 * json_write_spans). */
static size_t write_object(buf_t *out, json_t *obj, json_span_t *spans, size_t max) {
    size_t n = 0;
    buf_append_char(out, '{');
    /* The iterator itself: json_object_keylen_foreach makes eight calls into jansson per
     * member, this four (every record written passes here). */
    for (void *it = json_object_iter(obj), *first = it; it; it = json_object_iter_next(obj, it)) {
        if (it != first) buf_append_char(out, ',');
        json_write_string(out, json_object_iter_key(it), json_object_iter_key_len(it));
        buf_append_char(out, ':');
        json_t *val = json_object_iter_value(it);
        size_t start = out->len;
        json_write(out, val);
        if (n < max && (json_is_object(val) || json_is_array(val)))
            spans[n++] = (json_span_t){val, start, out->len};
    }
    buf_append_char(out, '}');
    return n;
}

size_t json_write_spans(buf_t *out, const json_t *obj, json_span_t *spans, size_t max) {
    if (!json_is_object(obj)) {
        json_write(out, obj);
        return 0;
    }
    return write_object(out, (json_t *)obj, spans, max);
}

void json_write(buf_t *out, const json_t *v) {
    if (!v) {
        buf_append(out, "null", 4);
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        write_object(out, (json_t *)v, NULL, 0);
        break;
    case JSON_ARRAY: {
        buf_append_char(out, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i) buf_append_char(out, ',');
            json_write(out, json_array_get(v, i));
        }
        buf_append_char(out, ']');
        break;
    }
    case JSON_STRING:
        json_write_string(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: json_write_int(out, json_integer_value(v)); break;
    case JSON_REAL: json_write_double(out, json_real_value(v)); break;
    case JSON_TRUE: buf_append(out, "true", 4); break;
    case JSON_FALSE: buf_append(out, "false", 5); break;
    case JSON_NULL: buf_append(out, "null", 4); break;
    }
}

char *json_write_dup(const json_t *v, size_t *len_out) {
    buf_t b;
    buf_init(&b, 0);
    json_write(&b, v);
    return buf_take(&b, len_out);
}

void json_walk_init(json_walk_t *w, const json_t *obj) {
    w->obj = (json_t *)obj;
    w->it = json_object_iter(w->obj);
}

json_t *json_walk_get(json_walk_t *w, const char *name) {
    if (w->it && strcmp(json_object_iter_key(w->it), name) == 0) {
        json_t *v = json_object_iter_value(w->it);
        w->it = json_object_iter_next(w->obj, w->it);
        return v;
    }
    return json_object_get(w->obj, name);
}
