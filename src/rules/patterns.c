/* Topic and fact-key patterns (see rules.h). A name is a list of non-empty segments
 * joined by a separator ('.' for topics, ':' for fact keys); in a pattern a segment
 * that is exactly "*" matches any one segment, so a pattern only ever matches names
 * with the same number of segments. Pure functions, no allocation. */
#include <string.h>

#include "rules/rules_int.h"

/* Length of the segment starting at s (up to sep or the end). */
static size_t seg_len(const char *s, char sep) {
    size_t n = 0;
    while (s[n] && s[n] != sep) n++;
    return n;
}

static bool segments_match(const char *pattern, const char *name, char sep) {
    if (!pattern || !name) return false;
    const char *p = pattern, *s = name;
    for (;;) {
        size_t pl = seg_len(p, sep), sl = seg_len(s, sep);
        if (pl == 1 && p[0] == '*') {
            if (sl == 0) return false;
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            return false;
        }
        p += pl;
        s += sl;
        if (!*p || !*s) return !*p && !*s;
        p++;
        s++;
    }
}

bool rules_topic_match(const char *pattern, const char *topic) {
    return segments_match(pattern, topic, '.');
}

bool rules_fact_match(const char *pattern, const char *key) {
    return segments_match(pattern, key, ':');
}

bool rules_name_ok(const char *s, char sep, bool allow_wildcards) {
    if (!s || !*s) return false;
    size_t total = strlen(s);
    if (total > RULES_MAX_KEY) return false;
    for (const char *p = s;;) {
        size_t n = seg_len(p, sep);
        if (n == 0) return false;
        bool wild = n == 1 && p[0] == '*';
        if (wild && !allow_wildcards) return false;
        for (size_t i = 0; i < n && !wild; i++) {
            unsigned char c = (unsigned char)p[i];
            /* '*' inside a longer segment would read as a glob it is not. */
            if (c < 0x20 || c == 0x7f || c == '*') return false;
        }
        p += n;
        if (!*p) return true;
        p++;
    }
}
