#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

/* Parses text and returns its written form, or "ERR" / "DEEP". */
static char *rt(const char *text, size_t len, int max_depth) {
    json_parse_status_t st;
    json_t *v = json_parse(text, len, max_depth, &st);
    if (!v) {
        cr_assert_neq(st, JSON_PARSE_OK);
        return strdup(st == JSON_PARSE_TOO_DEEP ? "DEEP" : "ERR");
    }
    cr_assert_eq(st, JSON_PARSE_OK);
    char *s = json_write_dup(v, NULL);
    json_decref(v);
    return s;
}

static void ok(const char *text, const char *want) {
    char *s = rt(text, strlen(text), 64);
    cr_assert_str_eq(s, want, "%s", text);
    free(s);
}

static void bad(const char *text) {
    char *s = rt(text, strlen(text), 64);
    cr_assert_str_eq(s, "ERR", "%s was accepted as %s", text, s);
    free(s);
}

Test(json_parse, values_and_whitespace) {
    ok(" {\"a\" : [1, 2.5, -0, true, false, null, \"x\"] }\r\n", "{\"a\":[1,2.5,0,true,false,null,\"x\"]}");
    ok("[]", "[]");
    ok("{}", "{}");
    ok("\"top\"", "\"top\"");
    ok("42", "42");
    ok("\t1e2", "100");
}

Test(json_parse, integers_stay_integers_within_64_bits) {
    json_t *v = json_parse("[9223372036854775807,-9223372036854775808,1.0]", 46, 64, NULL);
    cr_assert(json_is_integer(json_array_get(v, 0)));
    cr_assert_eq(json_integer_value(json_array_get(v, 0)), INT64_MAX);
    cr_assert_eq(json_integer_value(json_array_get(v, 1)), INT64_MIN);
    cr_assert(json_is_real(json_array_get(v, 2)));
    json_decref(v);
    bad("9223372036854775808");
    bad("-9223372036854775809");
    bad("1e400"); /* overflows a double */
    ok("1e-400", "0");
}

Test(json_parse, number_grammar) {
    bad("01");
    bad("-");
    bad("1.");
    bad(".5");
    bad("+1");
    bad("1e");
    bad("1e+");
    bad("NaN");
    bad("Infinity");
    bad("0x10");
    ok("-0.5e-1", "-0.05");
    ok("0", "0");
}

Test(json_parse, strings_escapes_and_utf8) {
    ok("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\"");
    ok("\"\\u00e9\\ud83d\\ude00 é\"", "\"é😀 é\"");
    bad("\"\\u0000\"");     /* NUL is refused */
    bad("\"\\ud800\"");     /* a high surrogate alone */
    bad("\"\\udc00\"");     /* a low surrogate alone */
    bad("\"\\ud800\\u0041\""); /* a high surrogate with no low one */
    bad("\"\\x\"");
    bad("\"\\u12\"");
    bad("\"tab\there\""); /* raw control character */
    bad("\"\xc3\"");      /* truncated sequence */
    bad("\"\xc0\xaf\"");  /* overlong */
    bad("\"\xed\xa0\x80\""); /* an encoded surrogate */
    bad("\"\xf4\x90\x80\x80\""); /* past U+10FFFF */
    bad("\"unterminated");
}

Test(json_parse, structure_errors) {
    bad("");
    bad("   ");
    bad("{");
    bad("[1,]");
    bad("{\"a\":1,}");
    bad("{a:1}");
    bad("{\"a\" 1}");
    bad("[1 2]");
    bad("{} x");
    bad("tru");
    bad("nulls");
    char nul[] = "1\0";
    char *s = rt(nul, 2, 64);
    cr_assert_str_eq(s, "ERR"); /* a NUL byte is never JSON */
    free(s);
}

Test(json_parse, duplicate_keys_keep_the_first_place_and_the_last_value) {
    ok("{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":3,\"b\":2}");
    ok("{\"k\\u0065y\":1,\"x\":{\"key\":2}}", "{\"key\":1,\"x\":{\"key\":2}}");
}

Test(json_parse, depth_counts_every_level) {
    /* [[1]]: the outer array is level 1, the inner level 2, the number level 3. */
    char *s = rt("[[1]]", 5, 3);
    cr_assert_str_eq(s, "[[1]]");
    free(s);
    s = rt("[[1]]", 5, 2);
    cr_assert_str_eq(s, "DEEP");
    free(s);
    s = rt("[[]]", 4, 2);
    cr_assert_str_eq(s, "[[]]");
    free(s);
    char deep[4001];
    memset(deep, '[', 4000);
    deep[4000] = '\0';
    s = rt(deep, 4000, 64);
    cr_assert_str_eq(s, "DEEP");
    free(s);
}

Test(json_parse, long_numbers_and_escaped_keys_use_the_scratch_buffer) {
    char text[200] = "[0.";
    memset(text + 3, '1', 150);
    strcpy(text + 153, "]");
    json_t *v = json_parse(text, strlen(text), 8, NULL);
    cr_assert(json_is_real(json_array_get(v, 0)));
    cr_assert_float_eq(json_real_value(json_array_get(v, 0)), 0.1111111111111111, 1e-15);
    json_decref(v);
    char key[800] = "{\"";
    for (int i = 0; i < 100; i++) strcat(key, "\\u0041");
    strcat(key, "\":\"v\\n\"}");
    v = json_parse(key, strlen(key), 8, NULL);
    cr_assert_not_null(v);
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
        cr_assert_eq(strlen(k), 100);
        cr_assert_str_eq(json_string_value(m), "v\n");
    }
    json_decref(v);
}
