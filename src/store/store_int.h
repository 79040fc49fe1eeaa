/* Private declarations shared by the store's source files. */
#ifndef SHOPD_STORE_STORE_INT_H
#define SHOPD_STORE_STORE_INT_H

#include "core/strmap.h"
#include "db/db.h"
#include "store/store.h"

typedef struct {
    char *name;
    schema_t *schema;
    int64_t order; /* definition order, for store.buckets */
    char *sql_get_row;  /* SELECT _rowid, _doc … WHERE key = ?1 */
    char *sql_insert;   /* INSERT … (_doc, columns…) VALUES (?1, ?3…) */
    char *sql_insert_row; /* the same with _rowid = ?2: puts a deleted row back */
    char *sql_update;   /* UPDATE … SET _doc = ?1, columns… = ?3… WHERE _rowid = ?2 */
    char *sql_update_unindexed; /* the same without the indexed columns (they keep their values) */
    char *sql_delete;   /* DELETE … WHERE _rowid = ?1 */
    char *table;        /* quoted table name */
    const char **cols;  /* the typed columns (names owned by the schema), bound from ?3 on */
    size_t ncols;
    const char **indexed; /* the columns an index covers: the key, unique fields, indexes */
    size_t nindexed;
    strmap_t cache; /* record cache: cache key (see cache_key) → cached_doc_t */
    bool autoincrement; /* a field is generated: autoincrement (its counter is a row too) */
    /* Inserts of new keys may go to the writer thread (db_prepare_queued): no unique field
     * but the key, and no counter. They get their row id from next_rowid (0: not read yet). */
    bool queue_inserts;
    int64_t next_rowid;
} bucket_t;

typedef struct {
    char *name;
    json_t *definition; /* normalised */
    bool uses_session;
} query_t;

typedef struct listener {
    store_listener_fn fn;
    store_wants_fn wants; /* NULL: every change */
    void *udata;
    struct listener *next;
} listener_t;

/* The change set being collected by the write in progress. */
typedef struct {
    store_change_t *items;
    int64_t *rowids; /* the row each change wrote (for undoing the write in progress) */
    size_t count, cap;
} changes_t;

struct store {
    db_t *db;
    strmap_t buckets; /* name → bucket_t */
    strmap_t queries; /* name → query_t */
    int64_t next_order;
    listener_t *listeners;
    changes_t changes;
    store_counters_t counters;
    uint64_t def_version; /* bumped by every change of a bucket or query definition */
    bool group_commit;    /* writes join one database transaction until store_batch_commit */
    bool batch_open;
    bool batch_failed;    /* rolled back mid-turn: store_batch_commit fails the turn's writes */
    bool undo_mode;       /* the write in progress runs without a savepoint (see tx_begin) */
    changes_t batch;      /* committed-to-the-batch changes, in order */
    size_t *bounds;       /* end index in `batch` of each write's change set */
    size_t bound_count, bound_cap;
    store_commit_fn on_commit;
    void *on_commit_udata;
    uint64_t batch_seq;   /* the number of the newest batch (from 1) */
    /* Batches whose COMMIT the database's writer thread runs (store_batch_commit_queued),
     * oldest first, waiting for their outcome (store_batch_poll). */
    struct committing {
        uint64_t seq;
        changes_t changes;
        size_t *bounds, nb;
    } *committing;
    size_t ncommitting, committing_cap;
    bool tx_active;       /* a write (one operation or a transaction) is running */
    size_t cache_entries; /* records held by all buckets' caches */
    size_t cache_bytes;   /* and their text */
};

bucket_t *store_bucket_find(const store_t *st, const char *name, err_t *err);

/* Read operations shared by store_execute, transactions and queries. `r` holds the
 * operation's fields. Appends the result to out. */
int store_read_op(store_t *st, bucket_t *b, const char *op, const json_t *r, const store_owner_t *owner,
                  buf_t *out, err_t *err);

/* Loads persisted query definitions (query.c). */
int store_queries_load(store_t *st, err_t *err);
void store_queries_free(store_t *st);

#endif
