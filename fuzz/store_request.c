/* Fuzz target: a store.* request as a client sends it (spec §4), run against a real store
 * (SQLite in memory, group commit on, as `shopd serve` runs it) with a bucket that uses
 * every field type and constraint and one without an autoincrement field (its writes are
 * undone from their change set instead of a savepoint): request decoding, schema
 * validation, filter compilation and transactions must never crash or leak, every answer
 * must be valid JSON, and a transaction that fails must leave both buckets exactly as
 * they were. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static store_t *st;
static unsigned runs;

static void setup(void) {
    err_t err = ERR_INIT;
    st = store_open(":memory:", &err);
    json_t *def = json_loads(
        "{\"key\":\"id\",\"schema\":{"
        "\"id\":{\"type\":\"string\",\"generated\":\"uuid\"},"
        "\"title\":{\"type\":\"string\",\"required\":true,\"minLength\":1,\"maxLength\":50,\"pattern\":\"^[A-Za-z ]+$\"},"
        "\"email\":{\"type\":\"string\",\"format\":\"email\",\"unique\":true},"
        "\"price\":{\"type\":\"number\",\"min\":0,\"max\":1000000},"
        "\"stock\":{\"type\":\"integer\",\"default\":0},"
        "\"kind\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},"
        "\"active\":{\"type\":\"boolean\",\"default\":true},"
        "\"tags\":{\"type\":\"array\"},\"meta\":{\"type\":\"object\"},\"when\":{\"type\":\"date\"},"
        "\"n\":{\"type\":\"integer\",\"generated\":\"autoincrement\"}},"
        "\"indexes\":[\"kind\",\"price\"]}",
        0, NULL);
    if (!st || !def || store_define_bucket(st, "items", def, false, &err) < 0) abort();
    json_decref(def);
    json_t *q = json_loads("{\"bucket\":\"items\",\"op\":\"where\",\"filter\":{\"kind\":\"$params.kind\"}}", 0, NULL);
    if (store_define_query(st, "by-kind", q, false, &err) < 0) abort();
    json_decref(q);
    def = json_loads("{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"},"
                     "\"email\":{\"type\":\"string\",\"unique\":true},"
                     "\"n\":{\"type\":\"integer\",\"min\":0},\"tags\":{\"type\":\"array\"}},"
                     "\"indexes\":[\"n\"]}",
                     0, NULL);
    if (!def || store_define_bucket(st, "plain", def, false, &err) < 0) abort();
    json_decref(def);
    store_set_group_commit(st, true);
}

/* Every record of both buckets, in order, as text. */
static void snapshot(buf_t *out) {
    static const char *const buckets[] = {"{\"bucket\":\"items\"}", "{\"bucket\":\"plain\"}"};
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_loads(buckets[i], 0, NULL);
        err_t err = ERR_INIT;
        if (store_execute(st, "all", r, out, &err) < 0) abort();
        json_decref(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!st) setup();
    json_t *req = json_loadb((const char *)data, size, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        return 0;
    }
    const char *op = json_string_value(json_object_get(req, "op"));
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    int rc = 0;
    if (op && strcmp(op, "transaction") == 0) {
        buf_t before, after;
        buf_init(&before, 0);
        buf_init(&after, 0);
        snapshot(&before);
        rc = store_transaction(st, json_object_get(req, "operations"), &out, &err);
        if (rc < 0) {
            snapshot(&after);
            if (before.len != after.len || memcmp(before.data, after.data, before.len) != 0) {
                fprintf(stderr, "a failed transaction changed records:\n%.*s\n%.*s\n", (int)before.len,
                        before.data, (int)after.len, after.data);
                abort();
            }
        }
        buf_cleanup(&before);
        buf_cleanup(&after);
    } else if (op && strcmp(op, "query") == 0) {
        store_session_t session = {"user-1"};
        rc = store_query_eval(st, "by-kind", json_object_get(req, "params"), &session, &out, NULL, &err);
    } else if (op && store_has_op(op) && strcmp(op, "clear") != 0) {
        rc = store_execute(st, op, req, &out, &err);
    }
    if (rc == 0 && out.len) {
        json_t *back = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
        if (!back) {
            fprintf(stderr, "not JSON: %.*s\n", (int)out.len, out.data);
            abort(); /* an answer that is not JSON */
        }
        json_decref(back);
    }
    err_clear(&err);
    buf_cleanup(&out);
    json_decref(req);
    if (store_batch_commit(st, &err) < 0) abort(); /* the loop's end of turn */
    if (++runs % 500 == 0) { /* keep the in-memory database small */
        for (int i = 0; i < 2; i++) {
            json_t *c = json_pack("{s:s}", "bucket", i ? "plain" : "items");
            buf_init(&out, 0);
            store_execute(st, "clear", c, &out, &err);
            err_clear(&err);
            buf_cleanup(&out);
            json_decref(c);
        }
        if (store_batch_commit(st, &err) < 0) abort();
    }
    return 0;
}
