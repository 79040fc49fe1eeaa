/* Events: the event log, subscription fan-out and the hand-over to event rules.
 *
 * Ids are "evt-<n>" with n the event's row number (seq) in _shopd_events, so they keep
 * counting across restarts (the next n comes from SQLite's AUTOINCREMENT counter).
 * The log keeps the newest `event_log_max` rows; older ones are deleted every
 * RULES_PRUNE_EVERY inserts (or every event_log_max, when that is smaller).
 *
 * An event is serialised once: the same message text {"topic":…,"event":{…}} goes to
 * every matching subscription. Subscriptions are grouped by pattern, so the cost of
 * an event is one lookup for exact patterns plus one match per distinct wildcard
 * pattern, then one deliver() per subscriber. A subscription removed while events are
 * being delivered is only marked, and freed when the outermost delivery ends. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "rules/rules_int.h"

/* ---- the log ---- */

static void events_prune(rules_t *r) {
    r->since_prune = 0;
    uint64_t newest = r->next_event - 1;
    if (newest <= r->event_log_max) return;
    err_t err = ERR_INIT;
    /* Inside a write (an emit) the writer thread may do it: no answer is needed. */
    db_stmt_t *q = db_prepare_queued(r->db, "DELETE FROM _shopd_events WHERE seq <= ?1", &err);
    if (q) {
        db_bind_int(q, 1, (int64_t)(newest - r->event_log_max));
        if (db_is_queued(q)) {
            db_submit(q, -1);
        } else {
            db_step(q, &err);
            db_done(q);
        }
    }
    if (err.code != ERR_NONE)
        log_error("rules.event_prune_failed", "error=%s", db_last_error(r->db));
    err_clear(&err);
}

int rules_events_load(rules_t *r, err_t *err) {
    r->next_event = 1;
    /* The AUTOINCREMENT counter remembers the highest seq ever used, even after the
     * log was pruned down to nothing. */
    static const char *const sqls[] = {
        "SELECT seq FROM sqlite_sequence WHERE name = '_shopd_events'",
        "SELECT MAX(seq) FROM _shopd_events",
    };
    for (size_t i = 0; i < 2; i++) {
        db_stmt_t *q = db_prepare(r->db, sqls[i], err);
        if (!q) return -1;
        db_step_t rc = db_step(q, err);
        if (rc == DB_ROW && db_column_type(q, 0) != DB_NULL) {
            int64_t seq = db_column_int(q, 0);
            if (seq >= 0 && (uint64_t)seq + 1 > r->next_event) r->next_event = (uint64_t)seq + 1;
        }
        db_done(q);
        if (rc == DB_ERROR) return -1;
    }
    events_prune(r);
    return 0;
}

static int events_insert(rules_t *r, uint64_t n, const char *id, const char *topic,
                         const buf_t *data, int64_t ts, const char *corr, const char *cause,
                         err_t *err) {
    if (store_write_begin(r->store, err) < 0) return -1;
    /* seq is new (next_event): nothing but I/O can fail, so the writer thread may do it */
    db_stmt_t *q = db_prepare_queued(r->db,
                              "INSERT INTO _shopd_events(seq, id, topic, data, timestamp, "
                              "correlation_id, causation_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                              err);
    if (!q) return -1;
    db_bind_int(q, 1, (int64_t)n);
    db_bind_text(q, 2, id, strlen(id));
    db_bind_text(q, 3, topic, strlen(topic));
    db_bind_text(q, 4, data->data, data->len);
    db_bind_int(q, 5, ts);
    if (corr)
        db_bind_text(q, 6, corr, strlen(corr));
    else
        db_bind_null(q, 6);
    if (cause)
        db_bind_text(q, 7, cause, strlen(cause));
    else
        db_bind_null(q, 7);
    if (db_is_queued(q)) {
        db_submit(q, 1);
        return 0;
    }
    db_step_t rc = db_step(q, err);
    db_done(q);
    return rc == DB_ERROR ? -1 : 0;
}

/* ---- subscriptions ---- */

static size_t segment_count(const char *s) {
    size_t n = 1;
    for (; *s; s++) n += *s == '.';
    return n;
}

static void group_free(rules_group_t *g) {
    for (size_t i = 0; i < g->count; i++) {
        free(g->subs[i]->id);
        free(g->subs[i]);
    }
    free(g->subs);
    free(g->pattern);
    free(g);
}

static void sub_remove_now(rules_t *r, rules_sub_t *sub) {
    rules_group_t *g = sub->group;
    rules_sub_t *last = g->subs[--g->count];
    g->subs[sub->index] = last;
    last->index = sub->index;
    free(sub->id);
    free(sub);
    if (g->count > 0) return;
    strmap_del(&r->groups, g->pattern);
    if (g->is_wild) {
        rules_group_t *moved = r->wild[--r->wild_count];
        r->wild[g->wild_index] = moved;
        moved->wild_index = g->wild_index;
    }
    group_free(g);
}

rules_sub_t *rules_subscribe(rules_t *r, void *owner, const char *sub_id, const char *pattern,
                             err_t *err) {
    if (!pattern || !*pattern) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"pattern\": expected non-empty string");
        return NULL;
    }
    if (!rules_name_ok(pattern, '.', true)) {
        err_set(
            err, ERR_VALIDATION,
            "Invalid \"pattern\": expected '.'-separated non-empty segments (at most %d bytes), "
            "'*' for any one segment",
            RULES_MAX_KEY);
        return NULL;
    }
    rules_group_t *g = strmap_get(&r->groups, pattern);
    if (!g) {
        g = xcalloc(1, sizeof *g);
        g->pattern = xstrdup(pattern);
        g->nseg = segment_count(pattern);
        g->is_wild = strchr(pattern, '*') != NULL;
        if (g->is_wild) {
            if (r->wild_count == r->wild_cap) {
                r->wild_cap = r->wild_cap ? r->wild_cap * 2 : 8;
                r->wild = xrealloc(r->wild, r->wild_cap * sizeof *r->wild);
            }
            g->wild_index = r->wild_count;
            r->wild[r->wild_count++] = g;
        }
        strmap_put(&r->groups, pattern, g);
    }
    if (g->count == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4;
        g->subs = xrealloc(g->subs, g->cap * sizeof *g->subs);
    }
    rules_sub_t *sub = xcalloc(1, sizeof *sub);
    sub->group = g;
    sub->owner = owner;
    sub->id = xstrdup(sub_id ? sub_id : "");
    sub->index = g->count;
    g->subs[g->count++] = sub;
    r->sub_count++;
    return sub;
}

void rules_unsubscribe(rules_t *r, rules_sub_t *sub) {
    if (!sub || sub->dead) return;
    r->sub_count--;
    if (r->delivering > 0) {
        sub->dead = true;
        sub->next_dead = r->dead;
        r->dead = sub;
        return;
    }
    sub_remove_now(r, sub);
}

size_t rules_subscription_count(const rules_t *r) {
    return r->sub_count;
}

static void deliver_group(rules_t *r, rules_group_t *g, const buf_t *msg) {
    for (size_t i = 0; i < g->count; i++) {
        rules_sub_t *sub = g->subs[i];
        if (!sub->dead) r->deliver(sub->owner, sub->id, msg->data, msg->len);
    }
}

/* Builds the message on the first match only: most events reach nobody. */
static void events_deliver(rules_t *r, const char *topic, const buf_t *event) {
    if (!r->deliver || r->sub_count == 0) return;
    buf_t msg;
    buf_init(&msg, 0);
    r->delivering++;
    rules_group_t *exact = strmap_get(&r->groups, topic);
    size_t nseg = segment_count(topic);
    for (size_t i = 0; i <= r->wild_count; i++) {
        rules_group_t *g;
        if (i == 0) {
            g = exact && !exact->is_wild ? exact : NULL;
        } else {
            g = r->wild[i - 1];
            if (g->nseg != nseg || !rules_topic_match(g->pattern, topic)) g = NULL;
        }
        if (!g) continue;
        if (msg.len == 0) {
            buf_append_str(&msg, "{\"topic\":");
            json_write_string(&msg, topic, strlen(topic));
            buf_append_str(&msg, ",\"event\":");
            buf_append(&msg, event->data, event->len);
            buf_append_char(&msg, '}');
        }
        deliver_group(r, g, &msg);
    }
    if (--r->delivering == 0) {
        while (r->dead) {
            rules_sub_t *sub = r->dead;
            r->dead = sub->next_dead;
            sub_remove_now(r, sub);
        }
    }
    buf_cleanup(&msg);
}

void rules_events_cleanup(rules_t *r) {
    size_t it = 0;
    void *v;
    while (strmap_next(&r->groups, &it, NULL, &v)) group_free(v);
    strmap_cleanup(&r->groups);
    free(r->wild);
}

/* ---- emitting ---- */

static int id_check(const char *id, const char *field, err_t *err) {
    if (!id) return 0;
    if (!*id || strlen(id) > RULES_MAX_KEY) {
        err_set(err, ERR_VALIDATION,
                "Missing or invalid \"%s\": expected non-empty string of at most %d bytes", field,
                RULES_MAX_KEY);
        return -1;
    }
    return 0;
}

static void offer_to_rules(rules_t *r, const char *id, const char *topic, const json_t *data,
                           int64_t ts, const char *corr, const char *cause) {
    size_t n;
    rule_t **cands = rules_engine_candidates(r, TRIGGER_EVENT, topic, 0, &n);
    if (!n) return;
    json_t *event = json_object();
    json_object_set_new(event, "id", json_string(id));
    json_object_set_new(event, "topic", json_string(topic));
    json_object_set_new(event, "data", data ? json_incref((json_t *)data) : json_object());
    json_object_set_new(event, "timestamp", json_integer(ts));
    if (corr) json_object_set_new(event, "correlationId", json_string(corr));
    if (cause) json_object_set_new(event, "causationId", json_string(cause));
    json_t *ctx = json_object();
    json_object_set_new(ctx, "event", event);
    /* What this event's rules emit is caused by it and keeps its correlation (or
     * starts one named after it). */
    rules_chain_t chain = {corr ? corr : id, id};
    rules_engine_fire(r, cands, n, ctx, &chain);
    json_decref(ctx);
}

int rules_events_emit(rules_t *r, const char *topic, const json_t *data, const char *corr,
                      const char *cause, buf_t *out, err_t *err) {
    if (!topic || !*topic) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"topic\": expected non-empty string");
        return -1;
    }
    if (!rules_name_ok(topic, '.', false)) {
        err_set(err, ERR_VALIDATION,
                "Invalid \"topic\": expected '.'-separated non-empty segments without '*' (at most "
                "%d bytes)",
                RULES_MAX_KEY);
        return -1;
    }
    if (data && !json_is_object(data)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"data\": expected object");
        return -1;
    }
    if (id_check(corr, "correlationId", err) < 0 || id_check(cause, "causationId", err) < 0)
        return -1;

    int rc = -1;
    buf_t text, event;
    buf_init(&text, 0);
    buf_init(&event, 0);
    if (data)
        json_write(&text, data);
    else
        buf_append_str(&text, "{}");
    if (text.len > RULES_MAX_EVENT_DATA) {
        err_set(err, ERR_VALIDATION, "Event data too large (at most %d bytes serialised)",
                RULES_MAX_EVENT_DATA);
        goto out;
    }

    uint64_t n = r->next_event;
    char id[32];
    snprintf(id, sizeof id, "evt-%" PRIu64, n);
    int64_t ts = clock_now_ms();
    if (events_insert(r, n, id, topic, &text, ts, corr, cause, err) < 0) {
        log_error("rules.event_log_failed", "event=%s error=%s", id, db_last_error(r->db));
        err_set(err, ERR_INTERNAL, "Could not record the event");
        goto out;
    }
    r->next_event++;
    r->counters.events_emitted++;
    size_t every = r->event_log_max < RULES_PRUNE_EVERY ? r->event_log_max : RULES_PRUNE_EVERY;
    if (++r->since_prune >= every) events_prune(r);

    buf_append_str(&event, "{\"id\":\"");
    buf_append_str(&event, id);
    buf_append_str(&event, "\",\"topic\":");
    json_write_string(&event, topic, strlen(topic));
    buf_append_str(&event, ",\"data\":");
    buf_append(&event, text.data, text.len);
    buf_append_str(&event, ",\"timestamp\":");
    json_write_int(&event, ts);
    if (corr) {
        buf_append_str(&event, ",\"correlationId\":");
        json_write_string(&event, corr, strlen(corr));
    }
    if (cause) {
        buf_append_str(&event, ",\"causationId\":");
        json_write_string(&event, cause, strlen(cause));
    }
    buf_append_char(&event, '}');
    if (out) buf_append(out, event.data, event.len);

    events_deliver(r, topic, &event);
    offer_to_rules(r, id, topic, data, ts, corr, cause);
    rc = 0;
out:
    buf_cleanup(&text);
    buf_cleanup(&event);
    return rc;
}

int rules_emit(rules_t *r, const char *topic, const json_t *data, const char *correlation_id,
               const char *causation_id, buf_t *out, err_t *err) {
    return rules_events_emit(r, topic, data, correlation_id, causation_id, out, err);
}
