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
 */
#include "db/db.h"

#include <pthread.h>
#include <sqlite3.h>
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
    return db;
}

void db_close(db_t *db) {
    if (!db) return;
    db_idle(db);
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
    if (!db->read_open) return;
    db->read_open = false;
    if (!sqlite3_get_autocommit(db->conn)) sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
}

void db_idle(db_t *db) {
    if (db) read_end(db);
}

int db_exec(db_t *db, const char *sql, err_t *err) {
    read_end(db);
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

db_stmt_t *db_prepare(db_t *db, const char *sql, err_t *err) {
    /* Fibonacci hashing of the address: allocations of one size class sit at regular
     * strides, which a plain modulo would pile onto a few slots. */
    size_t slot = (size_t)(((uint64_t)(uintptr_t)sql * 0x9E3779B97F4A7C15ull) >> (64 - DB_RECENT_BITS));
    db_stmt_t *st = db->recent[slot].sql == sql ? db->recent[slot].st : NULL;
    if (!st || strcmp(st->sql, sql) != 0) st = strmap_get(&db->stmts, sql);
    if (st) {
        db->recent[slot].sql = sql;
        db->recent[slot].st = st;
        sqlite3_reset(st->stmt);
        sqlite3_clear_bindings(st->stmt);
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
        db->recent[slot].sql = sql;
        db->recent[slot].st = st;
    }
    return st;
}

void db_done(db_stmt_t *st) {
    if (!st) return;
    if (st->cached) {
        sqlite3_reset(st->stmt);
        sqlite3_clear_bindings(st->stmt);
    } else {
        sqlite3_finalize(st->stmt);
        free(st);
    }
}

void db_bind_null(db_stmt_t *st, int i) { sqlite3_bind_null(st->stmt, i); }
void db_bind_int(db_stmt_t *st, int i, int64_t v) { sqlite3_bind_int64(st->stmt, i, v); }
void db_bind_double(db_stmt_t *st, int i, double v) { sqlite3_bind_double(st->stmt, i, v); }
void db_bind_text(db_stmt_t *st, int i, const char *s, size_t len) {
    sqlite3_bind_text(st->stmt, i, s, (int)len, SQLITE_TRANSIENT);
}

void db_bind_text_borrowed(db_stmt_t *st, int i, const char *s, size_t len) {
    sqlite3_bind_text(st->stmt, i, s, (int)len, SQLITE_STATIC);
}

db_step_t db_step(db_stmt_t *st, err_t *err) {
    db_t *db = st->db;
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
int64_t db_last_insert_rowid(db_t *db) { return sqlite3_last_insert_rowid(db->conn); }
int db_changes(db_t *db) { return sqlite3_changes(db->conn); }
bool db_in_transaction(const db_t *db) { return db->in_tx; }
bool db_transaction_alive(const db_t *db) { return !sqlite3_get_autocommit(db->conn); }

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
    db->in_tx = true; /* so that db_step does not open a read transaction for BEGIN */
    if (db_simple(db, "BEGIN IMMEDIATE", err) < 0) {
        db->in_tx = false;
        return -1;
    }
    return 0;
}

int db_commit(db_t *db, err_t *err) {
    if (db_simple(db, "COMMIT", err) < 0) {
        db_rollback(db);
        return -1;
    }
    db->in_tx = false;
    return 0;
}

void db_rollback(db_t *db) {
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
