/* Group commit: writes share one database transaction until store_batch_commit. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    store_listen(st, listener, NULL);
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
    json_t *ops = json_loads("[{\"op\":\"insert\",\"bucket\":\"items\",\"data\":{\"id\":\"x\"}},"
                             "{\"op\":\"update\",\"bucket\":\"items\",\"key\":\"a\",\"data\":{\"n\":-1}}]",
                             0, NULL);
    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(store_transaction(st, ops, &out, &err), -1);
    err_clear(&err);
    cr_assert_eq(run("insert", "{\"bucket\":\"items\",\"data\":{\"id\":\"c\",\"n\":3}}", &err), 0);
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(sets_seen, 2, "the failed transaction offers nothing");
    buf_reset(&out);
    json_t *req = json_loads("{\"bucket\":\"items\"}", 0, NULL);
    cr_assert_eq(store_execute(st, "count", req, &out, &err), 0);
    cr_assert_str_eq(buf_cstr(&out), "2", "a and c are stored, x is not");
    json_decref(req);
    json_decref(ops);
    buf_cleanup(&out);
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
