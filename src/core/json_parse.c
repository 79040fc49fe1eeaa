/* JSON text → jansson values in one pass (see json.h).
 *
 * jansson's own reader pulls the text through a character stream and a growing
 * string buffer, one byte at a time; on the realtime request path that was a third of
 * a store.get. This reader walks the bytes in place: a string without escapes is
 * copied once, straight into its jansson value; an integer is read digit by digit;
 * only numbers with a fraction or exponent go through strtod. It accepts exactly
 * what json_loadb(JSON_DECODE_ANY) accepts (RFC 8259, valid UTF-8, no "\u0000",
 * integers within 64 bits, finite reals) and builds the same values (a later
 * duplicate key replaces the earlier value in place); fuzz/json_parse.c checks the
 * two against each other. */
#include "core/json.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/utf8.h"

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int max_depth;
    json_parse_status_t status;
    buf_t scratch; /* decoded strings with escapes, number text for strtod */
} parser_t;

static json_t *parse_value(parser_t *ps, int depth);

static json_t *fail(parser_t *ps) {
    if (ps->status == JSON_PARSE_OK) ps->status = JSON_PARSE_SYNTAX;
    return NULL;
}

static void skip_ws(parser_t *ps) {
    const unsigned char *p = ps->p;
    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    ps->p = p;
}

/* The end of a run of string bytes: up to a quote, a backslash, a control character or
 * the end. A backslash or quote byte never occurs inside a multi-byte character, so each
 * run is whole UTF-8 on its own; it is checked with the project's validator, which skips
 * ASCII eight bytes at a time. */
static const unsigned char *string_run(const unsigned char *p, const unsigned char *end, bool *valid) {
    const unsigned char *start = p;
    bool ascii = true;
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) ascii &= *p++ < 0x80;
    *valid = ascii || utf8_is_valid(start, (size_t)(p - start));
    return p;
}

static int hex4(const unsigned char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(buf_t *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(b, u, n);
}

/* Decodes the escape after a backslash at *pp (pointing at the letter) into b. */
static int unescape(parser_t *ps, const unsigned char **pp, buf_t *b) {
    const unsigned char *p = *pp;
    if (p >= ps->end) return -1;
    char c;
    switch (*p) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': {
        uint32_t cp, lo;
        if (ps->end - p < 5 || hex4(p + 1, &cp) < 0) return -1;
        p += 5;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return -1; /* a low surrogate alone */
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (ps->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0) return -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return -1;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        if (cp == 0) return -1; /* NUL inside strings is refused, as by jansson */
        put_utf8(b, cp);
        *pp = p;
        return 0;
    }
    default:
        return -1;
    }
    buf_append_char(b, c);
    *pp = p + 1;
    return 0;
}

/* Reads the string whose opening quote is at ps->p. On success *s / *len point at
 * the raw bytes (no escapes) or into ps->scratch (decoded). */
static int parse_string(parser_t *ps, const char **s, size_t *len) {
    const unsigned char *start = ps->p + 1, *end = ps->end;
    bool valid;
    const unsigned char *p = string_run(start, end, &valid);
    if (!valid || p >= end || *p < 0x20) return -1;
    if (*p == '"') { /* the common case: no escapes, the bytes are the string */
        *s = (const char *)start;
        *len = (size_t)(p - start);
        ps->p = p + 1;
        return 0;
    }
    buf_t *b = &ps->scratch;
    b->len = 0;
    buf_append(b, start, (size_t)(p - start));
    while (*p == '\\') {
        p++;
        if (unescape(ps, &p, b) < 0) return -1;
        const unsigned char *run = p;
        p = string_run(run, end, &valid);
        if (!valid || p >= end || *p < 0x20) return -1;
        buf_append(b, run, (size_t)(p - run));
    }
    *s = b->data; /* *p is the closing quote */
    *len = b->len;
    ps->p = p + 1;
    return 0;
}

static json_t *parse_number(parser_t *ps) {
    const unsigned char *p = ps->p, *start = p, *end = ps->end;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') return fail(ps);
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') return fail(ps); /* leading zero */
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    bool real = false;
    if (p < end && *p == '.') {
        real = true;
        p++;
        if (p >= end || *p < '0' || *p > '9') return fail(ps);
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return fail(ps);
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    ps->p = p;
    if (!real) {
        /* Accumulate as a negative number so that INT64_MIN fits. */
        int64_t v = 0;
        for (const unsigned char *d = digits; d < p; d++) {
            int digit = *d - '0';
            if (v < (INT64_MIN + digit) / 10) return fail(ps); /* out of range */
            v = v * 10 - digit;
        }
        if (!neg) {
            if (v == INT64_MIN) return fail(ps);
            v = -v;
        }
        return json_integer((json_int_t)v);
    }
    /* strtod wants a NUL-terminated copy. */
    char small[64];
    const char *text;
    size_t n = (size_t)(p - start);
    if (n < sizeof small) {
        memcpy(small, start, n);
        small[n] = '\0';
        text = small;
    } else {
        ps->scratch.len = 0;
        buf_append(&ps->scratch, start, n);
        text = buf_cstr(&ps->scratch);
    }
    errno = 0;
    double d = strtod(text, NULL);
    if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE) return fail(ps);
    return json_real(d);
}

static bool literal(parser_t *ps, const char *word, size_t n) {
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return false;
    ps->p += n;
    return true;
}

static json_t *parse_object(parser_t *ps, int depth) {
    json_t *obj = json_object();
    ps->p++; /* { */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    for (;;) {
        const char *key;
        size_t klen;
        if (ps->p >= ps->end || *ps->p != '"' || parse_string(ps, &key, &klen) < 0) break;
        /* The key may live in the scratch buffer, which the value reuses. */
        char small[64];
        char *kcopy = NULL;
        if (key == ps->scratch.data) {
            kcopy = klen < sizeof small ? small : malloc(klen + 1);
            if (!kcopy) break;
            memcpy(kcopy, key, klen);
            key = kcopy;
        }
        skip_ws(ps);
        json_t *v = NULL;
        if (ps->p < ps->end && *ps->p == ':') {
            ps->p++;
            v = parse_value(ps, depth + 1);
        }
        if (v && json_object_setn_new_nocheck(obj, key, klen, v) < 0) v = NULL;
        if (kcopy && kcopy != small) free(kcopy);
        if (!v) break;
        skip_ws(ps);
        if (ps->p >= ps->end) break;
        if (*ps->p == '}') {
            ps->p++;
            return obj;
        }
        if (*ps->p != ',') break;
        ps->p++;
        skip_ws(ps);
    }
    json_decref(obj);
    return fail(ps);
}

static json_t *parse_array(parser_t *ps, int depth) {
    json_t *arr = json_array();
    ps->p++; /* [ */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        json_t *v = parse_value(ps, depth + 1);
        if (!v || json_array_append_new(arr, v) < 0) break;
        skip_ws(ps);
        if (ps->p >= ps->end) break;
        if (*ps->p == ']') {
            ps->p++;
            return arr;
        }
        if (*ps->p != ',') break;
        ps->p++;
    }
    json_decref(arr);
    return fail(ps);
}

static json_t *parse_value(parser_t *ps, int depth) {
    if (depth > ps->max_depth) {
        ps->status = JSON_PARSE_TOO_DEEP;
        return NULL;
    }
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps);
    switch (*ps->p) {
    case '{':
        return parse_object(ps, depth);
    case '[':
        return parse_array(ps, depth);
    case '"': {
        const char *s;
        size_t n;
        if (parse_string(ps, &s, &n) < 0) return fail(ps);
        return json_stringn_nocheck(s, n);
    }
    case 't':
        return literal(ps, "true", 4) ? json_true() : fail(ps);
    case 'f':
        return literal(ps, "false", 5) ? json_false() : fail(ps);
    case 'n':
        return literal(ps, "null", 4) ? json_null() : fail(ps);
    default:
        return parse_number(ps);
    }
}

json_t *json_parse(const char *text, size_t len, int max_depth, json_parse_status_t *status) {
    parser_t ps = {(const unsigned char *)text, (const unsigned char *)text + len, max_depth, JSON_PARSE_OK,
                   {0}};
    buf_init(&ps.scratch, 0);
    json_t *v = text ? parse_value(&ps, 1) : fail(&ps);
    if (v) {
        skip_ws(&ps);
        if (ps.p != ps.end) { /* trailing content */
            json_decref(v);
            v = fail(&ps);
        }
    }
    buf_cleanup(&ps.scratch);
    if (status) *status = v ? JSON_PARSE_OK : ps.status;
    return v;
}
