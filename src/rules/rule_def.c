/* Rule definitions: validation and compilation (spec §5, the JSON rule format).
 *
 *   {"name", "enabled"?: bool = true, "priority"?: integer = 0,
 *    "when": {"event": pattern} | {"fact": pattern} | {"store": {"bucket", "ops"?}},
 *    "if"?: [{"path"|"fact", "op", "value"?}, …], "then": [action, …]}
 *
 * Validation collects every problem instead of stopping at the first, so an admin
 * fixes a rule in one round. The compiled rule keeps the normalised definition (the
 * defaults filled in) and points into it; `matches` patterns are compiled here once. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/utf8.h"
#include "rules/rules_int.h"

#define PRIORITY_MAX 1e9

static const char *const cond_ops[] = {"eq",  "neq", "gt",     "gte",        "lt",
                                       "lte", "in",  "exists", "not_exists", "matches"};
#define COND_OP_COUNT (sizeof cond_ops / sizeof cond_ops[0])

const char *rules_cond_op_name(cond_op_t op) {
    return cond_ops[op];
}

static void add_err(json_t *errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends one message; a quoted user string cut short by the buffer is trimmed back
 * to a character boundary so the message stays valid UTF-8. */
static void add_err(json_t *errors, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    while (n > 0 && !utf8_is_valid((const uint8_t *)msg, n)) n--;
    json_array_append_new(errors, json_stringn(msg, n));
}

static bool has_placeholder(const char *s) {
    return strstr(s, "{{") != NULL;
}

static bool is_nonempty_string(const json_t *v) {
    return json_is_string(v) && json_string_length(v) > 0;
}

/* Reports members of obj not in `allowed` (NULL-terminated). */
static void check_fields(json_t *errors, const char *where, const json_t *obj,
                         const char *const *allowed) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        bool known = false;
        for (size_t i = 0; allowed[i] && !known; i++) known = strcmp(k, allowed[i]) == 0;
        if (!known) add_err(errors, "%s: unknown field \"%.100s\"", where, k);
    }
}

/* ---- when ---- */

static void check_when(rule_t *rule, json_t *when, json_t *errors) {
    static const char *const fields[] = {"event", "fact", "store", NULL};
    if (!json_is_object(when)) {
        add_err(errors, "when: expected an object with one of event, fact, store");
        return;
    }
    check_fields(errors, "when", when, fields);
    json_t *event = json_object_get(when, "event"), *fact = json_object_get(when, "fact"),
           *store = json_object_get(when, "store");
    if ((event != NULL) + (fact != NULL) + (store != NULL) != 1) {
        add_err(errors, "when: expected exactly one of event, fact, store");
        return;
    }
    if (event) {
        rule->kind = TRIGGER_EVENT;
        rule->pattern = json_string_value(event);
        if (!json_is_string(event))
            add_err(errors, "when.event: expected a topic pattern string");
        else if (!rules_name_ok(rule->pattern, '.', true))
            add_err(errors,
                    "when.event: invalid topic pattern \"%.100s\" (expected '.'-separated "
                    "non-empty segments, '*' for any one segment)",
                    rule->pattern);
        return;
    }
    if (fact) {
        rule->kind = TRIGGER_FACT;
        rule->pattern = json_string_value(fact);
        if (!json_is_string(fact))
            add_err(errors, "when.fact: expected a fact key pattern string");
        else if (!rules_name_ok(rule->pattern, ':', true))
            add_err(errors,
                    "when.fact: invalid fact key pattern \"%.100s\" (expected ':'-separated "
                    "non-empty segments, '*' for any one segment)",
                    rule->pattern);
        return;
    }
    rule->kind = TRIGGER_STORE;
    if (!json_is_object(store)) {
        add_err(errors, "when.store: expected an object {bucket, ops?}");
        return;
    }
    static const char *const store_fields[] = {"bucket", "ops", NULL};
    check_fields(errors, "when.store", store, store_fields);
    json_t *bucket = json_object_get(store, "bucket");
    if (!is_nonempty_string(bucket))
        add_err(errors, "when.store.bucket: expected non-empty string");
    else
        rule->pattern = json_string_value(bucket);
    json_t *ops = json_object_get(store, "ops");
    if (!ops) {
        ops = json_pack("[sss]", "insert", "update", "delete");
        json_object_set_new(store, "ops", ops);
    }
    if (!json_is_array(ops) || json_array_size(ops) == 0) {
        add_err(errors, "when.store.ops: expected a non-empty array of insert, update, delete");
        return;
    }
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op) {
        const char *s = json_string_value(op);
        if (s && strcmp(s, "insert") == 0)
            rule->ops |= OP_INSERT;
        else if (s && strcmp(s, "update") == 0)
            rule->ops |= OP_UPDATE;
        else if (s && strcmp(s, "delete") == 0)
            rule->ops |= OP_DELETE;
        else if (s)
            add_err(
                errors,
                "when.store.ops[%zu]: unknown op \"%.100s\" (expected insert, update or delete)", i,
                s);
        else
            add_err(errors, "when.store.ops[%zu]: expected insert, update or delete", i);
    }
}

/* ---- if ---- */

static void check_regex(rule_cond_t *c, size_t i, json_t *errors) {
    if (!json_is_string(c->value) || json_string_length(c->value) > RULES_MAX_REGEX) {
        add_err(errors, "if[%zu].value: expected a regular expression string of at most %d bytes",
                i, RULES_MAX_REGEX);
        return;
    }
    /* The same dialect as schema patterns (core/regex.h). */
    char why[160];
    size_t offset;
    c->re = regex_compile(json_string_value(c->value), json_string_length(c->value), why, sizeof why,
                          &offset);
    if (!c->re)
        add_err(errors, "if[%zu].value: invalid regular expression (%s at offset %zu)", i, why,
                offset);
}

static void check_cond(rule_cond_t *c, size_t i, const json_t *cond, json_t *errors) {
    static const char *const fields[] = {"path", "fact", "op", "value", NULL};
    char where[32];
    snprintf(where, sizeof where, "if[%zu]", i);
    if (!json_is_object(cond)) {
        add_err(errors, "%s: expected object {path|fact, op, value}", where);
        return;
    }
    check_fields(errors, where, cond, fields);
    json_t *path = json_object_get(cond, "path"), *fact = json_object_get(cond, "fact");
    if ((path != NULL) == (fact != NULL)) {
        add_err(errors, "%s: expected exactly one of path or fact", where);
    } else if (path) {
        c->path = json_string_value(path);
        if (!c->path || !rules_name_ok(c->path, '.', false)) {
            add_err(errors, "%s.path: expected a dotted path such as \"event.data.total\"", where);
            c->path = NULL;
        }
    } else {
        c->fact = json_string_value(fact);
        if (!is_nonempty_string(fact) || json_string_length(fact) > RULES_MAX_KEY ||
            (!has_placeholder(c->fact) && !rules_name_ok(c->fact, ':', false))) {
            add_err(errors, "%s.fact: expected a fact key (':'-separated non-empty segments)",
                    where);
            c->fact = NULL;
        }
    }
    json_t *op = json_object_get(cond, "op");
    const char *ops = json_string_value(op);
    size_t k = 0;
    while (ops && k < COND_OP_COUNT && strcmp(ops, cond_ops[k]) != 0) k++;
    if (!op) {
        add_err(errors, "%s.op: required", where);
        return;
    }
    if (!ops || k == COND_OP_COUNT) {
        add_err(errors,
                "%s.op: unknown op \"%.60s\" (expected eq, neq, gt, gte, lt, lte, in, exists, "
                "not_exists, matches)",
                where, ops ? ops : "?");
        return;
    }
    c->op = (cond_op_t)k;
    c->value = json_object_get(cond, "value");
    switch (c->op) {
    case COND_EXISTS:
    case COND_NOT_EXISTS:
        break;
    case COND_IN:
        if (!json_is_array(c->value)) add_err(errors, "%s.value: expected an array for in", where);
        break;
    case COND_GT:
    case COND_GTE:
    case COND_LT:
    case COND_LTE:
        if (!json_is_number(c->value) && !json_is_string(c->value))
            add_err(errors, "%s.value: expected a number or a string for %s", where, cond_ops[k]);
        break;
    case COND_MATCHES:
        check_regex(c, i, errors);
        break;
    case COND_EQ:
    case COND_NEQ:
        if (!c->value) add_err(errors, "%s.value: required for %s", where, cond_ops[k]);
        break;
    }
}

/* ---- then ---- */

/* A topic or key that may hold placeholders: checked fully only when it has none. */
static void check_name(json_t *errors, const char *where, const json_t *v, char sep,
                       const char *what) {
    if (!is_nonempty_string(v) || json_string_length(v) > RULES_MAX_KEY) {
        add_err(errors, "%s: expected a %s string", where, what);
        return;
    }
    const char *s = json_string_value(v);
    if (!has_placeholder(s) && !rules_name_ok(s, sep, false))
        add_err(errors, "%s: invalid %s \"%.100s\" (expected '%c'-separated non-empty segments)",
                where, what, s, sep);
}

/* data: an object, or a string that is exactly one placeholder (an object at run time). */
static void check_data(json_t *errors, const char *where, const json_t *data, bool required) {
    if (!data) {
        if (required) add_err(errors, "%s.data: required", where);
        return;
    }
    if (json_is_object(data)) return;
    if (json_is_string(data) &&
        rules_placeholder_only(json_string_value(data), json_string_length(data), NULL, NULL))
        return;
    add_err(errors, "%s.data: expected object", where);
}

static void check_store_action(json_t *errors, const char *where, const json_t *spec) {
    static const char *const fields[] = {"op", "bucket", "key", "data", NULL};
    char w[48];
    snprintf(w, sizeof w, "%s.store", where);
    if (!json_is_object(spec)) {
        add_err(errors, "%s: expected object {op, bucket, key?, data?}", w);
        return;
    }
    check_fields(errors, w, spec, fields);
    const char *op = json_string_value(json_object_get(spec, "op"));
    bool insert = op && strcmp(op, "insert") == 0, update = op && strcmp(op, "update") == 0,
         del = op && strcmp(op, "delete") == 0;
    if (!insert && !update && !del) add_err(errors, "%s.op: expected insert, update or delete", w);
    if (!is_nonempty_string(json_object_get(spec, "bucket")))
        add_err(errors, "%s.bucket: expected non-empty string", w);
    json_t *key = json_object_get(spec, "key");
    if ((update || del) && (!key || json_is_null(key)))
        add_err(errors, "%s.key: required for %s", w, op);
    if (insert || update) check_data(errors, w, json_object_get(spec, "data"), true);
}

static void check_action(size_t i, const json_t *a, json_t *errors) {
    char where[32];
    snprintf(where, sizeof where, "then[%zu]", i);
    if (!json_is_object(a)) {
        add_err(errors, "%s: expected object", where);
        return;
    }
    json_t *emit = json_object_get(a, "emit"), *set = json_object_get(a, "setFact"),
           *del = json_object_get(a, "deleteFact"), *store = json_object_get(a, "store");
    if ((emit != NULL) + (set != NULL) + (del != NULL) + (store != NULL) != 1) {
        add_err(errors, "%s: expected exactly one of emit, setFact, deleteFact, store", where);
        return;
    }
    char w[48];
    if (emit) {
        static const char *const fields[] = {"emit", "data", NULL};
        check_fields(errors, where, a, fields);
        snprintf(w, sizeof w, "%s.emit", where);
        check_name(errors, w, emit, '.', "topic");
        check_data(errors, where, json_object_get(a, "data"), false);
    } else if (set) {
        static const char *const fields[] = {"setFact", "value", NULL};
        check_fields(errors, where, a, fields);
        snprintf(w, sizeof w, "%s.setFact", where);
        check_name(errors, w, set, ':', "fact key");
        if (!json_object_get(a, "value")) add_err(errors, "%s.value: required", where);
    } else if (del) {
        static const char *const fields[] = {"deleteFact", NULL};
        check_fields(errors, where, a, fields);
        snprintf(w, sizeof w, "%s.deleteFact", where);
        check_name(errors, w, del, ':', "fact key");
    } else {
        static const char *const fields[] = {"store", NULL};
        check_fields(errors, where, a, fields);
        check_store_action(errors, where, store);
    }
}

/* ---- the rule ---- */

static void check_name_field(const json_t *name, json_t *errors) {
    if (!is_nonempty_string(name)) {
        add_err(errors, "name: expected non-empty string");
        return;
    }
    if (json_string_length(name) > RULES_MAX_NAME) {
        add_err(errors, "name: longer than %d bytes", RULES_MAX_NAME);
        return;
    }
    const char *s = json_string_value(name);
    for (size_t i = 0; i < json_string_length(name); i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            add_err(errors, "name: control characters are not allowed");
            return;
        }
}

/* Copies member `k` of src into dst (deep), or `dflt` (stolen) when absent. */
static json_t *copy_member(json_t *dst, const json_t *src, const char *k, json_t *dflt) {
    json_t *v = json_object_get(src, k);
    json_t *c = v ? json_deep_copy(v) : dflt;
    if (v) json_decref(dflt);
    if (c) json_object_set_new(dst, k, c);
    return c;
}

rule_t *rules_def_compile(const json_t *def, json_t *errors) {
    static const char *const fields[] = {"name", "enabled", "priority", "when", "if", "then", NULL};
    if (!json_is_object(def)) {
        add_err(errors, "rule: expected object");
        return NULL;
    }
    size_t before = json_array_size(errors);
    check_fields(errors, "rule", def, fields);

    rule_t *rule = xcalloc(1, sizeof *rule);
    json_t *norm = rule->def = json_object();

    json_t *name = copy_member(norm, def, "name", NULL);
    check_name_field(name, errors);

    json_t *enabled = copy_member(norm, def, "enabled", json_true());
    if (!json_is_boolean(enabled)) add_err(errors, "enabled: expected true or false");
    rule->enabled = json_is_true(enabled);

    json_t *prio = copy_member(norm, def, "priority", json_integer(0));
    double p = json_is_number(prio) ? json_number_value(prio) : NAN;
    if (!isfinite(p) || p != floor(p) || fabs(p) > PRIORITY_MAX) {
        add_err(errors, "priority: expected an integer between -1e9 and 1e9");
    } else {
        rule->priority = (int64_t)p;
        json_object_set_new(norm, "priority", json_integer(rule->priority));
    }

    json_t *when = copy_member(norm, def, "when", NULL);
    if (!when)
        add_err(errors, "when: required");
    else
        check_when(rule, when, errors);

    json_t *conds = copy_member(norm, def, "if", json_array());
    if (!json_is_array(conds)) {
        add_err(errors, "if: expected an array of conditions");
    } else if (json_array_size(conds) > RULES_MAX_CONDITIONS) {
        add_err(errors, "if: at most %d conditions", RULES_MAX_CONDITIONS);
    } else {
        rule->cond_count = json_array_size(conds);
        rule->conds = xcalloc(rule->cond_count ? rule->cond_count : 1, sizeof *rule->conds);
        for (size_t i = 0; i < rule->cond_count; i++)
            check_cond(&rule->conds[i], i, json_array_get(conds, i), errors);
    }

    json_t *then = copy_member(norm, def, "then", NULL);
    if (!then) {
        add_err(errors, "then: required");
    } else if (!json_is_array(then) || json_array_size(then) == 0) {
        add_err(errors, "then: expected a non-empty array of actions");
    } else if (json_array_size(then) > RULES_MAX_ACTIONS) {
        add_err(errors, "then: at most %d actions", RULES_MAX_ACTIONS);
    } else {
        for (size_t i = 0; i < json_array_size(then); i++)
            check_action(i, json_array_get(then, i), errors);
        rule->actions = then;
    }

    if (json_array_size(errors) > before) {
        rules_def_free(rule);
        return NULL;
    }
    rule->name = xstrdup(json_string_value(name));
    return rule;
}

void rules_def_free(rule_t *rule) {
    if (!rule) return;
    for (size_t i = 0; i < rule->cond_count; i++) pcre2_code_free(rule->conds[i].re);
    free(rule->conds);
    free(rule->name);
    json_decref(rule->def);
    free(rule);
}
