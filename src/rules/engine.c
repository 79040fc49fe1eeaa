/* Firing rules: trigger contexts, conditions, "{{path}}" interpolation and actions.
 *
 * A trigger (an event, a fact change or a store change) selects the enabled rules
 * whose `when` matches, in firing order; the context is built only when at least one
 * does. Each rule whose conditions all hold runs its actions in order, one level
 * deeper than the firing that caused the trigger (r->depth). A firing that would go
 * past RULES_MAX_DEPTH is skipped and logged, which is what ends a rule that emits
 * the very topic it listens to. A failing action is logged and counted; the actions
 * after it still run and nothing that triggered the rule is undone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "rules/rules_int.h"

/* ---- paths and placeholders ---- */

const json_t *rules_path_get(const json_t *ctx, const char *path, size_t len) {
    const json_t *v = ctx;
    size_t i = 0;
    while (v && i <= len) {
        size_t n = 0;
        while (i + n < len && path[i + n] != '.') n++;
        if (n == 0) return NULL;
        const char *seg = path + i;
        if (json_is_object(v)) {
            v = json_object_getn(v, seg, n);
        } else if (json_is_array(v)) {
            size_t idx = 0;
            for (size_t k = 0; k < n; k++) {
                if (seg[k] < '0' || seg[k] > '9' || idx > 1000000) return NULL;
                idx = idx * 10 + (size_t)(seg[k] - '0');
            }
            v = json_array_get(v, idx);
        } else {
            return NULL;
        }
        i += n + 1;
    }
    return v;
}

static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

bool rules_placeholder_only(const char *s, size_t n, const char **path, size_t *path_len) {
    if (n < 5 || memcmp(s, "{{", 2) != 0 || memcmp(s + n - 2, "}}", 2) != 0) return false;
    const char *p = s + 2;
    size_t pn = n - 4;
    /* "{{a}} {{b}}" starts and ends like one placeholder but is two. */
    for (size_t i = 0; i + 1 < pn; i++)
        if ((p[i] == '}' && p[i + 1] == '}') || (p[i] == '{' && p[i + 1] == '{')) return false;
    trim(&p, &pn);
    if (pn == 0) return false;
    if (path) *path = p;
    if (path_len) *path_len = pn;
    return true;
}

/* Appends a value as it reads inside text: strings bare, null and missing as nothing,
 * numbers and booleans as JSON, objects and arrays as their JSON text. */
static void text_append(buf_t *out, const json_t *v) {
    if (!v || json_is_null(v)) return;
    if (json_is_string(v))
        buf_append(out, json_string_value(v), json_string_length(v));
    else
        json_write(out, v);
}

/* Interpolates every placeholder of s into text. Returns 0, or -1 when the text would
 * pass RULES_MAX_TEXT. */
static int interp_text(const char *s, size_t n, const json_t *ctx, buf_t *out) {
    size_t i = 0;
    while (i < n) {
        const char *open = memmem(s + i, n - i, "{{", 2);
        const char *close = open ? memmem(open + 2, n - (size_t)(open + 2 - s), "}}", 2) : NULL;
        if (!close) {
            buf_append(out, s + i, n - i);
            break;
        }
        buf_append(out, s + i, (size_t)(open - (s + i)));
        const char *p = open + 2;
        size_t pn = (size_t)(close - p);
        trim(&p, &pn);
        text_append(out, pn ? rules_path_get(ctx, p, pn) : NULL);
        i = (size_t)(close + 2 - s);
        if (out->len > RULES_MAX_TEXT) return -1;
    }
    return out->len > RULES_MAX_TEXT ? -1 : 0;
}

/* Returns a new value: tmpl with every string interpolated. A string that is exactly
 * one placeholder becomes a copy of the value (null when missing). NULL with err set
 * when a string grows too long. */
static json_t *interp(const json_t *tmpl, const json_t *ctx, err_t *err) {
    if (json_is_string(tmpl)) {
        const char *s = json_string_value(tmpl), *path;
        size_t n = json_string_length(tmpl), pn;
        if (!memmem(s, n, "{{", 2)) return json_incref((json_t *)tmpl);
        if (rules_placeholder_only(s, n, &path, &pn)) {
            const json_t *v = rules_path_get(ctx, path, pn);
            return v ? json_deep_copy(v) : json_null();
        }
        buf_t b;
        buf_init(&b, 0);
        json_t *res = NULL;
        if (interp_text(s, n, ctx, &b) < 0)
            err_set(err, ERR_VALIDATION, "Interpolated text longer than %d bytes", RULES_MAX_TEXT);
        else
            res = json_stringn(b.data ? b.data : "", b.len);
        buf_cleanup(&b);
        if (!res && err->code == ERR_NONE)
            err_set(err, ERR_VALIDATION, "Interpolated text is not valid UTF-8");
        return res;
    }
    if (json_is_array(tmpl)) {
        json_t *res = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(tmpl, i, e) {
            json_t *c = interp(e, ctx, err);
            if (!c) {
                json_decref(res);
                return NULL;
            }
            json_array_append_new(res, c);
        }
        return res;
    }
    if (json_is_object(tmpl)) {
        json_t *res = json_object();
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)tmpl, k, e) {
            json_t *c = interp(e, ctx, err);
            if (!c) {
                json_decref(res);
                return NULL;
            }
            json_object_set_new(res, k, c);
        }
        return res;
    }
    return json_incref((json_t *)tmpl);
}

/* Interpolates a topic, key or bucket into an owned C string. Always text, even for a
 * lone placeholder: names are strings. */
static char *interp_name(const json_t *tmpl, const json_t *ctx, err_t *err) {
    buf_t b;
    buf_init(&b, 0);
    if (interp_text(json_string_value(tmpl), json_string_length(tmpl), ctx, &b) < 0 ||
        memchr(b.data ? b.data : "", '\0', b.len)) {
        err_set(err, ERR_VALIDATION, "Interpolated name is too long or holds a NUL");
        buf_cleanup(&b);
        return NULL;
    }
    return buf_take(&b, NULL);
}

/* ---- conditions ---- */

/* JSON equality where 1 and 1.0 are the same number, as in JavaScript. */
static bool value_eq(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b)) return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!value_eq(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            const json_t *w = json_object_get(b, k);
            if (!w || !value_eq(v, w)) return false;
        }
        return true;
    }
    default:
        return true; /* true, false, null */
    }
}

/* Orders two numbers or two strings: sets *cmp and returns true; other pairs have no
 * order and every comparison on them is false. */
static bool value_cmp(const json_t *a, const json_t *b, int *cmp) {
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        *cmp = (x > y) - (x < y);
        return true;
    }
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        *cmp = (x > y) - (x < y);
        return true;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t na = json_string_length(a), nb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), na < nb ? na : nb);
        *cmp = c ? (c > 0) - (c < 0) : (na > nb) - (na < nb);
        return true;
    }
    return false;
}

static bool regex_matches(rules_t *r, const rule_cond_t *c, const json_t *v) {
    if (!json_is_string(v)) return false;
    /* Running out of the backtracking budget counts as no match. */
    return regex_match(c->re, json_string_value(v), json_string_length(v), r->mdata, r->mctx);
}

static bool cond_holds(rules_t *r, const rule_cond_t *c, const json_t *ctx) {
    const json_t *v = NULL;
    if (c->path) {
        v = rules_path_get(ctx, c->path, strlen(c->path));
    } else {
        buf_t b;
        buf_init(&b, 0);
        if (interp_text(c->fact, strlen(c->fact), ctx, &b) == 0)
            v = rules_fact_peek(r, buf_cstr(&b));
        buf_cleanup(&b);
    }
    /* JSON has no "undefined": a missing value reads as null. */
    const json_t *actual = v ? v : json_null();
    int cmp;
    switch (c->op) {
    case COND_EQ:
        return value_eq(actual, c->value);
    case COND_NEQ:
        return !value_eq(actual, c->value);
    case COND_GT:
        return value_cmp(actual, c->value, &cmp) && cmp > 0;
    case COND_GTE:
        return value_cmp(actual, c->value, &cmp) && cmp >= 0;
    case COND_LT:
        return value_cmp(actual, c->value, &cmp) && cmp < 0;
    case COND_LTE:
        return value_cmp(actual, c->value, &cmp) && cmp <= 0;
    case COND_IN:
        for (size_t i = 0; i < json_array_size(c->value); i++)
            if (value_eq(actual, json_array_get(c->value, i))) return true;
        return false;
    case COND_EXISTS:
        return !json_is_null(actual);
    case COND_NOT_EXISTS:
        return json_is_null(actual);
    case COND_MATCHES:
        return regex_matches(r, c, actual);
    }
    return false;
}

/* ---- actions ---- */

static int action_emit(rules_t *r, const json_t *a, const json_t *ctx, const rules_chain_t *chain,
                       err_t *err) {
    char *topic = interp_name(json_object_get(a, "emit"), ctx, err);
    if (!topic) return -1;
    json_t *tmpl = json_object_get(a, "data");
    json_t *data = tmpl ? interp(tmpl, ctx, err) : json_object();
    int rc = -1;
    if (data) {
        rc = rules_events_emit(r, topic, data, chain->correlation_id, chain->causation_id, NULL,
                               err);
    }
    json_decref(data);
    free(topic);
    return rc;
}

static int action_set_fact(rules_t *r, const json_t *a, const json_t *ctx, err_t *err) {
    char *key = interp_name(json_object_get(a, "setFact"), ctx, err);
    if (!key) return -1;
    json_t *value = interp(json_object_get(a, "value"), ctx, err);
    int rc = value ? rules_set_fact(r, key, value, NULL, err) : -1;
    json_decref(value);
    free(key);
    return rc;
}

static int action_delete_fact(rules_t *r, const json_t *a, const json_t *ctx, err_t *err) {
    char *key = interp_name(json_object_get(a, "deleteFact"), ctx, err);
    if (!key) return -1;
    int rc = rules_delete_fact(r, key, NULL, err);
    free(key);
    return rc;
}

static int action_store(rules_t *r, const json_t *a, const json_t *ctx, err_t *err) {
    const json_t *spec = json_object_get(a, "store");
    char *bucket = interp_name(json_object_get(spec, "bucket"), ctx, err);
    if (!bucket) return -1;
    json_t *req = json_object();
    json_object_set_new(req, "bucket", json_string(bucket));
    free(bucket);
    int rc = -1;
    static const char *const fields[] = {"key", "data"};
    for (size_t i = 0; i < 2; i++) {
        const json_t *tmpl = json_object_get(spec, fields[i]);
        if (!tmpl) continue;
        json_t *v = interp(tmpl, ctx, err);
        if (!v) goto out;
        json_object_set_new(req, fields[i], v);
    }
    buf_t result;
    buf_init(&result, 0);
    rc = store_execute(r->store, json_string_value(json_object_get(spec, "op")), req, &result, err);
    buf_cleanup(&result);
out:
    json_decref(req);
    return rc;
}

static int action_run(rules_t *r, const json_t *a, const json_t *ctx, const rules_chain_t *chain,
                      err_t *err) {
    if (json_object_get(a, "emit")) return action_emit(r, a, ctx, chain, err);
    if (json_object_get(a, "setFact")) return action_set_fact(r, a, ctx, err);
    if (json_object_get(a, "deleteFact")) return action_delete_fact(r, a, ctx, err);
    return action_store(r, a, ctx, err);
}

/* ---- firing ---- */

static bool trigger_matches(const rule_t *rule, trigger_kind_t kind, const char *subject,
                            unsigned op) {
    if (!rule->enabled || rule->kind != kind) return false;
    switch (kind) {
    case TRIGGER_EVENT:
        return rules_topic_match(rule->pattern, subject);
    case TRIGGER_FACT:
        return rules_fact_match(rule->pattern, subject);
    case TRIGGER_STORE:
        return (rule->ops & op) && strcmp(rule->pattern, subject) == 0;
    }
    return false;
}

bool rules_engine_has_trigger(const rules_t *r, trigger_kind_t kind, const char *subject, unsigned op) {
    for (size_t i = 0; i < r->rule_count; i++)
        if (trigger_matches(r->sorted[i], kind, subject, op)) return true;
    return false;
}

rule_t **rules_engine_candidates(rules_t *r, trigger_kind_t kind, const char *subject, unsigned op,
                                 size_t *count_out) {
    r->counters.events_processed++;
    rule_t **cands = NULL;
    size_t n = 0;
    for (size_t i = 0; i < r->rule_count; i++) {
        rule_t *rule = r->sorted[i];
        if (!trigger_matches(rule, kind, subject, op)) continue;
        if (!cands) cands = xmalloc((r->rule_count - i) * sizeof *cands);
        cands[n++] = rule;
    }
    *count_out = n;
    return cands;
}

static void fire_one(rules_t *r, rule_t *rule, const json_t *ctx, const rules_chain_t *chain) {
    for (size_t i = 0; i < rule->cond_count; i++)
        if (!cond_holds(r, &rule->conds[i], ctx)) return;
    if (r->depth >= RULES_MAX_DEPTH) {
        r->counters.depth_exceeded++;
        char name[RULES_MAX_NAME + 8];
        log_warn("rules.depth_exceeded", "rule=%s depth=%d",
                 log_quote(rule->name, name, sizeof name), r->depth + 1);
        return;
    }
    r->counters.rules_fired++;
    const rules_chain_t *saved = r->chain;
    r->chain = chain;
    r->depth++;
    size_t n = json_array_size(rule->actions);
    for (size_t i = 0; i < n; i++) {
        err_t err = ERR_INIT;
        if (action_run(r, json_array_get(rule->actions, i), ctx, chain, &err) < 0) {
            r->counters.actions_failed++;
            char name[RULES_MAX_NAME + 8], msg[ERR_MSG_MAX + 8];
            log_warn("rules.action_failed", "rule=%s action=%zu code=%s error=%s",
                     log_quote(rule->name, name, sizeof name), i, err_code_name(err.code),
                     log_quote(err.msg, msg, sizeof msg));
        }
        err_clear(&err);
    }
    r->depth--;
    r->chain = saved;
}

void rules_engine_fire(rules_t *r, rule_t **cands, size_t count, const json_t *ctx,
                       const rules_chain_t *chain) {
    static const rules_chain_t none = {NULL, NULL};
    for (size_t i = 0; i < count; i++) fire_one(r, cands[i], ctx, chain ? chain : &none);
    free(cands);
}

/* ---- store triggers ---- */

static unsigned change_op(change_kind_t kind, const char **name) {
    switch (kind) {
    case CHANGE_INSERT:
        *name = "insert";
        return OP_INSERT;
    case CHANGE_UPDATE:
        *name = "update";
        return OP_UPDATE;
    case CHANGE_DELETE:
        *name = "delete";
        return OP_DELETE;
    }
    *name = "?";
    return 0;
}

bool rules_engine_wants_change(void *udata, const char *bucket, change_kind_t kind) {
    rules_t *r = udata;
    const char *name;
    return rules_engine_has_trigger(r, TRIGGER_STORE, bucket, change_op(kind, &name));
}

void rules_engine_on_changes(void *udata, const store_changeset_t *cs) {
    rules_t *r = udata;
    for (size_t i = 0; i < cs->count; i++) {
        const store_change_t *ch = &cs->changes[i];
        const char *op;
        unsigned bit = change_op(ch->kind, &op);
        size_t n;
        rule_t **cands = rules_engine_candidates(r, TRIGGER_STORE, ch->bucket, bit, &n);
        if (!n) continue;
        json_t *ctx = json_object();
        json_object_set_new_nocheck(ctx, "bucket", json_stringn_nocheck(ch->bucket, strlen(ch->bucket)));
        json_object_set_new_nocheck(ctx, "op", json_stringn_nocheck(op, strlen(op)));
        json_object_set_nocheck(ctx, "key", ch->key ? (json_t *)ch->key : json_null());
        json_object_set_nocheck(ctx, "record", ch->after ? (json_t *)ch->after : json_null());
        json_object_set_nocheck(ctx, "previous", ch->before ? (json_t *)ch->before : json_null());
        /* A store write made by a rule's action continues that action's chain. */
        rules_engine_fire(r, cands, n, ctx, r->chain);
        json_decref(ctx);
    }
}
