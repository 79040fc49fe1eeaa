/* Private declarations of the shop module, shared by its files:
 *
 *   shop.c      the service object, dispatch, input checks, store reads, the write
 *               batch (one store transaction per call), idempotency, procedures.list
 *   cart.c      getCart, addToCart, updateCartItem, removeFromCart
 *   orders.c    checkout, cancelOrder, shipOrder, deliverOrder
 *   wallet.c    topUpWallet, transfer
 *   money.c, order.c   pure money/FX arithmetic and the order state machine
 *
 * How a procedure runs: it checks its input, reads what it needs (shop_get, shop_where;
 * the store runs on the loop thread, so nothing else can run between these reads and
 * the write), decides, and queues every write into `writes`; the commit then runs
 * them as ONE transaction (store_write_all), so a failure anywhere leaves nothing
 * half-done.
 * Events are queued too and emitted only after the commit. The result text is built
 * before the commit, because an idempotency record holding it is part of the same
 * transaction. */
#ifndef SHOPD_SHOP_SHOP_INT_H
#define SHOPD_SHOP_SHOP_INT_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "shop/money.h"
#include "shop/order.h"
#include "shop/shop.h"

#define SHOP_MAX_LINES 100    /* distinct products in a cart or a checkout */
#define SHOP_MAX_QUANTITY 999 /* per line */
#define SHOP_MAX_ID 200       /* bytes of a product, order or user id in an input */
#define SHOP_MAX_USER_ID 256  /* bytes of the caller's user id (from the session) */
#define SHOP_KEY_BUF 512      /* room for "<userId>:<productId>" and wallet ids */
#define SHOP_MAX_IDEM_KEY 128 /* bytes of an idempotency key */
#define SHOP_MAX_REASON 500   /* bytes of a cancellation reason */
#define SHOP_DEFAULT_MAX_TOPUP INT64_C(100000000) /* 1 000 000.00 in a 2-decimal currency */

/* Bucket names, as config/ecommerce.json defines them. */
#define B_USERS "users"
#define B_CATEGORIES "categories"
#define B_PRODUCTS "products"
#define B_CARTS "carts"
#define B_WALLETS "wallets"
#define B_LEDGER "ledger"
#define B_ORDERS "orders"
#define B_AUDIT "audit-logs"
#define B_FX "fx-rates"
#define B_IDEM "idempotency"

struct shop {
    store_t *st;
    int64_t max_topup_minor;
    int64_t max_transfer_minor;
    shop_emit_fn emit;
    void *emit_udata;
    EVP_MD *sha256; /* for idempotency input hashes; NULL: EVP_sha256() */
};

/* One procedure call. */
typedef struct shop_ctx shop_ctx_t;
struct shop_ctx {
    shop_t *s;
    const char *proc;
    const char *user_id; /* the caller; never NULL inside a procedure */
    bool is_admin;
    const json_t *input; /* an object */
    int64_t now;         /* ms epoch, one value for the whole call */
    err_t *err;
    store_write_t *writes; /* the transaction's writes; keys and data are owned */
    size_t nwrites, cap_writes;
    json_t *events; /* [{topic, data}] emitted after the commit */
    char *result;   /* the result text (owned) */
    /* Runs after a successful commit to build a result that must show the committed
     * state (the cart procedures); NULL when the result was set before the commit. */
    int (*after_commit)(shop_ctx_t *c);
    /* idempotency, when the call carries a key */
    char *idem_id;
    char idem_hash[72];
};

/* ---- procedures (each returns 0, or -1 with c->err set) ---- */

int shop_proc_get_cart(shop_ctx_t *c);
int shop_proc_add_to_cart(shop_ctx_t *c);
int shop_proc_update_cart_item(shop_ctx_t *c);
int shop_proc_remove_from_cart(shop_ctx_t *c);
int shop_proc_checkout(shop_ctx_t *c);
int shop_proc_cancel_order(shop_ctx_t *c);
int shop_proc_ship_order(shop_ctx_t *c);
int shop_proc_deliver_order(shop_ctx_t *c);
int shop_proc_top_up_wallet(shop_ctx_t *c);
int shop_proc_transfer(shop_ctx_t *c);

/* ---- input checks: return 1 (present and valid), 0 (absent, optional), -1 (err set:
 * VALIDATION_ERROR with the protocol's message pattern and details {"field"}) ---- */

int shop_in_string(shop_ctx_t *c, const json_t *obj, const char *field, const char *label,
                   bool required, size_t max_len, const char **out);
int shop_in_int(shop_ctx_t *c, const json_t *obj, const char *field, const char *label,
                bool required, int64_t max, int64_t *out);
int shop_in_currency(shop_ctx_t *c, const char *field, bool required, const char **out);
int shop_in_idem_key(shop_ctx_t *c, const char **out);
int shop_invalid(shop_ctx_t *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- errors with details ---- */

/* CONFLICT with details {"reason": reason, …extra} (extra is taken, may be NULL). */
int shop_conflict(shop_ctx_t *c, const char *reason, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int shop_not_found(shop_ctx_t *c, const char *what, const char *id);
/* CONFLICT insufficient_funds with {required, available, currency}. */
int shop_insufficient_funds(shop_ctx_t *c, int64_t required, int64_t available, const char *currency);

/* ---- building JSON ---- */

/* Sets o[key] to a string (NULL value: nothing is set) or an integer. `key` is a
 * constant ASCII name; members keep their order of insertion. */
void shop_set_str(json_t *o, const char *key, const char *value);
void shop_set_int(json_t *o, const char *key, int64_t value);

/* ---- store reads (outside the transaction; nothing can interleave) ---- */

/* *out gets a reference to the record, or NULL when there is none. The record is
 * shared with the store's cache (store_get_shared): read it, never change it. */
int shop_get(shop_ctx_t *c, const char *bucket, const char *key, json_t **out);
/* *out gets the array of matching records (owned). `filter` is taken. */
int shop_where(shop_ctx_t *c, const char *bucket, json_t *filter, json_t **out);

/* ---- the write batch ---- */

void shop_tx_insert(shop_ctx_t *c, const char *bucket, json_t *data);
/* The same for a record whose key was just made by schema_uuid7: no record has it, so
 * the store may hand the insert to the database's writer thread (store_write_t.new_key). */
void shop_tx_insert_new(shop_ctx_t *c, const char *bucket, json_t *data);
void shop_tx_update(shop_ctx_t *c, const char *bucket, const char *key, json_t *data);
void shop_tx_delete(shop_ctx_t *c, const char *bucket, const char *key);
/* Queues an audit-logs entry {action, userId (the caller), details, timestamp}. */
void shop_tx_audit(shop_ctx_t *c, const char *action, json_t *details);
/* Queues a ledger entry {id (a new uuid), walletId, userId, currency, amountMinor
 * (signed), balanceAfterMinor, kind, createdAt}; `extra` (taken, may be NULL) adds
 * orderId, counterparty, transferId. */
void shop_tx_ledger(shop_ctx_t *c, const char *wallet_id, const char *user_id, const char *currency,
                    int64_t amount_minor, int64_t balance_after, const char *kind, json_t *extra);
/* Sets a wallet's balance: updates `wallet` (the stored record) or, when it is NULL,
 * inserts a new wallet {id, userId, currency, balanceMinor}. */
void shop_tx_wallet_set(shop_ctx_t *c, const json_t *wallet, const char *wallet_id,
                        const char *user_id, const char *currency, int64_t balance);
/* Queues an event to emit after the commit. `data` is taken. */
void shop_event(shop_ctx_t *c, const char *topic, json_t *data);
/* Sets the call's result (taken). */
void shop_result(shop_ctx_t *c, json_t *result);

/* Starts idempotency for a call with an idempotencyKey: hashes `canonical` (the
 * validated input, borrowed) and looks the key up. Returns 1 when the key was used
 * before with the same input (the stored result becomes the call's result and the
 * procedure must return at once without writing), 0 when the call should run (its
 * result will be recorded at commit), -1 with CONFLICT idempotency_key_reused. */
int shop_idem_begin(shop_ctx_t *c, const char *key, const json_t *canonical);

/* ---- shared helpers ---- */

/* "<userId>:<CUR>" into out. */
void shop_wallet_id(const char *user_id, const char *currency, char *out, size_t size);
/* Reads an integer field of a stored record (0 when absent). */
int64_t shop_int_field(const json_t *rec, const char *field);
const char *shop_str_field(const json_t *rec, const char *field);
/* Builds the wallet's public view {id, userId, currency, balanceMinor}. */
json_t *shop_wallet_view(const char *wallet_id, const char *user_id, const char *currency,
                         int64_t balance);
/* The caller's cart view {items:[…], totals:[…]} from stored cart lines. */
int shop_cart_view(shop_ctx_t *c, json_t **out);

#endif
