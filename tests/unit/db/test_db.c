/* The database layer against real SQLite databases in a temporary directory: the
 * WAL-gathering VFS (src/db/walbuf.c) must write fewer, larger chunks and change nothing
 * SQLite guarantees; the store's connection (src/db/db_sqlite.c) waits, in short steps,
 * for another connection's lock (a checkpoint, the sqlite3 shell) instead of failing, and its
 * writer thread runs queued writes in order, before anything else, all or nothing. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "db/db.h"
#include "db/walbuf.h"

static char dir[64];
static char path[96];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/shopd-walbuf-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(walbuf, .init = setup, .fini = teardown);

static sqlite3 *open_db(const char *vfs) {
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                 SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_wal_autocheckpoint(db, 0); /* the tests decide when pages leave the WAL */
    return db;
}

static void exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
}

static sqlite3_int64 one_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    sqlite3_int64 v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static void check_integrity(sqlite3 *db) {
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
}

/* n rows of `size` bytes each, in one transaction, with a checksum column to verify. */
static void insert_rows(sqlite3 *db, int first, int n, int size) {
    exec(db, "BEGIN");
    sqlite3_stmt *q = NULL;
    cr_assert_eq(
        sqlite3_prepare_v2(db, "INSERT INTO t(id, body, sum) VALUES (?1, ?2, ?3)", -1, &q, NULL),
        SQLITE_OK);
    char *body = malloc((size_t)size);
    for (int i = first; i < first + n; i++) {
        sqlite3_int64 sum = 0;
        for (int j = 0; j < size; j++) {
            body[j] = (char)('a' + (i * 31 + j * 7) % 26);
            sum += body[j];
        }
        sqlite3_bind_int(q, 1, i);
        sqlite3_bind_text(q, 2, body, size, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, sum);
        cr_assert_eq(sqlite3_step(q), SQLITE_DONE, "%s", sqlite3_errmsg(db));
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    free(body);
    exec(db, "COMMIT");
}

/* Every row's body still adds up to its checksum, and there are `n` of them. */
static void verify_rows(sqlite3 *db, sqlite3_int64 n) {
    check_integrity(db);
    cr_assert_eq(one_int(db, "SELECT count(*) FROM t"), n);
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT body, sum FROM t", -1, &q, NULL), SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const unsigned char *b = sqlite3_column_text(q, 0);
        int len = sqlite3_column_bytes(q, 0);
        sqlite3_int64 sum = 0;
        for (int j = 0; j < len; j++) sum += b[j];
        cr_assert_eq(sum, sqlite3_column_int64(q, 1));
    }
    sqlite3_finalize(q);
}

/* Checks db, closes it, and checks the file again through the default VFS. */
static void verify_closed_and_reopened(sqlite3 *db, sqlite3_int64 n) {
    verify_rows(db, n);
    sqlite3_close(db);
    sqlite3 *again = open_db(NULL);
    verify_rows(again, n);
    sqlite3_close(again);
}

static int wal_frames(void *udata, sqlite3 *db, const char *name, int pages) {
    (void)db;
    (void)name;
    *(int *)udata = pages;
    return SQLITE_OK;
}

Test(walbuf, writes_a_commit_in_few_large_writes) {
    const char *vfs = walbuf_vfs_name();
    cr_assert_str_eq(vfs, "shopd-walbuf");
    sqlite3 *db = open_db(vfs);
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT, sum INTEGER)");
    int frames = 0;
    sqlite3_wal_hook(db, wal_frames, &frames);
    int before_frames = 0;
    exec(db, "PRAGMA user_version = 1"); /* a one-page commit: the hook's baseline */
    before_frames = frames;
    unsigned long writes = walbuf_writes();
    insert_rows(db, 0, 400, 3000); /* about 300 pages of 4 KiB */
    unsigned long used = walbuf_writes() - writes;
    int pages = frames - before_frames;
    cr_assert_gt(pages, 250, "the transaction wrote %d pages", pages);
    /* SQLite alone makes two writes per page; 31 frames fit in one gathered write. */
    cr_assert_leq(used, (unsigned long)(pages / 31 + 2), "%lu writes for %d pages", used, pages);
    verify_rows(db, 400);
    sqlite3_close(db);
}

Test(walbuf, another_connection_sees_each_commit_and_can_checkpoint) {
    sqlite3 *w = open_db(walbuf_vfs_name());
    exec(w, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT, sum INTEGER)");
    sqlite3 *r = open_db(NULL); /* the default VFS, as a sqlite3 shell would use */
    int total = 0;
    for (int round = 0; round < 30; round++) {
        int n = 1 + round * 7;
        insert_rows(w, total, n, 200 + round * 150);
        total += n;
        cr_assert_eq(one_int(r, "SELECT count(*) FROM t"), total);
        cr_assert_eq(one_int(r, "SELECT count(*) FROM t WHERE length(body) = 0"), 0);
        if (round % 5 == 4) exec(r, "PRAGMA wal_checkpoint(PASSIVE)");
    }
    verify_rows(r, total);
    sqlite3_close(r);
    sqlite3_close(w);
    sqlite3 *again = open_db(NULL);
    verify_rows(again, total);
    sqlite3_close(again);
}

Test(walbuf, a_spilled_transaction_that_rolls_back_changes_nothing) {
    sqlite3 *db = open_db(walbuf_vfs_name());
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT, sum INTEGER)");
    insert_rows(db, 0, 50, 1000);
    /* A tiny page cache makes SQLite write pages of the open transaction to the WAL
     * (frames without a commit) long before its end. */
    exec(db, "PRAGMA cache_size = 10");
    exec(db, "BEGIN");
    unsigned long writes = walbuf_writes();
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
             "INSERT INTO t(id, body, sum) SELECT i, zeroblob(2000), 0 FROM n");
    exec(db, "UPDATE t SET body = 'x', sum = 120 WHERE id < 10");
    cr_assert_gt(walbuf_writes(), writes, "the open transaction's pages reached the WAL");
    exec(db, "ROLLBACK");
    insert_rows(db, 50, 20, 1500); /* written over the rolled-back frames */
    verify_closed_and_reopened(db, 70);
}

Test(walbuf, a_transaction_larger_than_the_buffer_commits_whole) {
    sqlite3 *db = open_db(walbuf_vfs_name());
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT, sum INTEGER)");
    insert_rows(db, 0, 3000, 4000); /* about 12 MiB of frames */
    insert_rows(db, 3000, 1, 10);
    exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    verify_closed_and_reopened(db, 3001);
}

Test(walbuf, a_commit_that_returned_survives_the_process_dying) {
    sqlite3 *db = open_db(walbuf_vfs_name());
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT, sum INTEGER)");
    sqlite3_close(db);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        sqlite3 *child = NULL;
        if (sqlite3_open_v2(path, &child, SQLITE_OPEN_READWRITE, walbuf_vfs_name()) != SQLITE_OK)
            _exit(2);
        sqlite3_exec(child, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
        for (int i = 0; i < 25; i++) {
            char sql[160];
            snprintf(sql, sizeof sql, "INSERT INTO t(id, body, sum) VALUES (%d, 'row', %d)", i,
                     'r' + 'o' + 'w');
            if (sqlite3_exec(child, sql, NULL, NULL, NULL) != SQLITE_OK) _exit(3);
        }
        /* Nothing closes the database or flushes anything: like kill -9 right after
         * the last commit returned. */
        _exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    sqlite3 *after = open_db(NULL);
    verify_rows(after, 25);
    sqlite3_close(after);
}

/* Another connection holds the write lock for `hold_ms`, then commits. */
typedef struct {
    sqlite3 *conn;
    int hold_ms;
} holder_t;

static void *hold_then_commit(void *arg) {
    holder_t *h = arg;
    struct timespec t = {h->hold_ms / 1000, (long)(h->hold_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    cr_assert_eq(sqlite3_exec(h->conn, "INSERT INTO t VALUES (2); COMMIT", NULL, NULL, NULL), SQLITE_OK);
    return NULL;
}

Test(db_busy, a_write_waits_for_another_connections_lock, .init = setup, .fini = teardown) {
    err_t err = ERR_INIT;
    db_t *db = db_open(path, &err);
    cr_assert_not_null(db, "%s", err.msg);
    cr_assert_eq(db_exec(db, "CREATE TABLE t (v INTEGER)", &err), 0, "%s", err.msg);
    holder_t h = {NULL, 60};
    cr_assert_eq(sqlite3_open(path, &h.conn), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h.conn, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, hold_then_commit, &h), 0);
    /* Blocked until the holder commits; then it goes through. */
    cr_assert_eq(db_exec(db, "INSERT INTO t VALUES (1)", &err), 0, "%s", err.msg);
    pthread_join(th, NULL);
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(h.conn, "SELECT group_concat(v) FROM t", -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "2,1", "the holder's row first, then ours");
    sqlite3_finalize(q);
    sqlite3_close(h.conn);
    db_close(db);
}

/* ---- the writer thread (db_prepare_queued) ---- */

TestSuite(db_writer, .init = setup, .fini = teardown);

static db_t *writer_db(void) {
    err_t err = ERR_INIT;
    db_t *db = db_open(path, &err);
    cr_assert_not_null(db, "%s", err.msg);
    cr_assert_eq(db_exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)", &err), 0, "%s", err.msg);
    return db;
}

static int64_t db_int(db_t *db, const char *sql) {
    err_t err = ERR_INIT;
    db_stmt_t *q = db_prepare(db, sql, &err);
    cr_assert_not_null(q, "%s", err.msg);
    cr_assert_eq(db_step(q, &err), DB_ROW, "%s", err.msg);
    int64_t v = db_column_int(q, 0);
    db_done(q);
    return v;
}

/* Queues "INSERT INTO t VALUES (id, v)", which must insert one row; returns whether
 * it was queued. */
static bool queue_insert(db_t *db, int64_t id, const char *v) {
    err_t err = ERR_INIT;
    db_stmt_t *q = db_prepare_queued(db, "INSERT INTO t(id, v) VALUES (?1, ?2)", &err);
    cr_assert_not_null(q, "%s", err.msg);
    db_bind_int(q, 1, id);
    db_bind_text_borrowed(q, 2, v, strlen(v));
    if (!db_is_queued(q)) {
        cr_assert_eq(db_step(q, &err), DB_DONE, "%s", err.msg);
        db_done(q);
        return false;
    }
    db_submit(q, 1);
    return true;
}

Test(db_writer, queued_writes_run_in_order_before_anything_else) {
    db_t *db = writer_db();
    err_t err = ERR_INIT;
    cr_assert_not(queue_insert(db, 1, "outside"), "outside a transaction a write runs at once");
    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    char v[32];
    for (int i = 2; i <= 2001; i++) { /* past WRITER_KICK_AT: the writer runs while we queue */
        snprintf(v, sizeof v, "row %d", i);
        cr_assert(queue_insert(db, i, v));
        if (i == 1000) cr_assert_eq(db_int(db, "SELECT count(*) FROM t"), 1000, "a read sees every write before it");
    }
    db_stmt_t *q = db_prepare_queued(db, "UPDATE t SET v = ?1 WHERE id = ?2", &err);
    db_bind_text(q, 1, "last", 4);
    db_bind_int(q, 2, 2001);
    db_submit(q, 1);
    cr_assert_eq(db_commit(db, &err), 0, "%s", err.msg);
    db_close(db);

    sqlite3 *check = open_db(NULL);
    cr_assert_eq(one_int(check, "SELECT count(*) FROM t"), 2001);
    cr_assert_eq(one_int(check, "SELECT count(*) FROM t WHERE v = 'row ' || id"), 1999);
    cr_assert_eq(one_int(check, "SELECT count(*) FROM t WHERE id = 2001 AND v = 'last'"), 1);
    sqlite3_close(check);
}

Test(db_writer, a_queued_write_keeps_its_values_after_the_caller_changes_them) {
    db_t *db = writer_db();
    err_t err = ERR_INIT;
    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    char v[16] = "original";
    cr_assert(queue_insert(db, 7, v));
    strcpy(v, "changed!");
    cr_assert_eq(db_commit(db, &err), 0, "%s", err.msg);
    db_stmt_t *q = db_prepare(db, "SELECT v FROM t WHERE id = 7", &err);
    cr_assert_eq(db_step(q, &err), DB_ROW);
    cr_assert_str_eq(db_column_text(q, 0, NULL), "original");
    db_done(q);
    db_close(db);
}

/* A queued write that fails (here a duplicate key) fails its whole transaction: later
 * writes are refused, the commit fails and rolls back, and the next transaction works. */
Test(db_writer, a_failed_queued_write_fails_the_whole_transaction) {
    db_t *db = writer_db();
    err_t err = ERR_INIT;
    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    cr_assert(queue_insert(db, 1, "kept"));
    cr_assert_eq(db_commit(db, &err), 0, "%s", err.msg);

    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    cr_assert(queue_insert(db, 2, "undone"));
    cr_assert(queue_insert(db, 1, "duplicate"));
    cr_assert(queue_insert(db, 3, "skipped"));
    db_stmt_t *q = db_prepare(db, "INSERT INTO t(id, v) VALUES (4, 'refused')", &err);
    cr_assert_eq(db_step(q, &err), DB_ERROR, "a write after the failure is refused");
    cr_assert_eq(err.code, ERR_INTERNAL);
    err_clear(&err);
    db_done(q);
    cr_assert_eq(db_commit(db, &err), -1, "the commit fails");
    err_clear(&err);
    cr_assert_not(db_in_transaction(db), "and rolled back");
    cr_assert_eq(db_int(db, "SELECT count(*) FROM t"), 1);

    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    cr_assert(queue_insert(db, 5, "next"));
    cr_assert_eq(db_commit(db, &err), 0, "%s", err.msg);
    cr_assert_eq(db_int(db, "SELECT count(*) FROM t"), 2);
    cr_assert_eq(db_int(db, "SELECT count(*) FROM t WHERE id IN (1, 5)"), 2);
    db_close(db);
}

Test(db_writer, a_queued_write_that_changes_no_row_fails_the_transaction) {
    db_t *db = writer_db();
    err_t err = ERR_INIT;
    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    cr_assert(queue_insert(db, 1, "a"));
    db_stmt_t *q = db_prepare_queued(db, "UPDATE t SET v = 'b' WHERE id = ?1", &err);
    db_bind_int(q, 1, 99); /* no such row */
    db_submit(q, 1);
    cr_assert_eq(db_commit(db, &err), -1);
    err_clear(&err);
    cr_assert_eq(db_int(db, "SELECT count(*) FROM t"), 0);
    db_close(db);
}

/* A queued write never commits on its own: if the transaction is gone (SQLite rolls
 * back by itself after an I/O error; here another statement ended it), it fails. */
Test(db_writer, a_queued_write_never_runs_outside_its_transaction) {
    db_t *db = writer_db();
    err_t err = ERR_INIT;
    cr_assert_eq(db_begin(db, &err), 0, "%s", err.msg);
    cr_assert_eq(db_exec(db, "ROLLBACK", &err), 0, "%s", err.msg); /* behind the db's back */
    cr_assert(queue_insert(db, 1, "alone"));
    cr_assert_eq(db_commit(db, &err), -1);
    err_clear(&err);
    cr_assert_eq(db_int(db, "SELECT count(*) FROM t"), 0);
    db_close(db);
}
