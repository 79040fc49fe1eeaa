#include "core/regex.h"

#include <stdio.h>

pcre2_code *regex_compile(const char *pattern, size_t len, char *why, size_t why_size,
                          size_t *offset) {
    const uint32_t options =
        PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX | PCRE2_NEVER_BACKSLASH_C;
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, options, &code, &off, NULL);
    if (!re) {
        if (pcre2_get_error_message(code, (PCRE2_UCHAR *)why, why_size) < 0 && why_size > 0)
            snprintf(why, why_size, "invalid");
        *offset = (size_t)off;
        return NULL;
    }
    /* Without JIT support (or executable memory) the interpreter matches alone. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

bool regex_match(const pcre2_code *re, const char *s, size_t n, pcre2_match_data *md,
                 pcre2_match_context *mc) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, mc);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, PCRE2_NO_JIT, md, mc);
    return rc >= 0;
}
