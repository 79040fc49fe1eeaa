/* Facts: named JSON values with ':'-separated keys (spec §5).
 *
 * _shopd_facts holds the facts; memory holds a cache of the values read and written
 * lately, at most RULES_FACT_CACHE keys, emptied when full (like the store's record
 * cache), absent keys included. A shop sets a fact for every order it takes
 * (order:<id>:status): held wholly in memory, as before 0.5.0, they grew by 150–200
 * bytes per order for good, and past 100 000 facts every new one was refused. Writes go
 * to the table first, in the store's group commit, then to the cache, so what reads see
 * is what a restart finds; when a batch fails, the cache is emptied (rules_facts_forget).
 * Values are copied on the way in and never modified afterwards: a trigger context can
 * hold a reference to one while an action replaces the fact. Every set and every delete
 * of an existing fact is offered to the rules with `when.fact` patterns. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "rules/rules_int.h"

/* Stored values are read with the project's JSON reader, as deep as jansson's reader
 * (which read them until 0.5.0) allowed. */
#define RULES_FACT_MAX_DEPTH 2048

/* The cache's value for a key known to have no fact. */
static char absent_mark;
#define ABSENT ((void *)&absent_mark)

/* Empties the cache; the map stays usable (strmap_cleanup leaves an empty one). */
static void cache_clear(rules_t *r) {
    size_t it = 0;
    void *v;
    while (strmap_next(&r->facts, &it, NULL, &v))
        if (v != ABSENT) json_decref(v);
    strmap_cleanup(&r->facts);
}

/* Caches `value` (taken; ABSENT for none) under key. */
static void cache_put(rules_t *r, const char *key, void *value) {
    if (!strmap_get(&r->facts, key) && r->facts.count >= RULES_FACT_CACHE) cache_clear(r);
    void *old = strmap_put(&r->facts, key, value);
    if (old && old != ABSENT) json_decref(old);
}

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

static int count_facts(rules_t *r, err_t *err) {
    db_stmt_t *q = db_prepare(r->db, "SELECT count(*) FROM _shopd_facts", err);
    if (!q) return -1;
    db_step_t rc = db_step(q, err);
    if (rc == DB_ROW) {
        r->fact_count = (size_t)db_column_int(q, 0);
        atomic_store(&r->facts_added, 0); /* (db_prepare has waited for every queued write) */
    }
    db_done(q);
    return rc == DB_ROW ? 0 : -1;
}

size_t rules_fact_count(rules_t *r) {
    db_drain(r->db); /* the inserts queued so far have counted what they added */
    return (size_t)((long long)r->fact_count + atomic_load(&r->facts_added));
}

int rules_facts_load(rules_t *r, err_t *err) { return count_facts(r, err); }

void rules_facts_forget(rules_t *r) {
    cache_clear(r);
    err_t err = ERR_INIT;
    if (count_facts(r, &err) < 0) log_warn("rules.fact_count_failed", "error=\"%s\"", err.msg);
    err_clear(&err);
}

void rules_facts_cleanup(rules_t *r) { cache_clear(r); }

const json_t *rules_fact_peek(rules_t *r, const char *key) {
    if (!key) return NULL;
    void *v = strmap_get(&r->facts, key);
    if (v) return v == ABSENT ? NULL : v;
    err_t err = ERR_INIT;
    json_t *value = NULL;
    db_stmt_t *q = db_prepare(r->db, "SELECT value FROM _shopd_facts WHERE key = ?1", &err);
    if (q) {
        db_bind_text(q, 1, key, strlen(key));
        if (db_step(q, &err) == DB_ROW) {
            size_t n;
            const char *text = db_column_text(q, 0, &n);
            value = text ? json_parse(text, n, RULES_FACT_MAX_DEPTH, NULL) : NULL;
            if (!value) log_warn("rules.fact_unreadable", "key=%s", key);
        }
        db_done(q);
    }
    if (err.code != ERR_NONE) { /* not cached: the next read tries again */
        log_warn("rules.fact_read_failed", "key=%s error=\"%s\"", key, err.msg);
        err_clear(&err);
        json_decref(value);
        return NULL;
    }
    cache_put(r, key, value ? value : ABSENT);
    return value;
}

/* A new reference to the fact's value when a `when.fact` rule will be told of a change
 * to key (it gets the value as `previous`), else NULL without reading it. */
static json_t *previous_for_rules(rules_t *r, const char *key) {
    if (!rules_engine_has_trigger(r, TRIGGER_FACT, key, 0)) return NULL;
    return json_incref((json_t *)rules_fact_peek(r, key));
}

/* Runs `sql` (?1 key, ?2 value text, ?3 now) in the store's batch, adding the rows it
 * changed to *rows (if given). `queued`: nobody needs the answer now, so the database's
 * writer thread may run it; otherwise it runs at once and *changed gets that number. */
static int fact_write(rules_t *r, const char *sql, const char *key, const buf_t *text, int64_t now, bool queued,
                      atomic_llong *rows, int *changed, err_t *err) {
    if (store_write_begin(r->store, err) < 0) return -1;
    db_stmt_t *q = queued ? db_prepare_queued(r->db, sql, err) : db_prepare(r->db, sql, err);
    if (!q) return -1;
    db_bind_text(q, 1, key, strlen(key));
    if (text) {
        db_bind_text(q, 2, text->data, text->len);
        db_bind_int(q, 3, now);
    }
    if (db_is_queued(q)) {
        if (rows) db_submit_counting(q, rows);
        else db_submit(q, -1);
        return 0;
    }
    db_step_t st = db_step(q, err);
    db_done(q);
    if (st == DB_ERROR) {
        log_error("rules.fact_write_failed", "error=%s", db_last_error(r->db));
        err_clear(err);
        err_set(err, ERR_INTERNAL, "Could not store the fact");
        return -1;
    }
    int n = db_changes(r->db);
    if (rows) atomic_fetch_add(rows, n);
    if (changed) *changed = n;
    return 0;
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
    json_t *previous = NULL;
    buf_t text;
    buf_init(&text, 0);
    json_write(&text, value);
    if (text.len > RULES_MAX_FACT_VALUE) {
        err_set(err, ERR_VALIDATION, "Fact value too large (at most %d bytes serialised)",
                RULES_MAX_FACT_VALUE);
        goto out;
    }
    previous = previous_for_rules(r, key);
    /* Neither needs an answer, so the database's writer thread may run both: the insert
     * counts the facts it adds, and the update changes a row only when the key was
     * there before (a row the insert just wrote has this value and time already). */
    int64_t now = clock_now_ms();
    if (fact_write(r, "INSERT OR IGNORE INTO _shopd_facts(key, value, updated_at) VALUES (?1, ?2, ?3)", key,
                   &text, now, true, &r->facts_added, NULL, err) < 0 ||
        fact_write(r,
                   "UPDATE _shopd_facts SET value = ?2, updated_at = ?3"
                   " WHERE key = ?1 AND (value IS NOT ?2 OR updated_at IS NOT ?3)",
                   key, &text, now, true, NULL, NULL, err) < 0)
        goto out;
    json_t *copy = json_deep_copy(value);
    cache_put(r, key, json_incref(copy));
    if (out) {
        buf_append_str(out, "{\"key\":");
        json_write_string(out, key, strlen(key));
        buf_append_str(out, ",\"value\":");
        buf_append(out, text.data, text.len);
        buf_append_char(out, '}');
    }
    rc = 0;
    fact_changed(r, key, copy, previous);
    json_decref(copy);
out:
    json_decref(previous);
    buf_cleanup(&text);
    return rc;
}

int rules_get_fact(rules_t *r, const char *key, buf_t *out, err_t *err) {
    if (key_check(key, err) < 0) return -1;
    json_write(out, rules_fact_peek(r, key));
    return 0;
}

int rules_delete_fact(rules_t *r, const char *key, buf_t *out, err_t *err) {
    if (key_check(key, err) < 0) return -1;
    json_t *previous = previous_for_rules(r, key);
    int changed;
    if (fact_write(r, "DELETE FROM _shopd_facts WHERE key = ?1", key, NULL, 0, false, NULL, &changed, err) < 0) {
        json_decref(previous);
        return -1;
    }
    cache_put(r, key, ABSENT);
    if (out) buf_append_str(out, changed ? "{\"deleted\":true}" : "{\"deleted\":false}");
    if (changed) {
        atomic_fetch_sub(&r->facts_added, 1); /* (fact_count stays what was counted) */
        fact_changed(r, key, NULL, previous);
    }
    json_decref(previous);
    return 0;
}

/* ---- listing ---- */

/* Appends [{"key","value"},…] of the facts matching pattern (all when NULL), by key.
 * The rows come from the table in key order. A pattern without '*' is one key; one
 * whose first '*' comes after some segments reads only the keys that start with those
 * segments: from "order:" up to, not including, "order;" (':' + 1). */
static int facts_list(rules_t *r, const char *pattern, buf_t *out, err_t *err) {
    const char *star = pattern ? strchr(pattern, '*') : NULL; /* always a whole segment */
    size_t prefix = !pattern ? 0 : star ? (size_t)(star - pattern) : strlen(pattern);
    const char *sql = "SELECT key, value FROM _shopd_facts ORDER BY key";
    if (prefix && !star) sql = "SELECT key, value FROM _shopd_facts WHERE key = ?1";
    if (prefix && star) sql = "SELECT key, value FROM _shopd_facts WHERE key >= ?1 AND key < ?2 ORDER BY key";
    db_stmt_t *q = db_prepare(r->db, sql, err);
    if (!q) return -1;
    if (prefix) db_bind_text(q, 1, pattern, prefix);
    if (prefix && star) {
        char *upper = xstrndup(pattern, prefix); /* ends in ':' */
        upper[prefix - 1]++;
        db_bind_text(q, 2, upper, prefix);
        free(upper);
    }
    size_t mark = out->len;
    buf_append_char(out, '[');
    bool first = true;
    db_step_t rc;
    while ((rc = db_step(q, err)) == DB_ROW) {
        size_t kn, vn;
        const char *k = db_column_text(q, 0, &kn);
        const char *v = db_column_text(q, 1, &vn);
        if (!k || !v || (pattern && !rules_fact_match(pattern, k))) continue;
        buf_append_str(out, first ? "{\"key\":" : ",{\"key\":");
        json_write_string(out, k, kn);
        buf_append_str(out, ",\"value\":");
        buf_append(out, v, vn);
        buf_append_char(out, '}');
        first = false;
    }
    db_done(q);
    if (rc == DB_ERROR) {
        out->len = mark;
        return -1;
    }
    buf_append_char(out, ']');
    return 0;
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
    return facts_list(r, pattern, out, err);
}

int rules_all_facts(rules_t *r, buf_t *out, err_t *err) { return facts_list(r, NULL, out, err); }
