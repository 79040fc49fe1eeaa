/* Fuzz target: shopd's JSON reader (core/json_parse.c) against jansson's json_loadb,
 * byte for byte. Both must accept the same texts and build equal values with members
 * in the same order. Allowed differences: a text nested deeper than the depth limit,
 * which shopd refuses before reading the rest, and a NUL byte (below). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_parse_status_t st;
    json_t *ours = json_parse((const char *)data, size, 256, &st);
    json_t *theirs = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    /* A NUL byte is never valid JSON (jansson lets one through right after a
     * top-level number): shopd must refuse it, whatever jansson says. */
    if (memchr(data, 0, size)) {
        if (ours) abort();
        json_decref(theirs);
        return 0;
    }
    if (!ours && st == JSON_PARSE_TOO_DEEP) {
        json_decref(theirs);
        return 0;
    }
    if (!ours != !theirs) abort(); /* one accepted what the other refused */
    if (ours) {
        if (!json_equal(ours, theirs)) abort();
        /* json_equal ignores member order; the written form does not. */
        buf_t a, b;
        buf_init(&a, 0);
        buf_init(&b, 0);
        json_write(&a, ours);
        json_write(&b, theirs);
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
        buf_cleanup(&a);
        buf_cleanup(&b);
    }
    json_decref(ours);
    json_decref(theirs);
    return 0;
}
