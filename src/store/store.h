/* The store engine: buckets of records with schemas, the read and write operations of
 * spec/realtime-protocol.md §4, transactions, named declarative queries and the change
 * sets that drive reactive subscriptions and the rules engine.
 *
 * On disk (docs/internals/store.md) every bucket is a table of its own: `_rowid`
 * (insertion order), `_doc` (the record as JSON, metadata included: the source of
 * truth) and one typed generated column per declared field plus the metadata, so a
 * person can `SELECT title, price FROM products` in sqlite3 and indexes and unique
 * constraints are ordinary SQL indexes. Reads hand out the stored JSON text as is.
 *
 * Results are JSON text appended to a buf_t, ready to splice into a response frame.
 * Every write commits before it returns and then offers its change set to the
 * listeners, one change set per operation or transaction. Loop thread only. */
#ifndef SHOPD_STORE_STORE_H
#define SHOPD_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "db/db.h"
#include "store/schema.h"

#define STORE_MAX_N 10000          /* first/last n, paginate limit, query limit */
#define STORE_MAX_TX_OPS 1000      /* operations in one transaction */
#define STORE_MAX_IN_VALUES 1000   /* values in one $in */
#define STORE_MAX_BUCKETS 256
#define STORE_MAX_QUERIES 1024

typedef struct store store_t;

typedef enum { CHANGE_INSERT, CHANGE_UPDATE, CHANGE_DELETE } change_kind_t;

typedef struct {
    const char *bucket; /* valid for the listener call */
    change_kind_t kind;
    const json_t *key;
    const json_t *before; /* NULL for inserts */
    const json_t *after;  /* NULL for deletes */
} store_change_t;

typedef struct {
    const store_change_t *changes;
    size_t count;
} store_changeset_t;

typedef void (*store_listener_fn)(void *udata, const store_changeset_t *cs);

/* Row ownership (the permission policy's `owner`): the caller sees and writes only
 * records whose `field` equals `user_id`. Reads are filtered, writes to records of
 * others are refused with FORBIDDEN, inserts get the field set to the caller. */
typedef struct {
    const char *field;
    const char *user_id;
} store_owner_t;

/* The caller's identity, for "$session.userId" in queries (NULL user: anonymous). */
typedef struct {
    const char *user_id;
} store_session_t;

/* Opens the database at `path`, applies migrations and loads the persisted bucket and
 * query definitions. Returns NULL with err set. */
store_t *store_open(const char *path, err_t *err);
void store_close(store_t *st); /* NULL is fine */
/* Applies pending migrations and returns how many ran (for `shopd migrate`). */
int store_migrate_path(const char *path, err_t *err);

/* The store's database, for the engine modules that keep their own tables there
 * (the rules engine). Loop thread only, like the store. */
db_t *store_db(store_t *st);

/* Group commit (see store.c): with it on, writes share one database transaction
 * until store_batch_commit(), and their change sets are offered to the listeners
 * then. store_batch_commit returns -1 with err set when the commit failed: every
 * write of the batch is then undone and must be reported as failed. */
void store_set_group_commit(store_t *st, bool on);
/* Called after every group commit, wherever it happens (the loop's turn, or a bucket
 * definition that commits the batch first), before the change sets go to the
 * listeners: the batch's number (see store_batch_pending), rc 0, or -1 with err when
 * the batch was undone. Batches are reported in order. */
typedef void (*store_commit_fn)(void *udata, uint64_t batch, int rc, const err_t *err);
void store_on_batch_commit(store_t *st, store_commit_fn fn, void *udata);
/* For modules that write their own tables in the store's database (the rules engine's
 * facts and event log): joins the group commit, opening the batch when needed, so the
 * write is committed — and its answer released — with the others of the loop turn
 * instead of paying for a commit of its own. Without group commit it does nothing. */
int store_write_begin(store_t *st, err_t *err);
/* True while a batch waits for store_batch_commit, which also reports a batch that was
 * rolled back during the turn (a write that could not be undone): then it returns -1
 * and the commit callback gets -1, and until then every write is refused. */
bool store_batch_open(const store_t *st);
int store_batch_commit(store_t *st, err_t *err);
/* The same without waiting for the commit, when the database has a writer thread
 * (otherwise it is store_batch_commit): the COMMIT is queued and the next batch may
 * open at once, built on this one. store_batch_poll reports the outcomes, in order; the
 * database calls `notify` (store_on_commit_done, from its writer thread) when one is
 * ready. A batch that fails takes every batch built on it down with it. */
int store_batch_commit_queued(store_t *st, err_t *err);
void store_on_commit_done(store_t *st, void (*notify)(void *udata), void *udata);
void store_batch_poll(store_t *st);
/* The number of the newest batch not yet reported (open, failed or committing), 0 when
 * there is none: an answer that may have read what it wrote waits for that batch. */
uint64_t store_batch_pending(const store_t *st);
/* The writes the open batch holds. */
size_t store_batch_writes(const store_t *st);

/* Ends the shared read transaction (db_idle); the loop calls it once per turn. */
void store_idle(store_t *st);

/* Whether a listener will need changes of `kind` to records of `bucket`, asked when the
 * write that makes one ends. With group commit, changes that no listener needs are freed
 * then instead of being kept, with their records, until the loop turn's commit: a busy
 * turn's change sets otherwise outgrow the CPU caches. A listener added later in the turn
 * does not see them (its first reads already do). */
typedef bool (*store_wants_fn)(void *udata, const char *bucket, change_kind_t kind);

/* Adds a listener for committed change sets (subscriptions, rules); `wants` may be NULL
 * (every change). A listener may write to the store; that write's change set is offered
 * to the listeners in turn. */
void store_listen(store_t *st, store_listener_fn fn, store_wants_fn wants, void *udata);
/* Removes a listener added with the same fn and udata (nothing when absent). */
void store_unlisten(store_t *st, store_listener_fn fn, void *udata);

/* ---- definitions ---- */

/* A number that changes whenever a bucket or query definition changes (cached query
 * results older than it must be evaluated again). */
uint64_t store_definitions_version(const store_t *st);

/* Defines a bucket. With `replace`, an existing bucket takes the new definition (its
 * generated columns and indexes are rebuilt; records stay); otherwise ALREADY_EXISTS. */
int store_define_bucket(store_t *st, const char *name, const json_t *definition, bool replace,
                        err_t *err);
int store_drop_bucket(store_t *st, const char *name, err_t *err);
int store_update_bucket(store_t *st, const char *name, const json_t *updates, err_t *err);
/* Appends the bucket's definition. */
int store_bucket_schema(store_t *st, const char *name, buf_t *out, err_t *err);
const schema_t *store_bucket_get(const store_t *st, const char *name);
/* Appends {"count":n,"names":[…]} (definition order). */
void store_buckets(store_t *st, buf_t *out);
/* Appends {"buckets":{"count","names"},"records":{…}}. */
int store_stats(store_t *st, buf_t *out, err_t *err);

int store_define_query(store_t *st, const char *name, const json_t *definition, bool replace,
                       err_t *err);
int store_undefine_query(store_t *st, const char *name, err_t *err);
/* Appends {"queries":[names…]} (sorted). */
void store_list_queries(store_t *st, buf_t *out);
bool store_query_exists(const store_t *st, const char *name);

/* Inserts the seed records when every bucket is empty. `seed` is {bucket: [records]}.
 * Returns the number of records inserted. */
int store_seed(store_t *st, const json_t *seed, err_t *err);

/* For server-side code (the shop): the record whose string key is `key`, as a shared
 * tree. *out gets a reference (NULL when there is no such record) and the tree must not
 * be changed: it may be the one the record cache keeps for the next reader, and for the
 * update that follows (docs/internals/store.md). No ownership rules apply. */
int store_get_shared(store_t *st, const char *bucket, const char *key, json_t **out, err_t *err);

/* One write of server-side code, for store_write_all. */
typedef struct {
    const char *op;     /* "insert", "update" or "delete" */
    const char *bucket;
    const char *key;    /* update, delete: the record's string key */
    json_t *data;       /* insert: the record; update: the fields it changes */
    bool new_key;       /* insert: its key was just generated (a v7 UUID), so no record has it */
} store_write_t;
/* Runs the writes as one transaction, like a store_transaction of writes only: all or
 * nothing, the first failure's error (with details.index) is the answer. No ownership
 * rules apply. Saves the shop building and the store reading an operations array.
 * Takes every write's `data` reference, succeed or fail, and sets `data` to NULL: an
 * insert whose data has no other reference and lists declared fields in schema order
 * becomes the stored record itself (schema_prepare_insert_take). */
int store_write_all(store_t *st, store_write_t *w, size_t n, err_t *err);

/* ---- operations ----
 * `op` is the operation name without the "store." prefix ("get", "where", …) and
 * `req` the request object holding its fields (bucket, key, data, filter, n, field,
 * limit, after). The result is appended to `out`. */
int store_execute(store_t *st, const char *op, const json_t *req, buf_t *out, err_t *err);
/* The same under an ownership constraint (NULL: none). */
int store_execute_as(store_t *st, const char *op, const json_t *req, const store_owner_t *owner,
                     buf_t *out, err_t *err);
/* store.transaction: `operations` as in §4.3. */
int store_transaction(store_t *st, const json_t *operations, buf_t *out, err_t *err);
/* The same with a permission check per operation: `check` gets the operation type
 * ("store.insert", …), its bucket and the operation object, and returns 0 (filling
 * *owner, or leaving it NULL-field) or -1 with err set (FORBIDDEN). */
typedef int (*store_tx_check_fn)(void *udata, const char *type, const char *bucket, const json_t *op,
                                 store_owner_t *owner, err_t *err);
int store_transaction_checked(store_t *st, const json_t *operations, store_tx_check_fn check,
                              void *udata, buf_t *out, err_t *err);
/* Whether `op` is a store operation store_execute knows. */
bool store_has_op(const char *op);

/* ---- named queries ---- */

/* Evaluates a named query with params (object or NULL) for a session. Appends the
 * result. On success *deps_out (if given) receives what the query reads (owned by
 * the caller, free with store_deps_free). */
typedef struct {
    char *bucket;
    json_t *key; /* for get queries: the one key it reads; NULL = the whole bucket */
} store_deps_t;

int store_query_eval(store_t *st, const char *name, const json_t *params,
                     const store_session_t *session, buf_t *out, store_deps_t *deps_out,
                     err_t *err);
/* The same under an ownership constraint (NULL: none). */
int store_query_eval_as(store_t *st, const char *name, const json_t *params,
                        const store_session_t *session, const store_owner_t *owner, buf_t *out,
                        store_deps_t *deps_out, err_t *err);
void store_deps_free(store_deps_t *deps);
/* Whether the query's definition refers to "$session.*". */
bool store_query_uses_session(const store_t *st, const char *name);

/* Counters for /metrics and store stats. */
typedef struct {
    uint64_t reads;
    uint64_t writes;
    uint64_t transactions;
    uint64_t conflicts;
    uint64_t cache_hits;   /* reads (store.get, store_get_shared) answered from the record cache */
    uint64_t cache_misses; /* such reads that went to the database (and filled the cache) */
} store_counters_t;
const store_counters_t *store_counters(const store_t *st);

#endif
