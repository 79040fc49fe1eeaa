/* Unit tests for core/regex.h: the dialect shared by schema patterns and rule
 * conditions, compile errors, the backtracking budget, and matches that need more
 * stack than the JIT has. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/regex.h"

static pcre2_match_data *md;
static pcre2_match_context *mc;

static void setup(void) {
    md = pcre2_match_data_create(1, NULL);
    mc = pcre2_match_context_create(NULL);
    pcre2_set_match_limit(mc, 1000000);
    pcre2_set_depth_limit(mc, 10000);
}

static void teardown(void) {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
}

TestSuite(regex, .init = setup, .fini = teardown);

static pcre2_code *compile_ok(const char *pattern) {
    char why[160] = "";
    size_t offset = 0;
    pcre2_code *re = regex_compile(pattern, strlen(pattern), why, sizeof why, &offset);
    cr_assert_not_null(re, "%s: %s at %zu", pattern, why, offset);
    return re;
}

static bool matches(const char *pattern, const char *s) {
    pcre2_code *re = compile_ok(pattern);
    bool m = regex_match(re, s, strlen(s), md, mc);
    pcre2_code_free(re);
    return m;
}

Test(regex, javascript_like_dialect) {
    cr_assert(matches("b", "abc"), "unanchored unless the pattern anchors itself");
    cr_assert_not(matches("^b", "abc"));
    cr_assert(matches("^[A-Z]{3}$", "USD"));
    cr_assert_not(matches("^[A-Z]{3}$", "USD\n"), "'$' only at the very end");
    cr_assert(matches("^\\u00e9$", "\xc3\xa9"), "\\uhhhh escapes, UTF-8 subjects");
    cr_assert(matches("^.$", "\xe2\x82\xac"), "a character is a code point, not a byte");
}

Test(regex, a_pattern_that_does_not_compile_says_why_and_where) {
    char why[160] = "";
    size_t offset = 99;
    cr_assert_null(regex_compile("(ab", 3, why, sizeof why, &offset));
    cr_assert_str_eq(why, "missing closing parenthesis");
    cr_assert_eq(offset, 3);
    cr_assert_null(regex_compile("a\\C", 3, why, sizeof why, &offset), "\\C is refused");
}

Test(regex, a_match_past_the_budget_counts_as_no_match) {
    char s[64];
    memset(s, 'a', 40);
    strcpy(s + 40, "!");
    cr_assert_not(matches("^(a+)+$", s));
}

/* Long repetitions of a group need more backtracking stack than the JIT's default;
 * the interpreter then decides within the context's depth limit. */
Test(regex, a_match_deeper_than_the_jit_stack_still_matches) {
    pcre2_match_context *deep = pcre2_match_context_create(NULL);
    pcre2_set_depth_limit(deep, 10000000);
    pcre2_set_heap_limit(deep, 1000000);
    size_t n = 200000;
    char *s = malloc(n + 2);
    memset(s, 'a', n);
    s[n] = 'c';
    s[n + 1] = '\0';
    pcre2_code *re = compile_ok("^(a|b)*c$");
    cr_assert(regex_match(re, s, n + 1, md, deep));
    s[n] = 'd';
    cr_assert_not(regex_match(re, s, n + 1, md, deep));
    pcre2_code_free(re);
    pcre2_match_context_free(deep);
    free(s);
}
