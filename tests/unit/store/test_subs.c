/* Change-set routing through a real store on a temporary SQLite file. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "store/subs.h"

static store_t *st;
static subs_t *subs;
static char dir[64];
static int delivered;
static char last_sub[32];
static char *last_data;

static void deliver(void *owner, const char *sub_id, const char *data, size_t len) {
    (void)owner;
    delivered++;
    snprintf(last_sub, sizeof last_sub, "%s", sub_id);
    free(last_data);
    last_data = strndup(data, len);
}

static void run(const char *op, const char *req_json) {
    json_t *req = json_loads(req_json, 0, NULL);
    cr_assert_not_null(req, "bad JSON %s", req_json);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_execute(st, op, req, &out, &err), 0, "%s %s: %s", op, req_json, err.msg);
    buf_cleanup(&out);
    json_decref(req);
    subs_flush(subs);
}

static void setup(void) {
    strcpy(dir, "/tmp/shopd-subs-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/shopd.db", dir);
    err_t err = ERR_INIT;
    st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    json_t *def = json_loads("{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"},"
                             "\"stock\":{\"type\":\"integer\"},\"active\":{\"type\":\"boolean\"}}}",
                             0, NULL);
    cr_assert_eq(store_define_bucket(st, "products", def, false, &err), 0, "%s", err.msg);
    cr_assert_eq(store_define_bucket(st, "orders", def, false, &err), 0, "%s", err.msg);
    json_decref(def);
    const char *queries[][2] = {
        {"active", "{\"bucket\":\"products\",\"op\":\"where\",\"filter\":{\"active\":true}}"},
        {"one", "{\"bucket\":\"products\",\"op\":\"get\",\"key\":\"$params.id\"}"},
        {"low", "{\"bucket\":\"products\",\"op\":\"count\",\"filter\":{\"stock\":{\"$lt\":5}}}"},
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *q = json_loads(queries[i][1], 0, NULL);
        cr_assert_eq(store_define_query(st, queries[i][0], q, false, &err), 0, "%s", err.msg);
        json_decref(q);
    }
    subs = subs_new(st, deliver);
    run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p1\",\"stock\":10,\"active\":true}}");
    run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p2\",\"stock\":10,\"active\":true}}");
    delivered = 0;
}

static void teardown(void) {
    subs_free(subs);
    store_close(st);
    free(last_data);
    last_data = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(subs, .init = setup, .fini = teardown);

static sub_t *subscribe(const char *id, const char *query, const char *params_json) {
    json_t *params = params_json ? json_loads(params_json, 0, NULL) : NULL;
    buf_t initial;
    buf_init(&initial, 0);
    err_t err = ERR_INIT;
    sub_t *s = subs_add(subs, NULL, id, query, params, NULL, NULL, &initial, &err);
    cr_assert_not_null(s, "%s", err.msg);
    buf_cleanup(&initial);
    json_decref(params);
    return s;
}

Test(subs, a_change_in_a_read_bucket_pushes_the_new_result) {
    sub_t *s = subscribe("sub-1", "active", NULL);
    run("update", "{\"bucket\":\"products\",\"key\":\"p1\",\"data\":{\"active\":false}}");
    cr_assert_eq(delivered, 1);
    cr_assert_str_eq(last_sub, "sub-1");
    cr_assert_null(strstr(last_data, "\"p1\""));
    subs_remove(subs, s);
}

Test(subs, an_unchanged_result_is_not_pushed) {
    sub_t *s = subscribe("sub-1", "low", NULL);
    run("update", "{\"bucket\":\"products\",\"key\":\"p1\",\"data\":{\"stock\":9}}");
    cr_assert_eq(delivered, 0);
    cr_assert_eq(subs_counters(subs)->unchanged, 1);
    subs_remove(subs, s);
}

Test(subs, changes_in_other_buckets_are_not_routed) {
    sub_t *s = subscribe("sub-1", "active", NULL);
    uint64_t before = subs_counters(subs)->evaluations;
    run("insert", "{\"bucket\":\"orders\",\"data\":{\"id\":\"o1\"}}");
    cr_assert_eq(subs_counters(subs)->evaluations, before);
    cr_assert_eq(delivered, 0);
    subs_remove(subs, s);
}

Test(subs, get_queries_are_keyed_by_record) {
    sub_t *s = subscribe("sub-1", "one", "{\"id\":\"p1\"}");
    uint64_t before = subs_counters(subs)->evaluations;
    run("update", "{\"bucket\":\"products\",\"key\":\"p2\",\"data\":{\"stock\":1}}");
    cr_assert_eq(subs_counters(subs)->evaluations, before);
    run("update", "{\"bucket\":\"products\",\"key\":\"p1\",\"data\":{\"stock\":1}}");
    cr_assert_eq(subs_counters(subs)->evaluations, before + 1);
    cr_assert_eq(delivered, 1);
    subs_remove(subs, s);
}

Test(subs, identical_subscriptions_share_one_evaluation) {
    sub_t *a = subscribe("sub-1", "active", NULL);
    sub_t *b = subscribe("sub-2", "active", NULL);
    sub_t *c = subscribe("sub-3", "active", NULL);
    cr_assert_eq(subs_counters(subs)->shared_hits, 2);
    cr_assert_eq(subs_counters(subs)->groups, 1);
    uint64_t before = subs_counters(subs)->evaluations;
    run("update", "{\"bucket\":\"products\",\"key\":\"p2\",\"data\":{\"active\":false}}");
    cr_assert_eq(subs_counters(subs)->evaluations, before + 1);
    cr_assert_eq(delivered, 3);
    subs_remove(subs, a);
    subs_remove(subs, b);
    subs_remove(subs, c);
    cr_assert_eq(subs_counters(subs)->groups, 0);
}

Test(subs, one_transaction_is_one_evaluation) {
    sub_t *s = subscribe("sub-1", "active", NULL);
    uint64_t before = subs_counters(subs)->evaluations;
    json_t *ops = json_loads("[{\"op\":\"update\",\"bucket\":\"products\",\"key\":\"p1\",\"data\":{\"stock\":1}},"
                             "{\"op\":\"update\",\"bucket\":\"products\",\"key\":\"p2\",\"data\":{\"stock\":2}},"
                             "{\"op\":\"insert\",\"bucket\":\"products\",\"data\":{\"id\":\"p3\",\"active\":true}}]",
                             0, NULL);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_transaction(st, ops, &out, &err), 0, "%s", err.msg);
    subs_flush(subs);
    cr_assert_eq(subs_counters(subs)->evaluations, before + 1);
    cr_assert_eq(delivered, 1);
    buf_cleanup(&out);
    json_decref(ops);
    subs_remove(subs, s);
}

Test(subs, a_failed_transaction_routes_nothing) {
    sub_t *s = subscribe("sub-1", "active", NULL);
    json_t *ops = json_loads("[{\"op\":\"update\",\"bucket\":\"products\",\"key\":\"p1\",\"data\":{\"active\":false}},"
                             "{\"op\":\"update\",\"bucket\":\"products\",\"key\":\"nope\",\"data\":{}}]",
                             0, NULL);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_transaction(st, ops, &out, &err), -1);
    cr_assert_eq(err.code, ERR_NOT_FOUND);
    cr_assert_eq(json_integer_value(json_object_get(err.details, "index")), 1);
    subs_flush(subs);
    cr_assert_eq(delivered, 0);
    err_clear(&err);
    buf_cleanup(&out);
    json_decref(ops);
    subs_remove(subs, s);
}
