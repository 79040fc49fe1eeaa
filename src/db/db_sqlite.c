/* The SQLite backend of db.h.
 *
 * Settings, chosen for a server that acknowledges writes only after commit:
 *   journal_mode=WAL       readers never block the writer; commits append to the WAL
 *   synchronous=NORMAL     commit does not fsync; the WAL is synced at checkpoints. An
 *                          acknowledged write survives a crash of shopd (kill -9) because
 *                          it is in the operating system's cache; a power loss or kernel
 *                          crash can lose the transactions committed since the last
 *                          checkpoint (docs/internals/db.md).
 *   busy wait 5 s          another process (sqlite3 shell, backup) or a RESTART checkpoint
 *                          may hold a lock briefly (busy_wait)
 *   foreign_keys=OFF       references between buckets are hints, as the protocol says
 *
 * Two measured costs are taken off the request path:
 * - Reads outside a write transaction share one read transaction until db_idle() (the
 *   event loop calls it once per turn): SQLite otherwise takes and drops the WAL read
 *   lock (two fcntl calls) around every statement, 27 % of a store.get. A statement
 *   that writes ends the shared read transaction first, so writes never wait for it.
 * - Checkpoints (copying the WAL back into the database file, with fsync) run on a
 *   thread of their own with a second connection, started each time the WAL grows by
 *   CHECKPOINT_PAGES; inline, each cost about 1.5 ms of the loop thread every ~34
 *   transactions. They are PASSIVE (they never block the writer) until the WAL passes
 *   CHECKPOINT_RESTART_PAGES (see there). A rewound WAL is cut back to 64 MiB.
 * - Both connections open the database through walbuf.c's VFS, which writes a commit's
 *   WAL frames in writes of up to 128 KiB instead of two system calls per page.
 * - Writes that cannot fail but for I/O (an insert of a key just generated, an update
 *   of unindexed columns, an event) run on a writer thread beside the loop (see "the
 *   writer thread" below): a checkout's SQL was 40 % of the loop thread's time.
 */
#include "db/db.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/strmap.h"
#include "db/walbuf.h"

/* How the loop's connection waits for a lock another connection holds (a RESTART
 * checkpoint, see CHECKPOINT_RESTART_PAGES, or another process such as the sqlite3
 * shell): in steps of BUSY_STEP_US, up to BUSY_TIMEOUT_MS in all. SQLite's own
 * busy_timeout sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, so the loop slept up to
 * a third longer than the lock was held. */
#define BUSY_STEP_US 100
#define BUSY_TIMEOUT_MS 5000

static int busy_wait(void *arg, int tries) {
    (void)arg;
    if ((int64_t)tries * BUSY_STEP_US >= (int64_t)BUSY_TIMEOUT_MS * 1000) return 0;
    struct timespec step = {0, BUSY_STEP_US * 1000};
    nanosleep(&step, NULL);
    return 1;
}

struct db_stmt {
    sqlite3_stmt *stmt;
    db_t *db;
    char *sql; /* the text it is cached under (cached statements only) */
    bool cached;
};

/* ---- the writer thread ----
 *
 * Inside a transaction, a write whose outcome its caller does not need at once (see
 * db_prepare_queued) is recorded as an op — the statement and copies of its values —
 * and executed by the writer thread, in order, while the loop thread goes on with its
 * turn. A transaction's BEGIN and COMMIT can be queued too (db_begin_queued,
 * db_commit_queued): the loop then goes on to the next transaction while the writer
 * commits, and learns the outcome from db_completed. The two threads never use the
 * connection at the same time: the writer runs only between a kick and the moment its
 * queue is empty, and every other use of the connection (db_prepare, db_exec…) first
 * waits for that (writer_drain).
 *
 * A queued write that fails loses its transaction: the writer rolls it back at once and
 * skips every op queued before the loop has heard of the failure — they belong to that
 * transaction or were built on it — and every later write statement of the loop is
 * refused. Ops carry the epoch they were queued in; a failure ends an epoch, and the loop
 * starts the next one when it hears of it (acknowledge: a rollback, a BEGIN, or the
 * failed commit's completion). */
typedef struct {
    int index;    /* the parameter's number */
    db_type_t type;
    int64_t i;
    double d;
    size_t off, len; /* text: where in the op's text */
} db_val_t;

typedef enum { OP_WRITE, OP_BEGIN, OP_COMMIT } db_op_kind_t;

typedef struct db_op {
    struct db_op *next;
    db_op_kind_t kind;
    sqlite3_stmt *stmt; /* OP_WRITE */
    int expect;         /* OP_WRITE: the rows it must change, or -1 */
    uint64_t epoch;     /* the loop's epoch when it was queued */
    uint64_t tag;       /* OP_COMMIT: the caller's, given back by db_completed */
    int rc;             /* OP_COMMIT: 0, or -1 when the transaction was lost */
    atomic_llong *rows; /* OP_WRITE: gets the rows it changed added (or NULL) */
    size_t nvals;
    db_val_t *vals;
    char *text;
} db_op_t;

/* Ops waiting past this many make the loop wait for the writer (memory stays bounded
 * when the writer falls behind, as during a RESTART checkpoint). */
#define WRITER_MAX_QUEUED 8192
/* An idle writer is woken once this many ops wait (or when the loop drains): a wake-up
 * is a system call, and waking it for every op cost the loop more than it saved. */
#define WRITER_KICK_AT 8

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work, idle;
    db_op_t *head, *tail; /* under lock */
    db_op_t *done;        /* ops run, for the loop thread to free (under lock) */
    db_op_t *completed, *completed_tail; /* commits run, in order (under lock) */
    size_t queued;        /* under lock */
    bool busy;            /* the writer owns the connection (under lock) */
    bool stop;            /* under lock */
    bool running;         /* loop thread only */
    /* The epoch of the last failure, its code and message: written by the writer under
     * the lock, read by the loop under it or after a drain. */
    uint64_t failed_epoch;
    int fail_rc;
    char fail_msg[256];
    void (*notify)(void *udata); /* called by the writer after each queued commit */
    void *notify_udata;
} writer_t;

#define CHECKPOINT_PAGES 1000
/* Past this many WAL pages (64 MiB), a checkpoint that only ever runs beside the
 * writer (PASSIVE) is not enough: under sustained writes the log never gets wholly
 * copied at the moment a write starts, so it is never rewound. A RESTART checkpoint
 * then waits for the writer's current transaction, copies everything and lets the
 * next write start the log over: the loop may wait for it once per 64 MiB written. */
#define CHECKPOINT_RESTART_PAGES 16384

/* The checkpointer thread and its connection. */
typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    sqlite3 *conn;
    bool requested;
    bool stop;
    bool running;
    int next_at; /* WAL size (pages) at which to ask for the next checkpoint */
    int pages;   /* WAL size when the checkpoint was asked for */
} checkpointer_t;

enum { DB_RECENT_BITS = 7, DB_RECENT_SLOTS = 1 << DB_RECENT_BITS };

struct db {
    sqlite3 *conn;
    strmap_t stmts; /* sql text → db_stmt_t */
    /* Most statements come from a few long-lived strings (a bucket's INSERT, UPDATE and
     * SELECT): a slot per string address finds them without hashing the whole text, which
     * was 3 % of a checkout. A hit still compares the text, so a freed string whose address
     * is reused for other SQL never gets the wrong statement. */
    struct {
        const char *sql;
        db_stmt_t *st;
    } recent[DB_RECENT_SLOTS];
    bool in_tx;
    bool read_open; /* a shared read transaction is open (until db_idle) */
    writer_t w;
    bool pending;            /* ops queued since the last drain (loop thread only) */
    db_op_t *lhead, *ltail;  /* ops gathered, not yet handed to the writer (loop only) */
    size_t lcount;
    uint64_t epoch;          /* ops queued now belong to it (loop thread only; from 1) */
    uint64_t logged_epoch;   /* the last failure logged */
    int active;              /* statements the loop thread is using (db_prepare … db_done) */
    db_stmt_t *recording;    /* the queued statement being bound */
    db_val_t *rec_vals;      /* its values so far */
    size_t rec_n, rec_cap;
    buf_t rec_text;
    int last_rc;
    char last_msg[256];
    checkpointer_t ckpt;
};

static void *checkpointer_main(void *arg) {
    checkpointer_t *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->requested && !c->stop) pthread_cond_wait(&c->wake, &c->lock);
        if (c->stop) break;
        c->requested = false;
        int mode = c->pages >= CHECKPOINT_RESTART_PAGES ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE;
        pthread_mutex_unlock(&c->lock);
        int log = 0, done = 0;
        /* A connection knows the database is in WAL mode only once it has read it; a
         * checkpoint on a connection that has not does nothing (log = -1). */
        sqlite3_exec(c->conn, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
        int rc = sqlite3_wal_checkpoint_v2(c->conn, NULL, mode, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("db.checkpoint_failed", "error=\"%s\"", sqlite3_errmsg(c->conn));

        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Called by SQLite after each commit with the WAL's size in pages. */
static int on_wal_commit(void *arg, sqlite3 *conn, const char *name, int pages) {
    (void)conn, (void)name;
    checkpointer_t *c = arg;
    /* Once per CHECKPOINT_PAGES of growth: the WAL is rewound (and shrinks) only when
     * a writer starts after a complete checkpoint, so until then every commit would
     * otherwise ask again and turn each commit into an fsync. */
    if (pages < c->next_at - CHECKPOINT_PAGES) c->next_at = CHECKPOINT_PAGES; /* rewound */
    if (pages >= c->next_at && c->running) {
        c->next_at = pages + CHECKPOINT_PAGES;
        pthread_mutex_lock(&c->lock);
        c->requested = true;
        c->pages = pages;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
    }
    return SQLITE_OK;
}

static void checkpointer_start(db_t *db, const char *path) {
    checkpointer_t *c = &db->ckpt;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (sqlite3_open_v2(path, &c->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, walbuf_vfs_name()) !=
        SQLITE_OK) {
        log_warn("db.checkpointer_disabled", "error=\"%s\"", c->conn ? sqlite3_errmsg(c->conn) : "?");
        sqlite3_close(c->conn);
        c->conn = NULL;
        sqlite3_wal_autocheckpoint(db->conn, CHECKPOINT_PAGES); /* fall back to inline */
        return;
    }
    sqlite3_busy_timeout(c->conn, 5000);
    if (pthread_create(&c->thread, NULL, checkpointer_main, c) != 0) {
        sqlite3_close(c->conn);
        c->conn = NULL;
        sqlite3_wal_autocheckpoint(db->conn, CHECKPOINT_PAGES);
        return;
    }
    c->running = true;
    c->next_at = CHECKPOINT_PAGES;
    sqlite3_wal_hook(db->conn, on_wal_commit, c); /* replaces the automatic checkpoints */
}

static void checkpointer_stop(db_t *db) {
    checkpointer_t *c = &db->ckpt;
    if (c->running) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
        c->running = false;
    }
    if (c->conn) sqlite3_close(c->conn);
    c->conn = NULL;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
}

/* Ends the epoch of `op` (writer thread): the transaction is rolled back at once, so
 * the connection is clean for the next epoch's BEGIN. */
static void writer_fail(db_t *db, const db_op_t *op, int rc, const char *msg) {
    writer_t *w = &db->w;
    char copy[sizeof w->fail_msg]; /* msg may be SQLite's, which the ROLLBACK replaces */
    snprintf(copy, sizeof copy, "%s", msg);
    if (!sqlite3_get_autocommit(db->conn)) sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&w->lock);
    w->failed_epoch = op->epoch;
    w->fail_rc = rc;
    memcpy(w->fail_msg, copy, sizeof copy);
    pthread_mutex_unlock(&w->lock);
}

/* Runs one op (writer thread). A write never runs outside a transaction: if SQLite
 * has ended it (after an I/O error), the write would commit on its own. */
static void op_run(db_t *db, db_op_t *op) {
    if (op->epoch <= db->w.failed_epoch) { /* lost with its transaction */
        op->rc = -1;
        return;
    }
    if (op->kind == OP_BEGIN || op->kind == OP_COMMIT) {
        const char *sql = op->kind == OP_BEGIN ? "BEGIN IMMEDIATE" : "COMMIT";
        int rc = sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
        op->rc = rc == SQLITE_OK ? 0 : -1;
        if (rc != SQLITE_OK) writer_fail(db, op, rc, sqlite3_errmsg(db->conn));
        return;
    }
    sqlite3_stmt *s = op->stmt;
    if (sqlite3_get_autocommit(db->conn)) {
        writer_fail(db, op, SQLITE_ABORT, "the transaction of a queued write has ended");
        return;
    }
    for (size_t i = 0; i < op->nvals; i++) {
        const db_val_t *v = &op->vals[i];
        switch (v->type) {
        case DB_NULL: sqlite3_bind_null(s, v->index); break;
        case DB_INTEGER: sqlite3_bind_int64(s, v->index, v->i); break;
        case DB_REAL: sqlite3_bind_double(s, v->index, v->d); break;
        case DB_TEXT: sqlite3_bind_text(s, v->index, op->text + v->off, (int)v->len, SQLITE_STATIC); break;
        }
    }
    int rc = sqlite3_step(s);
    char msg[160];
    if (rc != SQLITE_DONE) snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db->conn));
    else if (op->expect >= 0 && sqlite3_changes(db->conn) != op->expect)
        snprintf(msg, sizeof msg, "a queued write changed %d rows, not %d", sqlite3_changes(db->conn), op->expect);
    else msg[0] = 0;
    if (!msg[0] && op->rows) atomic_fetch_add_explicit(op->rows, sqlite3_changes(db->conn), memory_order_relaxed);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (msg[0]) writer_fail(db, op, rc == SQLITE_DONE ? SQLITE_NOTFOUND : rc, msg);
}

/* Runs a list of ops, in order, by whichever thread owns the connection; returns the
 * ops run (but commits, whose outcome goes to the completed list at once). */
static db_op_t *ops_run(db_t *db, db_op_t *op, db_op_t **last) {
    writer_t *w = &db->w;
    db_op_t *done = NULL;
    *last = NULL;
    while (op) {
        db_op_t *next = op->next;
        op_run(db, op);
        if (op->kind == OP_COMMIT) {
            op->next = NULL;
            pthread_mutex_lock(&w->lock);
            if (w->completed_tail) w->completed_tail->next = op;
            else w->completed = op;
            w->completed_tail = op;
            /* Under the lock: once db_set_notify has changed it, the old one is never
             * called again (its target may be gone). It must not block. */
            if (w->notify) w->notify(w->notify_udata);
            pthread_mutex_unlock(&w->lock);
        } else {
            op->next = done;
            if (!done) *last = op;
            done = op;
        }
        op = next;
    }
    return done;
}

static void *writer_main(void *arg) {
    db_t *db = arg;
    writer_t *w = &db->w;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->busy && !w->stop) pthread_cond_wait(&w->work, &w->lock);
        if (!w->busy) break; /* stopping, and nothing handed over */
        while (w->head) { /* everything queued so far, then whatever came meanwhile */
            db_op_t *op = w->head, *last;
            w->head = w->tail = NULL;
            w->queued = 0;
            pthread_mutex_unlock(&w->lock);
            db_op_t *done = ops_run(db, op, &last);
            pthread_mutex_lock(&w->lock);
            if (done) { /* freed by the thread that allocated them: a free from another */
                last->next = w->done; /* thread costs mimalloc more on both sides */
                w->done = done;
            }
        }
        w->busy = false;
        pthread_cond_broadcast(&w->idle);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static db_op_t *w_last(db_op_t *op) {
    while (op->next) op = op->next;
    return op;
}

static void ops_free(db_op_t *op) {
    while (op) {
        db_op_t *next = op->next;
        free(op);
        op = next;
    }
}

/* Hands the connection to the writer if ops wait and the loop uses no statement.
 * Called with the lock held. */
static void writer_kick_locked(db_t *db) {
    writer_t *w = &db->w;
    if (w->head && !w->busy && db->active == 0) {
        w->busy = true;
        pthread_cond_signal(&w->work);
    }
}

/* Whether the current epoch has failed (after a drain, or under the lock). */
static bool epoch_failed(const db_t *db) { return db->w.failed_epoch >= db->epoch; }

/* The loop has heard of the failure: it is logged once and the next epoch begins. */
static void acknowledge(db_t *db) {
    writer_t *w = &db->w;
    if (w->failed_epoch > db->logged_epoch) {
        db->logged_epoch = w->failed_epoch;
        snprintf(db->last_msg, sizeof db->last_msg, "%s", w->fail_msg);
        db->last_rc = w->fail_rc;
        log_error("db.error", "what=queued error=\"%s\"", w->fail_msg);
    }
    if (epoch_failed(db)) db->epoch = w->failed_epoch + 1;
}

/* Runs every queued op before the loop thread uses the connection again: waits for
 * the writer if it is at work, and runs what it has not taken itself — waking the
 * writer and waiting for it costs two context switches, more than most ops. */
static void writer_drain(db_t *db) {
    if (!db->pending) return;
    writer_t *w = &db->w;
    pthread_mutex_lock(&w->lock);
    while (w->busy) pthread_cond_wait(&w->idle, &w->lock);
    db_op_t *op = w->head, *done = w->done, *last;
    w->head = w->tail = NULL;
    w->queued = 0;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock); /* the writer stays idle: only this thread wakes it */
    if (op) w_last(op)->next = db->lhead; /* then the ops not handed over yet */
    else op = db->lhead;
    db->lhead = db->ltail = NULL;
    db->lcount = 0;
    db->pending = false;
    ops_free(done);
    ops_free(ops_run(db, op, &last));
}

static void writer_start(db_t *db) {
    writer_t *w = &db->w;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->idle, NULL);
    buf_init(&db->rec_text, 0);
    db->epoch = 1;
    w->running = pthread_create(&w->thread, NULL, writer_main, db) == 0;
    if (!w->running) log_warn("db.writer_disabled", "error=\"cannot start a thread\"");
}

static void writer_stop(db_t *db) {
    writer_t *w = &db->w;
    if (w->running) {
        writer_drain(db);
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->work);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        w->running = false;
        ops_free(w->done);
        ops_free(w->completed); /* outcomes nobody asked for any more */
        ops_free(db->lhead);
        db->lhead = db->ltail = NULL;
        w->done = w->completed = w->completed_tail = NULL;
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->work);
        pthread_cond_destroy(&w->idle);
    }
    free(db->rec_vals);
    buf_cleanup(&db->rec_text);
}

/* Hands the ops gathered by the loop to the writer's queue, and wakes the writer if it
 * is idle and the loop uses no statement. */
static void writer_publish(db_t *db) {
    writer_t *w = &db->w;
    pthread_mutex_lock(&w->lock);
    if (db->lhead) {
        if (w->tail) w->tail->next = db->lhead;
        else w->head = db->lhead;
        w->tail = db->ltail;
        w->queued += db->lcount;
        db->lhead = db->ltail = NULL;
        db->lcount = 0;
    }
    bool full = w->queued >= WRITER_MAX_QUEUED;
    writer_kick_locked(db);
    db_op_t *done = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock);
    ops_free(done);
    if (full) writer_drain(db);
}

/* Queues an op (taken). Ops are gathered on the loop's side and handed over
 * WRITER_KICK_AT at a time (or at once: `now`), one lock and at most one wake-up each. */
static void writer_queue(db_t *db, db_op_t *op, bool now) {
    op->next = NULL;
    op->epoch = db->epoch;
    db->pending = true;
    if (db->ltail) db->ltail->next = op;
    else db->lhead = op;
    db->ltail = op;
    if (now || ++db->lcount >= WRITER_KICK_AT) writer_publish(db);
}

static int db_fail(db_t *db, err_t *err, const char *what) {
    const char *msg = db && db->conn ? sqlite3_errmsg(db->conn) : "out of memory";
    log_error("db.error", "what=%s error=\"%s\"", what, msg);
    err_set(err, ERR_INTERNAL, "Database error");
    return -1;
}

db_t *db_open(const char *path, err_t *err) {
    /* Allocation statistics would take a global mutex on every SQLite malloc (shopd
     * has a second thread, the checkpointer); shopd does not read them. Only has an
     * effect before SQLite initialises, so the first open sets it. */
    static bool configured;
    if (!configured) {
        configured = true;
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        walbuf_vfs_name(); /* registered before the checkpointer thread exists */
    }
    db_t *db = xcalloc(1, sizeof *db);
    strmap_init(&db->stmts);
    int rc = sqlite3_open_v2(path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             walbuf_vfs_name());
    if (rc != SQLITE_OK) {
        err_set(err, ERR_INTERNAL, "cannot open database %s: %s", path,
                db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        db_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_handler(db->conn, busy_wait, NULL);
    static const char setup[] = "PRAGMA journal_mode=WAL;"
                                "PRAGMA synchronous=NORMAL;"
                                "PRAGMA foreign_keys=OFF;"
                                "PRAGMA temp_store=MEMORY;"
                                "PRAGMA cache_size=-16384;"
                                "PRAGMA journal_size_limit=67108864;";
    char *msg = NULL;
    if (sqlite3_exec(db->conn, setup, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, ERR_INTERNAL, "cannot set up database %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        db_close(db);
        return NULL;
    }
    checkpointer_start(db, path);
    writer_start(db);
    return db;
}

void db_close(db_t *db) {
    if (!db) return;
    db_idle(db);
    writer_stop(db);
    checkpointer_stop(db);
    size_t it = 0;
    void *v;
    while (strmap_next(&db->stmts, &it, NULL, &v)) {
        db_stmt_t *st = v;
        sqlite3_finalize(st->stmt);
        free(st->sql);
        free(st);
    }
    strmap_cleanup(&db->stmts);
    if (db->conn) sqlite3_close(db->conn);
    free(db);
}

/* Ends the shared read transaction, if one is open. */
static void read_end(db_t *db) {
    if (!db->read_open) return; /* (it is opened after a drain, and nothing is queued while it is) */
    writer_drain(db);
    db->read_open = false;
    if (!sqlite3_get_autocommit(db->conn)) sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
}

void db_idle(db_t *db) {
    if (db) read_end(db);
}

int db_exec(db_t *db, const char *sql, err_t *err) {
    read_end(db);
    writer_drain(db);
    char *msg = NULL;
    db->last_rc = sqlite3_exec(db->conn, sql, NULL, NULL, &msg);
    if (db->last_rc != SQLITE_OK) {
        log_error("db.error", "what=exec error=\"%s\"", msg ? msg : "?");
        sqlite3_free(msg);
        err_set(err, ERR_INTERNAL, "Database error");
        return -1;
    }
    return 0;
}

/* The cached statement for `sql`, or NULL. */
static db_stmt_t *stmt_find(db_t *db, const char *sql) {
    /* Fibonacci hashing of the address: allocations of one size class sit at regular
     * strides, which a plain modulo would pile onto a few slots. */
    size_t slot = (size_t)(((uint64_t)(uintptr_t)sql * 0x9E3779B97F4A7C15ull) >> (64 - DB_RECENT_BITS));
    db_stmt_t *st = db->recent[slot].sql == sql ? db->recent[slot].st : NULL;
    if (!st || strcmp(st->sql, sql) != 0) st = strmap_get(&db->stmts, sql);
    if (st) {
        db->recent[slot].sql = sql;
        db->recent[slot].st = st;
    }
    return st;
}

db_stmt_t *db_prepare(db_t *db, const char *sql, err_t *err) {
    writer_drain(db);
    db_stmt_t *st = stmt_find(db, sql);
    if (st) {
        sqlite3_reset(st->stmt);
        sqlite3_clear_bindings(st->stmt);
        db->active++;
        return st;
    }
    sqlite3_stmt *s = NULL;
    unsigned flags = db->stmts.count < DB_MAX_CACHED ? SQLITE_PREPARE_PERSISTENT : 0;
    if (sqlite3_prepare_v3(db->conn, sql, -1, flags, &s, NULL) != SQLITE_OK) {
        db_fail(db, err, "prepare");
        return NULL;
    }
    st = xmalloc(sizeof *st);
    st->stmt = s;
    st->db = db;
    st->cached = db->stmts.count < DB_MAX_CACHED;
    st->sql = NULL;
    if (st->cached) {
        st->sql = xstrdup(sql);
        strmap_put(&db->stmts, sql, st);
        stmt_find(db, sql); /* remembers its slot */
    }
    db->active++;
    return st;
}

db_stmt_t *db_prepare_queued(db_t *db, const char *sql, err_t *err) {
    if (!db->w.running || !db->in_tx || db->recording) return db_prepare(db, sql, err);
    db_stmt_t *st = stmt_find(db, sql);
    if (!st) {
        st = db_prepare(db, sql, err); /* the first use prepares it */
        if (!st || !st->cached) return st; /* a one-use statement runs at once */
        db->active--;
    }
    db->recording = st;
    db->rec_n = 0;
    buf_reset(&db->rec_text);
    return st;
}

bool db_is_queued(const db_stmt_t *st) { return st->db->recording == st; }

static void submit(db_stmt_t *st, int expect_changes, atomic_llong *rows) {
    db_t *db = st->db;
    size_t nv = db->rec_n * sizeof(db_val_t);
    db_op_t *op = xcalloc(1, sizeof *op + nv + db->rec_text.len);
    op->kind = OP_WRITE;
    op->stmt = st->stmt;
    op->expect = expect_changes;
    op->rows = rows;
    op->nvals = db->rec_n;
    op->vals = (db_val_t *)(op + 1);
    op->text = (char *)op->vals + nv;
    if (nv) memcpy(op->vals, db->rec_vals, nv);
    if (db->rec_text.len) memcpy(op->text, db->rec_text.data, db->rec_text.len);
    db->recording = NULL;
    writer_queue(db, op, false);
}

void db_submit(db_stmt_t *st, int expect_changes) { submit(st, expect_changes, NULL); }
void db_submit_counting(db_stmt_t *st, atomic_llong *rows) { submit(st, -1, rows); }

bool db_queues_transactions(const db_t *db) { return db->w.running; }

void db_set_notify(db_t *db, void (*fn)(void *udata), void *udata) {
    if (!db->w.running) return;
    pthread_mutex_lock(&db->w.lock);
    db->w.notify = fn;
    db->w.notify_udata = udata;
    pthread_mutex_unlock(&db->w.lock);
}

int db_begin_queued(db_t *db, err_t *err) {
    if (!db->w.running) return db_begin(db, err);
    read_end(db);
    db->in_tx = true;
    db_op_t *op = xcalloc(1, sizeof *op);
    op->kind = OP_BEGIN;
    writer_queue(db, op, false);
    return 0;
}

void db_commit_queued(db_t *db, uint64_t tag) {
    db->in_tx = false;
    db_op_t *op = xcalloc(1, sizeof *op);
    op->kind = OP_COMMIT;
    op->tag = tag;
    writer_queue(db, op, true);
}

bool db_completed(db_t *db, uint64_t *tag, int *rc, err_t *err) {
    if (!db->w.running) return false;
    writer_t *w = &db->w;
    pthread_mutex_lock(&w->lock);
    db_op_t *op = w->completed;
    if (op) {
        w->completed = op->next;
        if (!w->completed) w->completed_tail = NULL;
        if (op->rc < 0) acknowledge(db);
    }
    pthread_mutex_unlock(&w->lock);
    if (!op) return false;
    *tag = op->tag;
    *rc = op->rc;
    if (op->rc < 0) err_set(err, ERR_INTERNAL, "Database error");
    free(op);
    return true;
}

/* A value bound to the statement being recorded. */
static db_val_t *rec_val(db_t *db, int i, db_type_t type) {
    if (db->rec_n == db->rec_cap) {
        db->rec_cap = db->rec_cap ? db->rec_cap * 2 : 16;
        db->rec_vals = xrealloc(db->rec_vals, db->rec_cap * sizeof *db->rec_vals);
    }
    db_val_t *v = &db->rec_vals[db->rec_n++];
    v->index = i;
    v->type = type;
    return v;
}

static void rec_text(db_t *db, int i, const char *s, size_t len) {
    db_val_t *v = rec_val(db, i, DB_TEXT);
    v->off = db->rec_text.len;
    v->len = len;
    buf_append(&db->rec_text, s, len);
}

void db_done(db_stmt_t *st) {
    if (!st) return;
    db_t *db = st->db;
    if (st->cached) {
        sqlite3_reset(st->stmt);
        sqlite3_clear_bindings(st->stmt);
    } else {
        sqlite3_finalize(st->stmt);
        free(st);
    }
    /* Only now may the writer use the connection again. */
    if (--db->active == 0 && db->pending && db->w.running) writer_publish(db);
}

void db_bind_null(db_stmt_t *st, int i) {
    if (st->db->recording == st) rec_val(st->db, i, DB_NULL);
    else sqlite3_bind_null(st->stmt, i);
}

void db_bind_int(db_stmt_t *st, int i, int64_t v) {
    if (st->db->recording == st) rec_val(st->db, i, DB_INTEGER)->i = v;
    else sqlite3_bind_int64(st->stmt, i, v);
}

void db_bind_double(db_stmt_t *st, int i, double v) {
    if (st->db->recording == st) rec_val(st->db, i, DB_REAL)->d = v;
    else sqlite3_bind_double(st->stmt, i, v);
}

void db_bind_text(db_stmt_t *st, int i, const char *s, size_t len) {
    if (st->db->recording == st) rec_text(st->db, i, s, len);
    else sqlite3_bind_text(st->stmt, i, s, (int)len, SQLITE_TRANSIENT);
}

void db_bind_text_borrowed(db_stmt_t *st, int i, const char *s, size_t len) {
    if (st->db->recording == st) rec_text(st->db, i, s, len);
    else sqlite3_bind_text(st->stmt, i, s, (int)len, SQLITE_STATIC);
}

db_step_t db_step(db_stmt_t *st, err_t *err) {
    db_t *db = st->db;
    if (epoch_failed(db) && !sqlite3_stmt_readonly(st->stmt)) { /* until it is acknowledged */
        err_set(err, ERR_INTERNAL, "Database error");
        return DB_ERROR;
    }
    if (!db->in_tx) {
        if (!sqlite3_stmt_readonly(st->stmt)) {
            read_end(db);
        } else if (!db->read_open && !sqlite3_stmt_busy(st->stmt) && sqlite3_get_autocommit(db->conn)) {
            db->read_open = sqlite3_exec(db->conn, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
        }
    }
    int rc = sqlite3_step(st->stmt);
    st->db->last_rc = rc;
    if (rc == SQLITE_ROW) return DB_ROW;
    if (rc == SQLITE_DONE) return DB_DONE;
    snprintf(st->db->last_msg, sizeof st->db->last_msg, "%s", sqlite3_errmsg(st->db->conn));
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        err_set(err, ERR_ALREADY_EXISTS, "Constraint violation");
        sqlite3_reset(st->stmt);
        st->db->last_rc = rc;
        return DB_ERROR;
    }
    db_fail(st->db, err, "step");
    sqlite3_reset(st->stmt);
    st->db->last_rc = rc;
    return DB_ERROR;
}

db_type_t db_column_type(db_stmt_t *st, int col) {
    switch (sqlite3_column_type(st->stmt, col)) {
    case SQLITE_INTEGER: return DB_INTEGER;
    case SQLITE_FLOAT: return DB_REAL;
    case SQLITE_NULL: return DB_NULL;
    default: return DB_TEXT;
    }
}

int64_t db_column_int(db_stmt_t *st, int col) { return sqlite3_column_int64(st->stmt, col); }
double db_column_double(db_stmt_t *st, int col) { return sqlite3_column_double(st->stmt, col); }

const char *db_column_text(db_stmt_t *st, int col, size_t *len) {
    const char *s = (const char *)sqlite3_column_text(st->stmt, col);
    if (len) *len = (size_t)sqlite3_column_bytes(st->stmt, col);
    return s ? s : "";
}

const char *db_last_error(const db_t *db) { return db->last_msg; }

bool db_is_constraint_error(const db_t *db) { return (db->last_rc & 0xff) == SQLITE_CONSTRAINT; }
int64_t db_last_insert_rowid(db_t *db) {
    writer_drain(db);
    return sqlite3_last_insert_rowid(db->conn);
}

int db_changes(db_t *db) {
    writer_drain(db);
    return sqlite3_changes(db->conn);
}

bool db_in_transaction(const db_t *db) { return db->in_tx; }

bool db_transaction_alive(db_t *db) {
    writer_drain(db);
    return !sqlite3_get_autocommit(db->conn);
}

static int db_simple(db_t *db, const char *sql, err_t *err) {
    db_stmt_t *st = db_prepare(db, sql, err);
    if (!st) return -1;
    db_step_t r = db_step(st, err);
    db_done(st);
    return r == DB_ERROR ? -1 : 0;
}

int db_savepoint(db_t *db, err_t *err) { return db_simple(db, "SAVEPOINT unit", err); }
int db_release(db_t *db, err_t *err) { return db_simple(db, "RELEASE unit", err); }

void db_rollback_to(db_t *db) {
    err_t err = ERR_INIT;
    if (db_simple(db, "ROLLBACK TO unit", &err) == 0) db_simple(db, "RELEASE unit", &err);
    err_clear(&err);
}

int db_begin(db_t *db, err_t *err) {
    read_end(db);
    writer_drain(db);
    acknowledge(db); /* a transaction lost to a failure ended there */
    db->in_tx = true; /* so that db_step does not open a read transaction for BEGIN */
    if (db_simple(db, "BEGIN IMMEDIATE", err) < 0) {
        db->in_tx = false;
        return -1;
    }
    return 0;
}

int db_commit(db_t *db, err_t *err) {
    writer_drain(db);
    if (epoch_failed(db)) {
        err_set(err, ERR_INTERNAL, "Database error");
        db_rollback(db);
        return -1;
    }
    if (db_simple(db, "COMMIT", err) < 0) {
        db_rollback(db);
        return -1;
    }
    db->in_tx = false;
    return 0;
}

void db_rollback(db_t *db) {
    writer_drain(db);
    acknowledge(db); /* the writer is idle: nothing of a failed transaction stays */
    if (!db->in_tx) return;
    db->in_tx = false;
    if (sqlite3_get_autocommit(db->conn)) return; /* SQLite already rolled back */
    err_t err = ERR_INIT;
    db_simple(db, "ROLLBACK", &err);
    err_clear(&err);
}

int db_schema_version(db_t *db) {
    err_t err = ERR_INIT;
    int v = 0;
    db_stmt_t *st = db_prepare(db, "SELECT coalesce(max(version), 0) FROM _shopd_migrations", &err);
    if (st && db_step(st, &err) == DB_ROW) v = (int)db_column_int(st, 0);
    if (st) db_done(st);
    err_clear(&err);
    return v;
}

int db_migrate(db_t *db, const db_migration_t *migrations, size_t count, err_t *err) {
    if (db_exec(db,
                "CREATE TABLE IF NOT EXISTS _shopd_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                err) < 0)
        return -1;
    int current = db_schema_version(db), applied = 0;
    for (size_t i = 0; i < count; i++) {
        const db_migration_t *m = &migrations[i];
        if (m->version <= current) continue;
        if (db_begin(db, err) < 0) return -1;
        if (db_exec(db, m->sql, err) < 0) {
            db_rollback(db);
            err_set(err, ERR_INTERNAL, "migration %d (%s) failed", m->version, m->name);
            return -1;
        }
        db_stmt_t *st = db_prepare(db,
                                   "INSERT INTO _shopd_migrations(version, name, applied_at)"
                                   " VALUES (?, ?, ?)",
                                   err);
        if (!st) {
            db_rollback(db);
            return -1;
        }
        db_bind_int(st, 1, m->version);
        db_bind_text(st, 2, m->name, strlen(m->name));
        db_bind_int(st, 3, clock_now_ms());
        db_step_t r = db_step(st, err);
        db_done(st);
        if (r == DB_ERROR || db_commit(db, err) < 0) {
            db_rollback(db);
            return -1;
        }
        log_info("db.migrated", "version=%d name=%s", m->version, m->name);
        applied++;
    }
    return applied;
}

void db_quote_ident(buf_t *out, const char *name) {
    buf_append_char(out, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"') buf_append_char(out, '"');
        buf_append_char(out, *p);
    }
    buf_append_char(out, '"');
}

void db_drain(db_t *db) { writer_drain(db); }
