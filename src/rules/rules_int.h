/* Private declarations of the rules engine, shared by its files:
 *
 *   patterns.c  topic and fact-key patterns (pure)
 *   rule_def.c  validating a rule definition and compiling it into a rule_t
 *   engine.c    trigger contexts, conditions, interpolation, actions, firing, depth
 *   events.c    emitting events: the event log and subscription fan-out
 *   facts.c     the fact table (_shopd_facts, and a cache of it)
 *   rules.c     the engine object, rule administration, persistence, stats
 *
 * Invariants: a rule_t is immutable once compiled (enable/disable swaps the `enabled`
 * flag and the definition's member only); `sorted` holds every rule in firing order
 * (priority descending, then registration order) and is rebuilt on each admin change;
 * rule pointers stay valid while a trigger fires because actions cannot change rules. */
#ifndef SHOPD_RULES_RULES_INT_H
#define SHOPD_RULES_RULES_INT_H

#include "core/regex.h"
#include "core/strmap.h"
#include "db/db.h"
#include "rules/rules.h"

#define RULES_DEFAULT_EVENT_LOG_MAX 10000
#define RULES_PRUNE_EVERY 100 /* event-log inserts between retention passes */
#define RULES_MAX_NAME 256    /* bytes in a rule name */
#define RULES_MAX_CONDITIONS 64
#define RULES_MAX_ACTIONS 64
#define RULES_MAX_REGEX 1024     /* bytes of a `matches` pattern */
#define RULES_MATCH_LIMIT 100000 /* backtracking budget of one `matches` */
#define RULES_DEPTH_LIMIT 5000
#define RULES_MAX_TEXT 262144 /* bytes of one interpolated string */

typedef enum { TRIGGER_EVENT, TRIGGER_FACT, TRIGGER_STORE } trigger_kind_t;

enum { OP_INSERT = 1u, OP_UPDATE = 2u, OP_DELETE = 4u, OP_ALL = 7u };

typedef enum {
    COND_EQ,
    COND_NEQ,
    COND_GT,
    COND_GTE,
    COND_LT,
    COND_LTE,
    COND_IN,
    COND_EXISTS,
    COND_NOT_EXISTS,
    COND_MATCHES
} cond_op_t;

typedef struct {
    cond_op_t op;
    const char *path;    /* dotted path into the context, or NULL */
    const char *fact;    /* fact key template, or NULL */
    const json_t *value; /* borrowed from the rule's definition; NULL when absent */
    pcre2_code *re;      /* COND_MATCHES only */
} rule_cond_t;

typedef struct {
    char *name;
    json_t *def; /* the normalised definition (owned); every borrowed pointer points here */
    bool enabled;
    int64_t priority;
    int64_t position; /* registration order; kept across updates and restarts */
    trigger_kind_t kind;
    const char *pattern; /* topic pattern, fact-key pattern or bucket name */
    unsigned ops;        /* TRIGGER_STORE: OP_* mask */
    rule_cond_t *conds;
    size_t cond_count;
    const json_t *actions; /* array */
} rule_t;

/* The correlation of a chain of firings: what events emitted inside it carry. */
typedef struct {
    const char *correlation_id;
    const char *causation_id;
} rules_chain_t;

/* Subscriptions with the same pattern share one group, so an event is matched once
 * per distinct pattern however many connections listen. Patterns without '*' are
 * found by a lookup of the topic itself; wildcard groups are kept in `wild`. */
typedef struct {
    char *pattern;
    size_t nseg;
    bool is_wild;
    size_t wild_index;
    rules_sub_t **subs;
    size_t count, cap;
} rules_group_t;

struct rules_sub {
    rules_group_t *group;
    void *owner;
    char *id;
    size_t index; /* in group->subs */
    bool dead;    /* unsubscribed during a delivery; freed when it ends */
    rules_sub_t *next_dead;
};

typedef struct {
    uint64_t events_processed; /* triggers offered to the rules: events, fact and store changes */
    uint64_t events_emitted;   /* events appended to the log (by clients and by rules) */
    uint64_t rules_fired;
    uint64_t actions_failed;
    uint64_t depth_exceeded;
} rules_counters_t;

struct rules {
    store_t *store;
    db_t *db;
    rules_deliver_fn deliver;
    size_t event_log_max;

    strmap_t facts;    /* the fact cache (facts.c): key → json_t * (owned, never modified
                        * in place), or a mark for a key without a fact */
    size_t fact_count; /* rows in _shopd_facts when last counted, */
    atomic_llong facts_added; /* and the rows added (less those deleted) since (rules_fact_count) */

    uint64_t next_event; /* n of the next evt-<n> */
    size_t since_prune;
    strmap_t groups; /* pattern → rules_group_t */
    rules_group_t **wild;
    size_t wild_count, wild_cap;
    size_t sub_count;
    int delivering;
    rules_sub_t *dead;

    strmap_t by_name; /* name → rule_t */
    rule_t **sorted;  /* every rule, firing order */
    size_t rule_count;
    size_t enabled_count;
    int64_t next_position;

    int depth;                  /* firings in progress, nested */
    const rules_chain_t *chain; /* the chain of the innermost firing, or NULL */
    pcre2_match_context *mctx;
    pcre2_match_data *mdata;
    rules_counters_t counters;
};

/* ---- rule_def.c ---- */

/* Validates a definition and compiles it. On success returns an owned rule (position
 * 0, to be set by the caller); otherwise NULL with one string per problem appended to
 * `errors`. */
rule_t *rules_def_compile(const json_t *def, json_t *errors);
void rules_def_free(rule_t *rule); /* NULL is fine */
const char *rules_cond_op_name(cond_op_t op);

/* ---- engine.c ---- */

/* The enabled rules of `kind` whose trigger matches `subject` (a topic, fact key or
 * bucket) and, for store triggers, `op`, in firing order. Returns an owned array (NULL
 * when none) and counts the trigger as processed. */
rule_t **rules_engine_candidates(rules_t *r, trigger_kind_t kind, const char *subject, unsigned op,
                                 size_t *count_out);
/* Evaluates each candidate's conditions against ctx and runs the actions of those that
 * hold, nested one level deeper; frees `cands`. `chain` is what emitted events carry. */
void rules_engine_fire(rules_t *r, rule_t **cands, size_t count, const json_t *ctx,
                       const rules_chain_t *chain);
/* The value at a dotted path in ctx (borrowed), or NULL. Digits index arrays. */
const json_t *rules_path_get(const json_t *ctx, const char *path, size_t len);
/* Whether s (n bytes) is exactly one "{{path}}" placeholder; gives the trimmed path. */
bool rules_placeholder_only(const char *s, size_t n, const char **path, size_t *path_len);
/* Offers every change of a committed change set to the store-triggered rules. */
void rules_engine_on_changes(void *udata, const store_changeset_t *cs);
/* Whether an enabled rule has a trigger of `kind` for subject (and op, for the store),
 * without counting a trigger as rules_engine_candidates does. */
bool rules_engine_has_trigger(const rules_t *r, trigger_kind_t kind, const char *subject, unsigned op);
/* Whether a rule has a store trigger for such a change (store_wants_fn). */
bool rules_engine_wants_change(void *udata, const char *bucket, change_kind_t kind);

/* ---- events.c ---- */

int rules_events_load(rules_t *r, err_t *err);
/* Emits an event (see rules_emit); data NULL means {}. */
int rules_events_emit(rules_t *r, const char *topic, const json_t *data, const char *correlation_id,
                      const char *causation_id, buf_t *out, err_t *err);
void rules_events_cleanup(rules_t *r);

/* ---- facts.c ---- */

int rules_facts_load(rules_t *r, err_t *err);
void rules_facts_cleanup(rules_t *r);

#endif
