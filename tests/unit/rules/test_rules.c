/* The rules engine over a real store on a temporary SQLite file: events and their
 * subscribers, facts, conditions, interpolation, actions, the three kinds of
 * triggers, priorities, administration, persistence and the depth cut-off. Log lines
 * are read back from stderr, which each test sends to a file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/mem.h"
#include "rules/rules.h"
#include "store/store.h"

static store_t *st;
static rules_t *rules;
static char dir[64];
static char log_path[128];
static int saved_stderr = -1;

/* ---- deliveries ---- */

typedef struct {
    void *owner;
    char sub_id[32];
    char *message;
    const char *ptr; /* the message pointer as handed over, to see it is shared */
} delivery_t;

static delivery_t deliveries[2048];
static size_t delivered;
static rules_sub_t *self_removing; /* unsubscribes itself from inside deliver() */

static void deliver(void *owner, const char *sub_id, const char *message, size_t len) {
    if (delivered < sizeof deliveries / sizeof deliveries[0]) {
        delivery_t *d = &deliveries[delivered];
        d->owner = owner;
        snprintf(d->sub_id, sizeof d->sub_id, "%s", sub_id);
        d->message = strndup(message, len);
        d->ptr = message;
    }
    delivered++;
    if (self_removing && owner == (void *)&self_removing) {
        rules_unsubscribe(rules, self_removing);
        self_removing = NULL;
    }
}

static void deliveries_clear(void) {
    for (size_t i = 0; i < delivered && i < sizeof deliveries / sizeof deliveries[0]; i++)
        free(deliveries[i].message);
    delivered = 0;
}

/* ---- helpers ---- */

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static json_t *parse(const char *text) {
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(v, "bad JSON (%s): %s", jerr.text, text);
    return v;
}

static json_t *parse_buf(buf_t *b) {
    json_t *v = parse(buf_cstr(b));
    buf_cleanup(b);
    return v;
}

static void engine_open(size_t event_log_max) {
    char path[128];
    snprintf(path, sizeof path, "%s/shopd.db", dir);
    err_t err = ERR_INIT;
    st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    rules_config_t cfg = {event_log_max};
    rules = rules_new(st, &cfg, deliver, &err);
    cr_assert_not_null(rules, "%s", err.msg);
}

static void engine_close(void) {
    rules_free(rules);
    store_close(st);
    rules = NULL;
    st = NULL;
}

static void reopen(void) {
    engine_close();
    engine_open(0);
}

static void define_bucket(const char *name, const char *def_json) {
    json_t *def = parse(def_json);
    err_t err = ERR_INIT;
    cr_assert_eq(store_define_bucket(st, name, def, false, &err), 0, "%s", err.msg);
    json_decref(def);
}

static void setup(void) {
    strcpy(dir, "/tmp/shopd-rules-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    engine_open(0);
    define_bucket("products", "{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"},"
                              "\"title\":{\"type\":\"string\"},\"stock\":{\"type\":\"integer\"}}}");
    define_bucket("alerts", "{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"},"
                            "\"kind\":{\"type\":\"string\",\"required\":true}}}");
}

static bool log_has(const char *needle);

static void teardown(void) {
    engine_close();
    if (saved_stderr >= 0) {
        cr_expect_not(log_has("runtime error"), "a sanitizer reported into the captured log");
        /* Back to the real stderr, where the sanitizers report at exit. */
        fflush(stderr);
        dup2(saved_stderr, STDERR_FILENO);
        close(saved_stderr);
        saved_stderr = -1;
    }
    deliveries_clear();
    self_removing = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(rules, .init = setup, .fini = teardown);

/* Sends stderr (the log) to a file for log_has(); teardown puts it back. */
static void capture_logs(void) {
    snprintf(log_path, sizeof log_path, "%s/log.txt", dir);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    cr_assert_geq(saved_stderr, 0);
    cr_assert_not_null(freopen(log_path, "w", stderr));
}

static bool log_has(const char *needle) {
    fflush(stderr);
    FILE *f = fopen(log_path, "r");
    cr_assert_not_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return strstr(text, needle) != NULL;
}

/* Emits and returns the event (owned). */
static json_t *emit_full(const char *topic, const char *data_json, const char *corr,
                         const char *cause) {
    json_t *data = data_json ? parse(data_json) : NULL;
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_emit(rules, topic, data, corr, cause, &out, &err), 0, "emit %s: %s", topic,
                 err.msg);
    json_decref(data);
    return parse_buf(&out);
}

static void emit(const char *topic, const char *data_json) {
    json_decref(emit_full(topic, data_json, NULL, NULL));
}

static err_code_t emit_fails(const char *topic, const json_t *data) {
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_emit(rules, topic, data, NULL, NULL, &out, &err), -1, "emit %s succeeded",
                 topic ? topic : "(null)");
    cr_assert_eq(out.len, 0);
    buf_cleanup(&out);
    err_code_t code = err.code;
    err_clear(&err);
    return code;
}

static json_t *reg(const char *rule_json) {
    json_t *rule = parse(rule_json);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_register(rules, rule, &out, &err), 0, "register %s: %s", rule_json, err.msg);
    json_decref(rule);
    return parse_buf(&out);
}

static void reg_quiet(const char *rule_json) {
    json_decref(reg(rule_json));
}

static void set_fact(const char *key, const char *value_json) {
    json_t *v = parse(value_json);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_set_fact(rules, key, v, &out, &err), 0, "setFact %s: %s", key, err.msg);
    buf_cleanup(&out);
    json_decref(v);
}

/* The fact's value as JSON text, or NULL when there is none. */
static char *fact_text(const char *key) {
    const json_t *v = rules_fact_peek(rules, key);
    return v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

static void assert_fact(const char *key, const char *expected_json) {
    char *got = fact_text(key);
    cr_assert_not_null(got, "fact %s missing", key);
    json_t *e = parse(expected_json);
    char *want = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(got, want, "fact %s", key);
    free(got);
    free(want);
    json_decref(e);
}

static void store_run(const char *op, const char *req_json) {
    json_t *req = parse(req_json);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_execute(st, op, req, &out, &err), 0, "%s %s: %s", op, req_json, err.msg);
    buf_cleanup(&out);
    json_decref(req);
}

static json_t *store_get(const char *bucket, const char *key) {
    json_t *req = json_pack("{ssss}", "bucket", bucket, "key", key);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_execute(st, "get", req, &out, &err), 0, "%s", err.msg);
    json_decref(req);
    return parse_buf(&out);
}

static json_t *stats(void) {
    buf_t out;
    buf_init(&out, 0);
    rules_stats(rules, &out);
    return parse_buf(&out);
}

static json_int_t stat(const char *name) {
    json_t *s = stats();
    json_t *v = json_object_get(s, name);
    cr_assert(json_is_integer(v), "stat %s", name);
    json_int_t n = json_integer_value(v);
    json_decref(s);
    return n;
}

static rules_sub_t *subscribe(void *owner, const char *id, const char *pattern) {
    err_t err = ERR_INIT;
    rules_sub_t *s = rules_subscribe(rules, owner, id, pattern, &err);
    cr_assert_not_null(s, "%s", err.msg);
    return s;
}

static size_t deliveries_to(const char *sub_id) {
    size_t n = 0;
    for (size_t i = 0; i < delivered; i++) n += strcmp(deliveries[i].sub_id, sub_id) == 0;
    return n;
}

static json_t *delivery_json(size_t i) {
    cr_assert_lt(i, delivered);
    return parse(deliveries[i].message);
}

static int64_t db_count(const char *sql) {
    err_t err = ERR_INIT;
    db_stmt_t *q = db_prepare(store_db(st), sql, &err);
    cr_assert_not_null(q, "%s", err.msg);
    cr_assert_eq(db_step(q, &err), DB_ROW, "%s", err.msg);
    int64_t n = db_column_int(q, 0);
    db_done(q);
    return n;
}

/* ================================================================ events */

Test(rules, emitted_events_get_sequential_ids_and_timestamps) {
    int64_t before = clock_now_ms();
    json_t *a = emit_full("order.placed", "{\"orderId\":\"order-1\",\"total\":79.99}", NULL, NULL);
    json_t *b = emit_full("order.shipped", NULL, NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(a, "id")), "evt-1");
    cr_assert_str_eq(json_string_value(json_object_get(b, "id")), "evt-2");
    cr_assert_str_eq(json_string_value(json_object_get(a, "topic")), "order.placed");
    cr_assert_eq(json_real_value(json_object_get(json_object_get(a, "data"), "total")), 79.99);
    cr_assert_eq(json_object_size(json_object_get(b, "data")), 0);
    json_int_t ts = json_integer_value(json_object_get(a, "timestamp"));
    cr_assert(ts >= before && ts <= clock_now_ms() + 1);
    cr_assert_null(json_object_get(a, "correlationId"));
    cr_assert_null(json_object_get(a, "causationId"));
    cr_assert_eq(stat("eventsEmitted"), 2);
    json_decref(a);
    json_decref(b);
}

Test(rules, event_result_lists_fields_in_protocol_order) {
    json_t *data = parse("{\"a\":1}");
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_emit(rules, "x.y", data, "c-1", "k-1", &out, &err), 0);
    const char *s = buf_cstr(&out);
    cr_assert(
        starts_with(s, "{\"id\":\"evt-1\",\"topic\":\"x.y\",\"data\":{\"a\":1},\"timestamp\":"),
        "%s", s);
    cr_assert_not_null(strstr(s, ",\"correlationId\":\"c-1\",\"causationId\":\"k-1\"}"), "%s", s);
    buf_cleanup(&out);
    json_decref(data);
}

Test(rules, emit_rejects_bad_topics_data_and_ids) {
    cr_assert_eq(emit_fails(NULL, NULL), ERR_VALIDATION);
    cr_assert_eq(emit_fails("", NULL), ERR_VALIDATION);
    cr_assert_eq(emit_fails("order..placed", NULL), ERR_VALIDATION);
    cr_assert_eq(emit_fails(".order", NULL), ERR_VALIDATION);
    cr_assert_eq(emit_fails("order.*", NULL), ERR_VALIDATION);
    json_t *arr = json_array();
    cr_assert_eq(emit_fails("order.placed", arr), ERR_VALIDATION);
    json_decref(arr);
    json_t *big = json_object();
    char *s = xcalloc(1, RULES_MAX_EVENT_DATA + 1);
    memset(s, 'x', RULES_MAX_EVENT_DATA);
    json_object_set_new(big, "blob", json_string(s));
    cr_assert_eq(emit_fails("order.placed", big), ERR_VALIDATION);
    free(s);
    json_decref(big);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_emit(rules, "a.b", NULL, "", NULL, &out, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
    buf_cleanup(&out);
    cr_assert_eq(stat("eventsEmitted"), 0);
    /* A refused event uses no id. */
    json_t *e = emit_full("a.b", NULL, NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "id")), "evt-1");
    json_decref(e);
}

Test(rules, event_ids_continue_after_a_restart) {
    emit("a.b", NULL);
    emit("a.b", NULL);
    emit("a.b", NULL);
    reopen();
    json_t *e = emit_full("a.b", NULL, NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "id")), "evt-4");
    json_decref(e);
}

Test(rules, events_are_persisted_with_their_ids) {
    json_t *e = emit_full("order.placed", "{\"n\":1}", "corr-1", "cause-1");
    json_decref(e);
    cr_assert_eq(db_count("SELECT COUNT(*) FROM _shopd_events WHERE id = 'evt-1' AND topic = "
                          "'order.placed' AND data = '{\"n\":1}' AND correlation_id = 'corr-1' "
                          "AND causation_id = 'cause-1'"),
                 1);
}

Test(rules, the_event_log_keeps_the_newest_rows) {
    engine_close();
    engine_open(10);
    for (int i = 0; i < 250; i++) emit("tick.tock", NULL);
    int64_t rows = db_count("SELECT COUNT(*) FROM _shopd_events");
    cr_assert(rows >= 10 && rows < 20, "rows=%lld", (long long)rows);
    cr_assert_eq(db_count("SELECT MAX(seq) FROM _shopd_events"), 250);
    cr_assert_eq(db_count("SELECT COUNT(*) FROM _shopd_events WHERE id = 'evt-250'"), 1);
    cr_assert_eq(db_count("SELECT COUNT(*) FROM _shopd_events WHERE id = 'evt-1'"), 0);
    /* Pruned down to nothing, ids still go on. */
    emit("tick.tock", NULL);
    engine_close();
    engine_open(10);
    cr_assert_eq(db_count("SELECT COUNT(*) FROM _shopd_events"), 10);
    json_t *e = emit_full("tick.tock", NULL, NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "id")), "evt-252");
    json_decref(e);
}

Test(rules, events_reach_each_matching_subscription_once) {
    int alice, admin;
    rules_sub_t *a = subscribe(&admin, "sub-a", "order.*");
    rules_sub_t *b = subscribe(&admin, "sub-b", "order.placed");
    rules_sub_t *c = subscribe(&admin, "sub-c", "inventory.*");
    rules_sub_t *d = subscribe(&alice, "sub-d", "order.*");
    rules_sub_t *e = subscribe(&alice, "sub-e", "*.placed");
    rules_sub_t *f = subscribe(&alice, "sub-f", "*");
    cr_assert_eq(rules_subscription_count(rules), 6);
    json_t *ev = emit_full("order.placed", "{\"orderId\":\"order-1\"}", NULL, NULL);
    cr_assert_eq(delivered, 4);
    cr_assert_eq(deliveries_to("sub-a"), 1);
    cr_assert_eq(deliveries_to("sub-b"), 1);
    cr_assert_eq(deliveries_to("sub-d"), 1);
    cr_assert_eq(deliveries_to("sub-e"), 1);
    cr_assert_eq(deliveries_to("sub-c"), 0);
    cr_assert_eq(deliveries_to("sub-f"), 0);
    for (size_t i = 0; i < delivered; i++) {
        json_t *m = delivery_json(i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "topic")), "order.placed");
        cr_assert(json_equal(json_object_get(m, "event"), ev));
        cr_assert_eq(json_object_size(m), 2);
        json_decref(m);
        cr_assert_eq(deliveries[i].owner, strcmp(deliveries[i].sub_id, "sub-d") == 0 ||
                                                  strcmp(deliveries[i].sub_id, "sub-e") == 0
                                              ? (void *)&alice
                                              : (void *)&admin);
    }
    json_decref(ev);
    deliveries_clear();
    emit("order.placed.eu", NULL);
    cr_assert_eq(delivered, 0);
    emit("inventory.low_stock", NULL);
    cr_assert_eq(delivered, 1);
    cr_assert_str_eq(deliveries[0].sub_id, "sub-c");
    rules_unsubscribe(rules, a);
    rules_unsubscribe(rules, b);
    rules_unsubscribe(rules, c);
    rules_unsubscribe(rules, d);
    rules_unsubscribe(rules, e);
    rules_unsubscribe(rules, f);
    cr_assert_eq(rules_subscription_count(rules), 0);
}

Test(rules, unsubscribed_patterns_get_nothing) {
    rules_sub_t *a = subscribe(NULL, "sub-a", "order.*");
    rules_sub_t *b = subscribe(NULL, "sub-b", "order.*");
    cr_assert_eq(stat("subscriptions"), 2);
    rules_unsubscribe(rules, a);
    emit("order.placed", NULL);
    cr_assert_eq(delivered, 1);
    cr_assert_str_eq(deliveries[0].sub_id, "sub-b");
    rules_unsubscribe(rules, b);
    emit("order.placed", NULL);
    cr_assert_eq(delivered, 1);
    cr_assert_eq(stat("subscriptions"), 0);
    /* The pattern can be subscribed again after its group went away. */
    rules_sub_t *c = subscribe(NULL, "sub-c", "order.*");
    emit("order.placed", NULL);
    cr_assert_eq(delivered, 2);
    rules_unsubscribe(rules, c);
}

Test(rules, fan_out_serialises_each_event_once) {
    static rules_sub_t *subs[1000];
    char id[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "sub-%d", i);
        subs[i] = subscribe(NULL, id, "order.*");
    }
    emit("order.placed", "{\"n\":1}");
    cr_assert_eq(delivered, 1000);
    for (size_t i = 1; i < 1000; i++) cr_assert_eq(deliveries[i].ptr, deliveries[0].ptr);
    for (int i = 0; i < 1000; i++) rules_unsubscribe(rules, subs[i]);
}

Test(rules, a_subscriber_may_unsubscribe_while_being_delivered_to) {
    rules_sub_t *first = subscribe(NULL, "sub-1", "order.*");
    self_removing = subscribe(&self_removing, "sub-self", "order.*");
    rules_sub_t *last = subscribe(NULL, "sub-3", "order.*");
    emit("order.placed", NULL);
    /* Everyone still got this event, the removed one included. */
    cr_assert_eq(delivered, 3);
    cr_assert_null(self_removing);
    cr_assert_eq(rules_subscription_count(rules), 2);
    emit("order.placed", NULL);
    cr_assert_eq(delivered, 5);
    cr_assert_eq(deliveries_to("sub-self"), 1);
    cr_assert_eq(deliveries_to("sub-3"), 2);
    rules_unsubscribe(rules, first);
    rules_unsubscribe(rules, last);
}

Test(rules, subscribe_rejects_bad_patterns) {
    const char *bad[] = {"", "order..*", "order.pl*", ".x"};
    for (size_t i = 0; i < 4; i++) {
        err_t err = ERR_INIT;
        cr_assert_null(rules_subscribe(rules, NULL, "s", bad[i], &err), "%s", bad[i]);
        cr_assert_eq(err.code, ERR_VALIDATION);
        err_clear(&err);
    }
    err_t err = ERR_INIT;
    cr_assert_null(rules_subscribe(rules, NULL, "s", NULL, &err));
    err_clear(&err);
}

/* ================================================================ facts */

static char *fact_call(int (*fn)(rules_t *, const char *, buf_t *, err_t *), const char *key) {
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(fn(rules, key, &out, &err), 0, "%s: %s", key, err.msg);
    return buf_take(&out, NULL);
}

Test(rules, facts_can_be_set_read_and_deleted) {
    json_t *v = parse("\"shipped\"");
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_set_fact(rules, "order:order-1:status", v, &out, &err), 0);
    cr_assert_str_eq(buf_cstr(&out), "{\"key\":\"order:order-1:status\",\"value\":\"shipped\"}");
    buf_cleanup(&out);
    json_decref(v);

    char *got = fact_call(rules_get_fact, "order:order-1:status");
    cr_assert_str_eq(got, "\"shipped\"");
    free(got);
    got = fact_call(rules_get_fact, "order:nope:status");
    cr_assert_str_eq(got, "null");
    free(got);
    cr_assert_eq(stat("factsCount"), 1);

    set_fact("order:order-1:status", "{\"s\":\"delivered\",\"at\":1.5}");
    assert_fact("order:order-1:status", "{\"s\":\"delivered\",\"at\":1.5}");
    cr_assert_eq(stat("factsCount"), 1);

    got = fact_call(rules_delete_fact, "order:order-1:status");
    cr_assert_str_eq(got, "{\"deleted\":true}");
    free(got);
    got = fact_call(rules_delete_fact, "order:order-1:status");
    cr_assert_str_eq(got, "{\"deleted\":false}");
    free(got);
    cr_assert_null(rules_fact_peek(rules, "order:order-1:status"));
    cr_assert_eq(stat("factsCount"), 0);
}

Test(rules, any_json_value_can_be_a_fact) {
    const char *values[] = {"null", "false", "0", "-2.5", "\"\"", "[1,[2]]", "{}"};
    for (size_t i = 0; i < 7; i++) {
        char key[16];
        snprintf(key, sizeof key, "v:%zu", i);
        set_fact(key, values[i]);
        assert_fact(key, values[i]);
    }
}

Test(rules, facts_survive_a_restart) {
    set_fact("user:1:name", "\"Alice\"");
    set_fact("user:2:name", "\"Bob\"");
    set_fact("cart:1", "[{\"sku\":\"a\",\"qty\":2}]");
    set_fact("user:2:name", "\"Robert\"");
    char *got = fact_call(rules_delete_fact, "user:1:name");
    free(got);
    reopen();
    cr_assert_null(rules_fact_peek(rules, "user:1:name"));
    assert_fact("user:2:name", "\"Robert\"");
    assert_fact("cart:1", "[{\"sku\":\"a\",\"qty\":2}]");
    cr_assert_eq(stat("factsCount"), 2);
}

static err_code_t set_fact_fails(const char *key, const json_t *value) {
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_set_fact(rules, key, value, &out, &err), -1, "%s", key ? key : "(null)");
    cr_assert_eq(out.len, 0);
    buf_cleanup(&out);
    err_code_t code = err.code;
    err_clear(&err);
    return code;
}

Test(rules, fact_keys_and_values_are_checked_and_capped) {
    json_t *t = json_true();
    cr_assert_eq(set_fact_fails(NULL, t), ERR_VALIDATION);
    cr_assert_eq(set_fact_fails("", t), ERR_VALIDATION);
    cr_assert_eq(set_fact_fails("user::name", t), ERR_VALIDATION);
    cr_assert_eq(set_fact_fails("user:*:name", t), ERR_VALIDATION);
    cr_assert_eq(set_fact_fails("user:", t), ERR_VALIDATION);
    cr_assert_eq(set_fact_fails("user:1", NULL), ERR_VALIDATION);
    char key[RULES_MAX_KEY + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    cr_assert_eq(set_fact_fails(key, t), ERR_VALIDATION);
    char *s = xcalloc(1, RULES_MAX_FACT_VALUE + 1);
    memset(s, 'x', RULES_MAX_FACT_VALUE);
    json_t *big = json_string(s);
    cr_assert_eq(set_fact_fails("big", big), ERR_VALIDATION);
    json_decref(big);
    s[RULES_MAX_FACT_VALUE - 2] = '\0'; /* with its quotes, exactly at the cap */
    big = json_string(s);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_set_fact(rules, "big", big, &out, &err), 0, "%s", err.msg);
    buf_cleanup(&out);
    json_decref(big);
    free(s);
    cr_assert_eq(stat("factsCount"), 1);
    err_t e2 = ERR_INIT;
    buf_init(&out, 0);
    cr_assert_eq(rules_get_fact(rules, "a::b", &out, &e2), -1);
    cr_assert_eq(e2.code, ERR_VALIDATION);
    cr_assert_eq(rules_delete_fact(rules, "", &out, &e2), -1);
    cr_assert_eq(e2.code, ERR_VALIDATION);
    err_clear(&e2);
    buf_cleanup(&out);
}

static char *query(const char *pattern) {
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_query_facts(rules, pattern, &out, &err), 0, "%s: %s", pattern, err.msg);
    return buf_take(&out, NULL);
}

static void expect_query(const char *pattern, const char *want) {
    char *got = query(pattern);
    cr_assert_str_eq(got, want, "queryFacts %s", pattern);
    free(got);
}

static char *get_fact(const char *key) {
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_get_fact(rules, key, &out, &err), 0, "%s: %s", key, err.msg);
    return buf_take(&out, NULL);
}

/* A shop sets a fact per order: facts live in the table, memory holds a bounded cache,
 * and more facts than the cache holds are all kept, read and listed. */
Test(rules, facts_are_not_capped_by_memory, .timeout = 120) {
    err_t err = ERR_INIT;
    cr_assert_eq(db_begin(store_db(st), &err), 0); /* one transaction keeps this fast */
    json_t *v = json_integer(0);
    char key[32];
    const int n = RULES_FACT_CACHE + 1000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "f:%06d", i);
        json_decref(v);
        v = json_integer(i);
        cr_assert_eq(rules_set_fact(rules, key, v, NULL, &err), 0, "%s", err.msg);
    }
    json_decref(v);
    cr_assert_eq(db_commit(store_db(st), &err), 0);
    cr_assert_eq(stat("factsCount"), n);
    char *first = get_fact("f:000000"); /* long gone from the cache */
    cr_assert_str_eq(first, "0");
    free(first);
    snprintf(key, sizeof key, "f:%06d", n - 1);
    char *last = get_fact(key), want[16];
    snprintf(want, sizeof want, "%d", n - 1);
    cr_assert_str_eq(last, want);
    free(last);
    char *missing = get_fact("f:none");
    cr_assert_str_eq(missing, "null");
    free(missing);
    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(rules_query_facts(rules, "f:*", &out, &err), 0, "%s", err.msg);
    json_t *all = json_loads(buf_cstr(&out), 0, NULL);
    cr_assert_eq(json_array_size(all), (size_t)n);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 1234), "key")), "f:001234",
                     "sorted by key");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(all, 1234), "value")), 1234);
    json_decref(all);
    buf_cleanup(&out);
    reopen();
    cr_assert_eq(stat("factsCount"), n, "counted again after a restart");
}

/* Each fact set is offered to the rules once (eventsProcessed), and a `when.fact` rule
 * sees the value it replaced, read from the table when the cache does not hold it. */
Test(rules, a_fact_rule_sees_the_previous_value_and_counts_once) {
    set_fact("price:p1", "5");
    reopen(); /* an empty cache */
    reg_quiet("{\"name\":\"watch\",\"when\":{\"fact\":\"price:*\"},"
              "\"then\":[{\"setFact\":\"was:{{fact.key}}\",\"value\":\"{{fact.previous}}\"}]}");
    json_int_t before = stat("eventsProcessed");
    set_fact("price:p1", "7");
    assert_fact("was:price:p1", "5");
    cr_assert_eq(stat("eventsProcessed"), before + 2, "the set and the rule's own set");
}

/* A failed group commit undoes fact writes the cache has taken; rules_facts_forget (which
 * the server calls on such a failure) makes the cache and the count follow the table. */
Test(rules, forgetting_the_cache_after_a_rollback_reads_the_table_again) {
    err_t err = ERR_INIT;
    json_t *one = json_integer(1), *two = json_integer(2);
    cr_assert_eq(rules_set_fact(rules, "kept", one, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(db_begin(store_db(st), &err), 0);
    cr_assert_eq(rules_set_fact(rules, "kept", two, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(rules_set_fact(rules, "lost", one, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(stat("factsCount"), 2);
    db_rollback(store_db(st));
    rules_facts_forget(rules);
    cr_assert_eq(stat("factsCount"), 1);
    char *kept = get_fact("kept"), *lost = get_fact("lost");
    cr_assert_str_eq(kept, "1");
    cr_assert_str_eq(lost, "null");
    free(kept);
    free(lost);
    json_decref(one);
    json_decref(two);
}

/* Patterns read a key range; the segments after a '*' still have to match. */
Test(rules, fact_patterns_read_their_range_of_keys) {
    err_t err = ERR_INIT;
    const char *keys[] = {"order:1:status", "order:1:paidAt", "order:2:status", "orders:3:status",
                          "order", "user:1:status"};
    json_t *t = json_true();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        cr_assert_eq(rules_set_fact(rules, keys[i], t, NULL, &err), 0, "%s", err.msg);
    expect_query("order:*:status", "[{\"key\":\"order:1:status\",\"value\":true},"
                                   "{\"key\":\"order:2:status\",\"value\":true}]");
    expect_query("*:1:status", "[{\"key\":\"order:1:status\",\"value\":true},"
                               "{\"key\":\"user:1:status\",\"value\":true}]");
    expect_query("order", "[{\"key\":\"order\",\"value\":true}]");
    expect_query("order:1:status", "[{\"key\":\"order:1:status\",\"value\":true}]");
}

Test(rules, query_facts_matches_whole_segments_and_sorts_by_key) {
    set_fact("user:2:name", "\"Bob\"");
    set_fact("user:1:name", "\"Alice\"");
    set_fact("user:1", "{\"id\":1}");
    set_fact("user:1:name:x", "0");
    set_fact("config", "true");
    set_fact("order:order-1:status", "\"shipped\"");
    expect_query("user:*:name", "[{\"key\":\"user:1:name\",\"value\":\"Alice\"},"
                                "{\"key\":\"user:2:name\",\"value\":\"Bob\"}]");
    expect_query("*", "[{\"key\":\"config\",\"value\":true}]");
    expect_query("order:*:status", "[{\"key\":\"order:order-1:status\",\"value\":\"shipped\"}]");
    expect_query("user:1", "[{\"key\":\"user:1\",\"value\":{\"id\":1}}]");
    expect_query("nothing:*", "[]");
    buf_t out;
    buf_init(&out, 0);
    err_t all_err = ERR_INIT;
    cr_assert_eq(rules_all_facts(rules, &out, &all_err), 0, "%s", all_err.msg);
    json_t *all = parse_buf(&out);
    const char *order[] = {"config",      "order:order-1:status", "user:1",
                           "user:1:name", "user:1:name:x",        "user:2:name"};
    cr_assert_eq(json_array_size(all), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, i), "key")),
                         order[i]);
    json_decref(all);
    err_t err = ERR_INIT;
    buf_init(&out, 0);
    cr_assert_eq(rules_query_facts(rules, "user::name", &out, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_eq(rules_query_facts(rules, "", &out, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
    buf_cleanup(&out);
}

/* ================================================================ conditions */

Test(rules, every_condition_op_decides_as_documented) {
    static const struct {
        const char *cond;
        bool fires;
    } cases[] = {
        {"{\"path\":\"event.data.n\",\"op\":\"eq\",\"value\":5}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"eq\",\"value\":5.0}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"eq\",\"value\":\"5\"}", false},
        {"{\"path\":\"event.data.tags\",\"op\":\"eq\",\"value\":[\"a\",\"b\"]}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"neq\",\"value\":6}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"neq\",\"value\":5}", false},
        {"{\"path\":\"event.data.n\",\"op\":\"gt\",\"value\":4}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"gt\",\"value\":5}", false},
        {"{\"path\":\"event.data.n\",\"op\":\"gte\",\"value\":5}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"gte\",\"value\":5.5}", false},
        {"{\"path\":\"event.data.n\",\"op\":\"lt\",\"value\":5.5}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"lt\",\"value\":5}", false},
        {"{\"path\":\"event.data.n\",\"op\":\"lte\",\"value\":5}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"lte\",\"value\":4}", false},
        {"{\"path\":\"event.data.s\",\"op\":\"lt\",\"value\":\"abd\"}", true},
        {"{\"path\":\"event.data.s\",\"op\":\"gt\",\"value\":1}", false},
        {"{\"path\":\"event.data.missing\",\"op\":\"gt\",\"value\":0}", false},
        {"{\"path\":\"event.data.n\",\"op\":\"in\",\"value\":[1,5,9]}", true},
        {"{\"path\":\"event.data.n\",\"op\":\"in\",\"value\":[\"5\"]}", false},
        {"{\"path\":\"event.data.s\",\"op\":\"exists\"}", true},
        {"{\"path\":\"event.data.missing\",\"op\":\"exists\"}", false},
        {"{\"path\":\"event.data.nothing\",\"op\":\"exists\"}", false},
        {"{\"path\":\"event.data.missing\",\"op\":\"not_exists\"}", true},
        {"{\"path\":\"event.data.s\",\"op\":\"not_exists\"}", false},
        {"{\"path\":\"event.data.s\",\"op\":\"matches\",\"value\":\"^a.c$\"}", true},
        {"{\"path\":\"event.data.s\",\"op\":\"matches\",\"value\":\"^b\"}", false},
        {"{\"path\":\"event.data.n\",\"op\":\"matches\",\"value\":\"5\"}", false},
        {"{\"path\":\"event.data.items.1.sku\",\"op\":\"eq\",\"value\":\"b\"}", true},
        {"{\"path\":\"event.data.missing\",\"op\":\"eq\",\"value\":null}", true},
        {"{\"path\":\"event.topic\",\"op\":\"eq\",\"value\":\"cond.check\"}", true},
        {"{\"fact\":\"flag:{{event.data.who}}\",\"op\":\"eq\",\"value\":true}", true},
        {"{\"fact\":\"flag:bob\",\"op\":\"exists\"}", false},
    };
    size_t n = sizeof cases / sizeof cases[0];
    set_fact("flag:alice", "true");
    char rule[1024];
    for (size_t i = 0; i < n; i++) {
        snprintf(rule, sizeof rule,
                 "{\"name\":\"c%zu\",\"when\":{\"event\":\"cond.*\"},\"if\":[%s],"
                 "\"then\":[{\"setFact\":\"hit:%zu\",\"value\":true}]}",
                 i, cases[i].cond, i);
        reg_quiet(rule);
    }
    emit("cond.check", "{\"n\":5,\"s\":\"abc\",\"nothing\":null,\"who\":\"alice\","
                       "\"tags\":[\"a\",\"b\"],\"items\":[{\"sku\":\"a\"},{\"sku\":\"b\"}]}");
    for (size_t i = 0; i < n; i++) {
        char key[16];
        snprintf(key, sizeof key, "hit:%zu", i);
        cr_assert_eq(rules_fact_peek(rules, key) != NULL, cases[i].fires, "case %zu: %s", i,
                     cases[i].cond);
    }
}

Test(rules, all_conditions_must_hold) {
    reg_quiet("{\"name\":\"both\",\"when\":{\"event\":\"t.x\"},"
              "\"if\":[{\"path\":\"event.data.a\",\"op\":\"eq\",\"value\":1},"
              "{\"path\":\"event.data.b\",\"op\":\"eq\",\"value\":2}],"
              "\"then\":[{\"setFact\":\"fired:{{event.id}}\",\"value\":true}]}");
    emit("t.x", "{\"a\":1,\"b\":3}");
    emit("t.x", "{\"a\":1,\"b\":2}");
    cr_assert_null(rules_fact_peek(rules, "fired:evt-1"));
    cr_assert_not_null(rules_fact_peek(rules, "fired:evt-2"));
    cr_assert_eq(stat("rulesFired"), 1);
}

Test(rules, a_runaway_regular_expression_counts_as_no_match, .timeout = 10) {
    reg_quiet("{\"name\":\"redos\",\"when\":{\"event\":\"t.x\"},"
              "\"if\":[{\"path\":\"event.data.s\",\"op\":\"matches\",\"value\":\"^(a+)+$\"}],"
              "\"then\":[{\"setFact\":\"hit\",\"value\":true}]}");
    emit("t.x", "{\"s\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}");
    cr_assert_null(rules_fact_peek(rules, "hit"));
    emit("t.x", "{\"s\":\"aaaa\"}");
    cr_assert_not_null(rules_fact_peek(rules, "hit"));
}

/* ================================================================ interpolation */

Test(rules, interpolation_keeps_the_type_of_a_lone_placeholder) {
    reg_quiet("{\"name\":\"interp\",\"when\":{\"event\":\"i.in\"},\"then\":[{\"emit\":\"i.{{event."
              "data.kind}}\","
              "\"data\":{\"n\":\"{{event.data.n}}\",\"s\":\"{{event.data.s}}\",\"obj\":\"{{event."
              "data.obj}}\","
              "\"flag\":\"{{ event.data.flag }}\",\"missing\":\"{{event.data.none}}\","
              "\"text\":\"n={{event.data.n}} s={{ event.data.s }} miss=[{{event.data.none}}] "
              "f={{event.data.flag}} o={{event.data.obj}} x={{event.data.x}}\","
              "\"nested\":{\"arr\":[\"{{event.data.n}}\",\"#{{event.data.n}}\",7]},"
              "\"two\":\"{{event.data.s}}{{event.data.s}}\",\"literal\":\"no {{ placeholder\","
              "\"topic\":\"{{event.topic}}\"}}]}");
    rules_sub_t *s = subscribe(NULL, "sub-out", "i.out");
    emit("i.in",
         "{\"kind\":\"out\",\"n\":42,\"s\":\"hi\",\"obj\":{\"a\":[1]},\"flag\":false,\"x\":0.5}");
    cr_assert_eq(delivered, 1);
    json_t *m = delivery_json(0);
    json_t *d = json_object_get(json_object_get(m, "event"), "data");
    cr_assert_eq(json_integer_value(json_object_get(d, "n")), 42);
    cr_assert(json_is_integer(json_object_get(d, "n")));
    cr_assert_str_eq(json_string_value(json_object_get(d, "s")), "hi");
    json_t *want = parse("{\"a\":[1]}");
    cr_assert(json_equal(json_object_get(d, "obj"), want));
    json_decref(want);
    cr_assert(json_is_false(json_object_get(d, "flag")));
    cr_assert(json_is_null(json_object_get(d, "missing")));
    cr_assert_str_eq(json_string_value(json_object_get(d, "text")),
                     "n=42 s=hi miss=[] f=false o={\"a\":[1]} x=0.5");
    json_t *arr = json_object_get(json_object_get(d, "nested"), "arr");
    cr_assert_eq(json_integer_value(json_array_get(arr, 0)), 42);
    cr_assert_str_eq(json_string_value(json_array_get(arr, 1)), "#42");
    cr_assert_eq(json_integer_value(json_array_get(arr, 2)), 7);
    cr_assert_str_eq(json_string_value(json_object_get(d, "two")), "hihi");
    cr_assert_str_eq(json_string_value(json_object_get(d, "literal")), "no {{ placeholder");
    cr_assert_str_eq(json_string_value(json_object_get(d, "topic")), "i.in");
    json_decref(m);
    rules_unsubscribe(rules, s);
}

Test(rules, a_numeric_placeholder_in_a_key_becomes_text) {
    reg_quiet("{\"name\":\"k\",\"when\":{\"event\":\"t.x\"},"
              "\"then\":[{\"setFact\":\"{{event.data.id}}\",\"value\":\"{{event.data.id}}\"}]}");
    emit("t.x", "{\"id\":17}");
    assert_fact("17", "17");
}

/* ================================================================ actions */

Test(rules, every_action_kind_runs_in_order) {
    set_fact("cart:user-alice", "[\"prod-1\"]");
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"prod-1\",\"stock\":3}}");
    store_run("insert", "{\"bucket\":\"alerts\",\"data\":{\"id\":\"stale\",\"kind\":\"old\"}}");
    reg_quiet("{\"name\":\"placed\",\"when\":{\"event\":\"order.placed\"},\"then\":["
              "{\"emit\":\"audit.logged\",\"data\":{\"orderId\":\"{{event.data.orderId}}\"}},"
              "{\"setFact\":\"order:{{event.data.orderId}}:status\",\"value\":\"placed\"},"
              "{\"deleteFact\":\"cart:{{event.data.userId}}\"},"
              "{\"store\":{\"op\":\"insert\",\"bucket\":\"alerts\","
              "\"data\":{\"id\":\"{{event.data.orderId}}\",\"kind\":\"placed\"}}},"
              "{\"store\":{\"op\":\"update\",\"bucket\":\"products\",\"key\":\"{{event.data."
              "productId}}\","
              "\"data\":{\"stock\":\"{{event.data.left}}\"}}},"
              "{\"store\":{\"op\":\"delete\",\"bucket\":\"alerts\",\"key\":\"stale\"}}]}");
    rules_sub_t *s = subscribe(NULL, "sub-audit", "audit.*");
    emit("order.placed",
         "{\"orderId\":\"order-1\",\"userId\":\"user-alice\",\"productId\":\"prod-1\",\"left\":2}");
    cr_assert_eq(delivered, 1);
    json_t *m = delivery_json(0);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(m, "event"), "data"), "orderId")),
                     "order-1");
    json_decref(m);
    assert_fact("order:order-1:status", "\"placed\"");
    cr_assert_null(rules_fact_peek(rules, "cart:user-alice"));
    json_t *alert = store_get("alerts", "order-1");
    cr_assert_str_eq(json_string_value(json_object_get(alert, "kind")), "placed");
    json_decref(alert);
    json_t *product = store_get("products", "prod-1");
    cr_assert_eq(json_integer_value(json_object_get(product, "stock")), 2);
    json_decref(product);
    json_t *stale = store_get("alerts", "stale");
    cr_assert(json_is_null(stale));
    json_decref(stale);
    cr_assert_eq(stat("actionsFailed"), 0);
    cr_assert_eq(stat("rulesFired"), 1);
    rules_unsubscribe(rules, s);
}

Test(rules, a_failing_action_does_not_undo_its_trigger) {
    capture_logs();
    reg_quiet("{\"name\":\"bad-insert\",\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":["
              "\"update\"]}},"
              "\"then\":[{\"store\":{\"op\":\"insert\",\"bucket\":\"alerts\",\"data\":{\"id\":\"{{"
              "key}}\"}}},"
              "{\"setFact\":\"after:{{key}}\",\"value\":\"{{record.stock}}\"}]}");
    reg_quiet("{\"name\":\"bad-emit\",\"when\":{\"event\":\"t.x\"},"
              "\"then\":[{\"emit\":\"bad..{{event.data.nothing}}\"}]}");
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p1\",\"stock\":10}}");
    store_run("update", "{\"bucket\":\"products\",\"key\":\"p1\",\"data\":{\"stock\":9}}");
    json_t *p = store_get("products", "p1");
    cr_assert_eq(json_integer_value(json_object_get(p, "stock")), 9);
    json_decref(p);
    json_t *a = store_get("alerts", "p1");
    cr_assert(json_is_null(a));
    json_decref(a);
    assert_fact("after:p1", "9"); /* the next action still ran */
    cr_assert_eq(stat("actionsFailed"), 1);
    cr_assert(log_has("rules.action_failed"));
    cr_assert(log_has("rule=\"bad-insert\" action=0"));
    json_t *e = emit_full("t.x", NULL, NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "id")), "evt-1");
    json_decref(e);
    cr_assert_eq(stat("actionsFailed"), 2);
    cr_assert(log_has("rule=\"bad-emit\" action=0"));
}

/* ================================================================ store triggers */

static const char low_stock_rule[] =
    "{\"name\":\"low-stock-alert\",\"enabled\":true,\"priority\":0,"
    "\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":[\"update\"]}},"
    "\"if\":[{\"path\":\"record.stock\",\"op\":\"lt\",\"value\":5},"
    "{\"path\":\"previous.stock\",\"op\":\"gte\",\"value\":5}],"
    "\"then\":[{\"emit\":\"inventory.low_stock\","
    "\"data\":{\"productId\":\"{{record.id}}\",\"currentStock\":\"{{record.stock}}\"}},"
    "{\"setFact\":\"product:{{record.id}}:low\",\"value\":true}]}";

static void set_stock(const char *id, int stock) {
    char req[128];
    snprintf(req, sizeof req, "{\"bucket\":\"products\",\"key\":\"%s\",\"data\":{\"stock\":%d}}",
             id, stock);
    store_run("update", req);
}

Test(rules, the_low_stock_rule_fires_only_when_stock_crosses_below_5) {
    reg_quiet(low_stock_rule);
    rules_sub_t *s = subscribe(NULL, "sub-inv", "inventory.*");
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"prod-3\",\"title\":\"Laptop "
                        "Stand\",\"stock\":3}}");
    cr_assert_eq(delivered, 0); /* inserts are not watched */
    set_stock("prod-3", 10);
    set_stock("prod-3", 7);
    cr_assert_eq(delivered, 0);
    set_stock("prod-3", 2);
    cr_assert_eq(delivered, 1);
    json_t *m = delivery_json(0);
    json_t *ev = json_object_get(m, "event");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "topic")), "inventory.low_stock");
    json_t *d = json_object_get(ev, "data");
    cr_assert_str_eq(json_string_value(json_object_get(d, "productId")), "prod-3");
    cr_assert_eq(json_integer_value(json_object_get(d, "currentStock")), 2);
    cr_assert(json_is_integer(json_object_get(d, "currentStock")));
    json_decref(m);
    assert_fact("product:prod-3:low", "true");
    set_stock("prod-3", 1); /* already below: no new alert */
    cr_assert_eq(delivered, 1);
    set_stock("prod-3", 8);
    set_stock("prod-3", 4);
    cr_assert_eq(delivered, 2);
    rules_unsubscribe(rules, s);
}

Test(rules, store_triggers_see_op_key_record_and_previous) {
    reg_quiet("{\"name\":\"watch\",\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":["
              "\"insert\",\"delete\"]}},"
              "\"then\":[{\"setFact\":\"seen:{{op}}:{{key}}\",\"value\":{\"bucket\":\"{{bucket}}\","
              "\"stock\":\"{{record.stock}}\",\"before\":\"{{previous.stock}}\",\"prev\":\"{{"
              "previous}}\"}}]}");
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p9\",\"stock\":4}}");
    assert_fact("seen:insert:p9",
                "{\"bucket\":\"products\",\"stock\":4,\"before\":null,\"prev\":null}");
    set_stock("p9", 6);
    cr_assert_null(rules_fact_peek(rules, "seen:update:p9"));
    store_run("delete", "{\"bucket\":\"products\",\"key\":\"p9\"}");
    char *got = fact_text("seen:delete:p9");
    json_t *v = parse(got);
    cr_assert(json_is_null(json_object_get(v, "stock")));
    cr_assert_eq(json_integer_value(json_object_get(v, "before")), 6);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(v, "prev"), "_version")), 2);
    json_decref(v);
    free(got);
}

Test(rules, store_triggers_watch_every_op_by_default_and_other_buckets_not_at_all) {
    json_t *def = reg("{\"name\":\"all\",\"when\":{\"store\":{\"bucket\":\"products\"}},"
                      "\"then\":[{\"setFact\":\"n:{{op}}\",\"value\":\"{{record._version}}\"}]}");
    json_t *ops = json_object_get(json_object_get(json_object_get(def, "when"), "store"), "ops");
    cr_assert_eq(json_array_size(ops), 3);
    json_decref(def);
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p1\",\"stock\":1}}");
    set_stock("p1", 2);
    store_run("delete", "{\"bucket\":\"products\",\"key\":\"p1\"}");
    store_run("insert", "{\"bucket\":\"alerts\",\"data\":{\"id\":\"a\",\"kind\":\"k\"}}");
    assert_fact("n:insert", "1");
    assert_fact("n:update", "2");
    assert_fact("n:delete", "null");
    cr_assert_eq(stat("rulesFired"), 3);
}

/* Under group commit store triggers fire at the commit, in write order, each with its
 * own record and previous record, and conditions read facts as they are then. */
Test(rules, group_commit_fires_store_triggers_at_the_commit) {
    reg_quiet("{\"name\":\"low\",\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":[\"update\"]}},"
              "\"if\":[{\"path\":\"record.stock\",\"op\":\"lt\",\"value\":5},"
              "{\"path\":\"previous.stock\",\"op\":\"gte\",\"value\":5}],"
              "\"then\":[{\"setFact\":\"low:{{key}}\",\"value\":\"{{record.stock}}\"}]}");
    reg_quiet("{\"name\":\"gated\",\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":[\"update\"]}},"
              "\"if\":[{\"fact\":\"gate\",\"op\":\"eq\",\"value\":true}],"
              "\"then\":[{\"setFact\":\"gated:{{key}}\",\"value\":\"{{record.stock}}\"}]}");
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p1\",\"stock\":9}}");
    store_set_group_commit(st, true);
    err_t err = ERR_INIT;
    set_stock("p1", 7); /* not low; the gate is closed when it is written, open at the commit */
    set_stock("p1", 3); /* crosses the line */
    set_stock("p1", 2); /* already below */
    set_fact("gate", "true"); /* opens the gate before the commit */
    cr_assert_null(rules_fact_peek(rules, "low:p1"), "nothing fires before the commit");
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg);
    assert_fact("low:p1", "3");
    assert_fact("gated:p1", "2"); /* each update fired it; the last one wrote last */
    cr_assert_eq(store_batch_commit(st, &err), 0, "%s", err.msg); /* the rules' own writes */
    cr_assert_eq(stat("rulesFired"), 4, "low once, gated for each of the three updates");
    store_set_group_commit(st, false);
}

Test(rules, each_change_of_a_transaction_is_a_trigger) {
    reg_quiet(
        "{\"name\":\"tx\",\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":[\"insert\"]}},"
        "\"then\":[{\"setFact\":\"ins:{{key}}\",\"value\":true}]}");
    json_t *ops = parse("[{\"op\":\"insert\",\"bucket\":\"products\",\"data\":{\"id\":\"a\"}},"
                        "{\"op\":\"insert\",\"bucket\":\"products\",\"data\":{\"id\":\"b\"}}]");
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_transaction(st, ops, &out, &err), 0, "%s", err.msg);
    buf_cleanup(&out);
    json_decref(ops);
    cr_assert_not_null(rules_fact_peek(rules, "ins:a"));
    cr_assert_not_null(rules_fact_peek(rules, "ins:b"));
}

/* ================================================================ fact triggers */

Test(rules, fact_triggers_see_value_and_previous_on_set_and_delete) {
    reg_quiet("{\"name\":\"status-log\",\"when\":{\"fact\":\"order:*:status\"},"
              "\"then\":[{\"setFact\":\"log:{{fact.key}}\","
              "\"value\":{\"value\":\"{{fact.value}}\",\"previous\":\"{{fact.previous}}\"}}]}");
    set_fact("order:o1:status", "\"placed\"");
    assert_fact("log:order:o1:status", "{\"value\":\"placed\",\"previous\":null}");
    set_fact("order:o1:status", "\"shipped\"");
    assert_fact("log:order:o1:status", "{\"value\":\"shipped\",\"previous\":\"placed\"}");
    char *got = fact_call(rules_delete_fact, "order:o1:status");
    free(got);
    assert_fact("log:order:o1:status", "{\"value\":null,\"previous\":\"shipped\"}");
    /* Deleting a fact that is not there changes nothing and triggers nothing. */
    json_int_t fired = stat("rulesFired");
    got = fact_call(rules_delete_fact, "order:o1:status");
    free(got);
    set_fact("order:o1", "1");
    set_fact("order:o1:status:x", "1");
    cr_assert_eq(stat("rulesFired"), fired);
}

/* ================================================================ ordering and admin */

Test(rules, higher_priority_fires_first_and_ties_keep_registration_order) {
    reg_quiet("{\"name\":\"a\",\"priority\":1,\"when\":{\"event\":\"p.go\"},"
              "\"then\":[{\"emit\":\"p.fired\",\"data\":{\"rule\":\"a\"}}]}");
    reg_quiet("{\"name\":\"b\",\"priority\":10,\"when\":{\"event\":\"p.go\"},"
              "\"then\":[{\"emit\":\"p.fired\",\"data\":{\"rule\":\"b\"}}]}");
    reg_quiet("{\"name\":\"c\",\"priority\":1,\"when\":{\"event\":\"p.*\"},"
              "\"if\":[{\"path\":\"event.topic\",\"op\":\"eq\",\"value\":\"p.go\"}],"
              "\"then\":[{\"emit\":\"p.fired\",\"data\":{\"rule\":\"c\"}}]}");
    reg_quiet("{\"name\":\"d\",\"priority\":-5,\"when\":{\"event\":\"p.go\"},"
              "\"then\":[{\"emit\":\"p.fired\",\"data\":{\"rule\":\"d\"}}]}");
    rules_sub_t *s = subscribe(NULL, "sub", "p.fired");
    emit("p.go", NULL);
    const char *want[] = {"b", "a", "c", "d"};
    cr_assert_eq(delivered, 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *m = delivery_json(i);
        const char *who = json_string_value(
            json_object_get(json_object_get(json_object_get(m, "event"), "data"), "rule"));
        cr_assert_str_eq(who, want[i], "firing %zu", i);
        json_decref(m);
    }
    buf_t out;
    buf_init(&out, 0);
    rules_get_all(rules, &out);
    json_t *all = parse_buf(&out);
    cr_assert_eq(json_array_size(all), 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, i), "name")),
                         want[i]);
    json_decref(all);
    rules_unsubscribe(rules, s);
}

static json_t *admin(int rc_expected, err_code_t code,
                     int (*fn)(rules_t *, const char *, buf_t *, err_t *), const char *name) {
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    int rc = fn(rules, name, &out, &err);
    cr_assert_eq(rc, rc_expected, "%s: %s", name ? name : "(null)", err.msg);
    if (rc < 0) {
        cr_assert_eq(err.code, code, "%s: %s", name ? name : "(null)", err.msg);
        err_clear(&err);
        buf_cleanup(&out);
        return NULL;
    }
    return parse_buf(&out);
}

static int enable_rule(rules_t *r, const char *name, buf_t *out, err_t *err) {
    return rules_set_enabled(r, name, true, out, err);
}

static int disable_rule(rules_t *r, const char *name, buf_t *out, err_t *err) {
    return rules_set_enabled(r, name, false, out, err);
}

Test(rules, disabled_rules_do_not_fire_until_enabled) {
    reg_quiet("{\"name\":\"r\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":\"hit:{{event."
              "id}}\",\"value\":1}]}");
    cr_assert_eq(stat("enabledRulesCount"), 1);
    json_t *r = admin(0, ERR_NONE, disable_rule, "r");
    cr_assert(json_is_false(json_object_get(r, "enabled")));
    json_decref(r);
    cr_assert_eq(stat("enabledRulesCount"), 0);
    cr_assert_eq(stat("rulesCount"), 1);
    emit("t.x", NULL);
    cr_assert_null(rules_fact_peek(rules, "hit:evt-1"));
    r = admin(0, ERR_NONE, enable_rule, "r");
    cr_assert(json_is_true(json_object_get(r, "enabled")));
    json_decref(r);
    emit("t.x", NULL);
    cr_assert_not_null(rules_fact_peek(rules, "hit:evt-2"));
    cr_assert_null(admin(-1, ERR_NOT_FOUND, enable_rule, "nope"));
    /* A rule registered disabled stays so. */
    reg_quiet("{\"name\":\"off\",\"enabled\":false,\"when\":{\"event\":\"t.x\"},\"then\":[{"
              "\"setFact\":\"off\",\"value\":1}]}");
    emit("t.x", NULL);
    cr_assert_null(rules_fact_peek(rules, "off"));
}

Test(rules, registration_normalises_the_rule) {
    json_t *r =
        reg("{\"name\":\"n\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"deleteFact\":\"a\"}]}");
    json_t *want =
        parse("{\"name\":\"n\",\"enabled\":true,\"priority\":0,\"when\":{\"event\":\"t.x\"},"
              "\"if\":[],\"then\":[{\"deleteFact\":\"a\"}]}");
    cr_assert(json_equal(r, want));
    json_decref(want);
    json_decref(r);
    json_t *got = admin(0, ERR_NONE, rules_get, "n");
    cr_assert_str_eq(json_string_value(json_object_get(got, "name")), "n");
    json_decref(got);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_get(rules, "n", &out, &err), 0);
    cr_assert(
        starts_with(buf_cstr(&out), "{\"name\":\"n\",\"enabled\":true,\"priority\":0,\"when\""),
        "%s", buf_cstr(&out));
    buf_cleanup(&out);
}

Test(rules, admin_errors_use_the_protocol_codes) {
    reg_quiet("{\"name\":\"dup\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"deleteFact\":\"a\"}]}");
    json_t *rule =
        parse("{\"name\":\"dup\",\"when\":{\"event\":\"t.y\"},\"then\":[{\"deleteFact\":\"b\"}]}");
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_register(rules, rule, &out, &err), -1);
    cr_assert_eq(err.code, ERR_ALREADY_EXISTS);
    cr_assert_eq(out.len, 0);
    json_decref(rule);
    rule = parse("{\"name\":\"bad\",\"when\":{\"event\":\"t..x\"},\"then\":[]}");
    cr_assert_eq(rules_register(rules, rule, &out, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_not_null(strstr(err.msg, "Invalid rule"), "%s", err.msg);
    json_t *errors = json_object_get(err.details, "errors");
    cr_assert_eq(json_array_size(errors), 2);
    json_decref(rule);
    err_clear(&err);
    cr_assert_null(admin(-1, ERR_NOT_FOUND, rules_get, "missing"));
    cr_assert_null(admin(-1, ERR_NOT_FOUND, rules_unregister, "missing"));
    cr_assert_null(admin(-1, ERR_NOT_FOUND, disable_rule, "missing"));
    cr_assert_null(admin(-1, ERR_VALIDATION, rules_get, ""));
    rule = parse("{\"priority\":3}");
    cr_assert_eq(rules_update(rules, "missing", rule, &out, &err), -1);
    cr_assert_eq(err.code, ERR_NOT_FOUND);
    err_clear(&err);
    json_decref(rule);
    cr_assert_eq(stat("rulesCount"), 1);
}

static json_t *validate(const char *rule_json) {
    json_t *rule = parse(rule_json);
    buf_t out;
    buf_init(&out, 0);
    rules_validate(rules, rule, &out);
    json_decref(rule);
    return parse_buf(&out);
}

static bool errors_mention(const json_t *res, const char *needle) {
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(res, "errors"), i, e) {
        if (strstr(json_string_value(e), needle)) return true;
    }
    return false;
}

Test(rules, validation_lists_every_problem) {
    json_t *ok = validate(low_stock_rule);
    cr_assert(json_is_true(json_object_get(ok, "valid")));
    cr_assert_eq(json_array_size(json_object_get(ok, "errors")), 0);
    json_decref(ok);

    json_t *res = validate(
        "{\"name\":\"\",\"color\":\"red\",\"enabled\":\"yes\",\"priority\":1.5,"
        "\"when\":{\"event\":\"order..placed\"},"
        "\"if\":[{\"path\":\"event.data.n\",\"op\":\"like\",\"value\":1},"
        "{\"path\":\"event.data.s\",\"op\":\"matches\",\"value\":\"(unclosed\"},"
        "{\"path\":\"a..b\",\"op\":\"eq\",\"value\":1},"
        "{\"path\":\"x\",\"fact\":\"y\",\"op\":\"exists\"},"
        "{\"path\":\"x\",\"op\":\"in\",\"value\":3}],"
        "\"then\":[{\"emit\":\"a.b\",\"setFact\":\"k\"},{\"emit\":\"a.*\"},{\"setFact\":\"k\"},"
        "{\"store\":{\"op\":\"upsert\",\"bucket\":\"\"}},{\"store\":{\"op\":\"update\",\"bucket\":"
        "\"b\"}},"
        "{\"emit\":\"a.b\",\"data\":[1]},{\"deleteFact\":\"k\",\"extra\":1}, 5]}");
    cr_assert(json_is_false(json_object_get(res, "valid")));
    const char *expect[] = {
        "rule: unknown field \"color\"",
        "name: expected non-empty string",
        "enabled: expected true or false",
        "priority: expected an integer",
        "when.event: invalid topic pattern \"order..placed\"",
        "if[0].op: unknown op \"like\"",
        "if[1].value: invalid regular expression",
        "if[2].path:",
        "if[3]: expected exactly one of path or fact",
        "if[4].value: expected an array for in",
        "then[0]: expected exactly one of emit, setFact, deleteFact, store",
        "then[1].emit: invalid topic \"a.*\"",
        "then[2].value: required",
        "then[3].store.op: expected insert, update or delete",
        "then[3].store.bucket: expected non-empty string",
        "then[4].store.key: required for update",
        "then[4].store.data: required",
        "then[5].data: expected object",
        "then[6]: unknown field \"extra\"",
        "then[7]: expected object",
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        cr_assert(errors_mention(res, expect[i]), "missing error: %s", expect[i]);
    json_decref(res);

    res = validate("{\"name\":\"x\"}");
    cr_assert(errors_mention(res, "when: required"));
    cr_assert(errors_mention(res, "then: required"));
    json_decref(res);
    res = validate("{\"name\":\"x\",\"when\":{\"event\":\"a\",\"fact\":\"b\"},\"then\":[{"
                   "\"deleteFact\":\"a\"}]}");
    cr_assert(errors_mention(res, "when: expected exactly one of event, fact, store"));
    json_decref(res);
    res = validate(
        "{\"name\":\"x\",\"when\":{\"fact\":\"user::name\"},\"then\":[{\"deleteFact\":\"a\"}]}");
    cr_assert(errors_mention(res, "when.fact: invalid fact key pattern"));
    json_decref(res);
    res = validate("{\"name\":\"x\",\"when\":{\"store\":{\"bucket\":\"p\",\"ops\":[\"upsert\"]}},"
                   "\"then\":[{\"deleteFact\":\"a\"}]}");
    cr_assert(errors_mention(res, "when.store.ops[0]: unknown op \"upsert\""));
    json_decref(res);
    res = validate("[1]");
    cr_assert(errors_mention(res, "rule: expected object"));
    json_decref(res);
    cr_assert_eq(stat("rulesCount"), 0);
}

Test(rules, update_replaces_the_given_members_and_keeps_the_position) {
    reg_quiet(
        "{\"name\":\"a\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":\"a\",\"value\":1}]}");
    reg_quiet(
        "{\"name\":\"b\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":\"b\",\"value\":1}]}");
    json_t *changes = parse("{\"then\":[{\"setFact\":\"a2\",\"value\":2}]}");
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(rules_update(rules, "a", changes, &out, &err), 0, "%s", err.msg);
    json_decref(changes);
    json_t *r = parse_buf(&out);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "when"), "event")),
                     "t.x");
    json_decref(r);
    buf_init(&out, 0);
    rules_get_all(rules, &out);
    json_t *all = parse_buf(&out);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 0), "name")), "a");
    json_decref(all);
    emit("t.x", NULL);
    assert_fact("a2", "2");
    cr_assert_null(rules_fact_peek(rules, "a"));

    changes = parse("{\"name\":\"other\"}");
    buf_init(&out, 0);
    cr_assert_eq(rules_update(rules, "a", changes, &out, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    json_decref(changes);
    changes = parse("{\"when\":{\"event\":\"*..x\"}}");
    cr_assert_eq(rules_update(rules, "a", changes, &out, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_gt(json_array_size(json_object_get(err.details, "errors")), 0);
    json_decref(changes);
    err_clear(&err);
    buf_cleanup(&out);
}

Test(rules, unregister_answers_and_stops_the_rule) {
    reg_quiet("{\"name\":\"gone\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":\"hit:{{"
              "event.id}}\",\"value\":1}]}");
    json_t *r = admin(0, ERR_NONE, rules_unregister, "gone");
    json_t *want = parse("{\"name\":\"gone\",\"unregistered\":true}");
    cr_assert(json_equal(r, want));
    json_decref(want);
    json_decref(r);
    emit("t.x", NULL);
    cr_assert_null(rules_fact_peek(rules, "hit:evt-1"));
    cr_assert_eq(stat("rulesCount"), 0);
    reopen();
    cr_assert_eq(stat("rulesCount"), 0);
}

Test(rules, config_rules_register_or_replace) {
    reg_quiet("{\"name\":\"a\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":\"old\","
              "\"value\":1}]}");
    json_t *cfg = parse("[{\"name\":\"a\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":"
                        "\"new\",\"value\":1}]},"
                        "{\"name\":\"b\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"setFact\":\"b\","
                        "\"value\":1}]}]");
    err_t err = ERR_INIT;
    cr_assert_eq(rules_load_config(rules, cfg, &err), 0, "%s", err.msg);
    json_decref(cfg);
    cr_assert_eq(stat("rulesCount"), 2);
    emit("t.x", NULL);
    cr_assert_null(rules_fact_peek(rules, "old"));
    cr_assert_not_null(rules_fact_peek(rules, "new"));
    cr_assert_not_null(rules_fact_peek(rules, "b"));

    cfg = parse("[{\"name\":\"c\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"deleteFact\":\"x\"}]},"
                "{\"name\":\"d\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"unknown\":1}]}]");
    cr_assert_eq(rules_load_config(rules, cfg, &err), -1);
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert(starts_with(err.msg, "rules[1]: "), "%s", err.msg);
    err_clear(&err);
    json_decref(cfg);
    cfg = parse("{}");
    cr_assert_eq(rules_load_config(rules, cfg, &err), -1);
    err_clear(&err);
    json_decref(cfg);
    cr_assert_eq(rules_load_config(rules, NULL, &err), 0);
}

/* ================================================================ chains */

Test(rules, emitted_events_carry_causation_and_correlation) {
    reg_quiet("{\"name\":\"one\",\"when\":{\"event\":\"order.placed\"},\"then\":[{\"emit\":\"order."
              "audit\"}]}");
    reg_quiet("{\"name\":\"two\",\"when\":{\"event\":\"order.audit\"},\"then\":[{\"emit\":\"order."
              "audit2\"}]}");
    rules_sub_t *s = subscribe(NULL, "sub", "order.*");
    emit("order.placed", NULL);
    cr_assert_eq(delivered, 3);
    const char *ids[][3] = {
        {"evt-1", NULL, NULL}, {"evt-2", "evt-1", "evt-1"}, {"evt-3", "evt-1", "evt-2"}};
    for (size_t i = 0; i < 3; i++) {
        json_t *m = delivery_json(i);
        json_t *ev = json_object_get(m, "event");
        cr_assert_str_eq(json_string_value(json_object_get(ev, "id")), ids[i][0]);
        const char *corr = json_string_value(json_object_get(ev, "correlationId"));
        const char *cause = json_string_value(json_object_get(ev, "causationId"));
        if (ids[i][1]) {
            cr_assert_str_eq(corr, ids[i][1]);
            cr_assert_str_eq(cause, ids[i][2]);
        } else {
            cr_assert_null(corr);
            cr_assert_null(cause);
        }
        json_decref(m);
    }
    deliveries_clear();
    json_decref(emit_full("order.placed", NULL, "checkout-7", NULL));
    cr_assert_eq(delivered, 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *m = delivery_json(i);
        json_t *ev = json_object_get(m, "event");
        cr_assert_str_eq(json_string_value(json_object_get(ev, "correlationId")), "checkout-7");
        json_decref(m);
    }
    rules_unsubscribe(rules, s);
}

Test(rules, a_chain_through_a_fact_keeps_its_correlation) {
    reg_quiet("{\"name\":\"set\",\"when\":{\"event\":\"order.placed\"},"
              "\"then\":[{\"setFact\":\"order:{{event.data.id}}:status\",\"value\":\"placed\"}]}");
    reg_quiet("{\"name\":\"tell\",\"when\":{\"fact\":\"order:*:status\"},"
              "\"then\":[{\"emit\":\"order.status\",\"data\":{\"key\":\"{{fact.key}}\"}}]}");
    rules_sub_t *s = subscribe(NULL, "sub", "order.status");
    json_decref(emit_full("order.placed", "{\"id\":\"o1\"}", "c-1", NULL));
    cr_assert_eq(delivered, 1);
    json_t *m = delivery_json(0);
    json_t *ev = json_object_get(m, "event");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "correlationId")), "c-1");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "causationId")), "evt-1");
    json_decref(m);
    rules_unsubscribe(rules, s);
}

Test(rules, a_rule_emitting_its_own_topic_is_cut_off) {
    capture_logs();
    reg_quiet("{\"name\":\"looper\",\"when\":{\"event\":\"loop.tick\"},\"then\":[{\"emit\":\"loop."
              "tick\"}]}");
    emit("loop.tick", NULL);
    cr_assert_eq(stat("rulesFired"), RULES_MAX_DEPTH);
    cr_assert_eq(stat("eventsEmitted"), RULES_MAX_DEPTH + 1);
    cr_assert(log_has("rules.depth_exceeded"));
    cr_assert(log_has("rule=\"looper\""));
    /* The next chain starts from depth 0 again. */
    emit("loop.tick", NULL);
    cr_assert_eq(stat("rulesFired"), 2 * RULES_MAX_DEPTH);
}

Test(rules, a_rule_writing_the_bucket_it_watches_is_cut_off) {
    capture_logs();
    reg_quiet(
        "{\"name\":\"toucher\",\"when\":{\"store\":{\"bucket\":\"products\",\"ops\":[\"update\"]}},"
        "\"then\":[{\"store\":{\"op\":\"update\",\"bucket\":\"products\",\"key\":\"{{key}}\","
        "\"data\":{\"stock\":\"{{record._version}}\"}}}]}");
    store_run("insert", "{\"bucket\":\"products\",\"data\":{\"id\":\"p1\",\"stock\":0}}");
    set_stock("p1", 100);
    json_t *p = store_get("products", "p1");
    /* The client's update made version 2; sixteen firings made 3 … 18. */
    cr_assert_eq(json_integer_value(json_object_get(p, "_version")), 2 + RULES_MAX_DEPTH);
    cr_assert_eq(json_integer_value(json_object_get(p, "stock")), 1 + RULES_MAX_DEPTH);
    json_decref(p);
    cr_assert_eq(stat("rulesFired"), RULES_MAX_DEPTH);
    cr_assert(log_has("rules.depth_exceeded"));
}

/* ================================================================ persistence and stats */

Test(rules, rules_survive_a_restart_in_the_same_order) {
    reg_quiet("{\"name\":\"first\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"emit\":\"t.out\","
              "\"data\":{\"r\":1}}]}");
    reg_quiet("{\"name\":\"second\",\"priority\":5,\"when\":{\"event\":\"t.x\"},\"then\":[{"
              "\"emit\":\"t.out\",\"data\":{\"r\":2}}]}");
    reg_quiet("{\"name\":\"third\",\"when\":{\"event\":\"t.x\"},\"then\":[{\"emit\":\"t.out\","
              "\"data\":{\"r\":3}}]}");
    reg_quiet("{\"name\":\"off\",\"enabled\":false,\"when\":{\"event\":\"t.x\"},"
              "\"if\":[{\"path\":\"event.data.s\",\"op\":\"matches\",\"value\":\"^x\"}],"
              "\"then\":[{\"emit\":\"t.out\",\"data\":{\"r\":4}}]}");
    buf_t before;
    buf_init(&before, 0);
    rules_get_all(rules, &before);
    reopen();
    buf_t after;
    buf_init(&after, 0);
    rules_get_all(rules, &after);
    cr_assert_str_eq(buf_cstr(&after), buf_cstr(&before));
    buf_cleanup(&before);
    buf_cleanup(&after);
    cr_assert_eq(stat("rulesCount"), 4);
    cr_assert_eq(stat("enabledRulesCount"), 3);
    rules_sub_t *s = subscribe(NULL, "sub", "t.out");
    emit("t.x", NULL);
    cr_assert_eq(delivered, 3);
    rules_unsubscribe(rules, s);
    /* A rule registered after the restart still sorts after the older ones. */
    reg_quiet(
        "{\"name\":\"fourth\",\"when\":{\"event\":\"t.y\"},\"then\":[{\"deleteFact\":\"x\"}]}");
    buf_init(&after, 0);
    rules_get_all(rules, &after);
    json_t *all = parse_buf(&after);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 4), "name")), "fourth");
    json_decref(all);
}

Test(rules, stats_have_the_documented_shape) {
    json_t *s = stats();
    const char *keys[] = {"rulesCount",    "enabledRulesCount", "factsCount",    "eventsProcessed",
                          "eventsEmitted", "rulesFired",        "actionsFailed", "subscriptions"};
    cr_assert_eq(json_object_size(s), 8);
    for (size_t i = 0; i < 8; i++)
        cr_assert(json_is_integer(json_object_get(s, keys[i])), "%s", keys[i]);
    json_decref(s);
}
