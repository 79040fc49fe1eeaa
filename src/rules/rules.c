/* The rules engine object, rule administration and stats (see rules.h).
 *
 * Rules are kept by name and, for firing, in one array sorted by priority (higher
 * first) and then by registration order; the array is rebuilt after each change,
 * which is cheap at RULES_MAX_RULES. Definitions are written to _shopd_rules as their
 * normalised JSON with their registration position, and loaded back in that order. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "rules/rules_int.h"

/* ---- the sorted list ---- */

static int rule_order(const void *a, const void *b) {
    const rule_t *x = *(rule_t *const *)a, *y = *(rule_t *const *)b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return (x->position > y->position) - (x->position < y->position);
}

static void rules_resort(rules_t *r) {
    r->rule_count = r->by_name.count;
    r->sorted = xrealloc(r->sorted, (r->rule_count ? r->rule_count : 1) * sizeof *r->sorted);
    size_t n = 0, it = 0;
    void *v;
    r->enabled_count = 0;
    while (strmap_next(&r->by_name, &it, NULL, &v)) {
        rule_t *rule = v;
        r->sorted[n++] = rule;
        r->enabled_count += rule->enabled;
    }
    qsort(r->sorted, n, sizeof *r->sorted, rule_order);
}

/* ---- persistence ---- */

static int rule_save(rules_t *r, const rule_t *rule, err_t *err) {
    buf_t text;
    buf_init(&text, 0);
    json_write(&text, rule->def);
    db_stmt_t *q = db_prepare(r->db,
                              "INSERT INTO _shopd_rules(name, definition, position, created_at) "
                              "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
                              "definition = excluded.definition, position = excluded.position",
                              err);
    int rc = -1;
    if (q) {
        db_bind_text(q, 1, rule->name, strlen(rule->name));
        db_bind_text(q, 2, text.data, text.len);
        db_bind_int(q, 3, rule->position);
        db_bind_int(q, 4, clock_now_ms());
        rc = db_step(q, err) == DB_ERROR ? -1 : 0;
        db_done(q);
    }
    buf_cleanup(&text);
    if (rc < 0) {
        log_error("rules.rule_write_failed", "error=%s", db_last_error(r->db));
        err_set(err, ERR_INTERNAL, "Could not store the rule");
    }
    return rc;
}

static int rule_erase(rules_t *r, const char *name, err_t *err) {
    db_stmt_t *q = db_prepare(r->db, "DELETE FROM _shopd_rules WHERE name = ?1", err);
    if (!q) return -1;
    db_bind_text(q, 1, name, strlen(name));
    int rc = db_step(q, err) == DB_ERROR ? -1 : 0;
    db_done(q);
    if (rc < 0) {
        log_error("rules.rule_write_failed", "error=%s", db_last_error(r->db));
        err_set(err, ERR_INTERNAL, "Could not remove the rule");
    }
    return rc;
}

static int rules_load(rules_t *r, err_t *err) {
    db_stmt_t *q = db_prepare(
        r->db, "SELECT name, definition, position FROM _shopd_rules ORDER BY position", err);
    if (!q) return -1;
    db_step_t rc;
    while ((rc = db_step(q, err)) == DB_ROW) {
        size_t n;
        const char *text = db_column_text(q, 1, &n);
        int64_t position = db_column_int(q, 2);
        json_t *def = text ? json_loadb(text, n, 0, NULL) : NULL;
        json_t *errors = json_array();
        rule_t *rule = def ? rules_def_compile(def, errors) : NULL;
        if (rule && !strmap_get(&r->by_name, rule->name)) {
            rule->position = position;
            if (position >= r->next_position) r->next_position = position + 1;
            strmap_put(&r->by_name, rule->name, rule);
        } else {
            const char *name = db_column_text(q, 0, &n);
            char qname[RULES_MAX_NAME + 8];
            log_warn("rules.rule_skipped", "rule=%s reason=%s",
                     log_quote(name, qname, sizeof qname), "invalid stored definition");
            rules_def_free(rule);
        }
        json_decref(errors);
        json_decref(def);
    }
    db_done(q);
    rules_resort(r);
    return rc == DB_ERROR ? -1 : 0;
}

/* ---- lifecycle ---- */

rules_t *rules_new(store_t *st, const rules_config_t *cfg, rules_deliver_fn deliver, err_t *err) {
    rules_t *r = xcalloc(1, sizeof *r);
    r->store = st;
    r->db = store_db(st);
    r->deliver = deliver;
    r->event_log_max = cfg && cfg->event_log_max ? cfg->event_log_max : RULES_DEFAULT_EVENT_LOG_MAX;
    strmap_init(&r->facts);
    strmap_init(&r->groups);
    strmap_init(&r->by_name);
    r->next_position = 1;
    r->mctx = pcre2_match_context_create(NULL);
    r->mdata = pcre2_match_data_create(1, NULL);
    if (!r->mctx || !r->mdata) abort();
    pcre2_set_match_limit(r->mctx, RULES_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mctx, RULES_DEPTH_LIMIT);
    if (rules_facts_load(r, err) < 0 || rules_events_load(r, err) < 0 || rules_load(r, err) < 0) {
        err_prefix(err, "rules: ");
        rules_free(r);
        return NULL;
    }
    store_listen(st, rules_engine_on_changes, rules_engine_wants_change, r);
    return r;
}

void rules_free(rules_t *r) {
    if (!r) return;
    store_unlisten(r->store, rules_engine_on_changes, r);
    rules_facts_cleanup(r);
    rules_events_cleanup(r);
    size_t it = 0;
    void *v;
    while (strmap_next(&r->by_name, &it, NULL, &v)) rules_def_free(v);
    strmap_cleanup(&r->by_name);
    free(r->sorted);
    pcre2_match_context_free(r->mctx);
    pcre2_match_data_free(r->mdata);
    free(r);
}

/* ---- administration ---- */

static int name_check(const char *name, err_t *err) {
    if (!name || !*name) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"name\": expected non-empty string");
        return -1;
    }
    return 0;
}

static rule_t *rule_find(rules_t *r, const char *name, err_t *err) {
    if (name_check(name, err) < 0) return NULL;
    rule_t *rule = strmap_get(&r->by_name, name);
    if (!rule) err_set(err, ERR_NOT_FOUND, "Rule \"%.200s\" not found", name);
    return rule;
}

/* Compiles def; a bad one → VALIDATION_ERROR "Invalid rule: <first problem>" with
 * details {"errors": [every problem]}. */
static rule_t *rule_compile(const json_t *def, err_t *err) {
    json_t *errors = json_array();
    rule_t *rule = rules_def_compile(def, errors);
    if (!rule) {
        size_t n = json_array_size(errors);
        if (n > 1)
            err_set(err, ERR_VALIDATION, "Invalid rule: %s (and %zu more)",
                    json_string_value(json_array_get(errors, 0)), n - 1);
        else
            err_set(err, ERR_VALIDATION, "Invalid rule: %s",
                    json_string_value(json_array_get(errors, 0)));
        err_details_take(err, json_pack("{so}", "errors", errors));
        return NULL;
    }
    json_decref(errors);
    return rule;
}

/* Puts a compiled rule in place of `old` (same name) or as a new one; persists it
 * first. Takes `rule` in every case. */
static int rule_install(rules_t *r, rule_t *rule, rule_t *old, err_t *err) {
    if (old) {
        rule->position = old->position;
    } else {
        if (r->by_name.count >= RULES_MAX_RULES) {
            err_set(err, ERR_VALIDATION, "Too many rules (at most %d)", RULES_MAX_RULES);
            rules_def_free(rule);
            return -1;
        }
        rule->position = r->next_position;
    }
    if (rule_save(r, rule, err) < 0) {
        rules_def_free(rule);
        return -1;
    }
    if (!old) r->next_position++;
    strmap_put(&r->by_name, rule->name, rule);
    rules_def_free(old);
    rules_resort(r);
    return 0;
}

int rules_load_config(rules_t *r, const json_t *rules, err_t *err) {
    if (!rules) return 0;
    if (!json_is_array(rules)) {
        err_set(err, ERR_VALIDATION, "rules: expected an array of rules");
        return -1;
    }
    size_t i;
    json_t *def;
    json_array_foreach(rules, i, def) {
        rule_t *rule = rule_compile(def, err);
        if (!rule || rule_install(r, rule, strmap_get(&r->by_name, rule->name), err) < 0) {
            err_prefix(err, "rules[%zu]: ", i);
            return -1;
        }
    }
    return 0;
}

int rules_register(rules_t *r, const json_t *def, buf_t *out, err_t *err) {
    rule_t *rule = rule_compile(def, err);
    if (!rule) return -1;
    if (strmap_get(&r->by_name, rule->name)) {
        err_set(err, ERR_ALREADY_EXISTS, "Rule \"%.200s\" already exists", rule->name);
        rules_def_free(rule);
        return -1;
    }
    if (rule_install(r, rule, NULL, err) < 0) return -1;
    json_write(out, rule->def);
    return 0;
}

int rules_unregister(rules_t *r, const char *name, buf_t *out, err_t *err) {
    rule_t *rule = rule_find(r, name, err);
    if (!rule || rule_erase(r, name, err) < 0) return -1;
    strmap_del(&r->by_name, name);
    rules_resort(r);
    buf_append_str(out, "{\"name\":");
    json_write_string(out, rule->name, strlen(rule->name));
    buf_append_str(out, ",\"unregistered\":true}");
    rules_def_free(rule);
    return 0;
}

/* The members given in `changes` replace the rule's; the rest stay, so both a whole
 * definition and a partial one ({"priority": 5}) work. */
int rules_update(rules_t *r, const char *name, const json_t *changes, buf_t *out, err_t *err) {
    rule_t *old = rule_find(r, name, err);
    if (!old) return -1;
    if (!json_is_object(changes)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"rule\": expected object");
        return -1;
    }
    json_t *new_name = json_object_get(changes, "name");
    if (new_name && !(json_is_string(new_name) && strcmp(json_string_value(new_name), name) == 0)) {
        err_set(err, ERR_VALIDATION, "Invalid rule: name: a rule cannot be renamed");
        err_details_take(err, json_pack("{s[s]}", "errors", "name: a rule cannot be renamed"));
        return -1;
    }
    json_t *merged = json_copy(old->def);
    json_object_update(merged, (json_t *)changes);
    rule_t *rule = rule_compile(merged, err);
    json_decref(merged);
    if (!rule || rule_install(r, rule, old, err) < 0) return -1;
    json_write(out, rule->def);
    return 0;
}

int rules_set_enabled(rules_t *r, const char *name, bool enabled, buf_t *out, err_t *err) {
    rule_t *rule = rule_find(r, name, err);
    if (!rule) return -1;
    if (rule->enabled != enabled) {
        json_t *prev = json_incref(json_object_get(rule->def, "enabled"));
        json_object_set_new(rule->def, "enabled", json_boolean(enabled));
        if (rule_save(r, rule, err) < 0) {
            json_object_set_new(rule->def, "enabled", prev);
            return -1;
        }
        json_decref(prev);
        rule->enabled = enabled;
        rules_resort(r);
    }
    json_write(out, rule->def);
    return 0;
}

int rules_get(rules_t *r, const char *name, buf_t *out, err_t *err) {
    rule_t *rule = rule_find(r, name, err);
    if (!rule) return -1;
    json_write(out, rule->def);
    return 0;
}

void rules_get_all(rules_t *r, buf_t *out) {
    buf_append_char(out, '[');
    for (size_t i = 0; i < r->rule_count; i++) {
        if (i) buf_append_char(out, ',');
        json_write(out, r->sorted[i]->def);
    }
    buf_append_char(out, ']');
}

void rules_validate(rules_t *r, const json_t *def, buf_t *out) {
    (void)r;
    json_t *errors = json_array();
    rule_t *rule = rules_def_compile(def, errors);
    rules_def_free(rule);
    buf_printf(out, "{\"valid\":%s,\"errors\":", rule ? "true" : "false");
    json_write(out, errors);
    buf_append_char(out, '}');
    json_decref(errors);
}

/* ---- stats ---- */

void rules_stats(rules_t *r, buf_t *out) {
    const rules_counters_t *c = &r->counters;
    buf_printf(out,
               "{\"rulesCount\":%zu,\"enabledRulesCount\":%zu,\"factsCount\":%zu,"
               "\"eventsProcessed\":%llu,\"eventsEmitted\":%llu,\"rulesFired\":%llu,"
               "\"actionsFailed\":%llu,\"subscriptions\":%zu}",
               r->rule_count, r->enabled_count, rules_fact_count(r),
               (unsigned long long)c->events_processed, (unsigned long long)c->events_emitted,
               (unsigned long long)c->rules_fired, (unsigned long long)c->actions_failed,
               r->sub_count);
}
