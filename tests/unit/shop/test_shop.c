/* The shop procedures against a real store on a temporary SQLite file, loaded with the
 * buckets and seed of config/ecommerce.json (run from the repository root). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shop/money.h"
#include "shop/shop.h"
#include "store/store.h"

#define CONFIG_PATH "config/ecommerce.json"

static store_t *st;
static shop_t *shop;
static char dir[64];
static json_t *events; /* [{topic, data}] */
static int emit_status;

static int on_emit(void *udata, const char *topic, const json_t *data) {
    (void)udata;
    json_array_append_new(events, json_pack("{s:s, s:O}", "topic", topic, "data", (json_t *)data));
    return emit_status;
}

static void setup(void) {
    strcpy(dir, "/tmp/shopd-shop-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/shopd.db", dir);
    err_t err = ERR_INIT;
    st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    json_error_t jerr;
    json_t *cfg = json_load_file(CONFIG_PATH, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null(cfg, "%s: %s (line %d)", CONFIG_PATH, jerr.text, jerr.line);
    const char *name;
    json_t *def;
    json_object_foreach(json_object_get(cfg, "buckets"), name, def) {
        cr_assert_eq(store_define_bucket(st, name, def, false, &err), 0, "bucket %s: %s", name,
                     err.msg);
    }
    json_object_foreach(json_object_get(cfg, "queries"), name, def) {
        cr_assert_eq(store_define_query(st, name, def, false, &err), 0, "query %s: %s", name,
                     err.msg);
    }
    int n = store_seed(st, json_object_get(cfg, "seed"), &err);
    cr_assert_gt(n, 0, "seed: %s", err.msg);
    json_decref(cfg);
    events = json_array();
    emit_status = 0;
    shop = shop_new(st, NULL, on_emit, NULL, &err);
    cr_assert_not_null(shop, "%s", err.msg);
}

static void teardown(void) {
    shop_free(shop);
    store_close(st);
    json_decref(events);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(shop, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static const char *const customer_roles[] = {"customer"};
static const char *const admin_roles[] = {"admin"};

static shop_caller_t who(const char *user) {
    bool admin = user && strcmp(user, "admin-1") == 0;
    shop_caller_t c = {user, admin ? admin_roles : customer_roles, 1};
    return c;
}

/* Runs a procedure; returns rc, fills *result (parsed, owned) or *err. */
static int run(const char *user, const char *proc, const char *input_json, json_t **result,
               err_t *err) {
    json_t *input = input_json ? json_loads(input_json, JSON_DECODE_ANY, NULL) : NULL;
    cr_assert(input_json == NULL || input != NULL, "bad JSON %s", input_json);
    shop_caller_t c = who(user);
    buf_t out;
    buf_init(&out, 0);
    int rc = shop_call(shop, &c, proc, input, &out, err);
    if (rc == 0) {
        cr_assert_gt(out.len, 0);
        json_error_t jerr;
        *result = json_loadb(out.data, out.len, JSON_DECODE_ANY, &jerr);
        cr_assert_not_null(*result, "result is not JSON: %.*s", (int)out.len, out.data);
    } else {
        cr_assert_eq(out.len, 0, "output written on failure");
    }
    buf_cleanup(&out);
    json_decref(input);
    return rc;
}

static json_t *ok(const char *user, const char *proc, const char *input_json) {
    json_t *r = NULL;
    err_t err = ERR_INIT;
    int rc = run(user, proc, input_json, &r, &err);
    cr_assert_eq(rc, 0, "%s %s %s: %s %s", user, proc, input_json ? input_json : "",
                 err_code_name(err.code), err.msg);
    return r;
}

/* Expects a failure with `code`; returns the error (clear it). */
static err_t fails(err_code_t code, const char *user, const char *proc, const char *input_json) {
    json_t *r = NULL;
    err_t err = ERR_INIT;
    int rc = run(user, proc, input_json, &r, &err);
    cr_assert_eq(rc, -1, "%s %s %s succeeded", user, proc, input_json ? input_json : "");
    cr_assert_eq(err.code, code, "%s %s: got %s %s", proc, input_json ? input_json : "",
                 err_code_name(err.code), err.msg);
    return err;
}

static void conflict(const char *reason, const char *user, const char *proc,
                     const char *input_json) {
    err_t err = fails(ERR_CONFLICT, user, proc, input_json);
    const char *got = json_string_value(json_object_get(err.details, "reason"));
    cr_expect_str_eq(got ? got : "(none)", reason, "%s", err.msg);
    err_clear(&err);
}

static void invalid(const char *message, const char *user, const char *proc,
                    const char *input_json) {
    err_t err = fails(ERR_VALIDATION, user, proc, input_json);
    cr_expect_str_eq(err.msg, message);
    err_clear(&err);
}

static json_t *store_json(const char *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static json_t *store_json(const char *op, const char *fmt, ...) {
    char req_text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req_text, sizeof req_text, fmt, ap);
    va_end(ap);
    json_t *req = json_loads(req_text, 0, NULL);
    cr_assert_not_null(req, "bad JSON %s", req_text);
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_execute(st, op, req, &out, &err), 0, "%s %s: %s", op, req_text, err.msg);
    json_t *v = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
    buf_cleanup(&out);
    json_decref(req);
    return v;
}

static json_t *get(const char *bucket, const char *key) {
    return store_json("get", "{\"bucket\":\"%s\",\"key\":\"%s\"}", bucket, key);
}

static int64_t int_of(const json_t *o, const char *field) {
    json_t *v = json_object_get(o, field);
    cr_assert(json_is_integer(v), "field %s is not an integer", field);
    return json_integer_value(v);
}

static int64_t field_of(const char *bucket, const char *key, const char *field) {
    json_t *r = get(bucket, key);
    cr_assert(json_is_object(r), "%s/%s missing", bucket, key);
    int64_t v = int_of(r, field);
    json_decref(r);
    return v;
}

static int64_t stock(const char *product) {
    return field_of("products", product, "stock");
}
static int64_t balance(const char *wallet) {
    return field_of("wallets", wallet, "balanceMinor");
}

static int64_t count(const char *bucket, const char *filter_json) {
    json_t *n = store_json("count", "{\"bucket\":\"%s\",\"filter\":%s}", bucket, filter_json);
    int64_t v = json_integer_value(n);
    json_decref(n);
    return v;
}

/* Every wallet's balance equals the sum of its ledger entries. */
static void assert_ledger_matches_wallets(void) {
    json_t *wallets = store_json("all", "{\"bucket\":\"wallets\"}");
    size_t i;
    json_t *w;
    json_array_foreach(wallets, i, w) {
        const char *id = json_string_value(json_object_get(w, "id"));
        json_t *sum = store_json(
            "sum",
            "{\"bucket\":\"ledger\",\"field\":\"amountMinor\",\"filter\":{\"walletId\":\"%s\"}}",
            id);
        cr_expect_eq((int64_t)json_number_value(sum), int_of(w, "balanceMinor"),
                     "wallet %s: ledger sum %g, balance %lld", id, json_number_value(sum),
                     (long long)int_of(w, "balanceMinor"));
        json_decref(sum);
    }
    json_decref(wallets);
}

static const json_t *event(size_t i, const char *topic) {
    json_t *e = json_array_get(events, i);
    cr_assert_not_null(e, "no event %zu (have %zu)", i, json_array_size(events));
    cr_assert_str_eq(json_string_value(json_object_get(e, "topic")), topic);
    return json_object_get(e, "data");
}

static const char *str(const json_t *o, const char *field) {
    const char *s = json_string_value(json_object_get(o, field));
    cr_assert_not_null(s, "field %s is not a string", field);
    return s;
}

/* Places an order and returns its id (a static buffer). */
static const char *place(const char *user, const char *input_json) {
    static char id[64];
    json_t *order = ok(user, "checkout", input_json);
    snprintf(id, sizeof id, "%s", str(order, "id"));
    json_decref(order);
    return id;
}

static char *order_input(const char *order_id) {
    static char buf[160];
    snprintf(buf, sizeof buf, "{\"orderId\":\"%s\"}", order_id);
    return buf;
}

/* ---- checkout ---- */

Test(shop, checkout_from_the_cart_charges_the_wallet_and_records_everything) {
    json_decref(ok("user-alice", "addToCart", "{\"productId\":\"prod-1\",\"quantity\":2}"));
    json_t *cart = ok("user-alice", "addToCart", "{\"productId\":\"prod-2\",\"quantity\":1}");
    cr_expect_eq(json_array_size(json_object_get(cart, "items")), 2);
    json_decref(cart);

    json_t *order = ok("user-alice", "checkout", "{\"walletCurrency\":\"USD\"}");
    const char *oid = str(order, "id");
    cr_expect_str_eq(str(order, "status"), "paid");
    cr_expect_str_eq(str(order, "userId"), "user-alice");
    cr_expect_str_eq(str(order, "currency"), "USD");
    cr_expect_eq(int_of(order, "totalMinor"), 2 * 7999 + 4500);
    cr_expect_eq(int_of(order, "createdAt"), int_of(order, "updatedAt"));
    json_t *items = json_object_get(order, "items");
    cr_assert_eq(json_array_size(items), 2);
    json_t *first = json_array_get(items, 0);
    cr_expect_str_eq(str(first, "productId"), "prod-1");
    cr_expect_str_eq(str(first, "title"), "Wireless Keyboard");
    cr_expect_eq(int_of(first, "quantity"), 2);
    cr_expect_eq(int_of(first, "unitPriceMinor"), 7999);
    cr_expect_str_eq(str(first, "currency"), "USD");
    cr_expect_eq(int_of(first, "chargedMinor"), 15998);
    cr_expect_null(json_object_get(first, "fxRate"));

    cr_expect_eq(stock("prod-1"), 23);
    cr_expect_eq(stock("prod-2"), 49);
    cr_expect_eq(balance("user-alice:USD"), 500000 - 20498);

    json_t *stored = get("orders", oid);
    cr_expect_str_eq(str(stored, "status"), "paid");
    cr_expect_eq(int_of(stored, "totalMinor"), 20498);
    json_decref(stored);

    json_t *ledger =
        store_json("where", "{\"bucket\":\"ledger\",\"filter\":{\"orderId\":\"%s\"}}", oid);
    cr_assert_eq(json_array_size(ledger), 1);
    json_t *entry = json_array_get(ledger, 0);
    cr_expect_str_eq(str(entry, "kind"), "payment");
    cr_expect_eq(int_of(entry, "amountMinor"), -20498);
    cr_expect_eq(int_of(entry, "balanceAfterMinor"), 479502);
    cr_expect_str_eq(str(entry, "walletId"), "user-alice:USD");
    json_decref(ledger);

    cr_expect_eq(count("audit-logs", "{\"action\":\"order_placed\",\"userId\":\"user-alice\"}"), 1);
    cr_expect_eq(count("carts", "{\"userId\":\"user-alice\"}"), 0);

    cr_assert_eq(json_array_size(events), 1);
    const json_t *ev = event(0, "order.placed");
    cr_expect_str_eq(str(ev, "orderId"), oid);
    cr_expect_str_eq(str(ev, "userId"), "user-alice");
    cr_expect_eq(int_of(ev, "totalMinor"), 20498);
    cr_expect_str_eq(str(ev, "currency"), "USD");
    assert_ledger_matches_wallets();
    json_decref(order);
}

Test(shop, checkout_with_items_leaves_the_cart_alone) {
    json_decref(ok("user-alice", "addToCart", "{\"productId\":\"prod-5\",\"quantity\":1}"));
    json_t *order =
        ok("user-alice", "checkout",
           "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-2\",\"quantity\":2},"
           "{\"productId\":\"prod-2\",\"quantity\":1}]}");
    cr_expect_eq(int_of(order, "totalMinor"), 3 * 4500);
    cr_expect_eq(json_array_size(json_object_get(order, "items")), 1); /* merged */
    cr_expect_eq(stock("prod-2"), 47);
    cr_expect_eq(count("carts", "{\"userId\":\"user-alice\"}"), 1);
    json_decref(order);
}

Test(shop, checkout_converts_foreign_prices_into_the_wallet_currency) {
    /* EUR product from the USD wallet: 249.00 EUR × 1.087 = 270.663 USD → 27066 cents. */
    json_t *order =
        ok("user-alice", "checkout",
           "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-4\",\"quantity\":1}]}");
    cr_expect_eq(int_of(order, "totalMinor"), 27066);
    cr_expect_str_eq(str(order, "currency"), "USD");
    json_t *item = json_array_get(json_object_get(order, "items"), 0);
    cr_expect_eq(int_of(item, "unitPriceMinor"), 24900);
    cr_expect_str_eq(str(item, "currency"), "EUR");
    cr_expect_eq(int_of(item, "lineTotalMinor"), 24900);
    cr_expect_eq(int_of(item, "chargedMinor"), 27066);
    cr_expect_str_eq(str(item, "fxRate"), "1.087");
    cr_expect_eq(balance("user-alice:USD"), 500000 - 27066);
    cr_expect_eq(balance("user-alice:EUR"), 200000);
    json_decref(order);

    /* Mixed currencies, zero-decimal JPY into EUR: 2 × 16800 JPY × 0.006196 = 208.1856 EUR
     * → 20819 cents; plus 42.00 EUR. Each line is converted and rounded on its own. */
    order = ok("user-bob", "checkout",
               "{\"walletCurrency\":\"EUR\",\"items\":[{\"productId\":\"prod-6\",\"quantity\":2},"
               "{\"productId\":\"prod-5\",\"quantity\":1}]}");
    cr_expect_eq(int_of(order, "totalMinor"), 20819 + 4200);
    cr_expect_eq(balance("user-bob:EUR"), 100000 - 25019);
    assert_ledger_matches_wallets();
    json_decref(order);
}

Test(shop, checkout_refuses_inactive_products) {
    conflict("product_inactive", "user-alice", "checkout",
             "{\"walletCurrency\":\"EUR\",\"items\":[{\"productId\":\"prod-8\",\"quantity\":1}]}");
    conflict("product_inactive", "user-alice", "addToCart",
             "{\"productId\":\"prod-8\",\"quantity\":1}");
}

Test(shop, checkout_refuses_to_oversell_and_changes_nothing) {
    err_t err =
        fails(ERR_CONFLICT, "user-alice", "checkout",
              "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":1},"
              "{\"productId\":\"prod-3\",\"quantity\":4}]}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")),
                     "insufficient_stock");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "productId")), "prod-3");
    cr_expect_eq(json_integer_value(json_object_get(err.details, "available")), 3);
    err_clear(&err);
    cr_expect_eq(stock("prod-1"), 25);
    cr_expect_eq(stock("prod-3"), 3);
    cr_expect_eq(balance("user-alice:USD"), 500000);
    cr_expect_eq(count("orders", "{}"), 0);
    cr_expect_eq(json_array_size(events), 0);

    /* The last three are fine; then none is left. */
    place("user-alice",
          "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-3\",\"quantity\":3}]}");
    cr_expect_eq(stock("prod-3"), 0);
    conflict("insufficient_stock", "user-bob", "checkout",
             "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-3\",\"quantity\":1}]}");
}

Test(shop, checkout_needs_an_fx_rate) {
    json_decref(ok("user-alice", "topUpWallet", "{\"currency\":\"GBP\",\"amountMinor\":100000}"));
    err_t err =
        fails(ERR_CONFLICT, "user-alice", "checkout",
              "{\"walletCurrency\":\"GBP\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":1}]}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")), "no_fx_rate");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "from")), "USD");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "to")), "GBP");
    err_clear(&err);
    cr_expect_eq(stock("prod-1"), 25);
    cr_expect_eq(balance("user-alice:GBP"), 100000);
}

Test(shop, checkout_never_takes_a_wallet_below_zero) {
    /* 5 × 249.00 EUR = 1245.00 EUR; Bob has 1000.00. */
    err_t err =
        fails(ERR_CONFLICT, "user-bob", "checkout",
              "{\"walletCurrency\":\"EUR\",\"items\":[{\"productId\":\"prod-4\",\"quantity\":5}]}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")),
                     "insufficient_funds");
    cr_expect_eq(json_integer_value(json_object_get(err.details, "required")), 124500);
    cr_expect_eq(json_integer_value(json_object_get(err.details, "available")), 100000);
    err_clear(&err);
    cr_expect_eq(stock("prod-4"), 15);
    cr_expect_eq(balance("user-bob:EUR"), 100000);

    /* No wallet at all in that currency: nothing available. */
    err =
        fails(ERR_CONFLICT, "user-bob", "checkout",
              "{\"walletCurrency\":\"JPY\",\"items\":[{\"productId\":\"prod-7\",\"quantity\":1}]}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")),
                     "insufficient_funds");
    cr_expect_eq(json_integer_value(json_object_get(err.details, "available")), 0);
    err_clear(&err);
}

Test(shop, checkout_of_an_empty_cart_is_a_conflict) {
    conflict("cart_empty", "user-alice", "checkout", "{\"walletCurrency\":\"USD\"}");
}

Test(shop, unknown_products_are_not_found) {
    err_t err =
        fails(ERR_NOT_FOUND, "user-alice", "checkout",
              "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"nope\",\"quantity\":1}]}");
    cr_expect_str_eq(err.msg, "Product \"nope\" not found");
    err_clear(&err);
    err =
        fails(ERR_NOT_FOUND, "user-alice", "addToCart", "{\"productId\":\"nope\",\"quantity\":1}");
    err_clear(&err);
}

/* ---- idempotency ---- */

Test(shop, a_replayed_checkout_answers_the_first_result_and_charges_once) {
    const char *input = "{\"walletCurrency\":\"USD\",\"idempotencyKey\":\"k-1\","
                        "\"items\":[{\"productId\":\"prod-1\",\"quantity\":1}]}";
    json_t *first = ok("user-alice", "checkout", input);
    json_t *second = ok("user-alice", "checkout", input);
    cr_expect(json_equal(first, second));
    /* The same input written differently (5.0 for 5, other member order) is the same request. */
    json_t *third =
        ok("user-alice", "checkout",
           "{\"items\":[{\"quantity\":1.0,\"productId\":\"prod-1\"}],\"idempotencyKey\":\"k-1\","
           "\"walletCurrency\":\"USD\"}");
    cr_expect(json_equal(first, third));
    cr_expect_eq(balance("user-alice:USD"), 500000 - 7999);
    cr_expect_eq(stock("prod-1"), 24);
    cr_expect_eq(count("orders", "{}"), 1);
    cr_expect_eq(count("ledger", "{\"kind\":\"payment\"}"), 1);
    cr_expect_eq(json_array_size(events), 1);
    json_decref(first);
    json_decref(second);
    json_decref(third);

    /* Another user's key of the same name is theirs alone. */
    json_decref(ok("user-bob", "checkout", input));
    cr_expect_eq(count("orders", "{}"), 2);
}

Test(shop, an_idempotency_key_reused_with_another_input_is_a_conflict) {
    place("user-alice", "{\"walletCurrency\":\"USD\",\"idempotencyKey\":\"k-2\","
                        "\"items\":[{\"productId\":\"prod-1\",\"quantity\":1}]}");
    err_t err = fails(ERR_CONFLICT, "user-alice", "checkout",
                      "{\"walletCurrency\":\"USD\",\"idempotencyKey\":\"k-2\","
                      "\"items\":[{\"productId\":\"prod-1\",\"quantity\":2}]}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")),
                     "idempotency_key_reused");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "idempotencyKey")), "k-2");
    err_clear(&err);
    cr_expect_eq(stock("prod-1"), 24);
    /* Keys are per procedure: the same key on a top-up is a new request. */
    json_decref(ok("user-alice", "topUpWallet",
                   "{\"currency\":\"USD\",\"amountMinor\":5,\"idempotencyKey\":\"k-2\"}"));
}

Test(shop, a_failed_call_does_not_burn_its_idempotency_key) {
    const char *input = "{\"walletCurrency\":\"USD\",\"idempotencyKey\":\"k-3\","
                        "\"items\":[{\"productId\":\"prod-4\",\"quantity\":1}]}";
    json_t *eurusd = store_json("delete", "{\"bucket\":\"fx-rates\",\"key\":\"EUR:USD\"}");
    json_decref(eurusd);
    conflict("no_fx_rate", "user-alice", "checkout", input);
    json_decref(store_json("insert",
                           "{\"bucket\":\"fx-rates\",\"data\":{\"id\":\"EUR:USD\",\"base\":\"EUR\","
                           "\"quote\":\"USD\",\"rate\":1.087}}"));
    json_t *order = ok("user-alice", "checkout", input);
    cr_expect_eq(int_of(order, "totalMinor"), 27066);
    json_decref(order);
}

/* The stored hash is "sha256:" and the hex SHA-256 of "<procedure>\n<canonical input with
 * sorted members>": records written by earlier versions must keep matching. */
Test(shop, the_idempotency_record_holds_the_input_hash_and_the_answer) {
    json_t *order = ok("user-alice", "checkout",
                       "{\"walletCurrency\":\"USD\",\"idempotencyKey\":\"h-1\","
                       "\"items\":[{\"productId\":\"prod-1\",\"quantity\":1}]}");
    json_t *rec = get("idempotency", "user-alice:checkout:h-1");
    cr_assert(json_is_object(rec));
    cr_expect_str_eq(str(rec, "inputHash"),
                     "sha256:144752636bd628004c87242070e725440b394141f3ce049b919c8b32f9037d15");
    json_t *stored = json_loads(str(rec, "result"), 0, NULL);
    cr_expect(json_equal(stored, order));
    json_decref(stored);
    json_decref(rec);
    json_decref(order);

    json_decref(ok("user-alice", "topUpWallet",
                   "{\"currency\":\"USD\",\"amountMinor\":1000,\"idempotencyKey\":\"h-2\"}"));
    rec = get("idempotency", "user-alice:topUpWallet:h-2");
    cr_expect_str_eq(str(rec, "inputHash"),
                     "sha256:772abd915873e63d22e0691c3851d31da97ffe2bdd8eb0d898a6138409c769ac");
    json_decref(rec);
}

/* Expects the first members of `o`, in this order. */
static void expect_members(const json_t *o, const char *const *names) {
    void *it = json_object_iter((json_t *)o);
    for (size_t i = 0; names[i]; i++, it = json_object_iter_next((json_t *)o, it)) {
        cr_assert_not_null(it, "member %zu missing (expected %s)", i, names[i]);
        cr_expect_str_eq(json_object_iter_key(it), names[i], "member %zu", i);
    }
}

/* Clients compare answers textually at times: the order's members come in a fixed order. */
Test(shop, checkout_answers_and_stores_members_in_a_fixed_order) {
    json_t *order = ok("user-alice", "checkout",
                       "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-4\","
                       "\"quantity\":1},{\"productId\":\"prod-1\",\"quantity\":1}]}");
    static const char *const order_members[] = {"id",        "userId",     "status",
                                                "items",     "totalMinor", "currency",
                                                "createdAt", "updatedAt",  NULL};
    static const char *const fx_item[] = {"productId",      "title",        "quantity",
                                          "unitPriceMinor", "currency",     "lineTotalMinor",
                                          "fxRate",         "chargedMinor", NULL};
    static const char *const item[] = {"productId",      "title",    "quantity",
                                       "unitPriceMinor", "currency", "lineTotalMinor",
                                       "chargedMinor",   NULL};
    expect_members(order, order_members);
    cr_expect_eq(json_object_size(order), 8);
    json_t *items = json_object_get(order, "items");
    expect_members(json_array_get(items, 0), fx_item);
    expect_members(json_array_get(items, 1), item);
    cr_expect_eq(json_object_size(json_array_get(items, 1)), 7);

    json_t *stored = get("orders", str(order, "id"));
    expect_members(stored, order_members);
    json_decref(stored);
    json_t *entries =
        store_json("where", "{\"bucket\":\"ledger\",\"filter\":{\"kind\":\"payment\"}}");
    static const char *const ledger_members[] = {
        "id",   "walletId", "userId",    "currency", "amountMinor", "balanceAfterMinor",
        "kind", "orderId",  "createdAt", NULL};
    cr_assert_eq(json_array_size(entries), 1);
    expect_members(json_array_get(entries, 0), ledger_members);
    json_decref(entries);
    json_t *audit = store_json("where", "{\"bucket\":\"audit-logs\",\"filter\":{\"action\":"
                                        "\"order_placed\"}}");
    static const char *const audit_members[] = {"id",      "action",    "userId",
                                                "details", "timestamp", NULL};
    static const char *const details_members[] = {"orderId", "totalMinor", "currency", "lines",
                                                  NULL};
    cr_assert_eq(json_array_size(audit), 1);
    expect_members(json_array_get(audit, 0), audit_members);
    expect_members(json_object_get(json_array_get(audit, 0), "details"), details_members);
    json_decref(audit);
    static const char *const event_members[] = {"orderId", "userId", "totalMinor", "currency",
                                                NULL};
    expect_members(event(0, "order.placed"), event_members);
    json_decref(order);
}

/* ---- cancel, ship, deliver ---- */

Test(shop, cancelling_restores_stock_and_refunds_the_wallet) {
    char oid[64];
    snprintf(
        oid, sizeof oid, "%s",
        place("user-alice",
              "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":2},"
              "{\"productId\":\"prod-4\",\"quantity\":1}]}"));
    cr_expect_eq(stock("prod-1"), 23);
    cr_expect_eq(stock("prod-4"), 14);
    cr_expect_eq(balance("user-alice:USD"), 500000 - 15998 - 27066);

    char input[160];
    snprintf(input, sizeof input, "{\"orderId\":\"%s\",\"reason\":\"changed my mind\"}", oid);
    json_t *order = ok("user-alice", "cancelOrder", input);
    cr_expect_str_eq(str(order, "status"), "cancelled");
    cr_expect_str_eq(str(order, "cancelReason"), "changed my mind");
    cr_expect_str_eq(str(order, "cancelledBy"), "user-alice");
    json_decref(order);
    cr_expect_eq(stock("prod-1"), 25);
    cr_expect_eq(stock("prod-4"), 15);
    cr_expect_eq(balance("user-alice:USD"), 500000);
    json_t *stored = get("orders", oid);
    cr_expect_str_eq(str(stored, "status"), "cancelled");
    json_decref(stored);
    char filter[160];
    snprintf(filter, sizeof filter, "{\"orderId\":\"%s\",\"kind\":\"refund\"}", oid);
    cr_expect_eq(count("ledger", filter), 1);
    cr_expect_eq(count("audit-logs", "{\"action\":\"order_cancelled\"}"), 1);
    const json_t *ev = event(1, "order.cancelled");
    cr_expect_str_eq(str(ev, "orderId"), oid);
    cr_expect_str_eq(str(ev, "userId"), "user-alice");
    cr_expect_str_eq(str(ev, "reason"), "changed my mind");
    assert_ledger_matches_wallets();

    /* Once is enough. */
    err_t err = fails(ERR_CONFLICT, "user-alice", "cancelOrder", order_input(oid));
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")),
                     "invalid_transition");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "from")), "cancelled");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "to")), "cancelled");
    err_clear(&err);
    cr_expect_eq(balance("user-alice:USD"), 500000);
}

Test(shop, customers_cannot_see_or_touch_other_peoples_orders) {
    char oid[64];
    snprintf(
        oid, sizeof oid, "%s",
        place(
            "user-alice",
            "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-2\",\"quantity\":1}]}"));
    err_t err = fails(ERR_NOT_FOUND, "user-bob", "cancelOrder", order_input(oid));
    cr_expect(strstr(err.msg, oid) != NULL);
    err_clear(&err);
    /* The same answer as for an order that does not exist. */
    err = fails(ERR_NOT_FOUND, "user-bob", "cancelOrder", "{\"orderId\":\"no-such-order\"}");
    err_clear(&err);
    cr_expect_eq(balance("user-alice:USD"), 500000 - 4500);
}

Test(shop, admins_ship_and_deliver_orders) {
    char oid[64];
    snprintf(
        oid, sizeof oid, "%s",
        place(
            "user-alice",
            "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-2\",\"quantity\":1}]}"));
    err_t err = fails(ERR_FORBIDDEN, "user-alice", "shipOrder", order_input(oid));
    err_clear(&err);
    err = fails(ERR_FORBIDDEN, "user-alice", "deliverOrder", order_input(oid));
    err_clear(&err);
    /* Refused before the lookup: an unknown order answers the same to a customer. */
    err = fails(ERR_FORBIDDEN, "user-bob", "shipOrder", "{\"orderId\":\"no-such-order\"}");
    err_clear(&err);
    conflict("invalid_transition", "admin-1", "deliverOrder", order_input(oid));

    json_t *order = ok("admin-1", "shipOrder", order_input(oid));
    cr_expect_str_eq(str(order, "status"), "shipped");
    cr_expect(json_is_integer(json_object_get(order, "shippedAt")));
    json_decref(order);
    const json_t *ev = event(1, "order.shipped");
    cr_expect_str_eq(str(ev, "orderId"), oid);
    cr_expect_str_eq(str(ev, "userId"), "user-alice");

    conflict("invalid_transition", "admin-1", "shipOrder", order_input(oid));
    conflict("invalid_transition", "user-alice", "cancelOrder",
             order_input(oid)); /* shipped: admin only */

    order = ok("admin-1", "deliverOrder", order_input(oid));
    cr_expect_str_eq(str(order, "status"), "delivered");
    json_decref(order);
    event(2, "order.delivered");
    conflict("invalid_transition", "admin-1", "cancelOrder", order_input(oid));
    conflict("invalid_transition", "admin-1", "deliverOrder", order_input(oid));
    json_t *stored = get("orders", oid);
    cr_expect_str_eq(str(stored, "status"), "delivered");
    json_decref(stored);
    cr_expect_eq(count("audit-logs", "{\"action\":\"order_shipped\"}"), 1);
    cr_expect_eq(count("audit-logs", "{\"action\":\"order_delivered\"}"), 1);

    err = fails(ERR_NOT_FOUND, "admin-1", "shipOrder", "{\"orderId\":\"no-such-order\"}");
    err_clear(&err);
}

Test(shop, an_admin_may_cancel_a_shipped_order_and_the_owner_is_refunded) {
    char oid[64];
    snprintf(
        oid, sizeof oid, "%s",
        place(
            "user-bob",
            "{\"walletCurrency\":\"EUR\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":1}]}"));
    /* 79.99 USD × 0.92 = 73.5908 EUR → 7359 cents. */
    cr_expect_eq(balance("user-bob:EUR"), 100000 - 7359);
    json_decref(ok("admin-1", "shipOrder", order_input(oid)));
    json_t *order = ok("admin-1", "cancelOrder", order_input(oid));
    cr_expect_str_eq(str(order, "cancelledBy"), "admin-1");
    json_decref(order);
    cr_expect_eq(balance("user-bob:EUR"), 100000);
    cr_expect_eq(stock("prod-1"), 25);
    assert_ledger_matches_wallets();
}

/* ---- wallets ---- */

Test(shop, a_top_up_creates_the_wallet_on_first_use) {
    json_t *w = ok("user-alice", "topUpWallet", "{\"currency\":\"JPY\",\"amountMinor\":5000}");
    cr_expect_str_eq(str(w, "id"), "user-alice:JPY");
    cr_expect_eq(int_of(w, "balanceMinor"), 5000);
    json_decref(w);
    w = ok("user-alice", "topUpWallet", "{\"currency\":\"JPY\",\"amountMinor\":250}");
    cr_expect_eq(int_of(w, "balanceMinor"), 5250);
    json_decref(w);
    cr_expect_eq(balance("user-alice:JPY"), 5250);
    cr_expect_eq(count("ledger", "{\"walletId\":\"user-alice:JPY\",\"kind\":\"topup\"}"), 2);
    const json_t *ev = event(1, "wallet.topped_up");
    cr_expect_eq(int_of(ev, "amountMinor"), 250);
    cr_expect_eq(int_of(ev, "balanceMinor"), 5250);
    assert_ledger_matches_wallets();

    /* Then it pays: 2200 JPY, no conversion. */
    place("user-alice",
          "{\"walletCurrency\":\"JPY\",\"items\":[{\"productId\":\"prod-7\",\"quantity\":1}]}");
    cr_expect_eq(balance("user-alice:JPY"), 3050);
    assert_ledger_matches_wallets();
}

Test(shop, top_ups_are_bounded_and_idempotent) {
    invalid("Invalid \"amountMinor\": expected at most 100000000", "user-alice", "topUpWallet",
            "{\"currency\":\"USD\",\"amountMinor\":100000001}");
    invalid("Missing or invalid \"amountMinor\": expected positive integer", "user-alice",
            "topUpWallet", "{\"currency\":\"USD\",\"amountMinor\":0}");
    invalid("Missing or invalid \"amountMinor\": expected positive integer", "user-alice",
            "topUpWallet", "{\"currency\":\"USD\",\"amountMinor\":-5}");
    invalid("Missing or invalid \"amountMinor\": expected positive integer", "user-alice",
            "topUpWallet", "{\"currency\":\"USD\",\"amountMinor\":10.5}");
    invalid("Missing or invalid \"amountMinor\": expected positive integer", "user-alice",
            "topUpWallet", "{\"currency\":\"USD\",\"amountMinor\":\"100\"}");
    const char *input = "{\"currency\":\"USD\",\"amountMinor\":1000,\"idempotencyKey\":\"t-1\"}";
    json_t *a = ok("user-alice", "topUpWallet", input);
    json_t *b = ok("user-alice", "topUpWallet", input);
    cr_expect(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    cr_expect_eq(balance("user-alice:USD"), 501000);
    cr_expect_eq(json_array_size(events), 1);
    conflict("idempotency_key_reused", "user-alice", "topUpWallet",
             "{\"currency\":\"USD\",\"amountMinor\":2000,\"idempotencyKey\":\"t-1\"}");
    assert_ledger_matches_wallets();
}

Test(shop, a_transfer_moves_money_with_two_ledger_entries) {
    json_t *r = ok("user-alice", "transfer",
                   "{\"toUserId\":\"user-bob\",\"currency\":\"USD\",\"amountMinor\":12345}");
    cr_expect_str_eq(str(r, "fromUserId"), "user-alice");
    cr_expect_str_eq(str(r, "toUserId"), "user-bob");
    cr_expect_eq(int_of(json_object_get(r, "wallet"), "balanceMinor"), 500000 - 12345);
    char tid[64];
    snprintf(tid, sizeof tid, "%s", str(r, "transferId"));
    json_decref(r);
    cr_expect_eq(balance("user-alice:USD"), 487655);
    cr_expect_eq(balance("user-bob:USD"), 312345);
    char filter[160];
    snprintf(filter, sizeof filter, "{\"transferId\":\"%s\"}", tid);
    json_t *entries =
        store_json("where", "{\"bucket\":\"ledger\",\"filter\":{\"kind\":\"transfer_out\"}}");
    cr_assert_eq(json_array_size(entries), 1);
    cr_expect_eq(int_of(json_array_get(entries, 0), "amountMinor"), -12345);
    cr_expect_str_eq(str(json_array_get(entries, 0), "counterparty"), "user-bob");
    json_decref(entries);
    entries = store_json("where", "{\"bucket\":\"ledger\",\"filter\":{\"kind\":\"transfer_in\"}}");
    cr_assert_eq(json_array_size(entries), 1);
    cr_expect_eq(int_of(json_array_get(entries, 0), "amountMinor"), 12345);
    cr_expect_str_eq(str(json_array_get(entries, 0), "counterparty"), "user-alice");
    json_decref(entries);
    const json_t *ev = event(0, "wallet.transferred");
    cr_expect_str_eq(str(ev, "transferId"), tid);
    cr_expect_eq(int_of(ev, "amountMinor"), 12345);
    assert_ledger_matches_wallets();

    /* The recipient's wallet is created when missing. */
    json_decref(ok("user-alice", "topUpWallet", "{\"currency\":\"GBP\",\"amountMinor\":900}"));
    json_decref(ok("user-alice", "transfer",
                   "{\"toUserId\":\"user-bob\",\"currency\":\"GBP\",\"amountMinor\":900}"));
    cr_expect_eq(balance("user-alice:GBP"), 0);
    cr_expect_eq(balance("user-bob:GBP"), 900);
    assert_ledger_matches_wallets();
}

Test(shop, transfers_are_checked) {
    invalid("Invalid \"toUserId\": cannot transfer to yourself", "user-alice", "transfer",
            "{\"toUserId\":\"user-alice\",\"currency\":\"USD\",\"amountMinor\":1}");
    err_t err = fails(ERR_CONFLICT, "user-alice", "transfer",
                      "{\"toUserId\":\"user-bob\",\"currency\":\"USD\",\"amountMinor\":500001}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "reason")),
                     "insufficient_funds");
    cr_expect_eq(json_integer_value(json_object_get(err.details, "available")), 500000);
    err_clear(&err);
    conflict("insufficient_funds", "user-alice", "transfer",
             "{\"toUserId\":\"user-bob\",\"currency\":\"CHF\",\"amountMinor\":1}");
    err = fails(ERR_NOT_FOUND, "user-alice", "transfer",
                "{\"toUserId\":\"user-nobody\",\"currency\":\"USD\",\"amountMinor\":1}");
    err_clear(&err);
    cr_expect_eq(balance("user-alice:USD"), 500000);
    cr_expect_eq(balance("user-bob:USD"), 300000);
    cr_expect_eq(json_array_size(events), 0);

    const char *input = "{\"toUserId\":\"user-bob\",\"currency\":\"EUR\",\"amountMinor\":100,"
                        "\"idempotencyKey\":\"x\"}";
    json_t *a = ok("user-alice", "transfer", input);
    json_t *b = ok("user-alice", "transfer", input);
    cr_expect(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    cr_expect_eq(balance("user-bob:EUR"), 100100);
    assert_ledger_matches_wallets();
}

/* ---- carts ---- */

Test(shop, the_cart_answers_current_prices_and_totals_per_currency) {
    json_decref(ok("user-alice", "addToCart", "{\"productId\":\"prod-1\",\"quantity\":1}"));
    json_decref(ok("user-alice", "addToCart", "{\"productId\":\"prod-1\",\"quantity\":2}"));
    json_t *cart = ok("user-alice", "addToCart", "{\"productId\":\"prod-5\",\"quantity\":2}");
    json_t *items = json_object_get(cart, "items");
    cr_assert_eq(json_array_size(items), 2);
    json_t *kb = json_array_get(items, 0);
    cr_expect_str_eq(str(kb, "title"), "Wireless Keyboard");
    cr_expect_eq(int_of(kb, "quantity"), 3);
    cr_expect_eq(int_of(kb, "unitPriceMinor"), 7999);
    cr_expect_eq(int_of(kb, "lineTotalMinor"), 23997);
    json_t *totals = json_object_get(cart, "totals");
    cr_assert_eq(json_array_size(totals), 2);
    cr_expect_str_eq(str(json_array_get(totals, 0), "currency"), "USD");
    cr_expect_eq(int_of(json_array_get(totals, 0), "totalMinor"), 23997);
    cr_expect_str_eq(str(json_array_get(totals, 1), "currency"), "EUR");
    cr_expect_eq(int_of(json_array_get(totals, 1), "totalMinor"), 8400);
    json_decref(cart);

    /* Prices are read when the cart is shown, not when the product was added. */
    json_decref(store_json(
        "update", "{\"bucket\":\"products\",\"key\":\"prod-5\",\"data\":{\"priceMinor\":4000}}"));
    cart = ok("user-alice", "updateCartItem", "{\"productId\":\"prod-1\",\"quantity\":1}");
    totals = json_object_get(cart, "totals");
    cr_expect_eq(int_of(json_array_get(totals, 0), "totalMinor"), 7999);
    cr_expect_eq(int_of(json_array_get(totals, 1), "totalMinor"), 8000);
    json_decref(cart);

    cart = ok("user-alice", "removeFromCart", "{\"productId\":\"prod-1\"}");
    cr_expect_eq(json_array_size(json_object_get(cart, "items")), 1);
    json_decref(cart);
    cart =
        ok("user-alice", "removeFromCart", "{\"productId\":\"prod-1\"}"); /* already gone: fine */
    json_decref(cart);
    cart = ok("user-bob", "getCart", NULL);
    cr_expect_eq(json_array_size(json_object_get(cart, "items")), 0);
    json_decref(cart);

    err_t err = fails(ERR_NOT_FOUND, "user-alice", "updateCartItem",
                      "{\"productId\":\"prod-2\",\"quantity\":1}");
    err_clear(&err);
    json_decref(ok("user-alice", "addToCart", "{\"productId\":\"prod-2\",\"quantity\":999}"));
    invalid("Invalid \"quantity\": a cart line holds at most 999 (999 already in the cart)",
            "user-alice", "addToCart", "{\"productId\":\"prod-2\",\"quantity\":1}");
    cr_expect_eq(json_array_size(events), 0);
}

Test(shop, a_product_deactivated_in_the_cart_is_shown_unavailable) {
    json_decref(ok("user-alice", "addToCart", "{\"productId\":\"prod-2\",\"quantity\":1}"));
    json_decref(store_json(
        "update", "{\"bucket\":\"products\",\"key\":\"prod-2\",\"data\":{\"active\":false}}"));
    json_t *cart = ok("user-alice", "getCart", "{}");
    json_t *item = json_array_get(json_object_get(cart, "items"), 0);
    cr_expect(json_is_false(json_object_get(item, "available")));
    cr_expect_eq(json_array_size(json_object_get(cart, "totals")), 0);
    json_decref(cart);
    conflict("product_inactive", "user-alice", "checkout", "{\"walletCurrency\":\"USD\"}");
    cr_expect_eq(count("carts", "{\"userId\":\"user-alice\"}"), 1);
}

/* ---- validation and dispatch ---- */

Test(shop, inputs_are_validated_naming_the_field) {
    invalid("Missing or invalid \"productId\": expected non-empty string", "user-alice",
            "addToCart", "{\"quantity\":1}");
    invalid("Missing or invalid \"productId\": expected non-empty string", "user-alice",
            "addToCart", "{\"productId\":\"\",\"quantity\":1}");
    invalid("Missing or invalid \"productId\": expected non-empty string", "user-alice",
            "addToCart", "{\"productId\":7,\"quantity\":1}");
    invalid("Missing or invalid \"quantity\": expected positive integer", "user-alice", "addToCart",
            "{\"productId\":\"prod-1\"}");
    invalid("Missing or invalid \"quantity\": expected positive integer", "user-alice", "addToCart",
            "{\"productId\":\"prod-1\",\"quantity\":0}");
    invalid("Missing or invalid \"quantity\": expected positive integer", "user-alice", "addToCart",
            "{\"productId\":\"prod-1\",\"quantity\":1.5}");
    invalid("Invalid \"quantity\": expected at most 999", "user-alice", "addToCart",
            "{\"productId\":\"prod-1\",\"quantity\":1000}");
    invalid("Unknown field \"priceMinor\" for procedure \"addToCart\"", "user-alice", "addToCart",
            "{\"productId\":\"prod-1\",\"quantity\":1,\"priceMinor\":1}");
    invalid("Missing or invalid \"walletCurrency\": expected ISO 4217 currency code (3 uppercase "
            "letters)",
            "user-alice", "checkout", "{}");
    invalid("Missing or invalid \"walletCurrency\": expected ISO 4217 currency code (3 uppercase "
            "letters)",
            "user-alice", "checkout", "{\"walletCurrency\":\"usd\"}");
    invalid("Invalid \"walletCurrency\": unsupported currency \"XYZ\"", "user-alice", "checkout",
            "{\"walletCurrency\":\"XYZ\"}");
    invalid("Missing or invalid \"items\": expected non-empty array", "user-alice", "checkout",
            "{\"walletCurrency\":\"USD\",\"items\":[]}");
    invalid("Missing or invalid \"items[1]\": expected object", "user-alice", "checkout",
            "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":1},3]}");
    invalid("Missing or invalid \"items[0].quantity\": expected positive integer", "user-alice",
            "checkout", "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-1\"}]}");
    invalid("Unknown field \"priceMinor\" in \"items[0]\" (expected productId, quantity)",
            "user-alice", "checkout",
            "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":1,"
            "\"priceMinor\":1}]}");
    invalid("Missing or invalid \"idempotencyKey\": expected non-empty string", "user-alice",
            "checkout",
            "{\"walletCurrency\":\"USD\",\"idempotencyKey\":\"\",\"items\":[{\"productId\":\"prod-"
            "1\",\"quantity\":1}]}");
    invalid("Missing or invalid \"orderId\": expected non-empty string", "user-alice",
            "cancelOrder", "{}");
    invalid("Missing or invalid \"toUserId\": expected non-empty string", "user-alice", "transfer",
            "{\"currency\":\"USD\",\"amountMinor\":1}");
    invalid("Missing or invalid \"input\": expected object", "user-alice", "getCart", "[1]");

    err_t err = fails(ERR_VALIDATION, "user-alice", "addToCart", "{\"quantity\":1}");
    cr_expect_str_eq(json_string_value(json_object_get(err.details, "field")), "productId");
    err_clear(&err);
    cr_expect_eq(stock("prod-1"), 25);
    cr_expect_eq(json_array_size(events), 0);
}

Test(shop, callers_must_be_logged_in_and_procedures_must_exist) {
    err_t err = fails(ERR_UNAUTHORIZED, NULL, "getCart", "{}");
    cr_expect_str_eq(err.msg, "Authentication required");
    err_clear(&err);
    err = fails(ERR_UNKNOWN_OPERATION, "user-alice", "refundEverything", "{}");
    cr_expect_str_eq(err.msg, "Unknown procedure \"refundEverything\"");
    err_clear(&err);
}

Test(shop, a_failing_event_sink_does_not_undo_the_write) {
    emit_status = -1;
    json_decref(ok("user-alice", "topUpWallet", "{\"currency\":\"USD\",\"amountMinor\":1}"));
    cr_expect_eq(balance("user-alice:USD"), 500001);
    cr_expect_eq(json_array_size(events), 1);
}

Test(shop, the_procedure_list_describes_every_procedure) {
    buf_t out;
    buf_init(&out, 0);
    shop_list(shop, &out);
    json_t *list = json_loadb(out.data, out.len, 0, NULL);
    cr_assert_not_null(list, "%.*s", (int)out.len, out.data);
    json_t *procs = json_object_get(list, "procedures");
    const char *names[] = {"getCart",     "addToCart",   "updateCartItem", "removeFromCart",
                           "checkout",    "cancelOrder", "shipOrder",      "deliverOrder",
                           "topUpWallet", "transfer"};
    cr_assert_eq(json_array_size(procs), sizeof names / sizeof *names);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        json_t *p = json_array_get(procs, i);
        cr_expect_str_eq(str(p, "name"), names[i]);
        cr_expect(json_string_length(json_object_get(p, "description")) > 10);
        cr_expect(json_is_object(json_object_get(json_object_get(p, "input"), "properties")));
    }
    json_decref(list);
    buf_cleanup(&out);
}

Test(shop, the_service_needs_its_buckets) {
    char path[128];
    snprintf(path, sizeof path, "%s/empty.db", dir);
    err_t err = ERR_INIT;
    store_t *empty = store_open(path, &err);
    cr_assert_not_null(empty, "%s", err.msg);
    cr_expect_null(shop_new(empty, NULL, NULL, NULL, &err));
    cr_expect_eq(err.code, ERR_BUCKET_NOT_DEFINED);
    cr_expect(strstr(err.msg, "\"users\"") != NULL, "%s", err.msg);
    store_close(empty);
}

/* ---- the shipped queries ---- */

static json_t *query(const char *name, const char *params_json, const char *user) {
    json_t *params = params_json ? json_loads(params_json, 0, NULL) : NULL;
    store_session_t session = {user};
    buf_t out;
    buf_init(&out, 0);
    err_t err = ERR_INIT;
    cr_assert_eq(store_query_eval(st, name, params, &session, &out, NULL, &err), 0, "query %s: %s",
                 name, err.msg);
    json_t *v = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
    buf_cleanup(&out);
    json_decref(params);
    return v;
}

Test(shop, the_shipped_queries_answer_from_the_seed) {
    place("user-alice",
          "{\"walletCurrency\":\"USD\",\"items\":[{\"productId\":\"prod-1\",\"quantity\":1}]}");
    json_t *v = query("product-catalog", NULL, NULL);
    cr_expect_eq(json_array_size(v), 7); /* prod-8 is inactive */
    json_decref(v);
    v = query("low-stock-products", NULL, NULL);
    cr_assert_eq(json_array_size(v), 3);
    cr_expect_str_eq(str(json_array_get(v, 0), "id"), "prod-8");
    cr_expect_str_eq(str(json_array_get(v, 1), "id"), "prod-3");
    cr_expect_str_eq(str(json_array_get(v, 2), "id"), "prod-7");
    json_decref(v);
    v = query("user-orders", "{\"userId\":\"user-alice\"}", NULL);
    cr_expect_eq(json_array_size(v), 1);
    json_decref(v);
    v = query("order-count", "{\"userId\":\"user-bob\"}", NULL);
    cr_expect_eq(json_integer_value(v), 0);
    json_decref(v);
    v = query("recent-orders", NULL, NULL);
    cr_expect_eq(json_array_size(v), 1);
    json_decref(v);
    v = query("categories", NULL, NULL);
    cr_expect_eq(json_array_size(v), 3);
    json_decref(v);
    v = query("products-by-category", "{\"categoryId\":\"cat-books\"}", NULL);
    cr_expect_eq(json_array_size(v), 2);
    json_decref(v);
    v = query("product-by-slug", "{\"slug\":\"usb-c-hub\"}", NULL);
    cr_expect_str_eq(str(v, "id"), "prod-2");
    json_decref(v);
    v = query("my-orders", NULL, "user-alice");
    cr_expect_eq(json_array_size(v), 1);
    json_decref(v);
    v = query("my-orders", NULL, "user-bob");
    cr_expect_eq(json_array_size(v), 0);
    json_decref(v);
    v = query("my-wallets", NULL, "user-alice");
    cr_expect_eq(json_array_size(v), 2);
    json_decref(v);
    v = query("my-cart", NULL, "user-alice");
    cr_expect_eq(json_array_size(v), 0);
    json_decref(v);
    v = query("my-ledger", NULL, "user-alice");
    cr_assert_eq(json_array_size(v), 3);
    cr_expect_str_eq(str(json_array_get(v, 0), "kind"), "payment"); /* newest first */
    json_decref(v);
}
