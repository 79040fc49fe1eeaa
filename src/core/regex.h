/* The regular expressions of schema patterns and rule conditions: PCRE2 in a
 * JavaScript-like dialect, unanchored unless the pattern anchors itself, '$' only at
 * the very end, \uhhhh escapes, no \C that could split a character. */
#ifndef SHOPD_CORE_REGEX_H
#define SHOPD_CORE_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Compiles `pattern` (len bytes) and, where the platform allows executable memory,
 * JIT-compiles it too: a match then costs a tenth of the interpreter's. NULL when it
 * does not compile: `why` gets PCRE2's reason and *offset where it stopped. */
pcre2_code *regex_compile(const char *pattern, size_t len, char *why, size_t why_size,
                          size_t *offset);

/* Whether re matches somewhere in s (n bytes). A match that runs out of the budget set
 * in mc counts as no match. When the JIT's stack runs out, the interpreter (bounded by
 * mc's depth limit) decides. */
bool regex_match(const pcre2_code *re, const char *s, size_t n, pcre2_match_data *md,
                 pcre2_match_context *mc);

#endif
