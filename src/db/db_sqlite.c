/* The SQLite backend of db.h.
 *
 * Settings, chosen for a server that acknowledges writes only after commit:
 *   journal_mode=WAL       readers never block the writer; commits append to the WAL
 *   synchronous=NORMAL     commit does not fsync; the WAL is synced at checkpoints. An
 *                          acknowledged write survives a crash of shopd (kill -9) because
 *                          it is in the operating system's cache; a power loss or kernel
 *                          crash can lose the transactions committed since the last
 *                          checkpoint (docs/internals/db.md).
 *   busy_timeout=5000      another process (sqlite3 shell, backup) may hold a lock briefly
 *   foreign_keys=OFF       references between buckets are hints, as the protocol says
 */
#include "db/db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/strmap.h"

struct db_stmt {
    sqlite3_stmt *stmt;
    db_t *db;
    bool cached;
};

struct db {
    sqlite3 *conn;
    strmap_t stmts; /* sql text → db_stmt_t */
    bool in_tx;
    int last_rc;
    char last_msg[256];
};

static int db_fail(db_t *db, err_t *err, const char *what) {
    const char *msg = db && db->conn ? sqlite3_errmsg(db->conn) : "out of memory";
    log_error("db.error", "what=%s error=\"%s\"", what, msg);
    err_set(err, ERR_INTERNAL, "Database error");
    return -1;
}

db_t *db_open(const char *path, err_t *err) {
    db_t *db = xcalloc(1, sizeof *db);
    strmap_init(&db->stmts);
    int rc = sqlite3_open_v2(path, &db->conn,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err_set(err, ERR_INTERNAL, "cannot open database %s: %s", path,
                db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        db_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, 5000);
    static const char setup[] = "PRAGMA journal_mode=WAL;"
                                "PRAGMA synchronous=NORMAL;"
                                "PRAGMA foreign_keys=OFF;"
                                "PRAGMA temp_store=MEMORY;"
                                "PRAGMA cache_size=-16384;";
    char *msg = NULL;
    if (sqlite3_exec(db->conn, setup, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, ERR_INTERNAL, "cannot set up database %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        db_close(db);
        return NULL;
    }
    return db;
}

void db_close(db_t *db) {
    if (!db) return;
    size_t it = 0;
    void *v;
    while (strmap_next(&db->stmts, &it, NULL, &v)) {
        db_stmt_t *st = v;
        sqlite3_finalize(st->stmt);
        free(st);
    }
    strmap_cleanup(&db->stmts);
    if (db->conn) sqlite3_close(db->conn);
    free(db);
}

int db_exec(db_t *db, const char *sql, err_t *err) {
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
    db_stmt_t *st = strmap_get(&db->stmts, sql);
    if (st) {
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
    if (st->cached) strmap_put(&db->stmts, sql, st);
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

db_step_t db_step(db_stmt_t *st, err_t *err) {
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

static int db_simple(db_t *db, const char *sql, err_t *err) {
    db_stmt_t *st = db_prepare(db, sql, err);
    if (!st) return -1;
    db_step_t r = db_step(st, err);
    db_done(st);
    return r == DB_ERROR ? -1 : 0;
}

int db_begin(db_t *db, err_t *err) {
    if (db_simple(db, "BEGIN IMMEDIATE", err) < 0) return -1;
    db->in_tx = true;
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
