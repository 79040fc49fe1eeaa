/* The database interface of shopd: prepared statements, transactions and numbered
 * migrations over one connection. The SQLite backend (db_sqlite.c) runs statements
 * on the caller's thread: SQLite in WAL mode with synchronous=NORMAL does not wait
 * for the disk on commit, and a point lookup costs about a microsecond, far less than
 * handing the work to another thread and waiting for it would (docs/internals/db.md).
 * Writes whose answer nobody waits for can be queued for the backend's writer thread
 * instead (db_prepare_queued), which runs them beside the caller. A PostgreSQL
 * backend will implement the same interface on its own connection thread.
 *
 * Statements are cached by their SQL text: db_prepare returns the same reset
 * statement for the same text, owned by the db. Values are always bound, never
 * spliced into SQL. Not thread-safe: one db per thread. */
#ifndef SHOPD_DB_DB_H
#define SHOPD_DB_DB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct db db_t;
typedef struct db_stmt db_stmt_t;

typedef enum { DB_ROW = 1, DB_DONE = 0, DB_ERROR = -1 } db_step_t;

typedef enum { DB_NULL, DB_INTEGER, DB_REAL, DB_TEXT } db_type_t;

/* A migration: its number (1, 2, …, in order) and the SQL that applies it. */
typedef struct {
    int version;
    const char *name;
    const char *sql;
} db_migration_t;

/* Opens (creating if needed) the database file `path`. Returns NULL with err set. */
db_t *db_open(const char *path, err_t *err);
void db_close(db_t *db); /* NULL is fine */

/* Applies the migrations newer than the recorded version, each in its own
 * transaction. Returns the number applied, or -1 with err set. */
int db_migrate(db_t *db, const db_migration_t *migrations, size_t count, err_t *err);
int db_schema_version(db_t *db);

/* Ends the read transaction that reads outside write transactions share; call once
 * per event-loop turn (and before the process sleeps), so other processes' writes and
 * checkpoints are never held back for long. */
void db_idle(db_t *db);

/* Runs one or more statements without results. */
int db_exec(db_t *db, const char *sql, err_t *err);

/* Returns a ready statement for `sql`, or NULL with err set. Statements are cached
 * by SQL text (up to DB_MAX_CACHED; past that they are prepared for one use). Give
 * every statement back with db_done() when finished with it. */
#define DB_MAX_CACHED 1024
db_stmt_t *db_prepare(db_t *db, const char *sql, err_t *err);
/* Resets a cached statement, or finalizes a one-use one. NULL is fine. */
void db_done(db_stmt_t *st);
/* Parameters are numbered from 1. */
void db_bind_null(db_stmt_t *st, int i);
void db_bind_int(db_stmt_t *st, int i, int64_t v);
void db_bind_double(db_stmt_t *st, int i, double v);
void db_bind_text(db_stmt_t *st, int i, const char *s, size_t len); /* copied */
/* Not copied: s must stay unchanged until db_done() of this statement. */
void db_bind_text_borrowed(db_stmt_t *st, int i, const char *s, size_t len);
db_step_t db_step(db_stmt_t *st, err_t *err);
/* Writes that need no answer at once, run by the writer thread (db_sqlite.c): inside a
 * transaction, db_prepare_queued returns a statement whose values are recorded
 * (db_is_queued) and db_submit queues it, with the number of rows it must change (or
 * -1). It runs before anything the caller does next with the connection. If it fails,
 * every later write statement fails and so does db_commit, which rolls the whole
 * transaction back: use it only for writes that cannot fail but for an I/O error (no
 * uniqueness to check). Outside a transaction (or without the thread) the statement is
 * an ordinary one: db_is_queued is false and the caller steps it. */
db_stmt_t *db_prepare_queued(db_t *db, const char *sql, err_t *err);
bool db_is_queued(const db_stmt_t *st);
void db_submit(db_stmt_t *st, int expect_changes);
/* The same for a write that may change any number of rows: the number it changed is
 * added to *rows when it has run (by the writer thread: read *rows atomically, and
 * after db_drain for an exact figure). */
void db_submit_counting(db_stmt_t *st, atomic_llong *rows);
/* Transactions through the writer thread, so that the caller goes on while one
 * commits: db_begin_queued opens one (it runs before the next op), db_commit_queued
 * ends it, and db_completed gives the outcomes of those commits back, in order, with
 * the caller's tag (false: none yet). The writer calls the function set with
 * db_set_notify (from its own thread) after each. A transaction that failed (rc -1,
 * err set) is rolled back, and so is every transaction queued after it before its
 * outcome was taken. Without the thread (db_queues_transactions false) db_begin_queued
 * is db_begin and the others must not be used. */
bool db_queues_transactions(const db_t *db);
void db_set_notify(db_t *db, void (*fn)(void *udata), void *udata);
int db_begin_queued(db_t *db, err_t *err);
void db_commit_queued(db_t *db, uint64_t tag);
bool db_completed(db_t *db, uint64_t *tag, int *rc, err_t *err);
/* Waits until every queued op (and commit) has run. */
void db_drain(db_t *db);

db_type_t db_column_type(db_stmt_t *st, int col);
int64_t db_column_int(db_stmt_t *st, int col);
double db_column_double(db_stmt_t *st, int col);
/* Borrowed until the next step/reset; *len gets the length in bytes. */
const char *db_column_text(db_stmt_t *st, int col, size_t *len);

/* The message of the last failed step (for logs and constraint names). */
const char *db_last_error(const db_t *db);
/* Whether the last failed step was a constraint violation. */
bool db_is_constraint_error(const db_t *db);
int64_t db_last_insert_rowid(db_t *db);
int db_changes(db_t *db);

/* Savepoints inside a transaction: a partial rollback of one unit of work. */
int db_savepoint(db_t *db, err_t *err);
int db_release(db_t *db, err_t *err);
void db_rollback_to(db_t *db);

/* Transactions (not nestable; savepoints for partial rollback). */
int db_begin(db_t *db, err_t *err);
int db_commit(db_t *db, err_t *err);
void db_rollback(db_t *db);
bool db_in_transaction(const db_t *db);
/* Whether SQLite still has a transaction open on the connection: after some errors (a
 * full disk, an I/O error) it rolls the whole transaction back by itself. */
bool db_transaction_alive(db_t *db);

/* Appends a double-quoted SQL identifier (names are checked by their owners; quotes
 * inside are doubled all the same). */
void db_quote_ident(buf_t *out, const char *name);

#endif
