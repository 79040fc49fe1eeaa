/* Buckets, operations and transactions of the store (see store.h).
 *
 * Table layout of a bucket "products" with fields id (key), title, price:
 *
 *   CREATE TABLE "products" (
 *     _rowid INTEGER PRIMARY KEY,  -- insertion order (max + 1)
 *     _doc   TEXT NOT NULL,        -- the record as JSON (source of truth)
 *     "id" TEXT, "title" TEXT, "price" REAL,
 *     "_version" INTEGER, "_createdAt" INTEGER, "_updatedAt" INTEGER);
 *   CREATE UNIQUE INDEX "products__key" ON "products"("id");
 *
 * The typed columns hold copies of the document's fields, written with it from the
 * values shopd has in hand (table_layout_upgrade says why they are not generated
 * columns);
 * plus one index per `indexes` entry and a unique index per `unique` field. Every write
 * runs inside BEGIN IMMEDIATE … COMMIT, collects its changes, and offers them to the
 * listeners after the commit. */
#include "store/store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "store/filter.h"
#include "store/store_int.h"

#define STORE_MAX_RESULT_BYTES (32u << 20)
/* Stored documents come from requests nested at most 64 levels; the reader's bound
 * for them is far above that. */
#define STORE_DOC_MAX_DEPTH 512

static const db_migration_t migrations[] = {
    {1, "metadata tables",
     "CREATE TABLE _shopd_buckets ("
     "  name TEXT PRIMARY KEY, definition TEXT NOT NULL,"
     "  position INTEGER NOT NULL, created_at INTEGER NOT NULL);"
     "CREATE TABLE _shopd_queries ("
     "  name TEXT PRIMARY KEY, definition TEXT NOT NULL, created_at INTEGER NOT NULL);"
     "CREATE TABLE _shopd_counters ("
     "  bucket TEXT NOT NULL, field TEXT NOT NULL, value INTEGER NOT NULL,"
     "  PRIMARY KEY (bucket, field)) WITHOUT ROWID;"},
    {2, "rules engine tables",
     "CREATE TABLE _shopd_facts ("
     "  key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;"
     "CREATE TABLE _shopd_events ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,"
     "  data TEXT NOT NULL, timestamp INTEGER NOT NULL, correlation_id TEXT, causation_id TEXT);"
     "CREATE INDEX _shopd_events_topic ON _shopd_events(topic);"
     "CREATE TABLE _shopd_rules ("
     "  name TEXT PRIMARY KEY, definition TEXT NOT NULL, position INTEGER NOT NULL,"
     "  created_at INTEGER NOT NULL);"},
    {3, "store metadata",
     "CREATE TABLE _shopd_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"},
    /* Nothing reads the event log by id or topic, yet its two indexes cost every event
     * two more B-tree writes, and every prune (deleting the oldest rows) deletes from both
     * at scattered places: 17 k instructions per event. The AUTOINCREMENT counter is
     * carried over, so ids keep counting. */
    {4, "event log without unused indexes",
     "CREATE TABLE _shopd_events_new ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, topic TEXT NOT NULL,"
     "  data TEXT NOT NULL, timestamp INTEGER NOT NULL, correlation_id TEXT, causation_id TEXT);"
     "INSERT INTO _shopd_events_new SELECT seq, id, topic, data, timestamp, correlation_id,"
     "  causation_id FROM _shopd_events;"
     "DELETE FROM sqlite_sequence WHERE name = '_shopd_events_new';"
     "UPDATE sqlite_sequence SET name = '_shopd_events_new' WHERE name = '_shopd_events';"
     "DROP TABLE _shopd_events;"
     "ALTER TABLE _shopd_events_new RENAME TO _shopd_events;"},
};
#define MIGRATION_COUNT (sizeof migrations / sizeof migrations[0])

/* ---- small helpers ---- */

const store_counters_t *store_counters(const store_t *st) { return &st->counters; }
db_t *store_db(store_t *st) { return st->db; }
uint64_t store_definitions_version(const store_t *st) { return st->def_version; }
void store_idle(store_t *st) { db_idle(st->db); }

static int bad_field(err_t *err, const char *field, const char *expected) {
    err_set(err, ERR_VALIDATION, "Missing or invalid \"%s\": expected %s", field, expected);
    return -1;
}

static const char *req_string(const json_t *r, const char *field) {
    json_t *v = json_object_get(r, field);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* Reads a positive integer field (1 … max). Returns 1 when present and valid, 0 when
 * absent (and !required), -1 with err set otherwise. */
static int req_count(const json_t *r, const char *field, bool required, int64_t *out, err_t *err) {
    json_t *v = json_object_get(r, field);
    if (!v && !required) return 0;
    double d = json_is_number(v) ? json_number_value(v) : 0;
    if (!json_is_number(v) || d < 1 || d != floor(d)) {
        bad_field(err, field, "positive integer");
        return -1;
    }
    if (d > STORE_MAX_N) {
        err_set(err, ERR_VALIDATION, "Invalid \"%s\": at most %d records can be read at once", field,
                STORE_MAX_N);
        return -1;
    }
    *out = (int64_t)d;
    return 1;
}

static void write_column_value(buf_t *out, db_stmt_t *q, int col) {
    switch (db_column_type(q, col)) {
    case DB_NULL: buf_append_str(out, "null"); break;
    case DB_INTEGER: json_write_int(out, db_column_int(q, col)); break;
    case DB_REAL: json_write_double(out, db_column_double(q, col)); break;
    case DB_TEXT: {
        size_t n;
        const char *s = db_column_text(q, col, &n);
        json_write_string(out, s, n);
        break;
    }
    }
}

static void key_describe(const json_t *key, char *out, size_t size) {
    if (json_is_string(key)) snprintf(out, size, "\"%.100s\"", json_string_value(key));
    else if (json_is_integer(key)) snprintf(out, size, "%lld", (long long)json_integer_value(key));
    else if (json_is_real(key)) snprintf(out, size, "%g", json_real_value(key));
    else snprintf(out, size, "?");
}

/* Checks a key value from a request against the bucket's key field. */
static int key_check(const bucket_t *b, const json_t *key, err_t *err) {
    if (!key || json_is_null(key)) {
        err_set(err, ERR_VALIDATION, "Missing \"key\": expected non-null value");
        return -1;
    }
    const schema_field_t *f = schema_field_get(b->schema, b->schema->key);
    bool want_string = f && (f->type == FIELD_STRING);
    bool want_number = f && (f->type == FIELD_NUMBER || f->type == FIELD_INTEGER);
    if ((want_string && !json_is_string(key)) || (want_number && !json_is_number(key)) ||
        (!json_is_string(key) && !json_is_number(key))) {
        err_set(err, ERR_VALIDATION, "Invalid \"key\": expected %s",
                want_string ? "a string" : want_number ? "a number" : "a string or a number");
        return -1;
    }
    return 0;
}

static void bucket_free(bucket_t *b);

/* ---- the record cache ----
 *
 * store.get answers a record's stored JSON text as it is. The text of records read
 * lately is kept per bucket, so a repeated get of a hot record (a product page, a
 * subscribed `get` query) needs no SQLite statement: about half of a get's server
 * time. Every write forgets the keys it changes as it makes the change (changes_add),
 * so the cache never holds a version older than the database's; an update of a cached
 * record then puts its new version back (cache_refresh), and an undone write forgets
 * every key it touched (tx_abort). It is filled only by
 * gets outside a write, never from a transaction's own uncommitted reads, and emptied
 * when a group commit fails (the batch's writes are undone). Gets restricted to the
 * caller's own records (an `owner` policy) read the database. Server-side readers
 * (store_get_shared) and updates also keep the parsed record in the entry, shared and
 * never changed. Bounded: at most STORE_CACHE_MAX_ENTRIES records and
 * STORE_CACHE_MAX_BYTES of text (a tree counts STORE_CACHE_TREE_WEIGHT times its text),
 * none larger than STORE_CACHE_MAX_DOC; when full it is emptied and fills again.
 * shopd must be the database's only writer while it runs (docs/internals/store.md). */

#define STORE_CACHE_MAX_ENTRIES 10000
#define STORE_CACHE_MAX_BYTES (16u << 20)
#define STORE_CACHE_MAX_DOC 16384
#define STORE_CACHE_MAX_KEY 256

typedef struct {
    int64_t rowid; /* so that an update or delete of a cached record skips its lookup */
    json_t *tree;  /* the parsed record, made on first use (store_get_shared, record_load) */
    size_t weight; /* what it counts against STORE_CACHE_MAX_BYTES: text, and the tree */
    size_t len;
    char doc[];
} cached_doc_t;

/* A parsed record takes about this many times its text's size. */
#define STORE_CACHE_TREE_WEIGHT 4

static size_t cached_free(cached_doc_t *d) {
    size_t w = d->weight;
    json_decref(d->tree);
    free(d);
    return w;
}

/* The cache key of a record key: 's' and the string, or 'n' and the number in the form
 * SQLite compares it. False for keys that are not cached (long, or with a NUL). */
static bool cache_key(const json_t *key, char out[STORE_CACHE_MAX_KEY]) {
    if (json_is_string(key)) {
        size_t n = json_string_length(key);
        const char *v = json_string_value(key);
        if (n + 2 > STORE_CACHE_MAX_KEY || memchr(v, '\0', n)) return false;
        out[0] = 's';
        memcpy(out + 1, v, n);
        out[n + 1] = '\0';
        return true;
    }
    if (json_is_integer(key)) {
        snprintf(out, STORE_CACHE_MAX_KEY, "n%lld", (long long)json_integer_value(key));
        return true;
    }
    if (json_is_real(key)) {
        double d = json_real_value(key); /* bound as an integer when whole (filter_bind_value) */
        if (d == trunc(d) && fabs(d) < 9007199254740992.0) snprintf(out, STORE_CACHE_MAX_KEY, "n%lld", (long long)d);
        else snprintf(out, STORE_CACHE_MAX_KEY, "n%.17g", d);
        return true;
    }
    return false;
}

/* Frees a bucket's cached records; returns the bytes they held. */
static size_t cache_free_entries(bucket_t *b) {
    size_t it = 0, bytes = 0;
    void *v;
    while (strmap_next(&b->cache, &it, NULL, &v)) bytes += cached_free(v);
    strmap_cleanup(&b->cache);
    strmap_init(&b->cache);
    return bytes;
}

static void cache_clear(store_t *st) {
    size_t it = 0;
    void *v;
    while (strmap_next(&st->buckets, &it, NULL, &v)) cache_free_entries(v);
    st->cache_entries = 0;
    st->cache_bytes = 0;
}

/* A batch's writes were rolled back: the cache may hold records it wrote, and the row
 * ids its queued inserts took are read again, in case another process wrote rows
 * meanwhile (the failure may have been its row id). */
static void writes_lost(store_t *st) {
    cache_clear(st);
    size_t it = 0;
    void *v;
    while (strmap_next(&st->buckets, &it, NULL, &v)) ((bucket_t *)v)->next_rowid = 0;
}

static void cache_forget(store_t *st, bucket_t *b, const json_t *key) {
    char k[STORE_CACHE_MAX_KEY];
    if (!b->cache.count || !cache_key(key, k)) return;
    cached_doc_t *d = strmap_del(&b->cache, k);
    if (d) {
        st->cache_entries--;
        st->cache_bytes -= cached_free(d);
    }
}

static cached_doc_t *cache_keep(store_t *st, bucket_t *b, const char *k, int64_t rowid, const char *doc,
                               size_t n) {
    if (n > STORE_CACHE_MAX_DOC) return NULL;
    if (st->cache_entries >= STORE_CACHE_MAX_ENTRIES || st->cache_bytes + n > STORE_CACHE_MAX_BYTES)
        cache_clear(st);
    cached_doc_t *d = xmalloc(sizeof *d + n);
    d->rowid = rowid;
    d->tree = NULL;
    d->weight = n;
    d->len = n;
    memcpy(d->doc, doc, n);
    cached_doc_t *old = strmap_put(&b->cache, k, d);
    if (old) st->cache_bytes -= cached_free(old);
    else st->cache_entries++;
    st->cache_bytes += n;
    return d;
}

static json_t *doc_parse(const char *doc, size_t n);

/* Gives the entry its parsed record (the reference is taken). */
static void cached_attach(store_t *st, cached_doc_t *d, json_t *tree) {
    d->tree = tree;
    size_t extra = d->len * STORE_CACHE_TREE_WEIGHT;
    d->weight += extra;
    st->cache_bytes += extra; /* may pass the bound until the next fill empties the cache */
}

/* The entry's parsed record, made now if it has none; NULL if the text does not parse.
 * Shared: everyone who gets it takes a reference and changes nothing in it. */
static json_t *cached_tree(store_t *st, cached_doc_t *d) {
    if (!d->tree) {
        json_t *tree = doc_parse(d->doc, d->len);
        if (!tree) return NULL;
        cached_attach(st, d, tree);
    }
    return d->tree;
}

/* After an update of a record the cache held: the new version replaces the old one, so
 * the next reader (the next checkout of a hot product) finds it. `doc` is the text just
 * written. If the write is then undone, tx_abort forgets the entry again. */
static void cache_refresh(store_t *st, bucket_t *b, const char *ck, int64_t rowid, json_t *rec,
                          const char *doc, size_t n) {
    cached_doc_t *d = cache_keep(st, b, ck, rowid, doc, n);
    if (d) cached_attach(st, d, json_incref(rec));
}

/* A bucket leaving the registry (dropped or redefined) takes its cache with it. */
static void bucket_retire(store_t *st, bucket_t *b) {
    if (!b) return;
    st->cache_entries -= b->cache.count;
    st->cache_bytes -= cache_free_entries(b);
    bucket_free(b);
}

/* ---- change sets ---- */

static void changes_add(store_t *st, bucket_t *b, change_kind_t kind, json_t *key, json_t *before,
                        json_t *after, int64_t rowid) {
    cache_forget(st, b, key);
    changes_t *c = &st->changes;
    if (c->count == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->items = xrealloc(c->items, c->cap * sizeof *c->items);
        c->rowids = xrealloc(c->rowids, c->cap * sizeof *c->rowids);
    }
    c->rowids[c->count] = rowid;
    store_change_t *ch = &c->items[c->count++];
    ch->bucket = b->name;
    ch->kind = kind;
    ch->key = json_incref(key);
    ch->before = json_incref(before);
    ch->after = json_incref(after);
}

static void changes_release(store_change_t *ch) {
    json_decref((json_t *)ch->key);
    json_decref((json_t *)ch->before);
    json_decref((json_t *)ch->after);
}

/* Drops the references a change list holds (not the array). */
static void changes_free_items(changes_t *c) {
    for (size_t i = 0; i < c->count; i++) changes_release(&c->items[i]);
    c->count = 0;
}

/* Whether some listener needs the change (see store_wants_fn). */
static bool change_wanted(const store_t *st, const store_change_t *ch) {
    for (const listener_t *l = st->listeners; l; l = l->next)
        if (!l->wants || l->wants(l->udata, ch->bucket, ch->kind)) return true;
    return false;
}

static void changes_reset(store_t *st) { changes_free_items(&st->changes); }

static void changes_emit(store_t *st) {
    if (st->changes.count == 0) return;
    /* Listeners may write to the store themselves (rule actions), which collects a new
     * change set: hand this one over first. */
    changes_t mine = st->changes;
    memset(&st->changes, 0, sizeof st->changes);
    store_changeset_t cs = {mine.items, mine.count};
    for (listener_t *l = st->listeners; l; l = l->next) l->fn(l->udata, &cs);
    changes_free_items(&mine);
    if (st->changes.items == NULL) {
        mine.count = 0;
        st->changes = mine; /* keep the arrays for the next write */
    } else {
        free(mine.items);
        free(mine.rowids);
    }
}

void store_listen(store_t *st, store_listener_fn fn, store_wants_fn wants, void *udata) {
    listener_t *l = xcalloc(1, sizeof *l);
    l->fn = fn;
    l->wants = wants;
    l->udata = udata;
    listener_t **tail = &st->listeners;
    while (*tail) tail = &(*tail)->next;
    *tail = l;
}

void store_unlisten(store_t *st, store_listener_fn fn, void *udata) {
    for (listener_t **p = &st->listeners; *p; p = &(*p)->next) {
        if ((*p)->fn == fn && (*p)->udata == udata) {
            listener_t *l = *p;
            *p = l->next;
            free(l);
            return;
        }
    }
}

/* ---- write transactions ---- */

/* Group commit. With st->group_commit, every write (one operation or one whole
 * transaction) runs in a savepoint of one database transaction that stays open until
 * store_batch_commit(), which the loop calls once per turn: the commit and the pages
 * it writes to the WAL are shared by every write of the turn. A failed write rolls
 * back to its savepoint only. Change sets are kept, one per write, and offered to the
 * listeners after the commit; the realtime layer holds answers until then too, so
 * nothing is acknowledged before it is durable. Without group commit (tests, tools)
 * every write commits on its own.
 *
 * A write that only inserts, updates and deletes records by key (every checkout, most
 * writes) runs without a savepoint: it is undone, if it fails halfway, by writing back
 * the rows its change set recorded (undo_changes). A savepoint makes SQLite copy every
 * page a write touches into a journal first, whether or not the write fails; that copy
 * was 6 % of a checkout's instructions. Writes whose effects are not all in their change set
 * keep the savepoint: a clear, and inserts into a bucket with an autoincrement field
 * (the counter is a row of its own). When a write cannot be undone (a statement of the
 * undo fails, or SQLite has already rolled the transaction back after an I/O error),
 * the whole batch is rolled back and every write of the turn fails (batch_fail). */

static void undo_changes(store_t *st);

/* Whether `op` on bucket b can be undone from its change set (see above). */
static bool write_undoable(const bucket_t *b, const char *op) {
    if (strcmp(op, "clear") == 0) return false;
    return !(b && b->autoincrement && strcmp(op, "insert") == 0);
}

/* Writes are refused from a batch_fail until the loop ends the turn with
 * store_batch_commit, which reports the failure. */
static int refuse_if_batch_failed(const store_t *st, err_t *err) {
    if (!st->batch_failed) return 0;
    err_set(err, ERR_INTERNAL, "Database error");
    return -1;
}

/* Opens the next batch: its BEGIN runs on the database's writer thread when there is one. */
static int batch_begin(store_t *st, err_t *err) {
    if (db_begin_queued(st->db, err) < 0) return -1;
    st->batch_open = true;
    st->batch_seq++;
    return 0;
}

static int tx_begin(store_t *st, bool undoable, err_t *err) {
    changes_reset(st);
    if (refuse_if_batch_failed(st, err) < 0) return -1;
    st->tx_active = true; /* until tx_commit or tx_abort */
    if (!st->group_commit) return db_begin(st->db, err);
    if (!st->batch_open && batch_begin(st, err) < 0) return -1;
    st->undo_mode = undoable;
    return undoable ? 0 : db_savepoint(st->db, err);
}

static void tx_abort(store_t *st) {
    st->tx_active = false;
    if (st->group_commit && st->batch_open) {
        if (st->undo_mode) undo_changes(st);
        else db_rollback_to(st->db);
    } else {
        db_rollback(st->db);
    }
    /* An update may have refreshed a cached record with the version now undone. */
    for (size_t i = 0; i < st->changes.count; i++) {
        bucket_t *b = strmap_get(&st->buckets, st->changes.items[i].bucket);
        if (b) cache_forget(st, b, st->changes.items[i].key);
    }
    changes_reset(st);
}

/* The batch's database transaction is gone or cannot be trusted: roll it back now, and
 * let store_batch_commit report the failure for every write of the turn. */
static void batch_fail(store_t *st, const char *why) {
    log_error("store.batch_failed", "error=\"%s\"", why);
    db_rollback(st->db); /* also when SQLite has rolled back already: the db forgets it */
    st->batch_open = false;
    st->batch_failed = true;
    writes_lost(st);
}

static int tx_commit(store_t *st, err_t *err) {
    st->tx_active = false;
    st->counters.writes++;
    if (!st->group_commit) {
        if (db_commit(st->db, err) < 0) {
            changes_reset(st);
            return -1;
        }
        changes_emit(st);
        return 0;
    }
    if (!st->undo_mode && db_release(st->db, err) < 0) {
        tx_abort(st);
        return -1;
    }
    /* Move this write's changes to the batch, remembering where its set ends. */
    changes_t *b = &st->batch;
    for (size_t i = 0; i < st->changes.count; i++) {
        if (!change_wanted(st, &st->changes.items[i])) {
            changes_release(&st->changes.items[i]);
            continue;
        }
        if (b->count == b->cap) {
            b->cap = b->cap ? b->cap * 2 : 16;
            b->items = xrealloc(b->items, b->cap * sizeof *b->items);
        }
        b->items[b->count++] = st->changes.items[i];
    }
    st->changes.count = 0; /* references moved */
    if (st->bound_count == st->bound_cap) {
        st->bound_cap = st->bound_cap ? st->bound_cap * 2 : 16;
        st->bounds = xrealloc(st->bounds, st->bound_cap * sizeof *st->bounds);
    }
    st->bounds[st->bound_count++] = b->count;
    return 0;
}

void store_set_group_commit(store_t *st, bool on) { st->group_commit = on; }

int store_write_begin(store_t *st, err_t *err) {
    if (refuse_if_batch_failed(st, err) < 0) return -1;
    if (!st->group_commit || st->batch_open || db_in_transaction(st->db)) return 0;
    return batch_begin(st, err);
}

void store_on_batch_commit(store_t *st, store_commit_fn fn, void *udata) {
    st->on_commit = fn;
    st->on_commit_udata = udata;
}
/* A failed batch counts as open until store_batch_commit has reported it. */
bool store_batch_open(const store_t *st) { return st->batch_open || st->batch_failed; }

uint64_t store_batch_pending(const store_t *st) {
    if (st->batch_open || st->batch_failed) return st->batch_seq;
    return st->ncommitting ? st->committing[st->ncommitting - 1].seq : 0;
}

size_t store_batch_writes(const store_t *st) { return st->batch_open ? st->bound_count : 0; }

void store_on_commit_done(store_t *st, void (*notify)(void *udata), void *udata) {
    db_set_notify(st->db, notify, udata);
}

/* Takes the open batch's change sets out of the store, for its commit. */
static struct committing batch_take(store_t *st) {
    struct committing c = {st->batch_seq, st->batch, st->bounds, st->bound_count};
    memset(&st->batch, 0, sizeof st->batch);
    st->bounds = NULL;
    st->bound_count = st->bound_cap = 0;
    return c;
}

/* Offers each write's change set of a committed batch to the listeners, in order,
 * then frees the batch. Listeners may write again, which opens the next batch. */
static void batch_offer(store_t *st, struct committing *c, bool committed) {
    if (committed) {
        size_t start = 0;
        for (size_t i = 0; i < c->nb; i++) {
            if (c->bounds[i] > start) { /* (no items at all when no listener wanted a change) */
                store_changeset_t cs = {c->changes.items + start, c->bounds[i] - start};
                for (listener_t *l = st->listeners; l; l = l->next) l->fn(l->udata, &cs);
            }
            start = c->bounds[i];
        }
    }
    changes_free_items(&c->changes);
    free(c->changes.items);
    free(c->bounds);
}

void store_batch_poll(store_t *st) {
    uint64_t seq;
    int rc;
    err_t err = ERR_INIT;
    while (st->ncommitting && db_completed(st->db, &seq, &rc, &err)) {
        struct committing c = st->committing[0];
        memmove(st->committing, st->committing + 1, --st->ncommitting * sizeof *st->committing);
        if (c.seq != seq)
            log_error("store.commit_out_of_order", "batch=%llu reported=%llu", (unsigned long long)c.seq,
                      (unsigned long long)seq);
        /* The open batch was built on this one, and its writes are lost with it. */
        if (rc < 0 && st->batch_open) batch_fail(st, "an earlier batch failed");
        else if (rc < 0) writes_lost(st);
        if (st->on_commit) st->on_commit(st->on_commit_udata, c.seq, rc, &err);
        batch_offer(st, &c, rc == 0);
        err_clear(&err);
    }
}

/* Waits for the batches the writer thread commits and reports them. */
static void batch_settle(store_t *st) {
    if (!st->ncommitting) return;
    db_drain(st->db);
    store_batch_poll(st);
}

int store_batch_commit_queued(store_t *st, err_t *err) {
    if (!st->batch_open || st->batch_failed || !db_queues_transactions(st->db)) return store_batch_commit(st, err);
    st->batch_open = false;
    if (st->ncommitting == st->committing_cap) {
        st->committing_cap = st->committing_cap ? st->committing_cap * 2 : 8;
        st->committing = xrealloc(st->committing, st->committing_cap * sizeof *st->committing);
    }
    st->committing[st->ncommitting++] = batch_take(st);
    db_commit_queued(st->db, st->batch_seq);
    return 0;
}

int store_batch_commit(store_t *st, err_t *err) {
    batch_settle(st); /* batches are reported in order */
    if (!st->batch_open && !st->batch_failed) return 0;
    bool failed = st->batch_failed; /* already rolled back by batch_fail */
    st->batch_open = false;
    st->batch_failed = false;
    struct committing c = batch_take(st);
    int rc;
    if (failed) {
        err_set(err, ERR_INTERNAL, "Database error");
        rc = -1;
    } else if ((rc = db_commit(st->db, err)) < 0) { /* db_commit has rolled it back */
        writes_lost(st);
    }
    if (st->on_commit) st->on_commit(st->on_commit_udata, c.seq, rc, err);
    batch_offer(st, &c, rc == 0); /* one change set per write, in commit order */
    return rc;
}

/* Definitions change outside the batch: whatever the batch holds commits first. */
static int ddl_begin(store_t *st, err_t *err) {
    if (store_batch_commit(st, err) < 0) return -1;
    changes_reset(st);
    return db_begin(st->db, err);
}

static void ddl_abort(store_t *st) {
    db_rollback(st->db);
    changes_reset(st);
}

/* ---- buckets ---- */

bucket_t *store_bucket_find(const store_t *st, const char *name, err_t *err) {
    bucket_t *b = name ? strmap_get(&st->buckets, name) : NULL;
    if (!b) {
        if (!name) bad_field(err, "bucket", "non-empty string");
        else err_set(err, ERR_BUCKET_NOT_DEFINED, "Bucket \"%s\" is not defined", name);
    }
    return b;
}

const schema_t *store_bucket_get(const store_t *st, const char *name) {
    bucket_t *b = strmap_get(&st->buckets, name);
    return b ? b->schema : NULL;
}

static void bucket_free(bucket_t *b) {
    if (!b) return;
    cache_free_entries(b);
    schema_free(b->schema);
    free(b->name);
    free(b->sql_get_row);
    free(b->sql_insert);
    free(b->sql_insert_row);
    free(b->sql_update);
    free(b->sql_delete);
    free(b->table);
    free(b->sql_update_unindexed);
    free(b->cols);
    free(b->indexed);
    free(b);
}

/* The columns some index covers (index_ddl makes the indexes): key, unique, indexes. */
static const char **bucket_indexed(const schema_t *s, size_t *n) {
    const char **v = xmalloc((s->field_count + s->index_count + 1) * sizeof *v);
    size_t k = 0;
    v[k++] = s->key;
    for (size_t i = 0; i < s->field_count; i++)
        if (s->fields[i].unique && strcmp(s->fields[i].name, s->key) != 0) v[k++] = s->fields[i].name;
    for (size_t i = 0; i < s->index_count; i++) v[k++] = s->indexes[i];
    *n = k;
    return v;
}

static bool in_list(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

/* The typed columns in table order: an undeclared key, the declared fields, metadata. */
static const char **bucket_columns(const schema_t *s, size_t *n) {
    const char **cols = xmalloc((s->field_count + 4) * sizeof *cols);
    size_t k = 0;
    if (!schema_field_get(s, s->key)) cols[k++] = s->key;
    for (size_t i = 0; i < s->field_count; i++) cols[k++] = s->fields[i].name;
    cols[k++] = "_version";
    cols[k++] = "_createdAt";
    cols[k++] = "_updatedAt";
    *n = k;
    return cols;
}

static bucket_t *bucket_make(const char *name, schema_t *schema, int64_t order) {
    bucket_t *b = xcalloc(1, sizeof *b);
    strmap_init(&b->cache);
    b->name = xstrdup(name);
    b->schema = schema;
    b->order = order;
    buf_t t;
    buf_init(&t, 0);
    db_quote_ident(&t, name);
    b->table = buf_take(&t, NULL);
    buf_t k;
    buf_init(&k, 0);
    db_quote_ident(&k, schema->key);
    buf_printf(&t, "SELECT _rowid, _doc FROM %s WHERE %s = ?1", b->table, k.data);
    b->sql_get_row = buf_take(&t, NULL);
    b->cols = bucket_columns(schema, &b->ncols);
    for (int with_rowid = 0; with_rowid <= 1; with_rowid++) {
        buf_printf(&t, "INSERT INTO %s(_doc%s", b->table, with_rowid ? ", _rowid" : "");
        for (size_t i = 0; i < b->ncols; i++) {
            buf_append_char(&t, ',');
            db_quote_ident(&t, b->cols[i]);
        }
        buf_append_str(&t, with_rowid ? ") VALUES (?1, ?2" : ") VALUES (?1");
        for (size_t i = 0; i < b->ncols; i++) buf_printf(&t, ",?%zu", i + 3);
        buf_append_char(&t, ')');
        *(with_rowid ? &b->sql_insert_row : &b->sql_insert) = buf_take(&t, NULL);
    }
    b->queue_inserts = true;
    for (size_t i = 0; i < schema->field_count; i++) {
        const schema_field_t *f = &schema->fields[i];
        b->autoincrement |= f->generated == GEN_AUTOINCREMENT;
        if (f->generated == GEN_AUTOINCREMENT || (f->unique && strcmp(f->name, schema->key) != 0))
            b->queue_inserts = false;
    }
    /* SQLite rewrites the entries of every index whose column an UPDATE sets, even to
     * the same value; most updates (stock, balance, status) leave indexed fields as
     * they were and use the statement that does not set them. */
    b->indexed = bucket_indexed(schema, &b->nindexed);
    for (int all = 1; all >= 0; all--) {
        buf_printf(&t, "UPDATE %s SET _doc = ?1", b->table);
        for (size_t i = 0; i < b->ncols; i++) {
            if (!all && in_list(b->cols[i], b->indexed, b->nindexed)) continue;
            buf_append_char(&t, ',');
            db_quote_ident(&t, b->cols[i]);
            buf_printf(&t, " = ?%zu", i + 3);
        }
        buf_append_str(&t, " WHERE _rowid = ?2");
        *(all ? &b->sql_update : &b->sql_update_unindexed) = buf_take(&t, NULL);
    }
    buf_printf(&t, "DELETE FROM %s WHERE _rowid = ?1", b->table);
    b->sql_delete = buf_take(&t, NULL);
    buf_cleanup(&k);
    return b;
}

static const char *column_type(const schema_field_t *f) {
    if (!f) return ""; /* an undeclared key: keep the JSON type as is */
    switch (f->type) {
    case FIELD_STRING: return " TEXT";
    case FIELD_NUMBER: return " REAL";
    case FIELD_INTEGER:
    case FIELD_BOOLEAN: return " INTEGER";
    case FIELD_OBJECT:
    case FIELD_ARRAY: return " TEXT";
    case FIELD_DATE: return ""; /* a number or an ISO string */
    }
    return "";
}

static void column_def(buf_t *sql, const char *name, const char *type) {
    db_quote_ident(sql, name);
    buf_append_str(sql, type);
}

/* Appends the SQL expression that reads field `name` from a stored document: what the
 * column holds, for filling columns from documents already stored. */
static void column_from_doc(buf_t *sql, const char *name) {
    buf_printf(sql, "json_extract(_doc, '$.%s')", name);
}

/* Appends CREATE INDEX statements for the key, unique fields and indexes. */
static void index_ddl(buf_t *sql, const char *name, const schema_t *s) {
    buf_t t;
    buf_init(&t, 0);
    db_quote_ident(&t, name);
    buf_append_str(sql, "CREATE UNIQUE INDEX ");
    char idx[200];
    snprintf(idx, sizeof idx, "%s__key", name);
    db_quote_ident(sql, idx);
    buf_printf(sql, " ON %s(", t.data);
    db_quote_ident(sql, s->key);
    buf_append_str(sql, ");");
    for (size_t i = 0; i < s->field_count; i++) {
        const schema_field_t *f = &s->fields[i];
        if (!f->unique || strcmp(f->name, s->key) == 0) continue;
        snprintf(idx, sizeof idx, "%s__u_%s", name, f->name);
        buf_append_str(sql, "CREATE UNIQUE INDEX ");
        db_quote_ident(sql, idx);
        buf_printf(sql, " ON %s(", t.data);
        db_quote_ident(sql, f->name);
        buf_append_str(sql, ");");
    }
    for (size_t i = 0; i < s->index_count; i++) {
        snprintf(idx, sizeof idx, "%s__i_%s", name, s->indexes[i]);
        buf_append_str(sql, "CREATE INDEX ");
        db_quote_ident(sql, idx);
        buf_printf(sql, " ON %s(", t.data);
        db_quote_ident(sql, s->indexes[i]);
        buf_append_str(sql, ");");
    }
    buf_cleanup(&t);
}

/* CREATE TABLE `table` with the layout of schema s (no indexes). */
static void table_create_sql(buf_t *sql, const char *table, const schema_t *s) {
    buf_append_str(sql, "CREATE TABLE ");
    db_quote_ident(sql, table);
    buf_append_str(sql, " (_rowid INTEGER PRIMARY KEY, _doc TEXT NOT NULL");
    const schema_field_t *kf = schema_field_get(s, s->key);
    if (!kf) {
        buf_append_str(sql, ", ");
        column_def(sql, s->key, "");
    }
    for (size_t i = 0; i < s->field_count; i++) {
        buf_append_str(sql, ", ");
        column_def(sql, s->fields[i].name, column_type(&s->fields[i]));
    }
    buf_append_str(sql, ", ");
    column_def(sql, "_version", " INTEGER");
    buf_append_str(sql, ", ");
    column_def(sql, "_createdAt", " INTEGER");
    buf_append_str(sql, ", ");
    column_def(sql, "_updatedAt", " INTEGER");
    buf_append_str(sql, ");");
}

static void table_ddl(buf_t *sql, const char *name, const schema_t *s) {
    table_create_sql(sql, name, s);
    index_ddl(sql, name, s);
}

/* Drops every index shopd made for the bucket (they are rebuilt from the schema). */
static int drop_indexes(store_t *st, const char *name, err_t *err) {
    db_stmt_t *q = db_prepare(st->db, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1"
                                      " AND name LIKE ?2 ESCAPE '\\'", err);
    if (!q) return -1;
    db_bind_text(q, 1, name, strlen(name));
    buf_t like;
    buf_init(&like, 0);
    for (const char *p = name; *p; p++) {
        if (*p == '_' || *p == '%' || *p == '\\') buf_append_char(&like, '\\');
        buf_append_char(&like, *p);
    }
    buf_append_str(&like, "\\_\\_%");
    db_bind_text(q, 2, like.data, like.len);
    buf_cleanup(&like);
    buf_t sql;
    buf_init(&sql, 0);
    err_t e2 = ERR_INIT;
    while (db_step(q, &e2) == DB_ROW) {
        buf_append_str(&sql, "DROP INDEX ");
        db_quote_ident(&sql, db_column_text(q, 0, NULL));
        buf_append_char(&sql, ';');
    }
    db_done(q);
    err_clear(&e2);
    int rc = sql.len ? db_exec(st->db, sql.data, err) : 0;
    buf_cleanup(&sql);
    return rc;
}

/* Brings an existing table in line with a new schema: columns are dropped and re-added
 * (filled from the stored documents) as needed, indexes rebuilt. Records are kept as
 * they are. */
static int table_alter(store_t *st, const char *name, const schema_t *old, const schema_t *neu, err_t *err) {
    if (drop_indexes(st, name, err) < 0) return -1;
    buf_t sql;
    buf_init(&sql, 0);
    /* Columns of the old schema (and its key) that the new one lacks or types differently. */
    for (size_t i = 0; i <= old->field_count; i++) {
        const char *col = i < old->field_count ? old->fields[i].name : old->key;
        const schema_field_t *of = schema_field_get(old, col);
        const schema_field_t *nf = schema_field_get(neu, col);
        bool in_new = nf || strcmp(col, neu->key) == 0;
        if (i == old->field_count && of) continue; /* declared key handled above */
        if (in_new && strcmp(column_type(of), column_type(nf)) == 0) continue;
        buf_append_str(&sql, "ALTER TABLE ");
        db_quote_ident(&sql, name);
        buf_append_str(&sql, " DROP COLUMN ");
        db_quote_ident(&sql, col);
        buf_append_char(&sql, ';');
    }
    for (size_t i = 0; i <= neu->field_count; i++) {
        const char *col = i < neu->field_count ? neu->fields[i].name : neu->key;
        const schema_field_t *nf = schema_field_get(neu, col);
        const schema_field_t *of = schema_field_get(old, col);
        bool in_old = of || strcmp(col, old->key) == 0;
        if (i == neu->field_count && nf) continue;
        if (in_old && strcmp(column_type(of), column_type(nf)) == 0) continue;
        buf_append_str(&sql, "ALTER TABLE ");
        db_quote_ident(&sql, name);
        buf_append_str(&sql, " ADD COLUMN ");
        column_def(&sql, col, column_type(nf));
        buf_append_str(&sql, ";UPDATE ");
        db_quote_ident(&sql, name);
        buf_append_str(&sql, " SET ");
        db_quote_ident(&sql, col);
        buf_append_str(&sql, " = ");
        column_from_doc(&sql, col);
        buf_append_char(&sql, ';');
    }
    index_ddl(&sql, name, neu);
    int rc = db_exec(st->db, sql.data, err);
    buf_cleanup(&sql);
    if (rc < 0) err_set(err, ERR_CONFLICT, "Bucket \"%s\" cannot take the new definition: existing records violate a unique constraint or index", name);
    return rc;
}

static int bucket_persist(store_t *st, const char *name, const schema_t *s, int64_t order, err_t *err) {
    db_stmt_t *q = db_prepare(st->db,
                              "INSERT INTO _shopd_buckets(name, definition, position, created_at)"
                              " VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET definition = ?2",
                              err);
    if (!q) return -1;
    size_t n;
    char *def = json_write_dup(s->definition, &n);
    db_bind_text(q, 1, name, strlen(name));
    db_bind_text(q, 2, def, n);
    db_bind_int(q, 3, order);
    db_bind_int(q, 4, clock_now_ms());
    db_step_t r = db_step(q, err);
    db_done(q);
    free(def);
    return r == DB_ERROR ? -1 : 0;
}

int store_define_bucket(store_t *st, const char *name, const json_t *definition, bool replace, err_t *err) {
    if (!name || !schema_bucket_name_ok(name)) {
        err_set(err, ERR_VALIDATION,
                "Invalid bucket name \"%s\": use a letter followed by up to 62 letters, digits, '_' or '-'",
                name ? name : "");
        return -1;
    }
    bucket_t *old = strmap_get(&st->buckets, name);
    if (old && !replace) {
        err_set(err, ERR_ALREADY_EXISTS, "Bucket \"%s\" already exists", name);
        return -1;
    }
    if (!old && st->buckets.count >= STORE_MAX_BUCKETS) {
        err_set(err, ERR_VALIDATION, "Too many buckets (at most %d)", STORE_MAX_BUCKETS);
        return -1;
    }
    schema_t *s = schema_compile(name, definition, err);
    if (!s) return -1;
    if (old && json_equal(old->schema->definition, s->definition)) {
        schema_free(s);
        return 0;
    }
    int64_t order = old ? old->order : st->next_order++;
    if (ddl_begin(st, err) < 0) {
        schema_free(s);
        return -1;
    }
    int rc;
    if (old) {
        rc = table_alter(st, name, old->schema, s, err);
    } else {
        buf_t sql;
        buf_init(&sql, 0);
        table_ddl(&sql, name, s);
        rc = db_exec(st->db, sql.data, err);
        buf_cleanup(&sql);
    }
    if (rc == 0) rc = bucket_persist(st, name, s, order, err);
    if (rc == 0) rc = db_commit(st->db, err);
    if (rc < 0) {
        ddl_abort(st);
        schema_free(s);
        return -1;
    }
    bucket_t *b = bucket_make(name, s, order);
    bucket_retire(st, strmap_put(&st->buckets, name, b));
    st->def_version++;
    log_info("store.bucket_defined", "bucket=%s replaced=%s", name, old ? "yes" : "no");
    return 0;
}

int store_drop_bucket(store_t *st, const char *name, err_t *err) {
    bucket_t *b = store_bucket_find(st, name, err);
    if (!b) return -1;
    if (ddl_begin(st, err) < 0) return -1;
    buf_t sql;
    buf_init(&sql, 0);
    buf_printf(&sql, "DROP TABLE %s", b->table);
    int rc = db_exec(st->db, sql.data, err);
    buf_cleanup(&sql);
    const char *dels[] = {"DELETE FROM _shopd_buckets WHERE name = ?1",
                          "DELETE FROM _shopd_counters WHERE bucket = ?1"};
    for (int i = 0; rc == 0 && i < 2; i++) {
        db_stmt_t *q = db_prepare(st->db, dels[i], err);
        if (!q) rc = -1;
        else {
            db_bind_text(q, 1, name, strlen(name));
            if (db_step(q, err) == DB_ERROR) rc = -1;
            db_done(q);
        }
    }
    if (rc == 0) rc = db_commit(st->db, err);
    if (rc < 0) {
        ddl_abort(st);
        return -1;
    }
    bucket_retire(st, strmap_del(&st->buckets, name));
    st->def_version++;
    log_info("store.bucket_dropped", "bucket=%s", name);
    return 0;
}

int store_update_bucket(store_t *st, const char *name, const json_t *updates, err_t *err) {
    bucket_t *b = store_bucket_find(st, name, err);
    if (!b) return -1;
    if (!json_is_object(updates)) return bad_field(err, "updates", "object");
    schema_t *s = schema_extend(b->schema, updates, err);
    if (!s) return -1;
    json_t *def = json_incref(s->definition);
    schema_free(s);
    int rc = store_define_bucket(st, name, def, true, err);
    json_decref(def);
    return rc;
}

int store_bucket_schema(store_t *st, const char *name, buf_t *out, err_t *err) {
    bucket_t *b = store_bucket_find(st, name, err);
    if (!b) return -1;
    json_write(out, b->schema->definition);
    return 0;
}

static int bucket_order_cmp(const void *a, const void *b) {
    const bucket_t *x = *(bucket_t *const *)a, *y = *(bucket_t *const *)b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Buckets in definition order; the array is the caller's to free. */
static bucket_t **buckets_sorted(const store_t *st, size_t *n) {
    bucket_t **v = xmalloc((st->buckets.count + 1) * sizeof *v);
    size_t it = 0, k = 0;
    void *val;
    while (strmap_next(&st->buckets, &it, NULL, &val)) v[k++] = val;
    qsort(v, k, sizeof *v, bucket_order_cmp);
    *n = k;
    return v;
}

static void write_bucket_names(const store_t *st, buf_t *out) {
    size_t n;
    bucket_t **v = buckets_sorted(st, &n);
    buf_printf(out, "{\"count\":%zu,\"names\":[", n);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append_char(out, ',');
        json_write_string(out, v[i]->name, strlen(v[i]->name));
    }
    buf_append_str(out, "]}");
    free(v);
}

void store_buckets(store_t *st, buf_t *out) { write_bucket_names(st, out); }

int store_stats(store_t *st, buf_t *out, err_t *err) {
    buf_append_str(out, "{\"buckets\":");
    write_bucket_names(st, out);
    buf_append_str(out, ",\"records\":{");
    size_t n;
    bucket_t **v = buckets_sorted(st, &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        buf_t sql;
        buf_init(&sql, 0);
        buf_printf(&sql, "SELECT count(*) FROM %s", v[i]->table);
        db_stmt_t *q = db_prepare(st->db, sql.data, err);
        buf_cleanup(&sql);
        if (!q || db_step(q, err) != DB_ROW) rc = -1;
        else {
            if (i) buf_append_char(out, ',');
            json_write_string(out, v[i]->name, strlen(v[i]->name));
            buf_printf(out, ":%lld", (long long)db_column_int(q, 0));
        }
        db_done(q);
    }
    free(v);
    buf_append_str(out, "}}");
    return rc;
}

/* ---- generated values ---- */

/* The next value is past both the counter and the largest value already stored, so
 * records inserted with explicit values never collide with generated ones. */
static json_t *gen_autoincrement(void *ctx, const schema_t *s, const schema_field_t *f, err_t *err) {
    store_t *st = ctx;
    bucket_t *b = strmap_get(&st->buckets, s->bucket);
    int64_t floor_value = 0;
    if (b) {
        buf_t sql;
        buf_init(&sql, 0);
        buf_append_str(&sql, "SELECT coalesce(max(");
        db_quote_ident(&sql, f->name);
        buf_printf(&sql, "), 0) FROM %s", b->table);
        db_stmt_t *m = db_prepare(st->db, sql.data, err);
        buf_cleanup(&sql);
        if (!m) return NULL;
        if (db_step(m, err) == DB_ROW) floor_value = db_column_int(m, 0);
        db_done(m);
    }
    db_stmt_t *q = db_prepare(st->db,
                              "INSERT INTO _shopd_counters(bucket, field, value) VALUES (?1, ?2, max(1, ?3 + 1))"
                              " ON CONFLICT(bucket, field) DO UPDATE SET value = max(value + 1, ?3 + 1)"
                              " RETURNING value",
                              err);
    if (!q) return NULL;
    db_bind_text(q, 1, s->bucket, strlen(s->bucket));
    db_bind_text(q, 2, f->name, strlen(f->name));
    db_bind_int(q, 3, floor_value);
    json_t *v = NULL;
    if (db_step(q, err) == DB_ROW) v = json_integer(db_column_int(q, 0));
    db_done(q);
    return v;
}

/* ---- reading rows ---- */

/* A stored document (an object) read back, or NULL if it is not one. */
static json_t *doc_parse(const char *doc, size_t n) {
    json_t *rec = json_parse(doc, n, STORE_DOC_MAX_DEPTH, NULL);
    if (rec && !json_is_object(rec)) {
        json_decref(rec);
        rec = NULL;
    }
    return rec;
}

/* Reads a record by key: *rowid_out and a shared, read-only tree (see cached_tree; an
 * update works on a copy, schema_prepare_update), or NULL when there is none. A cached
 * record is what the database holds: every write forgets or refreshes the keys it
 * changes, and an undone write forgets them. With `fill` (a read outside any write:
 * store_get_shared) a record read from the database is also kept in the cache, and
 * hits and misses are counted. */
static int record_fetch(store_t *st, bucket_t *b, const json_t *key, bool fill, int64_t *rowid_out,
                        json_t **rec_out, err_t *err) {
    *rec_out = NULL;
    char ck[STORE_CACHE_MAX_KEY];
    bool keyed = cache_key(key, ck);
    cached_doc_t *d = keyed && b->cache.count ? strmap_get(&b->cache, ck) : NULL;
    json_t *tree = d ? cached_tree(st, d) : NULL;
    if (tree) {
        st->counters.cache_hits += fill;
        *rowid_out = d->rowid;
        *rec_out = json_incref(tree);
        return 0;
    }
    st->counters.cache_misses += fill && keyed;
    db_stmt_t *q = db_prepare(st->db, b->sql_get_row, err);
    if (!q) return -1;
    filter_bind_value(q, 1, key);
    db_step_t r = db_step(q, err);
    if (r == DB_ROW) {
        size_t n;
        const char *doc = db_column_text(q, 1, &n);
        *rowid_out = db_column_int(q, 0);
        d = fill && keyed ? cache_keep(st, b, ck, *rowid_out, doc, n) : NULL;
        *rec_out = d ? json_incref(cached_tree(st, d)) : doc_parse(doc, n);
        if (!*rec_out) {
            log_error("store.corrupt_record", "bucket=%s rowid=%lld", b->name, (long long)*rowid_out);
            err_set(err, ERR_INTERNAL, "Internal error");
            r = DB_ERROR;
        }
    }
    db_done(q);
    return r == DB_ERROR ? -1 : 0;
}

static int record_load(store_t *st, bucket_t *b, const json_t *key, int64_t *rowid_out, json_t **rec_out,
                       err_t *err) {
    return record_fetch(st, b, key, false, rowid_out, rec_out, err);
}

/* After an UPDATE or DELETE by the rowid record_load found: exactly one row must have
 * changed. None means the record cache held a row that is gone, which its invalidation
 * rules out; should it happen anyway the write fails (its transaction rolls back) and
 * the cache is emptied, so that a retry reads the database. */
static int row_write_check(store_t *st, const bucket_t *b, int64_t rowid, err_t *err) {
    if (db_changes(st->db) == 1) return 0;
    log_error("store.row_missing", "bucket=%s rowid=%lld", b->name, (long long)rowid);
    cache_clear(st);
    err_set(err, ERR_INTERNAL, "Internal error");
    return -1;
}

/* Appends the _doc of every row of q (column `col`) as a JSON array. */
static int rows_to_array(db_stmt_t *q, int col, buf_t *out, err_t *err) {
    buf_append_char(out, '[');
    size_t start = out->len;
    db_step_t r;
    while ((r = db_step(q, err)) == DB_ROW) {
        size_t n;
        const char *doc = db_column_text(q, col, &n);
        if (out->len > start) buf_append_char(out, ',');
        buf_append(out, doc, n);
        if (out->len > STORE_MAX_RESULT_BYTES) {
            err_set(err, ERR_VALIDATION, "Result too large (over %u MiB): narrow the filter or use store.paginate",
                    STORE_MAX_RESULT_BYTES >> 20);
            return -1;
        }
    }
    buf_append_char(out, ']');
    return r == DB_ERROR ? -1 : 0;
}

static int numeric_field(const bucket_t *b, const char *field, err_t *err) {
    if (!field) return bad_field(err, "field", "non-empty string");
    const schema_field_t *f = schema_field_get(b->schema, field);
    bool meta = strcmp(field, "_version") == 0 || strcmp(field, "_createdAt") == 0 ||
                strcmp(field, "_updatedAt") == 0;
    if (meta || (f && (f->type == FIELD_NUMBER || f->type == FIELD_INTEGER || f->type == FIELD_DATE)))
        return 0;
    if (!f && strcmp(field, b->schema->key) != 0)
        err_set(err, ERR_VALIDATION, "Unknown field \"%s\" in bucket \"%s\"", field, b->name);
    else
        err_set(err, ERR_VALIDATION, "Field \"%s\" of bucket \"%s\" is not numeric", field, b->name);
    return -1;
}

/* ORDER BY from a query's orderBy ([{field, dir}]); always ends with _rowid. */
static int order_by(const bucket_t *b, const json_t *ob, bool reverse, buf_t *sql, err_t *err) {
    buf_append_str(sql, " ORDER BY ");
    size_t i;
    json_t *o;
    if (ob && !json_is_array(ob)) return bad_field(err, "orderBy", "array of {field, dir}");
    json_array_foreach(ob, i, o) {
        const char *field = json_string_value(json_object_get(o, "field"));
        const char *dir = json_string_value(json_object_get(o, "dir"));
        if (!field || !filter_field_ok(b->schema, field)) {
            err_set(err, ERR_VALIDATION, "Invalid orderBy[%zu]: unknown field \"%s\" in bucket \"%s\"", i,
                    field ? field : "", b->name);
            return -1;
        }
        bool desc = dir && strcmp(dir, "desc") == 0;
        if (dir && !desc && strcmp(dir, "asc") != 0) {
            err_set(err, ERR_VALIDATION, "Invalid orderBy[%zu]: \"dir\" must be \"asc\" or \"desc\"", i);
            return -1;
        }
        db_quote_ident(sql, field);
        buf_append_str(sql, (desc != reverse) ? " DESC, " : ", ");
    }
    buf_append_str(sql, reverse ? "_rowid DESC" : "_rowid");
    return 0;
}

/* Appends " AND <owner column> = ?" and its value. */
static void owner_sql(const bucket_t *b, const store_owner_t *owner, buf_t *sql, json_t *params) {
    if (!owner || !owner->field) return;
    buf_append_str(sql, " AND ");
    if (schema_field_get(b->schema, owner->field) || strcmp(owner->field, b->schema->key) == 0) {
        db_quote_ident(sql, owner->field);
    } else {
        buf_printf(sql, "json_extract(_doc, '$.%s')", owner->field);
    }
    buf_append_str(sql, " = ?");
    json_array_append_new(params, json_string(owner->user_id ? owner->user_id : ""));
}

/* Appends the WHERE condition of a read: the filter, then the caller's ownership. */
static int where_sql(const bucket_t *b, const json_t *filter, const store_owner_t *owner, buf_t *sql,
                     json_t *params, err_t *err) {
    if (filter_compile(b->schema, filter, sql, params, err) < 0) return -1;
    owner_sql(b, owner, sql, params);
    return 0;
}

/* Prepares a read's SQL with its filter parameters bound. */
static db_stmt_t *prepare_bound(store_t *st, const buf_t *sql, const json_t *params, err_t *err) {
    db_stmt_t *q = db_prepare(st->db, sql->data, err);
    if (q) filter_bind(q, params, 1);
    return q;
}

static bool owns(const json_t *rec, const store_owner_t *owner) {
    if (!owner || !owner->field) return true;
    const char *v = json_string_value(json_object_get(rec, owner->field));
    return v && owner->user_id && strcmp(v, owner->user_id) == 0;
}

static int forbidden(err_t *err, const char *op, const bucket_t *b) {
    err_set(err, ERR_FORBIDDEN, "No permission for store.%s on %s", op, b->name);
    return -1;
}

int store_read_op(store_t *st, bucket_t *b, const char *op, const json_t *r, const store_owner_t *owner,
                  buf_t *out, err_t *err) {
    st->counters.reads++;
    if (strcmp(op, "get") == 0) { /* first: the hot path needs none of the fields below */
        const json_t *key = json_object_get(r, "key");
        if (key_check(b, key, err) < 0) return -1;
        char ck[STORE_CACHE_MAX_KEY];
        bool cacheable = !st->tx_active && !(owner && owner->field) && cache_key(key, ck);
        if (cacheable) {
            const cached_doc_t *d = strmap_get(&b->cache, ck);
            if (d) {
                st->counters.cache_hits++;
                buf_append(out, d->doc, d->len);
                return 0;
            }
            st->counters.cache_misses++;
        }
        db_stmt_t *q = db_prepare(st->db, b->sql_get_row, err);
        if (!q) return -1;
        filter_bind_value(q, 1, key);
        db_step_t s = db_step(q, err);
        if (s == DB_ROW && owner && owner->field) {
            /* Records of others are invisible: parse and check the owner field. */
            size_t n;
            const char *doc = db_column_text(q, 1, &n);
            json_t *rec = doc_parse(doc, n);
            if (!owns(rec, owner)) s = DB_DONE;
            json_decref(rec);
        }
        if (s == DB_ROW) {
            size_t n;
            const char *doc = db_column_text(q, 1, &n);
            buf_append(out, doc, n);
            if (cacheable) cache_keep(st, b, ck, db_column_int(q, 0), doc, n);
        } else if (s == DB_DONE) {
            buf_append_str(out, "null");
        }
        db_done(q);
        return s == DB_ERROR ? -1 : 0;
    }

    const json_t *filter = json_object_get(r, "filter");
    const json_t *ob = json_object_get(r, "orderBy");
    int64_t limit = 0;
    int has_limit = req_count(r, "limit", false, &limit, err);
    if (has_limit < 0 && strcmp(op, "paginate") != 0) return -1;

    bool needs_filter = strcmp(op, "where") == 0 || strcmp(op, "findOne") == 0;
    if (needs_filter && !json_is_object(filter)) return bad_field(err, "filter", "object");
    if (filter && !json_is_null(filter) && !json_is_object(filter)) return bad_field(err, "filter", "object");

    buf_t sql;
    buf_init(&sql, 0);
    json_t *params = json_array();
    int rc = -1;
    db_stmt_t *q = NULL;

    if (strcmp(op, "all") == 0 || strcmp(op, "where") == 0 || strcmp(op, "findOne") == 0 ||
        strcmp(op, "first") == 0 || strcmp(op, "last") == 0) {
        bool is_last = strcmp(op, "last") == 0;
        int64_t n = 0;
        if (strcmp(op, "first") == 0 || is_last) {
            if (req_count(r, "n", true, &n, err) < 0) goto out;
        }
        if (strcmp(op, "findOne") == 0) n = 1;
        else if (has_limit > 0 && (n == 0 || limit < n)) n = limit;
        if (is_last) {
            /* The last n by the order, returned in that order. */
            buf_printf(&sql, "SELECT _rowid, _doc FROM %s WHERE _rowid IN (SELECT _rowid FROM %s WHERE ",
                       b->table, b->table);
            if (where_sql(b, filter, owner, &sql, params, err) < 0) goto out;
            if (order_by(b, ob, true, &sql, err) < 0) goto out;
            buf_printf(&sql, " LIMIT %lld)", (long long)n);
            if (order_by(b, ob, false, &sql, err) < 0) goto out;
        } else {
            buf_printf(&sql, "SELECT _rowid, _doc FROM %s WHERE ", b->table);
            if (where_sql(b, filter, owner, &sql, params, err) < 0) goto out;
            if (order_by(b, ob, false, &sql, err) < 0) goto out;
            if (n > 0) buf_printf(&sql, " LIMIT %lld", (long long)n);
        }
        if (!(q = prepare_bound(st, &sql, params, err))) goto out;
        if (strcmp(op, "findOne") == 0) {
            db_step_t s = db_step(q, err);
            if (s == DB_ERROR) goto out;
            if (s == DB_ROW) {
                size_t len;
                const char *doc = db_column_text(q, 1, &len);
                buf_append(out, doc, len);
            } else {
                buf_append_str(out, "null");
            }
            rc = 0;
        } else {
            rc = rows_to_array(q, 1, out, err);
        }
    } else if (strcmp(op, "count") == 0) {
        buf_printf(&sql, "SELECT count(*) FROM %s WHERE ", b->table);
        if (where_sql(b, filter, owner, &sql, params, err) < 0) goto out;
        if (!(q = prepare_bound(st, &sql, params, err))) goto out;
        if (db_step(q, err) != DB_ROW) goto out;
        buf_printf(out, "%lld", (long long)db_column_int(q, 0));
        rc = 0;
    } else if (strcmp(op, "sum") == 0 || strcmp(op, "avg") == 0 || strcmp(op, "min") == 0 ||
               strcmp(op, "max") == 0) {
        const char *field = req_string(r, "field");
        if (numeric_field(b, field, err) < 0) goto out;
        buf_t col;
        buf_init(&col, 0);
        db_quote_ident(&col, field);
        /* Only numeric values take part, as in the reference (strings are skipped). */
        buf_printf(&sql, "SELECT %s(CASE WHEN typeof(%s) IN ('integer','real') THEN %s END) FROM %s WHERE ",
                   op, col.data, col.data, b->table);
        buf_cleanup(&col);
        if (where_sql(b, filter, owner, &sql, params, err) < 0) goto out;
        if (!(q = prepare_bound(st, &sql, params, err))) goto out;
        if (db_step(q, err) != DB_ROW) goto out;
        if (db_column_type(q, 0) == DB_NULL)
            buf_append_str(out, (op[1] == 'u' || op[1] == 'v') ? "0" : "null");
        else
            write_column_value(out, q, 0);
        rc = 0;
    } else if (strcmp(op, "paginate") == 0) {
        if (has_limit <= 0) {
            if (has_limit == 0) bad_field(err, "limit", "positive integer");
            goto out;
        }
        const json_t *after = json_object_get(r, "after");
        int64_t after_rowid = 0;
        if (after && !json_is_null(after)) {
            json_t *rec = NULL;
            if (key_check(b, after, err) < 0) {
                err_set(err, ERR_VALIDATION, "Invalid \"after\": expected a key of bucket \"%s\"", b->name);
                goto out;
            }
            if (record_load(st, b, after, &after_rowid, &rec, err) < 0) goto out;
            if (!rec) {
                char kd[128];
                key_describe(after, kd, sizeof kd);
                err_set(err, ERR_NOT_FOUND, "Cursor %s not found in bucket \"%s\"", kd, b->name);
                goto out;
            }
            json_decref(rec);
        }
        buf_printf(&sql, "SELECT _rowid, _doc, ");
        db_quote_ident(&sql, b->schema->key);
        buf_printf(&sql, " FROM %s WHERE _rowid > %lld AND ", b->table, (long long)after_rowid);
        if (where_sql(b, filter, owner, &sql, params, err) < 0) goto out;
        buf_printf(&sql, " ORDER BY _rowid LIMIT %lld", (long long)limit + 1);
        if (!(q = prepare_bound(st, &sql, params, err))) goto out;
        buf_append_str(out, "{\"records\":[");
        buf_t cursor;
        buf_init(&cursor, 0);
        int64_t got = 0;
        db_step_t s;
        while ((s = db_step(q, err)) == DB_ROW) {
            if (got == limit) {
                got++;
                break;
            }
            size_t len;
            const char *doc = db_column_text(q, 1, &len);
            if (got++) buf_append_char(out, ',');
            buf_append(out, doc, len);
            buf_cleanup(&cursor);
            write_column_value(&cursor, q, 2);
        }
        if (s == DB_ERROR) {
            buf_cleanup(&cursor);
            goto out;
        }
        bool more = got > limit;
        buf_printf(out, "],\"hasMore\":%s", more ? "true" : "false");
        if (more) buf_printf(out, ",\"nextCursor\":%s", cursor.data);
        buf_append_char(out, '}');
        buf_cleanup(&cursor);
        rc = 0;
    } else {
        err_set(err, ERR_UNKNOWN_OPERATION, "Unknown operation \"store.%s\"", op);
    }
out:
    db_done(q);
    buf_cleanup(&sql);
    json_decref(params);
    return rc;
}

/* ---- writes (inside a transaction) ---- */

/* Sets a record's metadata, last in the record. `created` is taken (a new record shares
 * it with _updatedAt; an update keeps the stored one). Members already there are
 * replaced where they are: at the end, unless the record gained members after them
 * (an update that adds a field), which `move` says; then they are moved behind them. */
static void meta_stamp(json_t *rec, int64_t version, json_t *created, int64_t updated, bool move) {
    if (move) {
        json_object_del(rec, "_version");
        json_object_del(rec, "_createdAt");
        json_object_del(rec, "_updatedAt");
    }
    json_object_set_new_nocheck(rec, "_version", json_integer(version));
    json_object_set_new_nocheck(rec, "_createdAt", created);
    json_object_set_new_nocheck(rec, "_updatedAt",
                                json_integer_value(created) == updated ? json_incref(created) : json_integer(updated));
}

/* Turns a uniqueness failure into ALREADY_EXISTS naming the field. */
static void unique_error(store_t *st, bucket_t *b, const json_t *rec, err_t *err) {
    const char *msg = db_last_error(st->db);
    const char *dot = strrchr(msg, '.');
    const char *field = dot ? dot + 1 : b->schema->key;
    if (strcmp(field, b->schema->key) == 0) {
        char kd[128];
        key_describe(json_object_get(rec, b->schema->key), kd, sizeof kd);
        err_set(err, ERR_ALREADY_EXISTS, "Record with key %s already exists in bucket \"%s\"", kd, b->name);
    } else {
        err_set(err, ERR_ALREADY_EXISTS, "Unique constraint violated: field \"%s\" of bucket \"%s\" already has this value",
                field, b->name);
        json_t *d = json_object();
        json_object_set_new(d, "field", json_string(field));
        json_t *v = json_object_get(rec, field);
        if (v) json_object_set(d, "value", v);
        err_details_take(err, d);
    }
}

/* Binds a field's value as its column holds it: what json_extract(_doc, '$.field')
 * gives (booleans as 0/1, objects and arrays as JSON text); the column's type
 * converts it as it would a generated value. Strings are borrowed from v; an object or
 * array is borrowed from the document's text where `spans` says it went. */
static void column_bind(db_stmt_t *q, int at, const json_t *v, const char *doc, const json_span_t *spans,
                        size_t nspans) {
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING: db_bind_text_borrowed(q, at, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: db_bind_int(q, at, json_integer_value(v)); break;
    case JSON_REAL: db_bind_double(q, at, json_real_value(v)); break;
    case JSON_TRUE: db_bind_int(q, at, 1); break;
    case JSON_FALSE: db_bind_int(q, at, 0); break;
    case JSON_OBJECT:
    case JSON_ARRAY: {
        for (size_t i = 0; i < nspans; i++) {
            if (spans[i].value == v) {
                db_bind_text_borrowed(q, at, doc + spans[i].start, spans[i].end - spans[i].start);
                return;
            }
        }
        buf_t t;
        buf_init(&t, 0);
        json_write(&t, v);
        db_bind_text(q, at, t.data, t.len);
        buf_cleanup(&t);
        break;
    }
    case JSON_NULL: db_bind_null(q, at); break;
    }
}

/* Writes the record with `sql` (?1 = the document, ?2 = rowid when given, ?3… the
 * typed columns). The JSON
 * text is made once: appended to `out` when there is one (it is also the answer), or
 * to a scratch buffer; on failure nothing stays appended. */
static int write_doc(store_t *st, bucket_t *b, const char *sql, const json_t *rec, int64_t rowid, buf_t *out,
                     bool queued, err_t *err) {
    db_stmt_t *q = queued ? db_prepare_queued(st->db, sql, err) : db_prepare(st->db, sql, err);
    if (!q) return -1;
    buf_t scratch;
    buf_init(&scratch, 0);
    buf_t *doc = out ? out : &scratch;
    size_t mark = doc->len;
    json_span_t spans[8]; /* object and array fields (an order's items) are bound from the document */
    size_t nspans = json_write_spans(doc, rec, spans, sizeof spans / sizeof *spans);
    db_bind_text_borrowed(q, 1, doc->data + mark, doc->len - mark);
    if (rowid) db_bind_int(q, 2, rowid);
    json_walk_t w;
    json_walk_init(&w, rec);
    for (size_t i = 0; i < b->ncols; i++)
        column_bind(q, (int)i + 3, json_walk_get(&w, b->cols[i]), doc->data, spans, nspans);
    if (db_is_queued(q)) { /* the values are copied: exactly one row, or the batch fails */
        db_submit(q, 1);
        buf_cleanup(&scratch);
        return 0;
    }
    err_t e2 = ERR_INIT;
    db_step_t r = db_step(q, &e2);
    db_done(q); /* the borrowed text is released here, before the buffer changes */
    buf_cleanup(&scratch);
    if (r == DB_ERROR) {
        if (out) out->len = mark;
        if (db_is_constraint_error(st->db)) unique_error(st, b, rec, err);
        else err_set(err, e2.code, "%s", e2.msg);
        err_clear(&e2);
        return -1;
    }
    if (rowid && row_write_check(st, b, rowid, err) < 0) {
        if (out) out->len = mark;
        return -1;
    }
    return 0;
}

/* The row id the next queued insert into b takes: one past the largest the table has
 * had since the bucket was loaded (row ids are never reused from here on). */
static int64_t next_rowid(store_t *st, bucket_t *b, err_t *err) {
    if (b->next_rowid > 0) return b->next_rowid;
    buf_t sql;
    buf_init(&sql, 0);
    buf_printf(&sql, "SELECT coalesce(max(_rowid), 0) + 1 FROM %s", b->table);
    db_stmt_t *q = db_prepare(st->db, sql.data, err);
    buf_cleanup(&sql);
    if (!q) return -1;
    if (db_step(q, err) == DB_ROW) b->next_rowid = db_column_int(q, 0);
    db_done(q);
    return b->next_rowid > 0 ? b->next_rowid : -1;
}

/* Writes a prepared record (taken; NULL: preparing failed, err is set). A record whose
 * key is `new_key` (just generated) cannot meet a uniqueness failure in a bucket
 * without other unique fields: its insert is queued for the writer thread, with the row
 * id taken here. */
static int insert_record(store_t *st, bucket_t *b, json_t *rec, buf_t *out, bool new_key, err_t *err) {
    if (!rec) return -1;
    json_t *key = json_object_get(rec, b->schema->key);
    if (!json_is_string(key) && !json_is_number(key)) {
        err_set(err, ERR_VALIDATION, "Validation failed for bucket \"%s\": key field \"%s\" must be a string or a number",
                b->name, b->schema->key);
        json_decref(rec);
        return -1;
    }
    int64_t now = clock_now_ms();
    meta_stamp(rec, 1, json_integer(now), now, false);
    bool queued = new_key && b->queue_inserts && db_in_transaction(st->db);
    int64_t rowid = queued ? next_rowid(st, b, err) : 0;
    if (rowid < 0 || write_doc(st, b, queued ? b->sql_insert_row : b->sql_insert, rec, rowid, out, queued, err) < 0) {
        json_decref(rec);
        return -1;
    }
    if (!rowid) rowid = db_last_insert_rowid(st->db);
    if (b->next_rowid > 0 && rowid >= b->next_rowid) b->next_rowid = rowid + 1;
    changes_add(st, b, CHANGE_INSERT, key, NULL, rec, rowid);
    json_decref(rec);
    return 0;
}

static int op_insert(store_t *st, bucket_t *b, const json_t *data, const store_owner_t *owner, buf_t *out,
                     err_t *err) {
    if (!json_is_object(data)) return bad_field(err, "data", "object");
    json_t *owned = NULL;
    if (owner && owner->field) {
        json_t *v = json_object_get(data, owner->field);
        if (v && !owns(data, owner)) return forbidden(err, "insert", b);
        if (!v) {
            owned = json_copy((json_t *)data);
            json_object_set_new(owned, owner->field, json_string(owner->user_id ? owner->user_id : ""));
            data = owned;
        }
    }
    json_t *rec = schema_prepare_insert(b->schema, data, gen_autoincrement, st, err);
    json_decref(owned);
    return insert_record(st, b, rec, out, false, err);
}

/* Optimistic concurrency (extension): with "expectedVersion", an update or delete
 * applies only to the version the client read; otherwise CONFLICT. */
static int version_check(const bucket_t *b, const json_t *key, const json_t *cur, const json_t *expected,
                         err_t *err) {
    if (!expected) return 0;
    if (!json_is_integer(expected) || json_integer_value(expected) < 1) {
        err_set(err, ERR_VALIDATION, "Invalid \"expectedVersion\": expected positive integer");
        return -1;
    }
    json_int_t have = cur ? json_integer_value(json_object_get(cur, "_version")) : 0;
    if (have == json_integer_value(expected)) return 0;
    char kd[128];
    key_describe(key, kd, sizeof kd);
    err_set(err, ERR_CONFLICT, "Record with key %s in bucket \"%s\" was changed: expected version %lld, found %lld",
            kd, b->name, (long long)json_integer_value(expected), (long long)have);
    err_details_take(err, json_pack("{s:I,s:I}", "expectedVersion", (json_int_t)json_integer_value(expected),
                                    "actualVersion", (json_int_t)have));
    return -1;
}

/* What every write to an existing record (NULL: none) passes: ownership, then the
 * expected version. */
static int existing_write_check(store_t *st, const bucket_t *b, const char *op, const json_t *key, const json_t *cur,
                                const json_t *expected, const store_owner_t *owner, err_t *err) {
    if (cur && !owns(cur, owner)) return forbidden(err, op, b);
    if (version_check(b, key, cur, expected, err) < 0) {
        st->counters.conflicts += err->code == ERR_CONFLICT;
        return -1;
    }
    return 0;
}

static int op_update(store_t *st, bucket_t *b, const json_t *key, const json_t *data, const json_t *expected,
                     const store_owner_t *owner, buf_t *out, err_t *err) {
    if (key_check(b, key, err) < 0) return -1;
    if (!json_is_object(data)) return bad_field(err, "data", "object");
    int64_t rowid = 0;
    json_t *cur = NULL;
    if (record_load(st, b, key, &rowid, &cur, err) < 0) return -1;
    if (!cur) {
        char kd[128];
        key_describe(key, kd, sizeof kd);
        err_set(err, ERR_NOT_FOUND, "Record with key %s not found in bucket \"%s\"", kd, b->name);
        return -1;
    }
    bool gives_away = owner && owner->field && json_object_get(data, owner->field) && !owns(data, owner);
    if (gives_away ? forbidden(err, "update", b) : existing_write_check(st, b, "update", key, cur, expected, owner, err)) {
        json_decref(cur);
        return -1;
    }
    json_t *rec = schema_prepare_update(b->schema, cur, data, err);
    if (!rec) {
        json_decref(cur);
        return -1;
    }
    int64_t version = json_integer_value(json_object_get(cur, "_version")) + 1;
    json_t *created = json_object_get(cur, "_createdAt");
    meta_stamp(rec, version, json_is_integer(created) ? json_incref(created) : json_integer(0), clock_now_ms(),
               json_object_size(rec) != json_object_size(cur));
    const char *sql = b->sql_update_unindexed;
    for (size_t i = 0; i < b->nindexed; i++) {
        const json_t *was = json_object_get(cur, b->indexed[i]), *now_v = json_object_get(rec, b->indexed[i]);
        if (was != now_v && (!was || !now_v || !json_equal((json_t *)was, (json_t *)now_v))) {
            sql = b->sql_update;
            break;
        }
    }
    char ck[STORE_CACHE_MAX_KEY];
    bool refresh = out && b->cache.count && cache_key(key, ck) && strmap_get(&b->cache, ck);
    size_t mark = out ? out->len : 0;
    /* Without indexed columns nothing can fail but I/O: the writer thread may do it. */
    int rc = write_doc(st, b, sql, rec, rowid, out, sql == b->sql_update_unindexed, err);
    if (rc == 0) {
        changes_add(st, b, CHANGE_UPDATE, json_object_get(cur, b->schema->key), cur, rec, rowid);
        if (refresh) cache_refresh(st, b, ck, rowid, rec, out->data + mark, out->len - mark);
    }
    json_decref(cur);
    json_decref(rec);
    return rc;
}

static int row_delete(store_t *st, bucket_t *b, int64_t rowid, err_t *err) {
    db_stmt_t *q = db_prepare(st->db, b->sql_delete, err);
    if (!q) return -1;
    db_bind_int(q, 1, rowid);
    db_step_t r = db_step(q, err);
    db_done(q);
    return r == DB_ERROR ? -1 : row_write_check(st, b, rowid, err);
}

static int op_delete(store_t *st, bucket_t *b, const json_t *key, const json_t *expected,
                     const store_owner_t *owner, buf_t *out, err_t *err) {
    if (key_check(b, key, err) < 0) return -1;
    int64_t rowid = 0;
    json_t *cur = NULL;
    if (record_load(st, b, key, &rowid, &cur, err) < 0) return -1;
    if (existing_write_check(st, b, "delete", key, cur, expected, owner, err) < 0) {
        json_decref(cur);
        return -1;
    }
    if (cur) {
        if (row_delete(st, b, rowid, err) < 0) {
            json_decref(cur);
            return -1;
        }
        changes_add(st, b, CHANGE_DELETE, json_object_get(cur, b->schema->key), cur, NULL, rowid);
        json_decref(cur);
    }
    if (out) buf_append_str(out, "{\"deleted\":true}");
    return 0;
}

/* Writes back, newest first, the rows the write in progress changed (see tx_begin). The
 * change set holds each record as it was and the row it was in; deleted rows go back
 * under their old row id, so insertion order (`first`, `last`, `all`) is kept. */
static void undo_changes(store_t *st) {
    changes_t *c = &st->changes;
    err_t e = ERR_INIT;
    int rc = db_transaction_alive(st->db) ? 0 : -1;
    if (rc < 0) err_set(&e, ERR_INTERNAL, "the database ended the transaction");
    for (size_t i = c->count; rc == 0 && i-- > 0;) {
        const store_change_t *ch = &c->items[i];
        bucket_t *b = strmap_get(&st->buckets, ch->bucket);
        int64_t rowid = c->rowids[i];
        if (!b) {
            err_set(&e, ERR_INTERNAL, "bucket %s is gone", ch->bucket);
            rc = -1;
        } else if (ch->kind == CHANGE_INSERT) {
            rc = row_delete(st, b, rowid, &e);
        } else {
            const char *sql = ch->kind == CHANGE_UPDATE ? b->sql_update : b->sql_insert_row;
            rc = write_doc(st, b, sql, ch->before, rowid, NULL, false, &e);
        }
    }
    if (rc < 0) batch_fail(st, e.msg);
    err_clear(&e);
}

static int op_clear(store_t *st, bucket_t *b, buf_t *out, err_t *err) {
    buf_t sql;
    buf_init(&sql, 0);
    buf_printf(&sql, "SELECT _doc FROM %s ORDER BY _rowid", b->table);
    db_stmt_t *q = db_prepare(st->db, sql.data, err);
    buf_cleanup(&sql);
    if (!q) return -1;
    db_step_t r;
    while ((r = db_step(q, err)) == DB_ROW) {
        size_t n;
        const char *doc = db_column_text(q, 0, &n);
        json_t *cur = doc_parse(doc, n);
        if (cur) changes_add(st, b, CHANGE_DELETE, json_object_get(cur, b->schema->key), cur, NULL, 0);
        json_decref(cur);
    }
    db_done(q);
    if (r == DB_ERROR) return -1;
    buf_printf(&sql, "DELETE FROM %s", b->table);
    int rc = db_exec(st->db, sql.data, err);
    buf_cleanup(&sql);
    if (rc == 0 && out) buf_append_str(out, "{\"cleared\":true}");
    return rc;
}

/* ---- the operation entry points ---- */

static const char *const read_ops[] = {"get", "all", "where", "findOne", "count", "first", "last",
                                       "paginate", "sum", "avg", "min", "max"};
static const char *const write_ops[] = {"insert", "update", "delete", "clear"};


bool store_has_op(const char *op) {
    return in_list(op, read_ops, sizeof read_ops / sizeof *read_ops) ||
           in_list(op, write_ops, sizeof write_ops / sizeof *write_ops);
}

static int write_dispatch(store_t *st, bucket_t *b, const char *op, const json_t *r, const store_owner_t *owner,
                          buf_t *out, err_t *err) {
    if (strcmp(op, "insert") == 0) return op_insert(st, b, json_object_get(r, "data"), owner, out, err);
    const json_t *expected = json_object_get(r, "expectedVersion");
    if (strcmp(op, "update") == 0)
        return op_update(st, b, json_object_get(r, "key"), json_object_get(r, "data"), expected, owner, out, err);
    if (strcmp(op, "delete") == 0) return op_delete(st, b, json_object_get(r, "key"), expected, owner, out, err);
    if (owner && owner->field) return forbidden(err, "clear", b);
    return op_clear(st, b, out, err);
}

int store_get_shared(store_t *st, const char *bucket, const char *key, json_t **out, err_t *err) {
    *out = NULL;
    bucket_t *b = store_bucket_find(st, bucket, err);
    if (!b) return -1;
    st->counters.reads++;
    json_t *k = json_stringn_nocheck(key, strlen(key));
    int64_t rowid;
    int rc = record_fetch(st, b, k, !st->tx_active, &rowid, out, err);
    json_decref(k);
    return rc;
}

int store_execute(store_t *st, const char *op, const json_t *req, buf_t *out, err_t *err) {
    return store_execute_as(st, op, req, NULL, out, err);
}

int store_execute_as(store_t *st, const char *op, const json_t *req, const store_owner_t *owner, buf_t *out,
                     err_t *err) {
    bucket_t *b = store_bucket_find(st, req_string(req, "bucket"), err);
    if (!b) return -1;
    if (in_list(op, read_ops, sizeof read_ops / sizeof *read_ops))
        return store_read_op(st, b, op, req, owner, out, err);
    if (!in_list(op, write_ops, sizeof write_ops / sizeof *write_ops)) {
        err_set(err, ERR_UNKNOWN_OPERATION, "Unknown operation \"store.%s\"", op);
        return -1;
    }
    if (tx_begin(st, write_undoable(b, op), err) < 0) return -1;
    size_t mark = out->len;
    if (write_dispatch(st, b, op, req, owner, out, err) < 0 || tx_commit(st, err) < 0) {
        tx_abort(st);
        out->len = mark;
        return -1;
    }
    return 0;
}

/* Checks one transaction operation's shape, with the messages of §4.3. */
static int tx_op_check(const json_t *o, size_t i, const char **op_out, err_t *err) {
    static const char *const ops[] = {"get", "insert", "update", "delete", "where", "findOne", "count"};
    if (!json_is_object(o)) {
        err_set(err, ERR_VALIDATION, "operations[%zu]: expected object", i);
        return -1;
    }
    const char *op = json_string_value(json_object_get(o, "op"));
    if (!op || !in_list(op, ops, 7)) {
        err_set(err, ERR_VALIDATION,
                "operations[%zu]: invalid \"op\" — expected one of: get, insert, update, delete, where, findOne, count",
                i);
        return -1;
    }
    if (!req_string(o, "bucket")) {
        err_set(err, ERR_VALIDATION, "operations[%zu]: missing or invalid \"bucket\"", i);
        return -1;
    }
    bool needs_key = !strcmp(op, "get") || !strcmp(op, "update") || !strcmp(op, "delete");
    json_t *key = json_object_get(o, "key");
    if (needs_key && (!key || json_is_null(key))) {
        err_set(err, ERR_VALIDATION, "operations[%zu]: \"%s\" requires \"key\"", i, op);
        return -1;
    }
    if ((!strcmp(op, "insert") || !strcmp(op, "update")) && !json_is_object(json_object_get(o, "data"))) {
        err_set(err, ERR_VALIDATION, "operations[%zu]: \"%s\" requires \"data\" object", i, op);
        return -1;
    }
    if ((!strcmp(op, "where") || !strcmp(op, "findOne")) && !json_is_object(json_object_get(o, "filter"))) {
        err_set(err, ERR_VALIDATION, "operations[%zu]: \"%s\" requires \"filter\" object", i, op);
        return -1;
    }
    *op_out = op;
    return 0;
}

/* Prefixes the error with the failing index and records it in details. */
static void tx_error_index(err_t *err, size_t i) {
    if (strncmp(err->msg, "operations[", 11) != 0) err_prefix(err, "operations[%zu]: ", i);
    json_t *d = err->details;
    if (!json_is_object(d)) {
        json_t *nd = json_object();
        if (d) json_object_set_new(nd, "errors", d); /* takes over err's reference */
        err->details = NULL;
        err_details_take(err, nd);
        d = nd;
    }
    json_object_set_new(d, "index", json_integer((json_int_t)i));
}

int store_transaction(store_t *st, const json_t *operations, buf_t *out, err_t *err) {
    return store_transaction_checked(st, operations, NULL, NULL, out, err);
}

int store_transaction_checked(store_t *st, const json_t *operations, store_tx_check_fn check, void *udata,
                              buf_t *out, err_t *err) {
    if (!json_is_array(operations)) return bad_field(err, "operations", "array");
    size_t n = json_array_size(operations);
    if (n == 0) {
        err_set(err, ERR_VALIDATION, "\"operations\" must contain at least one operation");
        return -1;
    }
    if (n > STORE_MAX_TX_OPS) {
        err_set(err, ERR_VALIDATION, "\"operations\" may contain at most %d operations", STORE_MAX_TX_OPS);
        return -1;
    }
    const char **ops = xmalloc(n * sizeof *ops);
    bool undoable = true; /* see tx_begin */
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(operations, i);
        if (tx_op_check(o, i, &ops[i], err) < 0) {
            tx_error_index(err, i);
            free(ops);
            return -1;
        }
        undoable = undoable && write_undoable(strmap_get(&st->buckets, req_string(o, "bucket")), ops[i]);
    }
    size_t mark = out->len;
    if (tx_begin(st, undoable, err) < 0) {
        free(ops);
        return -1;
    }
    buf_append_str(out, "{\"results\":[");
    size_t i = 0;
    for (; i < n; i++) {
        const json_t *o = json_array_get(operations, i);
        bucket_t *b = store_bucket_find(st, req_string(o, "bucket"), err);
        if (!b) break;
        if (i) buf_append_char(out, ',');
        buf_append_str(out, "{\"index\":");
        json_write_int(out, (int64_t)i);
        buf_append_str(out, ",\"data\":");
        const char *op = ops[i];
        store_owner_t owner = {NULL, NULL};
        if (check) {
            char type[32];
            snprintf(type, sizeof type, "store.%s", op);
            if (check(udata, type, b->name, o, &owner, err) < 0) break;
        }
        int rc = in_list(op, read_ops, sizeof read_ops / sizeof *read_ops)
                     ? store_read_op(st, b, op, o, &owner, out, err)
                     : write_dispatch(st, b, op, o, &owner, out, err);
        if (rc < 0) break;
        buf_append_char(out, '}');
    }
    free(ops);
    if (i < n) {
        tx_error_index(err, i);
        tx_abort(st);
        out->len = mark;
        return -1;
    }
    buf_append_str(out, "]}");
    if (tx_commit(st, err) < 0) {
        out->len = mark;
        return -1;
    }
    st->counters.transactions++;
    return 0;
}

/* Drops the data references of writes not run. */
static void writes_release(store_write_t *w, size_t from, size_t n) {
    for (size_t i = from; i < n; i++) {
        json_decref(w[i].data);
        w[i].data = NULL;
    }
}

int store_write_all(store_t *st, store_write_t *w, size_t n, err_t *err) {
    if (n > STORE_MAX_TX_OPS) {
        err_set(err, ERR_VALIDATION, "\"operations\" may contain at most %d operations", STORE_MAX_TX_OPS);
        writes_release(w, 0, n);
        return -1;
    }
    if (n == 0) return 0;
    bool undoable = true; /* see tx_begin */
    for (size_t i = 0; i < n; i++)
        undoable = undoable && write_undoable(strmap_get(&st->buckets, w[i].bucket), w[i].op);
    if (tx_begin(st, undoable, err) < 0) {
        writes_release(w, 0, n);
        return -1;
    }
    buf_t out; /* the records written; kept only for the cache (op_update) */
    buf_init(&out, 0);
    size_t i = 0;
    for (; i < n; i++) {
        bucket_t *b = store_bucket_find(st, w[i].bucket, err);
        if (!b) break;
        json_t *data = w[i].data;
        w[i].data = NULL;
        int rc;
        if (strcmp(w[i].op, "insert") == 0) {
            rc = insert_record(st, b, schema_prepare_insert_take(b->schema, data, gen_autoincrement, st, err),
                               &out, w[i].new_key, err);
        } else {
            json_t *key = json_stringn_nocheck(w[i].key, strlen(w[i].key));
            rc = strcmp(w[i].op, "update") == 0 ? op_update(st, b, key, data, NULL, NULL, &out, err)
                                                 : op_delete(st, b, key, NULL, NULL, &out, err);
            json_decref(key);
            json_decref(data);
        }
        if (rc < 0) break;
        buf_reset(&out);
    }
    buf_cleanup(&out);
    if (i < n) {
        writes_release(w, i, n);
        tx_error_index(err, i);
        tx_abort(st);
        return -1;
    }
    if (tx_commit(st, err) < 0) return -1;
    st->counters.transactions++;
    return 0;
}

/* ---- seed ---- */

int store_seed(store_t *st, const json_t *seed, err_t *err) {
    if (!seed) return 0;
    if (!json_is_object(seed)) return bad_field(err, "seed", "object of bucket name → array of records");
    /* Once per database: the marker survives a shop deleting every record. A store
     * that already holds records (from before the marker existed) is not seeded. */
    db_stmt_t *m = db_prepare(st->db, "SELECT value FROM _shopd_meta WHERE key = 'seeded'", err);
    if (!m) return -1;
    db_step_t r = db_step(m, err);
    db_done(m);
    if (r == DB_ERROR) return -1;
    if (r == DB_ROW) return 0;
    bool empty = true;
    size_t it = 0;
    void *v;
    while (empty && strmap_next(&st->buckets, &it, NULL, &v)) {
        bucket_t *b = v;
        buf_t sql;
        buf_init(&sql, 0);
        buf_printf(&sql, "SELECT EXISTS (SELECT 1 FROM %s)", b->table);
        db_stmt_t *q = db_prepare(st->db, sql.data, err);
        buf_cleanup(&sql);
        if (!q) return -1;
        empty = !(db_step(q, err) == DB_ROW && db_column_int(q, 0));
        db_done(q);
    }
    if (tx_begin(st, false, err) < 0) return -1;
    m = db_prepare(st->db, "INSERT INTO _shopd_meta(key, value) VALUES ('seeded', ?1)", err);
    if (!m) {
        tx_abort(st);
        return -1;
    }
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)clock_now_ms());
    db_bind_text(m, 1, now, strlen(now));
    r = db_step(m, err);
    db_done(m);
    if (r == DB_ERROR) {
        tx_abort(st);
        return -1;
    }
    if (!empty) return tx_commit(st, err) < 0 ? -1 : 0;
    const char *name;
    json_t *records;
    int count = 0;
    json_object_foreach((json_t *)seed, name, records) {
        bucket_t *b = store_bucket_find(st, name, err);
        if (!b || !json_is_array(records)) {
            if (b) err_set(err, ERR_VALIDATION, "seed.%s must be an array of records", name);
            else err_set(err, ERR_BUCKET_NOT_DEFINED, "seed names bucket \"%s\", which is not defined", name);
            tx_abort(st);
            return -1;
        }
        size_t i;
        json_t *rec;
        json_array_foreach(records, i, rec) {
            if (op_insert(st, b, rec, NULL, NULL, err) < 0) {
                err_prefix(err, "seed.%s[%zu]: ", name, i);
                tx_abort(st);
                return -1;
            }
            count++;
        }
    }
    if (tx_commit(st, err) < 0) return -1;
    return count;
}

/* ---- open and close ---- */

/* Stores made before 0.3 computed the typed columns as VIRTUAL generated columns,
 * json_extract(_doc, '$.field'). SQLite evaluates every generated column of a table on
 * each insert and update, reparsing the document: measured, a third of the cost of an
 * insert (docs/internals/store.md). Such a table is rebuilt once, in one transaction,
 * with plain columns filled from the documents; rowids (insertion order) are kept. */
static int table_layout_upgrade(store_t *st, bucket_t *b, err_t *err) {
    db_stmt_t *q = db_prepare(st->db, "SELECT count(*) FROM pragma_table_xinfo(?1) WHERE hidden IN (2, 3)", err);
    if (!q) return -1;
    db_bind_text(q, 1, b->name, strlen(b->name));
    int64_t generated = db_step(q, err) == DB_ROW ? db_column_int(q, 0) : -1;
    db_done(q);
    if (generated <= 0) return (int)generated;
    static const char tmp[] = "_shopd_relayout"; /* no bucket name starts with '_' */
    buf_t sql;
    buf_init(&sql, 0);
    table_create_sql(&sql, tmp, b->schema);
    buf_append_str(&sql, "INSERT INTO ");
    db_quote_ident(&sql, tmp);
    buf_append_str(&sql, "(_rowid, _doc");
    for (size_t i = 0; i < b->ncols; i++) {
        buf_append_char(&sql, ',');
        db_quote_ident(&sql, b->cols[i]);
    }
    buf_append_str(&sql, ") SELECT _rowid, _doc");
    for (size_t i = 0; i < b->ncols; i++) {
        buf_append_char(&sql, ',');
        column_from_doc(&sql, b->cols[i]);
    }
    buf_printf(&sql, " FROM %s;DROP TABLE %s;ALTER TABLE ", b->table, b->table);
    db_quote_ident(&sql, tmp);
    buf_printf(&sql, " RENAME TO %s;", b->table);
    index_ddl(&sql, b->name, b->schema);
    int rc = db_begin(st->db, err);
    if (rc == 0) rc = db_exec(st->db, sql.data, err);
    if (rc == 0) rc = db_commit(st->db, err);
    if (rc < 0) db_rollback(st->db);
    else log_info("store.table_upgraded", "bucket=%s columns=%zu", b->name, b->ncols);
    buf_cleanup(&sql);
    return rc;
}

static int buckets_load(store_t *st, err_t *err) {
    db_stmt_t *q = db_prepare(st->db, "SELECT name, definition, position FROM _shopd_buckets ORDER BY position", err);
    if (!q) return -1;
    db_step_t r;
    int rc = 0;
    while ((r = db_step(q, err)) == DB_ROW) {
        const char *name = db_column_text(q, 0, NULL);
        size_t n;
        const char *text = db_column_text(q, 1, &n);
        int64_t order = db_column_int(q, 2);
        json_t *def = json_loadb(text, n, 0, NULL);
        schema_t *s = def ? schema_compile(name, def, err) : NULL;
        json_decref(def);
        if (!s) {
            err_prefix(err, "stored definition of bucket \"%s\" is unusable: ", name);
            rc = -1;
            break;
        }
        strmap_put(&st->buckets, name, bucket_make(name, s, order));
        if (order >= st->next_order) st->next_order = order + 1;
    }
    db_done(q);
    if (r == DB_ERROR) return -1;
    size_t it = 0;
    void *v;
    while (rc == 0 && strmap_next(&st->buckets, &it, NULL, &v)) rc = table_layout_upgrade(st, v, err);
    return rc;
}

store_t *store_open(const char *path, err_t *err) {
    store_t *st = xcalloc(1, sizeof *st);
    strmap_init(&st->buckets);
    strmap_init(&st->queries);
    st->db = db_open(path, err);
    if (!st->db || db_migrate(st->db, migrations, MIGRATION_COUNT, err) < 0 || buckets_load(st, err) < 0 ||
        store_queries_load(st, err) < 0) {
        store_close(st);
        return NULL;
    }
    return st;
}

int store_migrate_path(const char *path, err_t *err) {
    db_t *db = db_open(path, err);
    if (!db) return -1;
    int n = db_migrate(db, migrations, MIGRATION_COUNT, err);
    db_close(db);
    if (n < 0) return -1;
    store_t *st = store_open(path, err); /* brings bucket tables to the current layout */
    if (!st) return -1;
    store_close(st);
    return n;
}

void store_close(store_t *st) {
    if (!st) return;
    err_t e = ERR_INIT;
    if (store_batch_commit(st, &e) < 0) log_error("store.final_commit_failed", "error=\"%s\"", e.msg);
    err_clear(&e);
    size_t it = 0;
    void *v;
    while (strmap_next(&st->buckets, &it, NULL, &v)) bucket_free(v);
    strmap_cleanup(&st->buckets);
    store_queries_free(st);
    changes_reset(st);
    free(st->changes.items);
    free(st->changes.rowids);
    changes_free_items(&st->batch);
    free(st->batch.items);
    free(st->bounds);
    free(st->committing);
    listener_t *l = st->listeners;
    while (l) {
        listener_t *next = l->next;
        free(l);
        l = next;
    }
    db_close(st->db);
    free(st);
}
