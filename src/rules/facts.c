/* Facts: named JSON values with ':'-separated keys (spec §5).
 *
 * The table lives in memory (a strmap of key → value) and is written through to
 * _shopd_facts before the memory changes, so what reads see is what a restart loads.
 * Values are copied on the way in and never modified afterwards: a trigger context
 * can hold a reference to one while an action replaces the fact. Every set and every
 * delete of an existing fact is offered to the rules with `when.fact` patterns. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "rules/rules_int.h"

static int key_check(const char *key, err_t *err) {
    if (!key || !*key) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"key\": expected non-empty string");
        return -1;
    }
    if (strlen(key) > RULES_MAX_KEY) {
        err_set(err, ERR_VALIDATION, "Invalid \"key\": longer than %d bytes", RULES_MAX_KEY);
        return -1;
    }
    if (!rules_name_ok(key, ':', false)) {
        err_set(err, ERR_VALIDATION,
                "Invalid \"key\": expected ':'-separated non-empty segments without '*'");
        return -1;
    }
    return 0;
}

int rules_facts_load(rules_t *r, err_t *err) {
    db_stmt_t *q = db_prepare(r->db, "SELECT key, value FROM _shopd_facts", err);
    if (!q) return -1;
    db_step_t rc;
    while ((rc = db_step(q, err)) == DB_ROW) {
        size_t kn, vn;
        const char *k = db_column_text(q, 0, &kn);
        const char *v = db_column_text(q, 1, &vn);
        json_error_t jerr;
        json_t *value = v ? json_loadb(v, vn, JSON_DECODE_ANY, &jerr) : NULL;
        if (!k || !value) {
            log_warn("rules.fact_skipped", "reason=%s", "unreadable row");
            continue;
        }
        char *key = xstrndup(k, kn);
        json_decref(strmap_put(&r->facts, key, value));
        free(key);
    }
    db_done(q);
    return rc == DB_ERROR ? -1 : 0;
}

void rules_facts_cleanup(rules_t *r) {
    size_t it = 0;
    void *v;
    while (strmap_next(&r->facts, &it, NULL, &v)) json_decref(v);
    strmap_cleanup(&r->facts);
}

const json_t *rules_fact_peek(const rules_t *r, const char *key) {
    return key ? strmap_get(&r->facts, key) : NULL;
}

/* Offers a fact change to the rules; `value` NULL for a delete. */
static void fact_changed(rules_t *r, const char *key, json_t *value, json_t *previous) {
    size_t n;
    rule_t **cands = rules_engine_candidates(r, TRIGGER_FACT, key, 0, &n);
    if (!n) return;
    json_t *fact = json_object();
    json_object_set_new(fact, "key", json_string(key));
    json_object_set(fact, "value", value ? value : json_null());
    json_object_set(fact, "previous", previous ? previous : json_null());
    json_t *ctx = json_object();
    json_object_set_new(ctx, "fact", fact);
    /* A fact set by a rule's action continues that action's chain. */
    rules_engine_fire(r, cands, n, ctx, r->chain);
    json_decref(ctx);
}

int rules_set_fact(rules_t *r, const char *key, const json_t *value, buf_t *out, err_t *err) {
    if (key_check(key, err) < 0) return -1;
    if (!value) {
        err_set(err, ERR_VALIDATION, "Missing \"value\": expected a JSON value");
        return -1;
    }
    int rc = -1;
    buf_t text;
    buf_init(&text, 0);
    json_write(&text, value);
    if (text.len > RULES_MAX_FACT_VALUE) {
        err_set(err, ERR_VALIDATION, "Fact value too large (at most %d bytes serialised)",
                RULES_MAX_FACT_VALUE);
        goto out;
    }
    json_t *old = strmap_get(&r->facts, key);
    if (!old && r->facts.count >= RULES_MAX_FACTS) {
        err_set(err, ERR_VALIDATION, "Too many facts (at most %d)", RULES_MAX_FACTS);
        goto out;
    }
    if (store_write_begin(r->store, err) < 0) goto out;
    db_stmt_t *q =
        db_prepare(r->db,
                   "INSERT INTO _shopd_facts(key, value, updated_at) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                   "updated_at = excluded.updated_at",
                   err);
    if (!q) goto out;
    db_bind_text(q, 1, key, strlen(key));
    db_bind_text(q, 2, text.data, text.len);
    db_bind_int(q, 3, clock_now_ms());
    db_step_t st = db_step(q, err);
    db_done(q);
    if (st == DB_ERROR) {
        log_error("rules.fact_write_failed", "error=%s", db_last_error(r->db));
        err_set(err, ERR_INTERNAL, "Could not store the fact");
        goto out;
    }
    json_t *copy = json_deep_copy(value);
    strmap_put(&r->facts, key, copy);
    if (out) {
        buf_append_str(out, "{\"key\":");
        json_write_string(out, key, strlen(key));
        buf_append_str(out, ",\"value\":");
        buf_append(out, text.data, text.len);
        buf_append_char(out, '}');
    }
    rc = 0;
    /* The map let go of `old`; the trigger context still needs it as `previous`. */
    fact_changed(r, key, copy, old);
    json_decref(old);
out:
    buf_cleanup(&text);
    return rc;
}

int rules_get_fact(rules_t *r, const char *key, buf_t *out, err_t *err) {
    if (key_check(key, err) < 0) return -1;
    json_write(out, strmap_get(&r->facts, key));
    return 0;
}

int rules_delete_fact(rules_t *r, const char *key, buf_t *out, err_t *err) {
    if (key_check(key, err) < 0) return -1;
    json_t *old = strmap_get(&r->facts, key);
    if (!old) {
        if (out) buf_append_str(out, "{\"deleted\":false}");
        return 0;
    }
    if (store_write_begin(r->store, err) < 0) return -1;
    db_stmt_t *q = db_prepare(r->db, "DELETE FROM _shopd_facts WHERE key = ?1", err);
    if (!q) return -1;
    db_bind_text(q, 1, key, strlen(key));
    db_step_t st = db_step(q, err);
    db_done(q);
    if (st == DB_ERROR) {
        log_error("rules.fact_write_failed", "error=%s", db_last_error(r->db));
        err_set(err, ERR_INTERNAL, "Could not delete the fact");
        return -1;
    }
    strmap_del(&r->facts, key);
    if (out) buf_append_str(out, "{\"deleted\":true}");
    fact_changed(r, key, NULL, old);
    json_decref(old);
    return 0;
}

/* ---- listing ---- */

typedef struct {
    const char *key;
    const json_t *value;
} fact_ref_t;

static int fact_ref_cmp(const void *a, const void *b) {
    return strcmp(((const fact_ref_t *)a)->key, ((const fact_ref_t *)b)->key);
}

/* Appends [{"key","value"},…] of the facts matching pattern (all when NULL), by key. */
static void facts_list(rules_t *r, const char *pattern, buf_t *out) {
    fact_ref_t *refs = xmalloc((r->facts.count ? r->facts.count : 1) * sizeof *refs);
    size_t n = 0, it = 0;
    const char *k;
    void *v;
    while (strmap_next(&r->facts, &it, &k, &v))
        if (!pattern || rules_fact_match(pattern, k)) refs[n++] = (fact_ref_t){k, v};
    qsort(refs, n, sizeof *refs, fact_ref_cmp);
    buf_append_char(out, '[');
    for (size_t i = 0; i < n; i++) {
        buf_append_str(out, i ? ",{\"key\":" : "{\"key\":");
        json_write_string(out, refs[i].key, strlen(refs[i].key));
        buf_append_str(out, ",\"value\":");
        json_write(out, refs[i].value);
        buf_append_char(out, '}');
    }
    buf_append_char(out, ']');
    free(refs);
}

int rules_query_facts(rules_t *r, const char *pattern, buf_t *out, err_t *err) {
    if (!pattern || !*pattern) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"pattern\": expected non-empty string");
        return -1;
    }
    if (!rules_name_ok(pattern, ':', true)) {
        err_set(err, ERR_VALIDATION,
                "Invalid \"pattern\": expected ':'-separated non-empty segments (at most %d "
                "bytes), '*' for any one segment",
                RULES_MAX_KEY);
        return -1;
    }
    facts_list(r, pattern, out);
    return 0;
}

void rules_all_facts(rules_t *r, buf_t *out) {
    facts_list(r, NULL, out);
}
