/* The commerce service layer: carts, checkout, wallets with an append-only ledger,
 * orders and their state machine, FX conversion. Server-authoritative: prices, totals
 * and stock are read by the server inside one store transaction; clients never send
 * them. Every API (realtime `procedures.call` today, REST and GraphQL later) calls
 * these functions. No libuv, libpq or hiredis here.
 *
 * Money is always an integer number of minor units with an ISO 4217 currency
 * (money.h). Events (`order.placed`, …) are emitted through the callback given to
 * shop_new, after the transaction that caused them committed. */
#ifndef SHOPD_SHOP_SHOP_H
#define SHOPD_SHOP_SHOP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "store/store.h"

typedef struct shop shop_t;

/* Who calls: the session's user and roles ("admin" may manage every order). */
typedef struct {
    const char *user_id; /* NULL: not logged in → procedures answer UNAUTHORIZED */
    const char *const *roles;
    size_t role_count;
} shop_caller_t;

/* Emits a domain event (topic, data object); returns 0 or -1. */
typedef int (*shop_emit_fn)(void *udata, const char *topic, const json_t *data);

typedef struct {
    int64_t max_topup_minor; /* largest single top-up, in minor units; 0 = default 1 000 000 00 */
    int64_t max_transfer_minor; /* 0 = default: same as max_topup_minor */
} shop_config_t;

/* Creates the service over a store whose buckets follow config/ecommerce.json
 * (users, categories, products, carts, wallets, ledger, orders, audit-logs, fx-rates,
 * and the idempotency bucket). Returns NULL with err set when a bucket is missing. */
shop_t *shop_new(store_t *st, const shop_config_t *cfg, shop_emit_fn emit, void *emit_udata,
                 err_t *err);
void shop_free(shop_t *s); /* NULL is fine */

/* Runs procedure `name` with `input` (an object) for `caller` and appends its result
 * (JSON) to out. Errors: UNAUTHORIZED (no user), FORBIDDEN (not allowed, e.g. a
 * customer shipping an order), VALIDATION_ERROR (bad input, naming the field),
 * NOT_FOUND (unknown product/order), CONFLICT with details.reason
 * (insufficient_stock {productId, available}, insufficient_funds, no_fx_rate,
 * invalid_transition, idempotency_key_reused, product_inactive, cart_empty, cart_full),
 * and the unknown procedure → UNKNOWN_OPERATION `Unknown procedure "<name>"`. All writes
 * of one call are one store transaction; on failure nothing is written and nothing is
 * appended to out. Events are emitted after the commit. Loop thread only.
 * Procedures and their inputs: docs/ecommerce.md. */
int shop_call(shop_t *s, const shop_caller_t *caller, const char *name, const json_t *input,
              buf_t *out, err_t *err);

/* Appends {"procedures":[{"name","description","input":<JSON schema-ish>},…]}. */
void shop_list(shop_t *s, buf_t *out);

#endif
