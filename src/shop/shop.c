/* The shop service: dispatch, input checks, reads, the one-transaction write batch,
 * idempotency and the procedure catalogue (see shop.h and shop_int.h). */
#include "shop/shop.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "shop/shop_int.h"
#include "store/schema.h"

/* ---- the procedure catalogue ---- */

typedef int (*proc_fn)(shop_ctx_t *c);

typedef struct {
    const char *name;
    proc_fn fn;
    const char *const *fields; /* allowed input fields, NULL-terminated */
    bool admin_only;
    const char *description;
    const char *input; /* JSON schema of the input */
} proc_t;

static const char *const f_none[] = {NULL};
static const char *const f_cart_line[] = {"productId", "quantity", NULL};
static const char *const f_cart_remove[] = {"productId", NULL};
static const char *const f_checkout[] = {"walletCurrency", "items", "idempotencyKey", NULL};
static const char *const f_cancel[] = {"orderId", "reason", NULL};
static const char *const f_order[] = {"orderId", NULL};
static const char *const f_topup[] = {"currency", "amountMinor", "idempotencyKey", NULL};
static const char *const f_transfer[] = {"toUserId", "currency", "amountMinor", "idempotencyKey",
                                         NULL};

/* Input schemas (JSON Schema vocabulary) and descriptions, as procedures.list shows them. */
/* clang-format off */
#define S_PRODUCT "\"productId\":{\"type\":\"string\",\"minLength\":1}"
#define S_QTY "\"quantity\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":999}"
#define S_CUR(f) "\"" f "\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}$\"," \
    "\"description\":\"ISO 4217 code\"}"
#define S_IDEM "\"idempotencyKey\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128}"
#define S_AMOUNT "\"amountMinor\":{\"type\":\"integer\",\"minimum\":1," \
    "\"description\":\"minor units\"}"
#define S_ORDER "\"orderId\":{\"type\":\"string\",\"minLength\":1}"
#define S_OBJ(req, props) \
    "{\"type\":\"object\",\"required\":[" req "],\"properties\":{" props "}}"

#define IN_NONE "{\"type\":\"object\",\"properties\":{}}"
#define IN_LINE S_OBJ("\"productId\",\"quantity\"", S_PRODUCT "," S_QTY)
#define IN_REMOVE S_OBJ("\"productId\"", S_PRODUCT)
#define IN_CHECKOUT S_OBJ("\"walletCurrency\"", S_CUR("walletCurrency") "," \
    "\"items\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":100,\"items\":" IN_LINE "}," S_IDEM)
#define IN_CANCEL S_OBJ("\"orderId\"", \
    S_ORDER ",\"reason\":{\"type\":\"string\",\"maxLength\":500}")
#define IN_ORDER S_OBJ("\"orderId\"", S_ORDER)
#define IN_TOPUP S_OBJ("\"currency\",\"amountMinor\"", S_CUR("currency") "," S_AMOUNT "," S_IDEM)
#define IN_TRANSFER S_OBJ("\"toUserId\",\"currency\",\"amountMinor\"", \
    "\"toUserId\":{\"type\":\"string\",\"minLength\":1}," S_CUR("currency") "," S_AMOUNT "," S_IDEM)

#define CART_ANSWER "Answers the cart with current prices: {items:[{productId,title,quantity," \
    "unitPriceMinor,currency,lineTotalMinor,available}],totals:[{currency,totalMinor}]}."

static const proc_t procs[] = {
    {"getCart", shop_proc_get_cart, f_none, false,
     "The caller's cart. " CART_ANSWER, IN_NONE},
    {"addToCart", shop_proc_add_to_cart, f_cart_line, false,
     "Adds quantity of an active product to the caller's cart (to an existing line if any). "
     CART_ANSWER, IN_LINE},
    {"updateCartItem", shop_proc_update_cart_item, f_cart_line, false,
     "Sets the quantity of a line of the caller's cart. " CART_ANSWER, IN_LINE},
    {"removeFromCart", shop_proc_remove_from_cart, f_cart_remove, false,
     "Removes a product from the caller's cart (no error when it is not there). " CART_ANSWER,
     IN_REMOVE},
    {"checkout", shop_proc_checkout, f_checkout, false,
     "Places an order for `items` (else the cart, which is then emptied), paid from the "
     "caller's wallet in walletCurrency at server-side prices and FX rates. Answers the order. "
     "Emits order.placed.", IN_CHECKOUT},
    {"cancelOrder", shop_proc_cancel_order, f_cancel, false,
     "Cancels an order (customers: their own, while paid; admins: any not yet delivered), "
     "restoring stock and refunding the wallet. Answers the order. Emits order.cancelled.",
     IN_CANCEL},
    {"shipOrder", shop_proc_ship_order, f_order, true,
     "Admin: marks a paid order shipped. Answers the order. Emits order.shipped.", IN_ORDER},
    {"deliverOrder", shop_proc_deliver_order, f_order, true,
     "Admin: marks a shipped order delivered. Answers the order. Emits order.delivered.", IN_ORDER},
    {"topUpWallet", shop_proc_top_up_wallet, f_topup, false,
     "Adds amountMinor to the caller's wallet in currency (created on first use). Answers the "
     "wallet {id,userId,currency,balanceMinor}. Emits wallet.topped_up.", IN_TOPUP},
    {"transfer", shop_proc_transfer, f_transfer, false,
     "Moves amountMinor from the caller's wallet to another user's wallet in the same currency "
     "(created when missing). Answers {transferId,fromUserId,toUserId,currency,amountMinor,"
     "wallet}. Emits wallet.transferred.", IN_TRANSFER},
};
/* clang-format on */
#define PROC_COUNT (sizeof procs / sizeof procs[0])

static const char *const required_buckets[] = {B_USERS,   B_CATEGORIES, B_PRODUCTS, B_CARTS,
                                               B_WALLETS, B_LEDGER,     B_ORDERS,   B_AUDIT,
                                               B_FX,      B_IDEM};

shop_t *shop_new(store_t *st, const shop_config_t *cfg, shop_emit_fn emit, void *emit_udata,
                 err_t *err) {
    for (size_t i = 0; i < sizeof required_buckets / sizeof *required_buckets; i++) {
        if (!store_bucket_get(st, required_buckets[i])) {
            err_set(err, ERR_BUCKET_NOT_DEFINED,
                    "The shop needs bucket \"%s\", which is not defined", required_buckets[i]);
            return NULL;
        }
    }
    shop_t *s = xcalloc(1, sizeof *s);
    s->st = st;
    s->emit = emit;
    s->emit_udata = emit_udata;
    /* Fetched once: with EVP_sha256(), every EVP_Digest call looks the implementation up. */
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->max_topup_minor =
        cfg && cfg->max_topup_minor > 0 ? cfg->max_topup_minor : SHOP_DEFAULT_MAX_TOPUP;
    if (s->max_topup_minor > MONEY_MAX_MINOR) s->max_topup_minor = MONEY_MAX_MINOR;
    s->max_transfer_minor =
        cfg && cfg->max_transfer_minor > 0 ? cfg->max_transfer_minor : s->max_topup_minor;
    if (s->max_transfer_minor > MONEY_MAX_MINOR) s->max_transfer_minor = MONEY_MAX_MINOR;
    return s;
}

void shop_free(shop_t *s) {
    if (!s) return;
    EVP_MD_free(s->sha256);
    free(s);
}

void shop_list(shop_t *s, buf_t *out) {
    (void)s;
    buf_append_str(out, "{\"procedures\":[");
    for (size_t i = 0; i < PROC_COUNT; i++) {
        if (i) buf_append_char(out, ',');
        buf_append_str(out, "{\"name\":");
        json_write_string(out, procs[i].name, strlen(procs[i].name));
        buf_append_str(out, ",\"description\":");
        json_write_string(out, procs[i].description, strlen(procs[i].description));
        buf_printf(out, ",\"adminOnly\":%s,\"input\":%s}", procs[i].admin_only ? "true" : "false",
                   procs[i].input);
    }
    buf_append_str(out, "]}");
}

/* ---- errors ---- */

static void field_details(err_t *err, const char *field) {
    json_t *d = json_object();
    json_object_set_new(d, "field", json_string(field));
    err_details_take(err, d);
}

int shop_invalid(shop_ctx_t *c, const char *field, const char *fmt, ...) {
    char msg[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(c->err, ERR_VALIDATION, "%s", msg);
    field_details(c->err, field);
    return -1;
}

int shop_conflict(shop_ctx_t *c, const char *reason, json_t *extra, const char *fmt, ...) {
    char msg[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(c->err, ERR_CONFLICT, "%s", msg);
    json_t *d = json_object();
    json_object_set_new(d, "reason", json_string(reason));
    if (extra) json_object_update(d, extra);
    json_decref(extra);
    err_details_take(c->err, d);
    return -1;
}

int shop_insufficient_funds(shop_ctx_t *c, int64_t required, int64_t available, const char *currency) {
    return shop_conflict(c, "insufficient_funds",
                         json_pack("{s:I, s:I, s:s}", "required", (json_int_t)required, "available",
                                   (json_int_t)available, "currency", currency),
                         "Insufficient funds in the %s wallet", currency);
}

int shop_not_found(shop_ctx_t *c, const char *what, const char *id) {
    err_set(c->err, ERR_NOT_FOUND, "%s \"%.200s\" not found", what, id);
    return -1;
}

/* ---- input checks ---- */

int shop_in_string(shop_ctx_t *c, const json_t *obj, const char *field, const char *label,
                   bool required, size_t max_len, const char **out) {
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (!required) return 0;
        return shop_invalid(c, label, "Missing or invalid \"%s\": expected non-empty string",
                            label);
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return shop_invalid(c, label, "Missing or invalid \"%s\": expected non-empty string",
                            label);
    if (json_string_length(v) > max_len)
        return shop_invalid(c, label, "Invalid \"%s\": expected at most %zu bytes", label, max_len);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return shop_invalid(c, label, "Invalid \"%s\": must not contain NUL characters", label);
    *out = json_string_value(v);
    return 1;
}

int shop_in_int(shop_ctx_t *c, const json_t *obj, const char *field, const char *label,
                bool required, int64_t max, int64_t *out) {
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (!required) return 0;
        return shop_invalid(c, label, "Missing or invalid \"%s\": expected positive integer",
                            label);
    }
    int64_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v)) {
        /* 5.0 is 5 (JavaScript has one number type); 5.5 is not an integer. */
        double d = json_real_value(v);
        if (!(d >= 1 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
            return shop_invalid(c, label, "Missing or invalid \"%s\": expected positive integer",
                                label);
        n = (int64_t)d;
    } else {
        return shop_invalid(c, label, "Missing or invalid \"%s\": expected positive integer",
                            label);
    }
    if (n < 1)
        return shop_invalid(c, label, "Missing or invalid \"%s\": expected positive integer",
                            label);
    if (n > max)
        return shop_invalid(c, label, "Invalid \"%s\": expected at most %lld", label,
                            (long long)max);
    *out = n;
    return 1;
}

int shop_in_currency(shop_ctx_t *c, const char *field, bool required, const char **out) {
    json_t *v = json_object_get(c->input, field);
    if (!v || json_is_null(v)) {
        if (!required) return 0;
    } else if (json_is_string(v) && money_currency_shaped(json_string_value(v))) {
        const char *code = json_string_value(v);
        if (!money_currency_ok(code))
            return shop_invalid(c, field, "Invalid \"%s\": unsupported currency \"%s\"", field,
                                code);
        *out = code;
        return 1;
    }
    return shop_invalid(
        c, field,
        "Missing or invalid \"%s\": expected ISO 4217 currency code (3 uppercase letters)", field);
}

int shop_in_idem_key(shop_ctx_t *c, const char **out) {
    return shop_in_string(c, c->input, "idempotencyKey", "idempotencyKey", false, SHOP_MAX_IDEM_KEY,
                          out);
}

/* ---- building JSON ----
 * The objects a procedure builds have a handful of constant ASCII member names and
 * values that are ids, constants or strings the JSON reader has already checked, so
 * they are set without json_pack's format parsing and without jansson's UTF-8 checks
 * (3 % of a checkout). Members keep their order of insertion, which is the order of
 * the answer and of the stored record. */

void shop_set_str(json_t *o, const char *key, const char *value) {
    if (value) json_object_set_new_nocheck(o, key, json_stringn_nocheck(value, strlen(value)));
}

void shop_set_int(json_t *o, const char *key, int64_t value) {
    json_object_set_new_nocheck(o, key, json_integer((json_int_t)value));
}

/* ---- reads ---- */

/* Store answers are read back with the nesting bound jansson's reader had. */
#define READ_MAX_DEPTH 2048

static int read_op(shop_ctx_t *c, const char *op, json_t *req, json_t **out) {
    buf_t b;
    buf_init(&b, 0);
    int rc = store_execute(c->s->st, op, req, &b, c->err);
    json_decref(req);
    if (rc == 0) {
        json_parse_status_t st = JSON_PARSE_OK;
        json_t *v = json_parse(b.data ? b.data : "null", b.data ? b.len : 4, READ_MAX_DEPTH, &st);
        if (!v) {
            log_error("shop.read_unparsable", "op=%s reason=%s", op,
                      st == JSON_PARSE_TOO_DEEP ? "too_deep" : "syntax");
            err_set(c->err, ERR_INTERNAL, "Internal error");
            rc = -1;
        } else if (json_is_null(v)) {
            json_decref(v);
            *out = NULL;
        } else {
            *out = v;
        }
    }
    buf_cleanup(&b);
    return rc;
}

/* *out is shared with the store's record cache: read it, never change it. */
int shop_get(shop_ctx_t *c, const char *bucket, const char *key, json_t **out) {
    return store_get_shared(c->s->st, bucket, key, out, c->err);
}

int shop_where(shop_ctx_t *c, const char *bucket, json_t *filter, json_t **out) {
    json_t *arr = NULL;
    json_t *req = json_object();
    shop_set_str(req, "bucket", bucket);
    json_object_set_new_nocheck(req, "filter", filter);
    if (read_op(c, "where", req, &arr) < 0) return -1;
    *out = arr ? arr : json_array();
    return 0;
}

/* ---- the write batch ---- */

/* A write appended to the batch: `op` and `bucket` are literals, `key` is copied,
 * `data` (may be NULL) is taken. */
static void tx_op(shop_ctx_t *c, const char *op, const char *bucket, const char *key,
                  json_t *data) {
    if (c->nwrites == c->cap_writes) {
        c->cap_writes = c->cap_writes ? c->cap_writes * 2 : 8;
        c->writes = xrealloc(c->writes, c->cap_writes * sizeof *c->writes);
    }
    c->writes[c->nwrites++] = (store_write_t){op, bucket, key ? xstrdup(key) : NULL, data, false};
}

static void writes_free(shop_ctx_t *c) {
    for (size_t i = 0; i < c->nwrites; i++) {
        free((char *)c->writes[i].key);
        json_decref(c->writes[i].data); /* NULL once store_write_all took it */
    }
    free(c->writes);
}

void shop_tx_insert(shop_ctx_t *c, const char *bucket, json_t *data) {
    tx_op(c, "insert", bucket, NULL, data);
}

void shop_tx_insert_new(shop_ctx_t *c, const char *bucket, json_t *data) {
    tx_op(c, "insert", bucket, NULL, data);
    c->writes[c->nwrites - 1].new_key = true;
}

void shop_tx_update(shop_ctx_t *c, const char *bucket, const char *key, json_t *data) {
    tx_op(c, "update", bucket, key, data);
}

void shop_tx_delete(shop_ctx_t *c, const char *bucket, const char *key) {
    tx_op(c, "delete", bucket, key, NULL);
}

static void set_new_uuid(json_t *o) {
    char id[37];
    schema_uuid7(id);
    json_object_set_new_nocheck(o, "id", json_stringn_nocheck(id, 36));
}

void shop_tx_audit(shop_ctx_t *c, const char *action, json_t *details) {
    json_t *e = json_object();
    set_new_uuid(e);
    shop_set_str(e, "action", action);
    shop_set_str(e, "userId", c->user_id);
    json_object_set_new_nocheck(e, "details", details ? details : json_object());
    shop_set_int(e, "timestamp", c->now);
    shop_tx_insert_new(c, B_AUDIT, e);
}

void shop_tx_ledger(shop_ctx_t *c, const char *wallet_id, const char *user_id, const char *currency,
                    int64_t amount_minor, int64_t balance_after, const char *kind, json_t *extra) {
    json_t *e = json_object();
    set_new_uuid(e);
    shop_set_str(e, "walletId", wallet_id);
    shop_set_str(e, "userId", user_id);
    shop_set_str(e, "currency", currency);
    shop_set_int(e, "amountMinor", amount_minor);
    shop_set_int(e, "balanceAfterMinor", balance_after);
    shop_set_str(e, "kind", kind);
    if (extra) json_object_update(e, extra);
    json_decref(extra);
    shop_set_int(e, "createdAt", c->now);
    shop_tx_insert_new(c, B_LEDGER, e);
}

void shop_tx_wallet_set(shop_ctx_t *c, const json_t *wallet, const char *wallet_id,
                        const char *user_id, const char *currency, int64_t balance) {
    if (wallet) {
        json_t *patch = json_object();
        shop_set_int(patch, "balanceMinor", balance);
        shop_tx_update(c, B_WALLETS, wallet_id, patch);
    } else {
        shop_tx_insert(c, B_WALLETS, shop_wallet_view(wallet_id, user_id, currency, balance));
    }
}

void shop_event(shop_ctx_t *c, const char *topic, json_t *data) {
    json_t *e = json_object();
    shop_set_str(e, "topic", topic);
    json_object_set_new_nocheck(e, "data", data);
    json_array_append_new(c->events, e);
}

void shop_result(shop_ctx_t *c, json_t *result) {
    free(c->result);
    c->result = json_write_dup(result, NULL);
    json_decref(result);
}

/* ---- idempotency ---- */

static void hash_hex(const shop_t *s, const char *text, size_t len, char out[72]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(text, len, md, &n, s->sha256 ? s->sha256 : EVP_sha256(), NULL)) n = 0;
    if (n > 32) n = 32;
    memcpy(out, "sha256:", 7);
    for (unsigned int i = 0; i < n; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 0x0F];
    }
    out[7 + 2 * n] = '\0';
}

int shop_idem_begin(shop_ctx_t *c, const char *key, const json_t *canonical) {
    /* The canonical input is built from validated values, so 5 and 5.0 or a different
     * member order hash alike; the procedure's name is part of what is hashed. */
    char *text = json_dumps(canonical, JSON_COMPACT | JSON_SORT_KEYS);
    buf_t b;
    buf_init(&b, 0);
    buf_printf(&b, "%s\n%s", c->proc, text ? text : "null");
    free(text);
    hash_hex(c->s, b.data, b.len, c->idem_hash);
    buf_reset(&b);
    buf_printf(&b, "%s:%s:%s", c->user_id, c->proc, key);
    c->idem_id = buf_take(&b, NULL);
    buf_cleanup(&b);

    json_t *rec = NULL;
    if (shop_get(c, B_IDEM, c->idem_id, &rec) < 0) return -1;
    if (!rec) return 0;
    const char *hash = shop_str_field(rec, "inputHash");
    const char *result = shop_str_field(rec, "result");
    int rc;
    if (hash && result && strcmp(hash, c->idem_hash) == 0) {
        free(c->result);
        c->result = xstrdup(result);
        rc = 1;
    } else {
        rc = shop_conflict(c, "idempotency_key_reused", json_pack("{s:s}", "idempotencyKey", key),
                           "Idempotency key \"%.128s\" was already used with a different input",
                           key);
    }
    free(c->idem_id);
    c->idem_id = NULL; /* nothing to record: a replay writes nothing */
    json_decref(rec);
    return rc;
}

/* ---- shared helpers ---- */

void shop_wallet_id(const char *user_id, const char *currency, char *out, size_t size) {
    snprintf(out, size, "%s:%s", user_id, currency);
}

int64_t shop_int_field(const json_t *rec, const char *field) {
    json_t *v = json_object_get(rec, field);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v)) return (int64_t)json_real_value(v);
    return 0;
}

const char *shop_str_field(const json_t *rec, const char *field) {
    return json_string_value(json_object_get(rec, field));
}

json_t *shop_wallet_view(const char *wallet_id, const char *user_id, const char *currency,
                         int64_t balance) {
    json_t *w = json_object();
    shop_set_str(w, "id", wallet_id);
    shop_set_str(w, "userId", user_id);
    shop_set_str(w, "currency", currency);
    shop_set_int(w, "balanceMinor", balance);
    return w;
}

/* ---- the call ---- */

static const proc_t *proc_find(const char *name) {
    for (size_t i = 0; name && i < PROC_COUNT; i++)
        if (strcmp(procs[i].name, name) == 0) return &procs[i];
    return NULL;
}

static bool has_role(const shop_caller_t *caller, const char *role) {
    for (size_t i = 0; i < caller->role_count; i++)
        if (caller->roles[i] && strcmp(caller->roles[i], role) == 0) return true;
    return false;
}

static int check_fields(shop_ctx_t *c, const proc_t *p) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)c->input, k, v) {
        bool known = false;
        for (const char *const *f = p->fields; *f && !known; f++) known = strcmp(*f, k) == 0;
        if (!known)
            return shop_invalid(c, k, "Unknown field \"%.100s\" for procedure \"%s\"", k, p->name);
    }
    return 0;
}

/* Runs the queued writes (and the idempotency record) as one transaction. */
static int commit(shop_ctx_t *c) {
    if (c->idem_id) {
        json_t *rec = json_object();
        shop_set_str(rec, "id", c->idem_id);
        shop_set_str(rec, "userId", c->user_id);
        shop_set_str(rec, "procedure", c->proc);
        shop_set_str(rec, "inputHash", c->idem_hash);
        shop_set_str(rec, "result", c->result ? c->result : "null");
        shop_set_int(rec, "createdAt", c->now);
        shop_tx_insert(c, B_IDEM, rec);
    }
    int rc = store_write_all(c->s->st, c->writes, c->nwrites, c->err);
    if (rc < 0)
        log_warn("shop.commit_failed", "proc=%s user=%s code=%s", c->proc, c->user_id,
                 err_code_name(c->err->code));
    return rc;
}

static void emit_events(shop_ctx_t *c) {
    size_t i;
    json_t *e;
    json_array_foreach(c->events, i, e) {
        const char *topic = shop_str_field(e, "topic");
        if (!c->s->emit) continue;
        if (c->s->emit(c->s->emit_udata, topic, json_object_get(e, "data")) < 0)
            log_warn("shop.emit_failed", "topic=%s proc=%s", topic, c->proc);
    }
}

int shop_call(shop_t *s, const shop_caller_t *caller, const char *name, const json_t *input,
              buf_t *out, err_t *err) {
    if (!caller || !caller->user_id || !*caller->user_id) {
        err_set(err, ERR_UNAUTHORIZED, "Authentication required");
        return -1;
    }
    if (strlen(caller->user_id) > SHOP_MAX_USER_ID) {
        err_set(err, ERR_FORBIDDEN, "User id too long for the shop (at most %d bytes)",
                SHOP_MAX_USER_ID);
        return -1;
    }
    const proc_t *p = proc_find(name);
    if (!p) {
        err_set(err, ERR_UNKNOWN_OPERATION, "Unknown procedure \"%.100s\"", name ? name : "");
        return -1;
    }
    json_t *empty = NULL;
    if (!input || json_is_null(input)) input = empty = json_object();
    if (!json_is_object(input)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"input\": expected object");
        return -1;
    }
    shop_ctx_t c = {
        .s = s,
        .proc = p->name,
        .user_id = caller->user_id,
        .is_admin = has_role(caller, "admin"),
        .input = input,
        .now = clock_now_ms(),
        .err = err,
        .events = json_array(),
    };
    int rc = check_fields(&c, p);
    if (rc == 0) rc = p->fn(&c);
    if (rc == 0) rc = commit(&c);
    bool committed = rc == 0;
    if (committed && c.after_commit) rc = c.after_commit(&c);
    if (rc == 0) buf_append_str(out, c.result ? c.result : "null");
    if (committed) {
        emit_events(&c);
        log_debug("shop.call", "proc=%s user=%s writes=%zu", p->name, c.user_id, c.nwrites);
    }
    writes_free(&c);
    json_decref(c.events);
    free(c.result);
    free(c.idem_id);
    json_decref(empty);
    return rc;
}
