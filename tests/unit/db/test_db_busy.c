/* How the store's connection (src/db/db_sqlite.c) waits for a lock held elsewhere: a
 * write waits, in short steps, for another connection (a checkpoint, the sqlite3 shell)
 * to let go, instead of failing. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/err.h"
#include "db/db.h"

static char dir[64];
static char path[96];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/shopd-busy-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(db_busy, .init = setup, .fini = teardown);

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

Test(db_busy, a_write_waits_for_another_connections_lock) {
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
