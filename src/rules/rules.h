/* The rules engine (spec/realtime-protocol.md §5): events with topic patterns, facts
 * with key patterns, and named rules (trigger → conditions → actions) in shopd's JSON
 * rule format.
 *
 * Persistence: facts, the event log and rule definitions live in the store's
 * database (tables _shopd_facts, _shopd_events, _shopd_rules, created by the store's
 * migration 2). Facts are also held in memory and served from there; the event log is
 * bounded (oldest rows deleted past `event_log_max`).
 *
 * Triggers: emitted events (rules_emit, and events rules emit), fact changes (set and
 * delete), and every committed store change set (the engine listens to the store).
 * Actions run in order; a failing action is logged with the rule's name and does not
 * undo the write or event that triggered it. Chains of firings deeper than
 * RULES_MAX_DEPTH are cut off and logged.
 *
 * Events are delivered to topic subscribers through the deliver callback given to
 * rules_new, once per matching subscription. Everything runs on the loop thread. */
#ifndef SHOPD_RULES_RULES_H
#define SHOPD_RULES_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "store/store.h"

#define RULES_MAX_DEPTH 16
#define RULES_MAX_KEY 512            /* bytes in a fact key or a topic */
#define RULES_MAX_FACT_VALUE 65536   /* bytes of a fact value, serialised */
#define RULES_FACT_CACHE 16384       /* fact keys held in memory (the rest stay in the table) */
#define RULES_MAX_RULES 1000
#define RULES_MAX_EVENT_DATA 262144  /* bytes of an event's data, serialised */

typedef struct rules rules_t;
typedef struct rules_sub rules_sub_t;

/* Tells one subscriber about an event: `message` is the JSON text
 * {"topic":…,"event":{…}} to put in the push's data. */
typedef void (*rules_deliver_fn)(void *owner, const char *sub_id, const char *message, size_t len);

typedef struct {
    size_t event_log_max; /* rows kept in _shopd_events; 0 = default 10 000 */
} rules_config_t;

/* Creates the engine over the store's database: loads facts and rules, and listens to
 * the store's change sets. Returns NULL with err set. */
rules_t *rules_new(store_t *st, const rules_config_t *cfg, rules_deliver_fn deliver, err_t *err);
void rules_free(rules_t *r); /* NULL is fine; subscriptions must be removed first */

/* Registers (replacing same-named ones) the rules of the config file's `rules` array.
 * Returns 0, or -1 with err naming the index ("rules[2]: …"). */
int rules_load_config(rules_t *r, const json_t *rules, err_t *err);

/* ---- events ---- */

/* Emits an event: checks the topic (non-empty segments, no '*'), data (object, default
 * {}), ids (strings when given); logs it, delivers it to subscribers, offers it to
 * the rules. Appends the event {"id","topic","data","timestamp"[,"correlationId",
 * "causationId"]} to out (when out is not NULL). */
int rules_emit(rules_t *r, const char *topic, const json_t *data, const char *correlation_id,
               const char *causation_id, buf_t *out, err_t *err);

/* Subscribes owner to a topic pattern ('*' = one segment). */
rules_sub_t *rules_subscribe(rules_t *r, void *owner, const char *sub_id, const char *pattern,
                             err_t *err);
void rules_unsubscribe(rules_t *r, rules_sub_t *sub);

/* ---- facts ---- */

/* Each appends its protocol result to out: setFact {"key","value"}; getFact the value
 * or null; deleteFact {"deleted":bool}; queryFacts and allFacts [{"key","value"},…]
 * (sorted by key). Keys are ':'-separated non-empty segments. */
int rules_set_fact(rules_t *r, const char *key, const json_t *value, buf_t *out, err_t *err);
int rules_get_fact(rules_t *r, const char *key, buf_t *out, err_t *err);
int rules_delete_fact(rules_t *r, const char *key, buf_t *out, err_t *err);
int rules_query_facts(rules_t *r, const char *pattern, buf_t *out, err_t *err);
int rules_all_facts(rules_t *r, buf_t *out, err_t *err);
/* The value of a fact, or NULL: borrowed, valid until the next fact operation (it may
 * come from the table into the cache). */
const json_t *rules_fact_peek(rules_t *r, const char *key);
/* Empties the fact cache and counts the facts again: for after a failed group commit,
 * which undid fact writes the cache had taken. */
void rules_facts_forget(rules_t *r);
/* How many facts there are (factsCount; waits for the writes queued so far). */
size_t rules_fact_count(rules_t *r);

/* ---- rules ---- */

int rules_register(rules_t *r, const json_t *rule, buf_t *out, err_t *err);   /* → the rule */
int rules_unregister(rules_t *r, const char *name, buf_t *out, err_t *err); /* → {"name","unregistered":true} */
int rules_update(rules_t *r, const char *name, const json_t *rule, buf_t *out, err_t *err);
int rules_set_enabled(rules_t *r, const char *name, bool enabled, buf_t *out, err_t *err);
int rules_get(rules_t *r, const char *name, buf_t *out, err_t *err);
void rules_get_all(rules_t *r, buf_t *out);
/* {"valid":bool,"errors":[…]} without registering. */
void rules_validate(rules_t *r, const json_t *rule, buf_t *out);

/* {"rulesCount","enabledRulesCount","factsCount","eventsProcessed","eventsEmitted",
 *  "rulesFired","actionsFailed","subscriptions"} */
void rules_stats(rules_t *r, buf_t *out);
size_t rules_subscription_count(const rules_t *r);

/* ---- patterns (pure) ---- */

/* Topic patterns: '.'-separated, '*' matches exactly one segment. */
bool rules_topic_match(const char *pattern, const char *topic);
/* Fact patterns: ':'-separated, '*' matches exactly one segment. */
bool rules_fact_match(const char *pattern, const char *key);
/* Whether s is a valid topic / fact key (sep '.' or ':'), or pattern (allowing '*'
 * segments). Empty segments are never valid. */
bool rules_name_ok(const char *s, char sep, bool allow_wildcards);

#endif
