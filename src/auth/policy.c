/* The permission policy: an ordered list of allow rules and a default (see auth.h).
 *
 * A rule matches when all of these hold, and the first match allows:
 *   - the session has the rule's `role`;
 *   - the operation matches one `allow` pattern: "*", "<ns>.*" or an exact name;
 *   - the resource restriction, when the rule has one: `buckets` can only be met by a
 *     store.* operation whose resource is listed ("*" lists every bucket), `topics`
 *     only by a rules.* operation whose resource matches a topic pattern. A restricted
 *     rule therefore never allows operations outside the restricted namespaces
 *     (fail closed: `"allow": "*", "buckets": ["products"]` is not a licence for
 *     rules.* or server.*);
 *   - every `match` entry: the request's value at the dotted path equals the session's
 *     user id ("$session.userId") or the given JSON value (json_equal); a missing
 *     value never matches.
 * Topic patterns and resources are split into segments at '.' and ':' (topics and
 * fact keys); '*' stands for exactly one non-empty segment and separators must agree.
 * Config shapes are checked at start so a typo cannot silently widen access. */
#include "auth/auth_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

#define POLICY_MAX_RULES 1024
#define POLICY_MAX_LIST 256

typedef struct {
    char *path;        /* dotted path into the request */
    json_t *value;     /* owned; NULL when session_user */
    bool session_user; /* "$session.userId" */
} policy_match_t;

typedef struct {
    char *role;
    char **allow;
    size_t allow_count;
    char **buckets; /* NULL: no bucket restriction */
    size_t bucket_count;
    char **topics; /* NULL: no topic restriction */
    size_t topic_count;
    policy_match_t *match;
    size_t match_count;
    char *owner; /* NULL: not an ownership rule */
} policy_rule_t;

struct auth_policy {
    policy_rule_t *rules;
    size_t count;
    bool default_allow;
};

/* ---- patterns ---- */

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* "*", or dot-separated name segments (at least two) whose last may be "*". */
static bool op_pattern_valid(const char *s) {
    if (strcmp(s, "*") == 0) return true;
    size_t segments = 0;
    while (*s) {
        size_t n = strcspn(s, ".");
        if (n == 0) return false;
        segments++;
        bool star = n == 1 && s[0] == '*';
        if (star && s[1] != '\0') return false; /* '*' only as the last segment */
        for (size_t i = 0; i < n && !star; i++)
            if (!is_name_char(s[i])) return false;
        s += n;
        if (*s == '.' && !*++s) return false;
    }
    return segments >= 2;
}

static bool op_pattern_match(const char *pat, const char *op) {
    if (strcmp(pat, "*") == 0) return true;
    size_t n = strlen(pat);
    if (n >= 2 && pat[n - 1] == '*') return strncmp(op, pat, n - 1) == 0 && op[n - 1] != '\0';
    return strcmp(pat, op) == 0;
}

static bool topic_pattern_valid(const char *s) {
    if (!*s) return false;
    for (;;) {
        size_t n = strcspn(s, ".:");
        if (n == 0) return false;
        if (memchr(s, '*', n) && n != 1) return false;
        s += n;
        if (!*s) return true;
        s++;
    }
}

static bool topic_match(const char *pat, const char *res) {
    for (;;) {
        size_t pn = strcspn(pat, ".:"), rn = strcspn(res, ".:");
        if (pn == 1 && pat[0] == '*') {
            if (rn == 0) return false;
        } else if (pn != rn || memcmp(pat, res, pn) != 0) {
            return false;
        }
        pat += pn;
        res += rn;
        if (!*pat || !*res) return !*pat && !*res;
        if (*pat != *res) return false;
        pat++;
        res++;
    }
}

static bool path_valid(const char *s) {
    if (!*s) return false;
    for (;;) {
        size_t n = strcspn(s, ".");
        if (n == 0) return false;
        s += n;
        if (!*s) return true;
        s++;
    }
}

/* The request's value at a dotted path; numeric segments index arrays. */
static const json_t *request_at(const json_t *v, const char *path) {
    char seg[256];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof seg) return NULL;
        memcpy(seg, path, n);
        seg[n] = '\0';
        if (json_is_object(v)) {
            v = json_object_get(v, seg);
        } else if (json_is_array(v)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            v = (n && *end == '\0' && seg[0] != '-' && seg[0] != '+') ? json_array_get(v, i) : NULL;
        } else {
            return NULL;
        }
        path += n;
        if (*path == '.') path++;
    }
    return v;
}

/* ---- config ---- */

static void rule_cleanup(policy_rule_t *r) {
    free(r->role);
    auth_strv_free(r->allow, r->allow_count);
    auth_strv_free(r->buckets, r->bucket_count);
    auth_strv_free(r->topics, r->topic_count);
    for (size_t i = 0; i < r->match_count; i++) {
        free(r->match[i].path);
        json_decref(r->match[i].value);
    }
    free(r->match);
    free(r->owner);
}

void auth_policy_free(auth_policy_t *p) {
    if (!p) return;
    for (size_t i = 0; i < p->count; i++) rule_cleanup(&p->rules[i]);
    free(p->rules);
    free(p);
}

static int rule_parse_match(policy_rule_t *r, const json_t *m, const char *path, char *errbuf,
                            size_t errlen) {
    if (!json_is_object(m) || json_object_size(m) == 0)
        return auth_cfg_fail(errbuf, errlen, path, "must be a non-empty object");
    r->match = xcalloc(json_object_size(m), sizeof *r->match);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)m, key, v) {
        char p[512];
        auth_cfg_path_key(p, sizeof p, path, key);
        if (!path_valid(key))
            return auth_cfg_fail(errbuf, errlen, p,
                                 "must be a dotted request path like \"data.userId\"");
        policy_match_t *e = &r->match[r->match_count++];
        e->path = xstrdup(key);
        const char *s = json_string_value(v);
        if (s && strncmp(s, "$session", 8) == 0) {
            if (strcmp(s, "$session.userId") != 0)
                return auth_cfg_fail(errbuf, errlen, p,
                                     "unknown session value \"%s\" (only \"$session.userId\")", s);
            e->session_user = true;
        } else {
            e->value = json_incref(v);
        }
    }
    return 0;
}

static int rule_parse(policy_rule_t *r, const json_t *v, const char *path, char *errbuf,
                      size_t errlen) {
    static const char *const known[] = {"role",  "allow", "buckets", "topics",
                                        "match", "owner", NULL};
    char p[512];
    if (!json_is_object(v)) return auth_cfg_fail(errbuf, errlen, path, "must be an object");
    if (auth_cfg_known_fields(v, path, known, errbuf, errlen) < 0) return -1;

    const json_t *role = json_object_get(v, "role");
    auth_path(p, sizeof p, "%s.role", path);
    if (!json_is_string(role) || json_string_length(role) == 0)
        return auth_cfg_fail(errbuf, errlen, p, "must be a non-empty string");
    r->role = xstrdup(json_string_value(role));

    const json_t *allow = json_object_get(v, "allow");
    auth_path(p, sizeof p, "%s.allow", path);
    if (json_is_string(allow)) {
        r->allow = xcalloc(1, sizeof *r->allow);
        r->allow[0] = xstrdup(json_string_value(allow));
        r->allow_count = 1;
        if (!op_pattern_valid(r->allow[0]))
            return auth_cfg_fail(
                errbuf, errlen, p,
                "invalid operation pattern \"%s\" (use \"*\", \"ns.*\" or \"ns.op\")", r->allow[0]);
    } else if (json_is_array(allow)) {
        if (auth_cfg_string_array(allow, p, POLICY_MAX_LIST, &r->allow, &r->allow_count, errbuf,
                                  errlen) < 0)
            return -1;
        for (size_t i = 0; i < r->allow_count; i++)
            if (!op_pattern_valid(r->allow[i])) {
                auth_path(p, sizeof p, "%s.allow[%zu]", path, i);
                return auth_cfg_fail(
                    errbuf, errlen, p,
                    "invalid operation pattern \"%s\" (use \"*\", \"ns.*\" or \"ns.op\")",
                    r->allow[i]);
            }
    } else {
        return auth_cfg_fail(errbuf, errlen, p, "must be an operation pattern or an array of them");
    }

    const json_t *buckets = json_object_get(v, "buckets");
    if (buckets) {
        auth_path(p, sizeof p, "%s.buckets", path);
        if (auth_cfg_string_array(buckets, p, POLICY_MAX_LIST, &r->buckets, &r->bucket_count,
                                  errbuf, errlen) < 0)
            return -1;
    }
    const json_t *topics = json_object_get(v, "topics");
    if (topics) {
        auth_path(p, sizeof p, "%s.topics", path);
        if (auth_cfg_string_array(topics, p, POLICY_MAX_LIST, &r->topics, &r->topic_count, errbuf,
                                  errlen) < 0)
            return -1;
        for (size_t i = 0; i < r->topic_count; i++)
            if (!topic_pattern_valid(r->topics[i])) {
                auth_path(p, sizeof p, "%s.topics[%zu]", path, i);
                return auth_cfg_fail(
                    errbuf, errlen, p,
                    "invalid topic pattern \"%s\" ('*' stands for a whole segment)", r->topics[i]);
            }
    }
    const json_t *match = json_object_get(v, "match");
    if (match) {
        auth_path(p, sizeof p, "%s.match", path);
        if (rule_parse_match(r, match, p, errbuf, errlen) < 0) return -1;
    }
    const json_t *owner = json_object_get(v, "owner");
    if (owner) {
        auth_path(p, sizeof p, "%s.owner", path);
        if (!json_is_string(owner) || json_string_length(owner) == 0)
            return auth_cfg_fail(errbuf, errlen, p, "must be a non-empty field name");
        r->owner = xstrdup(json_string_value(owner));
    }
    return 0;
}

auth_policy_t *auth_policy_new(const json_t *cfg, const char *path, char *errbuf, size_t errlen) {
    static const char *const known[] = {"default", "rules", NULL};
    char p[512];
    if (!json_is_object(cfg)) {
        auth_cfg_fail(errbuf, errlen, path, "must be an object");
        return NULL;
    }
    if (auth_cfg_known_fields(cfg, path, known, errbuf, errlen) < 0) return NULL;
    auth_policy_t *pol = xcalloc(1, sizeof *pol);
    const json_t *def = json_object_get(cfg, "default");
    if (def) {
        const char *s = json_string_value(def);
        if (!s || (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0)) {
            auth_path(p, sizeof p, "%s.default", path);
            auth_cfg_fail(errbuf, errlen, p, "must be \"allow\" or \"deny\"");
            goto fail;
        }
        pol->default_allow = strcmp(s, "allow") == 0;
    }
    const json_t *rules = json_object_get(cfg, "rules");
    if (rules) {
        auth_path(p, sizeof p, "%s.rules", path);
        if (!json_is_array(rules)) {
            auth_cfg_fail(errbuf, errlen, p, "must be an array of rules");
            goto fail;
        }
        if (json_array_size(rules) > POLICY_MAX_RULES) {
            auth_cfg_fail(errbuf, errlen, p, "at most %d rules", POLICY_MAX_RULES);
            goto fail;
        }
        pol->rules = xcalloc(json_array_size(rules) + 1, sizeof *pol->rules);
        for (size_t i = 0; i < json_array_size(rules); i++) {
            auth_path(p, sizeof p, "%s.rules[%zu]", path, i);
            /* Counted before parsing so that a half-built rule is freed on failure. */
            pol->count++;
            if (rule_parse(&pol->rules[i], json_array_get(rules, i), p, errbuf, errlen) < 0)
                goto fail;
        }
    }
    return pol;
fail:
    auth_policy_free(pol);
    return NULL;
}

/* ---- decisions ---- */

static bool has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool rule_resource_ok(const policy_rule_t *r, const char *op, const char *resource) {
    if (!r->buckets && !r->topics) return true;
    if (has_prefix(op, "store.")) {
        for (size_t i = 0; i < r->bucket_count; i++)
            if (strcmp(r->buckets[i], "*") == 0 || strcmp(r->buckets[i], resource) == 0)
                return true;
        return false;
    }
    if (has_prefix(op, "rules.")) {
        for (size_t i = 0; i < r->topic_count; i++)
            if (topic_match(r->topics[i], resource)) return true;
        return false;
    }
    return false;
}

static bool rule_match_ok(const policy_rule_t *r, const auth_identity_t *who,
                          const json_t *request) {
    for (size_t i = 0; i < r->match_count; i++) {
        const policy_match_t *m = &r->match[i];
        const json_t *v = request ? request_at(request, m->path) : NULL;
        if (!v) return false;
        if (m->session_user) {
            if (!json_is_string(v) || !who->user_id ||
                strcmp(json_string_value(v), who->user_id) != 0)
                return false;
        } else if (!json_equal((json_t *)v, m->value)) {
            return false;
        }
    }
    return true;
}

bool auth_policy_permit(const auth_policy_t *p, const auth_identity_t *who, const char *op,
                        const char *resource, const json_t *request, const char **owner_field_out,
                        bool *reusable) {
    if (reusable) *reusable = true;
    if (!op) return false;
    if (!resource) resource = "*";
    for (size_t i = 0; i < p->count; i++) {
        const policy_rule_t *r = &p->rules[i];
        if (!auth_identity_has_role(who, r->role)) continue;
        bool op_ok = false;
        for (size_t k = 0; k < r->allow_count && !op_ok; k++)
            op_ok = op_pattern_match(r->allow[k], op);
        if (!op_ok || !rule_resource_ok(r, op, resource)) continue;
        if (r->match_count && reusable) *reusable = false;
        if (!rule_match_ok(r, who, request)) continue;
        if (owner_field_out) *owner_field_out = r->owner;
        return true;
    }
    return p->default_allow;
}
