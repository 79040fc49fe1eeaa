/* Group commit: writes share one database transaction until store_batch_commit. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"

static store_t *st;
static char dir[64];
static int sets_seen;
static size_t changes_seen;

static void listener(void *udata, const store_changeset_t *cs) {
    (void)udata;
    sets_seen++;
    changes_seen += cs->count;
}

static void open_store(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/shopd.db", dir);
    err_t err = ERR_INIT;
    st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
}

static void setup(void) {
    strcpy(dir, "/tmp/shopd-batch-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    open_store();
    json_t *def = json_loads("{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"},"
                             "\"n\":{\"type\":\"integer\",\"min\":0}}}",
                             0, NULL);
    err_t err = ERR_INIT;
    cr_assert_eq(store_define_bucket(st, "items", def, false, &err), 0, "%s", err.msg);
    json_decref(def);
    store_listen(st, listener, NULL, NULL);
    store_set_group_commit(st, true);
    sets_seen = 0;
    changes_seen = 0;
}

static void teardown(void) {
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(group_commit, .init = setup, .fini = teardown);

static int run(const char *op, const char *req_json, err_t *err) {
    json_t *req = json_loads(req_json, 0, NULL);
    buf_t out;
    buf_init(&out, 0);
    int rc = store_execute(st, op, req, &out, err);
    buf_cleanup(&out);
    json_decref(req);
    return rc;
}

static int run_tx(const char *ops_json, err_t *err) {
    json_t *ops = json_loads(ops_json, 0, NULL);
    buf_t out;
    buf_init(&out, 0);
    int rc = store_transaction(st, ops, &out, err);
    buf_cleanup(&out);
    json_decref(ops);
    return rc;
}

static int count_items(void) {
    err_t err = ERR_INIT;
    buf_t out;
    buf_init(&out, 0);
    json_t *req = json_loads("{\"bucket\":\"items\"}", 0, NULL);
    cr_assert_eq(store_execute(st, "count", req, &out, &err), 0, "%s", err.msg);
    int n = atoi(buf_cstr(&out));
    json_decref(req);
    buf_cleanup(&out);
    return n;
}

/* Inserts x, then fails validation on a. */
static const char insert_x_then_fail[] =
    "[{\"op\":\"insert\",\"bucket\":\"items\",\"data\":{\"id\":\"x\"}},"
    "{\"op\":\"update\",\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"n\":-1}}]";

Test(group_commit, change_sets_wait_for_the_commit_one_per_write) {
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"b\",\"n\":1}}", &err), 0);
    cr_assert(store_batch_open(st));
    cr_assert_eq(sets_seen, 0, "nothing is offered before the commit");
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_not(store_batch_open(st));
    cr_assert_eq(sets_seen, 2);
    cr_assert_eq(changes_seen, 2);
}

Test(group_commit, a_failed_write_rolls_back_alone) {
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    cr_assert_eq(run_tx(insert_x_then_fail, &err), -1);
    err_clear(&err);
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"c\",\"n\":3}}", &err), 0);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(sets_seen, 2, "the failed transaction offers nothing");
    cr_assert_eq(count_items(), 2, "a and c are stored, x is not");
}

Test(group_commit, a_closed_store_keeps_the_batch) {
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    store_close(st); /* commits what the batch holds */
    open_store();
    buf_t out;
    buf_init(&out, 0);
    json_t *req = json_loads("{\"bucket\":\"items\",\"key\":\"a\"}", 0, NULL);
    cr_assert_eq(store_execute(st, "get", req, &out, &err), 0);
    cr_assert(strstr(buf_cstr(&out), "\"id\":\"a\"") != NULL, "%s", buf_cstr(&out));
    json_decref(req);
    buf_cleanup(&out);
}

Test(group_commit, redefining_a_bucket_commits_the_batch_first) {
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    json_t *def = json_loads("{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"}}}", 0, NULL);
    cr_assert_eq(store_define_bucket(st, "other", def, false, &err), 0, "%s", err.msg);
    json_decref(def);
    cr_assert_not(store_batch_open(st));
    cr_assert_eq(sets_seen, 1);
}

static int commit_rc = 1;
static uint64_t commit_batches[16]; /* the batches reported, in order, and their outcome */
static int commit_rcs[16];
static size_t ncommit_batches;
static void on_commit(void *udata, uint64_t batch, int rc, const err_t *err) {
    (void)udata;
    (void)err;
    commit_rc = rc;
    if (ncommit_batches < 16) {
        commit_rcs[ncommit_batches] = rc;
        commit_batches[ncommit_batches++] = batch;
    }
}

/* A failed write is undone by writing its rows back (no savepoint). When that cannot be
 * done, the whole batch is rolled back and reported failed, and writes wait for that. */
Test(group_commit, a_write_that_cannot_be_undone_fails_the_whole_batch) {
    char path[128];
    snprintf(path, sizeof path, "%s/shopd.db", dir);
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other,
                              "CREATE TRIGGER keep_x BEFORE DELETE ON items WHEN old.id = 'x' "
                              "BEGIN SELECT RAISE(ABORT, 'x stays'); END",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(other);
    store_on_batch_commit(st, on_commit, NULL);
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    /* Undoing the insert of x means deleting x, which the trigger refuses. */
    cr_assert_eq(run_tx(insert_x_then_fail, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION, "the write's own error is its answer: %s", err.msg);
    err_clear(&err);
    cr_assert(store_batch_open(st), "the failure waits to be reported");
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"b\",\"n\":2}}", &err), -1);
    cr_assert_eq(err.code, ERR_INTERNAL, "writes are refused until then");
    err_clear(&err);
    cr_assert_eq(store_batch_commit(st, &err), -1);
    cr_assert_eq(commit_rc, -1, "the commit callback hears of it");
    err_clear(&err);
    cr_assert_not(store_batch_open(st));
    cr_assert_eq(sets_seen, 0, "nothing of the batch is offered");
    cr_assert_eq(count_items(), 0, "a, written before in the same batch, is rolled back too");
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"b\",\"n\":2}}", &err), 0,
                 "%s", err.msg);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(commit_rc, 0);
    cr_assert_eq(count_items(), 1);
}

/* Undone writes leave rows exactly as they were, deleted rows in their old place. */
Test(group_commit, an_undone_write_puts_back_updated_and_deleted_rows) {
    err_t err = ERR_INIT;
    for (const char *id = "abc"; *id; id++) {
        char req[96];
        snprintf(req, sizeof req, "{\"bucket\":\"items\",\"data\":{\"id\":\"%c\",\"n\":1}}", *id);
        cr_assert_eq(run("insert", req, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    buf_t before, after;
    buf_init(&before, 0);
    buf_init(&after, 0);
    json_t *all = json_loads("{\"bucket\":\"items\"}", 0, NULL);
    cr_assert_eq(store_execute(st, "all", all, &before, &err), 0);
    cr_assert_eq(
        run_tx("[{\"op\":\"update\",\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"n\":5}},"
               "{\"op\":\"delete\",\"bucket\":\"items\",\"key\":\"b\"},"
               "{\"op\":\"insert\",\"bucket\":\"items\",\"data\":{\"id\":\"d\",\"n\":1}},"
               "{\"op\":\"update\",\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"n\":6}},"
               "{\"op\":\"insert\",\"bucket\":\"items\",\"data\":{\"id\":\"c\",\"n\":1}}]",
               &err),
        -1);
    cr_assert_eq(err.code, ERR_ALREADY_EXISTS, "%s", err.msg);
    err_clear(&err);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(store_execute(st, "all", all, &after, &err), 0);
    cr_assert_str_eq(buf_cstr(&after), buf_cstr(&before),
                     "records, versions and order are as before");
    json_decref(all);
    buf_cleanup(&before);
    buf_cleanup(&after);
}

/* Server-side writes without an operations array: all or nothing, like a transaction. */
Test(group_commit, writes_from_server_code_run_all_or_nothing) {
    err_t err = ERR_INIT;
    json_t *a = json_loads("{\"id\":\"a\",\"n\":1}", 0, NULL);
    json_t *b = json_loads("{\"id\":\"b\",\"n\":2}", 0, NULL);
    json_t *patch = json_loads("{\"n\":5}", 0, NULL);
    store_write_t ok[] = {{"insert", "items", NULL, a, false},
                          {"insert", "items", NULL, b, false},
                          {"update", "items", "a", patch, false},
                          {"delete", "items", "b", NULL, false}};
    json_incref(patch); /* used again below */
    cr_assert_eq(store_write_all(st, ok, 4, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < 4; i++) cr_assert_null(ok[i].data, "write %zu's data was taken", i);
    cr_assert_eq(count_items(), 1);
    json_t *c = json_loads("{\"id\":\"c\",\"n\":3}", 0, NULL);
    store_write_t bad[] = {{"insert", "items", NULL, c, false}, {"update", "items", "ghost", json_incref(patch), false}};
    cr_assert_eq(store_write_all(st, bad, 2, &err), -1);
    cr_assert_eq(err.code, ERR_NOT_FOUND, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(err.details, "index")), 1);
    err_clear(&err);
    cr_assert_eq(count_items(), 1, "c was undone");
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(sets_seen, 1, "one change set for the write that succeeded");
    cr_assert_eq(changes_seen, 4);
    cr_assert_null(bad[0].data);
    cr_assert_null(bad[1].data, "the data of a write not run is released too");
    json_decref(patch);
}

static bool wants_updates_only(void *udata, const char *bucket, change_kind_t kind) {
    (void)udata;
    return strcmp(bucket, "items") == 0 && kind == CHANGE_UPDATE;
}

/* Changes no listener wants are dropped when their write ends, not kept to the commit. */
Test(group_commit, changes_no_listener_wants_are_not_kept) {
    store_unlisten(st, listener, NULL);
    store_listen(st, listener, wants_updates_only, NULL);
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    cr_assert_eq(run("update", "{\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"n\":2}}", &err), 0);
    cr_assert_eq(run("delete", "{\"bucket\":\"items\",\"key\":\"a\"}", &err), 0);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(sets_seen, 1, "only the update's change set is offered");
    cr_assert_eq(changes_seen, 1);
    cr_assert_eq(count_items(), 0, "the writes themselves all happened");
}

static json_t *get_item(const char *key) {
    json_t *req = json_pack("{s:s, s:s}", "bucket", "items", "key", key);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_execute(st, "get", req, &out, &err), 0, "%s", err.msg);
    json_t *rec = json_loads(buf_cstr(&out), 0, NULL);
    cr_assert_not_null(rec);
    buf_cleanup(&out);
    json_decref(req);
    return rec;
}

static void expect_keys(const json_t *rec, const char *want) {
    char keys[256] = "";
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rec, k, v) {
        strcat(keys, k);
        strcat(keys, " ");
    }
    cr_assert_str_eq(keys, want);
}

/* Updates keep the metadata last: replaced where it is when the update adds no field,
 * moved behind a field the update adds. _createdAt never changes. */
Test(group_commit, metadata_stays_last_through_updates) {
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0, "%s", err.msg);
    json_t *first = get_item("a");
    expect_keys(first, "id n _version _createdAt _updatedAt ");
    cr_assert_eq(json_integer_value(json_object_get(first, "_createdAt")),
                 json_integer_value(json_object_get(first, "_updatedAt")));
    cr_assert_eq(run("update", "{\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"n\":2}}", &err), 0, "%s", err.msg);
    json_t *second = get_item("a");
    expect_keys(second, "id n _version _createdAt _updatedAt ");
    cr_assert_eq(json_integer_value(json_object_get(second, "_version")), 2);
    cr_assert_eq(json_integer_value(json_object_get(second, "n")), 2);
    cr_assert(json_equal(json_object_get(first, "_createdAt"), json_object_get(second, "_createdAt")));
    cr_assert_eq(run("update", "{\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"note\":\"x\"}}", &err), 0, "%s",
                 err.msg);
    json_t *third = get_item("a");
    expect_keys(third, "id n note _version _createdAt _updatedAt ");
    cr_assert_eq(json_integer_value(json_object_get(third, "_version")), 3);
    cr_assert(json_equal(json_object_get(first, "_createdAt"), json_object_get(third, "_createdAt")));
    json_decref(first);
    json_decref(second);
    json_decref(third);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
}

static json_t *item(const char *id, int n) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "n", json_integer(n));
    return o;
}

/* The ids of the stored rows in row id order, read by another connection. */
static void stored_ids(char *out, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/shopd.db", dir);
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(path, &other), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(other, "SELECT group_concat(id || ':' || n, ',') FROM (SELECT id, n FROM items ORDER BY _rowid)", -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    snprintf(out, size, "%s", sqlite3_column_text(q, 0) ? (const char *)sqlite3_column_text(q, 0) : "");
    sqlite3_finalize(q);
    sqlite3_close(other);
}

/* Inserts of new keys and plain updates go to the database's writer thread; mixed with
 * writes that run at once, everything lands in order, each insert in its own row. */
Test(group_commit, queued_and_immediate_writes_keep_their_order) {
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    store_write_t w1[] = {{"insert", "items", NULL, item("k1", 1), true},
                          {"update", "items", "a", json_loads("{\"n\":2}", 0, NULL), false}};
    cr_assert_eq(store_write_all(st, w1, 2, &err), 0, "%s", err.msg);
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"b\",\"n\":1}}", &err), 0);
    store_write_t w2[] = {{"insert", "items", NULL, item("k2", 1), true}};
    cr_assert_eq(store_write_all(st, w2, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"k2\",\"n\":1}}", &err), -1,
                 "a queued insert's key is there for the next write");
    cr_assert_eq(err.code, ERR_ALREADY_EXISTS, "%s", err.msg);
    err_clear(&err);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    char ids[256];
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:2,k1:1,b:1,k2:1");
    cr_assert_eq(sets_seen, 4);
}

/* Should a queued insert meet a key that exists after all, its whole batch fails, as
 * after an I/O error: nothing of it is stored and the next batch works. */
Test(group_commit, a_queued_insert_that_fails_fails_the_whole_batch) {
    store_on_batch_commit(st, on_commit, NULL);
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"b\",\"n\":1}}", &err), 0);
    store_write_t w[] = {{"update", "items", "a", json_loads("{\"n\":7}", 0, NULL), false},
                         {"insert", "items", NULL, item("a", 9), true}};
    cr_assert_eq(store_write_all(st, w, 2, &err), 0, "queued: %s", err.msg);
    cr_assert_eq(store_batch_commit(st, &err), -1);
    err_clear(&err);
    cr_assert_eq(commit_rc, -1);
    cr_assert_eq(sets_seen, 1, "only the first batch is offered");
    char ids[256];
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:1");
    buf_t out;
    buf_init(&out, 0);
    json_t *req = json_loads("{\"bucket\":\"items\",\"key\":\"a\"}", 0, NULL);
    cr_assert_eq(store_execute(st, "get", req, &out, &err), 0, "%s", err.msg);
    cr_assert(strstr(buf_cstr(&out), "\"n\":1") != NULL, "the cache forgot the undone update: %s", buf_cstr(&out));
    json_decref(req);
    buf_cleanup(&out);
    store_write_t next[] = {{"insert", "items", NULL, item("c", 1), true}};
    cr_assert_eq(store_write_all(st, next, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(commit_rc, 0);
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:1,c:1");
}

static atomic_int notified;
static void count_notify(void *udata) {
    (void)udata;
    atomic_fetch_add(&notified, 1);
}

/* Polls for queued commits' outcomes until `n` batches were reported (or 5 s). */
static void wait_reported(size_t n) {
    for (int i = 0; i < 5000 && ncommit_batches < n; i++) {
        store_batch_poll(st);
        if (ncommit_batches < n) usleep(1000);
    }
    cr_assert_eq(ncommit_batches, n, "%zu batches reported, not %zu", ncommit_batches, n);
}

/* A queued commit runs on the database's writer thread: the next batch opens at once,
 * answers wait for the newest batch, and outcomes are reported in order. */
Test(group_commit, queued_commits_are_reported_in_order) {
    ncommit_batches = 0;
    store_on_batch_commit(st, on_commit, NULL);
    store_on_commit_done(st, count_notify, NULL);
    atomic_store(&notified, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_batch_pending(st), 0);
    store_write_t w1[] = {{"insert", "items", NULL, item("k1", 1), true}};
    cr_assert_eq(store_write_all(st, w1, 1, &err), 0, "%s", err.msg);
    uint64_t first = store_batch_pending(st);
    cr_assert_gt(first, 0);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    cr_assert_not(store_batch_open(st));
    cr_assert_eq(store_batch_pending(st), first, "the committing batch holds answers back");
    store_write_t w2[] = {{"update", "items", "k1", json_loads("{\"n\":2}", 0, NULL), false},
                          {"insert", "items", NULL, item("k2", 1), true}};
    cr_assert_eq(store_write_all(st, w2, 2, &err), 0, "the next batch is built on it: %s", err.msg);
    cr_assert_eq(store_batch_pending(st), first + 1);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    wait_reported(2);
    cr_assert_eq(commit_batches[0], first);
    cr_assert_eq(commit_batches[1], first + 1);
    cr_assert_eq(commit_rcs[0], 0);
    cr_assert_eq(commit_rcs[1], 0);
    cr_assert_geq(atomic_load(&notified), 1, "the writer thread said so");
    cr_assert_eq(store_batch_pending(st), 0);
    cr_assert_eq(sets_seen, 2, "change sets offered after each commit");
    char ids[256];
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "k1:2,k2:1");
    store_on_commit_done(st, NULL, NULL);
}

/* A queued batch that fails takes the batches queued after it down too (they were built
 * on it); once its outcome is taken, the next batch works. */
Test(group_commit, a_failed_queued_commit_fails_the_batches_built_on_it) {
    ncommit_batches = 0;
    store_on_batch_commit(st, on_commit, NULL);
    err_t err = ERR_INIT;
    store_write_t w1[] = {{"insert", "items", NULL, item("a", 1), true}};
    cr_assert_eq(store_write_all(st, w1, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    store_write_t w2[] = {{"insert", "items", NULL, item("a", 2), true}}; /* collides at the writer */
    cr_assert_eq(store_write_all(st, w2, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    store_write_t w3[] = {{"insert", "items", NULL, item("b", 1), true}};
    cr_assert_eq(store_write_all(st, w3, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    wait_reported(3);
    cr_assert_eq(commit_rcs[0], 0);
    cr_assert_eq(commit_rcs[1], -1);
    cr_assert_eq(commit_rcs[2], -1, "built on the failed batch");
    cr_assert_eq(sets_seen, 1);
    char ids[256];
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:1");
    store_write_t w4[] = {{"insert", "items", NULL, item("c", 1), true}};
    cr_assert_eq(store_write_all(st, w4, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    wait_reported(4);
    cr_assert_eq(commit_rcs[3], 0);
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:1,c:1");
}

/* A batch still open when an earlier one's failure is heard of fails as well, and writes
 * wait for its report; a synchronous commit reports the queued batches first. */
Test(group_commit, the_open_batch_fails_with_the_queued_one_it_was_built_on) {
    ncommit_batches = 0;
    store_on_batch_commit(st, on_commit, NULL);
    err_t err = ERR_INIT;
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"a\",\"n\":1}}", &err), 0);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    store_write_t w1[] = {{"insert", "items", NULL, item("a", 2), true}};
    cr_assert_eq(store_write_all(st, w1, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit_queued(st, &err), 0, "%s", err.msg);
    store_write_t w2[] = {{"insert", "items", NULL, item("b", 1), true}};
    cr_assert_eq(store_write_all(st, w2, 1, &err), 0, "%s", err.msg);
    cr_assert(store_batch_open(st));
    wait_reported(2); /* the failed one */
    cr_assert_eq(commit_rcs[1], -1);
    cr_assert(store_batch_open(st), "the open batch waits to be reported failed");
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"x\",\"n\":1}}", &err), -1);
    cr_assert_eq(err.code, ERR_INTERNAL, "writes are refused until then");
    err_clear(&err);
    cr_assert_eq(store_batch_commit(st, &err), -1);
    err_clear(&err);
    cr_assert_eq(ncommit_batches, 3);
    cr_assert_eq(commit_rcs[2], -1);
    char ids[256];
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:1");
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"b\",\"n\":1}}", &err), 0, "%s", err.msg);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    stored_ids(ids, sizeof ids);
    cr_assert_str_eq(ids, "a:1,b:1");
}
