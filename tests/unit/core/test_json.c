#include <criterion/criterion.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"

static char *dump(json_t *v) {
    char *s = json_write_dup(v, NULL);
    json_decref(v);
    return s;
}

static void check(json_t *v, const char *want) {
    char *s = dump(v);
    cr_assert_str_eq(s, want);
    free(s);
}

Test(json_write, numbers_print_like_javascript) {
    check(json_real(0.1), "0.1");
    check(json_real(2.0), "2");
    check(json_real(-0.0), "0");
    check(json_real(1.5e-7), "1.5e-7");
    check(json_real(1e21), "1e+21");
    check(json_real(8.888888888888889e20), "8.888888888888889e+20");
    check(json_real(9007199254740991.0), "9007199254740991");
    check(json_real(123456.789), "123456.789");
    check(json_real(0.1 + 0.2), "0.30000000000000004");
    check(json_integer(-9007199254740991), "-9007199254740991");
    check(json_integer(0), "0");
    check(json_integer(INT64_MAX), "9223372036854775807");
    check(json_integer(INT64_MIN), "-9223372036854775808");
    check(json_real(-42.0), "-42");
    check(json_real(9007199254740991.0), "9007199254740991");
    check(json_real(-9007199254740991.0), "-9007199254740991");
}

Test(json_write, int_appends_digits_to_what_is_there) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "[");
    const int64_t vals[] = {0, 7, -1, 10, 1000000007, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        if (i) buf_append_str(&b, ",");
        json_write_int(&b, vals[i]);
    }
    buf_append_str(&b, "]");
    cr_assert_str_eq(buf_cstr(&b), "[0,7,-1,10,1000000007,9223372036854775807,-9223372036854775808]");
    buf_cleanup(&b);
}

Test(json_write, strings_escape_only_what_json_requires) {
    check(json_string("a\"b\\c\n\t\x01 é"), "\"a\\\"b\\\\c\\n\\t\\u0001 é\"");
    /* Every ASCII byte alone: escaped exactly when JSON requires it. */
    for (int c = 1; c < 0x80; c++) {
        char in[2] = {(char)c, 0}, want[16];
        if (c == '"') snprintf(want, sizeof want, "\"\\\"\"");
        else if (c == '\\') snprintf(want, sizeof want, "\"\\\\\"");
        else if (c == '\b') snprintf(want, sizeof want, "\"\\b\"");
        else if (c == '\f') snprintf(want, sizeof want, "\"\\f\"");
        else if (c == '\n') snprintf(want, sizeof want, "\"\\n\"");
        else if (c == '\r') snprintf(want, sizeof want, "\"\\r\"");
        else if (c == '\t') snprintf(want, sizeof want, "\"\\t\"");
        else if (c < 0x20) snprintf(want, sizeof want, "\"\\u%04x\"", c);
        else snprintf(want, sizeof want, "\"%c\"", c);
        buf_t b;
        buf_init(&b, 0);
        json_write_string(&b, in, 1);
        cr_assert_str_eq(buf_cstr(&b), want, "byte 0x%02x", c);
        buf_cleanup(&b);
    }
    /* A clean prefix, then an escape: the slow path continues where the scan stopped. */
    check(json_string("order-123\u00e9\ttail"), "\"order-123\u00e9\\ttail\"");
}

Test(json_write, objects_keep_insertion_order) {
    json_t *o = json_object();
    json_object_set_new(o, "z", json_integer(1));
    json_object_set_new(o, "a", json_array());
    json_array_append_new(json_object_get(o, "a"), json_true());
    json_array_append_new(json_object_get(o, "a"), json_null());
    json_object_set_new(o, "m", json_object());
    check(o, "{\"z\":1,\"a\":[true,null],\"m\":{}}");
}

Test(json_write, null_pointer_writes_null) {
    char *s = json_write_dup(NULL, NULL);
    cr_assert_str_eq(s, "null");
    free(s);
}

Test(json_walk, finds_members_in_order_out_of_order_and_missing) {
    json_t *o = json_pack("{s:i, s:i, s:i, s:i}", "a", 1, "b", 2, "c", 3, "d", 4);
    json_walk_t w;
    json_walk_init(&w, o);
    cr_assert_eq(json_integer_value(json_walk_get(&w, "a")), 1);
    cr_assert_null(json_walk_get(&w, "x"), "a missing name is NULL and the walk stays");
    cr_assert_eq(json_integer_value(json_walk_get(&w, "b")), 2);
    cr_assert_eq(json_integer_value(json_walk_get(&w, "d")), 4, "a later name is still found");
    cr_assert_eq(json_integer_value(json_walk_get(&w, "c")), 3);
    cr_assert_eq(json_integer_value(json_walk_get(&w, "a")), 1, "an earlier name too");
    json_walk_init(&w, json_object_get(o, "nothing"));
    cr_assert_null(w.it);
    json_decref(o);
    json_t *empty = json_object();
    json_walk_init(&w, empty);
    cr_assert_null(json_walk_get(&w, "a"));
    json_decref(empty);
}

Test(json_write, strings_escape_each_special_byte_at_every_position) {
    /* Strings long enough for the eight-bytes-at-a-time scan, with one byte that must be
     * escaped (or a multi-byte character that must not) at each position. */
    const char *specials[] = {"\"", "\\", "\n", "\x01", "\x1f", "\xc3\xa9", "\xe2\x82\xac"};
    const char *escaped[] = {"\\\"", "\\\\", "\\n", "\\u0001", "\\u001f", "\xc3\xa9", "\xe2\x82\xac"};
    for (size_t k = 0; k < sizeof specials / sizeof *specials; k++) {
        for (size_t at = 0; at < 20; at++) {
            char in[64], want[80];
            size_t n = 0, m = 0;
            want[m++] = '"';
            for (size_t i = 0; i < 20; i++) {
                if (i == at) {
                    n += (size_t)snprintf(in + n, sizeof in - n, "%s", specials[k]);
                    m += (size_t)snprintf(want + m, sizeof want - m, "%s", escaped[k]);
                } else {
                    in[n++] = (char)('a' + i);
                    want[m++] = (char)('a' + i);
                }
            }
            want[m++] = '"';
            want[m] = '\0';
            buf_t b;
            buf_init(&b, 0);
            json_write_string(&b, in, n);
            cr_assert_str_eq(buf_cstr(&b), want, "special %zu at %zu", k, at);
            buf_cleanup(&b);
        }
    }
}

Test(json_write, int_writes_every_digit_count) {
    int64_t v = 1;
    for (int digits = 1; digits <= 19; digits++, v = digits < 19 ? v * 10 : v) {
        const int64_t cases[] = {v, v - 1, -v, v + 7, v * 9 / 10 * 10 / 9};
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            char want[32];
            snprintf(want, sizeof want, "%lld", (long long)cases[i]);
            buf_t b;
            buf_init(&b, 0);
            json_write_int(&b, cases[i]);
            cr_assert_str_eq(buf_cstr(&b), want);
            buf_cleanup(&b);
        }
    }
}

/* json_write_spans writes what json_write does and says where each top-level object or
 * array value went, up to max of them. */
Test(json_write, spans_locate_container_members) {
    json_t *o = json_loads("{\"id\":\"a\",\"items\":[{\"q\":1},2],\"n\":3,\"details\":{\"k\":\"v\\\"\"},\"e\":[]}",
                           0, NULL);
    cr_assert_not_null(o);
    buf_t plain, out;
    buf_init(&plain, 0);
    buf_init(&out, 0);
    json_write(&plain, o);
    buf_append(&out, "x", 1); /* spans count from the buffer's start */
    json_span_t spans[4];
    size_t n = json_write_spans(&out, o, spans, 4);
    cr_assert_str_eq(buf_cstr(&out) + 1, buf_cstr(&plain));
    cr_assert_eq(n, 3);
    const char *names[] = {"items", "details", "e"};
    for (size_t i = 0; i < n; i++) {
        buf_t one;
        buf_init(&one, 0);
        json_write(&one, json_object_get(o, names[i]));
        cr_assert_eq(spans[i].value, json_object_get(o, names[i]));
        cr_assert_eq(spans[i].end - spans[i].start, one.len);
        cr_assert(memcmp(out.data + spans[i].start, one.data, one.len) == 0, "%s", names[i]);
        buf_cleanup(&one);
    }
    cr_assert_eq(json_write_spans(&out, o, spans, 1), 1, "no more than max");
    json_t *arr = json_loads("[1,{}]", 0, NULL);
    buf_reset(&out);
    cr_assert_eq(json_write_spans(&out, arr, spans, 4), 0, "only an object's members");
    cr_assert_str_eq(buf_cstr(&out), "[1,{}]");
    json_decref(arr);
    json_decref(o);
    buf_cleanup(&plain);
    buf_cleanup(&out);
}

/* Strings with many escapes in a row or scattered (a stored answer inside a record):
 * the same text jansson writes, for random ASCII with control bytes and quotes. */
Test(json_write, strings_with_many_escapes_match_jansson_but_for_hex_case) {
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char in[96];
        size_t n = (size_t)(round % 90);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) & 0xff;
            /* mostly plain letters, often a quote or backslash, sometimes a control byte */
            in[i] = r < 150 ? (char)('a' + r % 26) : r < 200 ? '"' : r < 220 ? '\\' : (char)(r % 32);
        }
        json_t *str = json_stringn(in, n);
        cr_assert_not_null(str);
        char *want = json_dumps(str, JSON_ENCODE_ANY);
        /* jansson writes \u001C, JSON.stringify (and shopd) \u001c; the input's letters
         * are lower case, so lowering all of jansson's text changes only those digits. */
        for (char *p = want; *p; p++) *p = (char)tolower((unsigned char)*p);
        buf_t b;
        buf_init(&b, 0);
        json_write_string(&b, in, n);
        cr_assert(strcmp(buf_cstr(&b), want) == 0, "round %d: %s, jansson %s", round, buf_cstr(&b), want);
        buf_cleanup(&b);
        free(want);
        json_decref(str);
    }
}
