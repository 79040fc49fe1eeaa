/* Orders: checkout (stock, FX, wallet debit, ledger, order, audit, cart) and the
 * transitions cancel (stock back, refund), ship and deliver. Every write of one call
 * goes into one store transaction (shop_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "shop/shop_int.h"
#include "store/schema.h"

typedef struct {
    const char *product_id; /* borrowed from the input or the cart lines */
    int64_t qty;
    json_t *product; /* the stored product (owned) */
} line_t;

typedef struct {
    line_t v[SHOP_MAX_LINES];
    size_t n;
    json_t *cart;     /* the cart lines when the cart is used (owned) */
    json_t *cart_ids; /* ids of the cart lines to delete */
} lines_t;

static void lines_cleanup(lines_t *ls) {
    for (size_t i = 0; i < ls->n; i++) json_decref(ls->v[i].product);
    json_decref(ls->cart);
    json_decref(ls->cart_ids);
}

/* Adds qty of a product, merging a product that appears twice. Returns 0, or -1 when
 * the merged quantity or the number of lines goes past its limit. */
static int lines_add(shop_ctx_t *c, lines_t *ls, const char *pid, int64_t qty, const char *label) {
    for (size_t i = 0; i < ls->n; i++) {
        if (strcmp(ls->v[i].product_id, pid) == 0) {
            if (ls->v[i].qty + qty > SHOP_MAX_QUANTITY)
                return shop_invalid(c, label, "Invalid \"%s\": at most %d of one product per order",
                                    label, SHOP_MAX_QUANTITY);
            ls->v[i].qty += qty;
            return 0;
        }
    }
    if (ls->n == SHOP_MAX_LINES)
        return shop_invalid(c, "items",
                            "Invalid \"items\": at most %d different products per order",
                            SHOP_MAX_LINES);
    ls->v[ls->n++] = (line_t){pid, qty, NULL};
    return 0;
}

static int parse_items(shop_ctx_t *c, const json_t *items, lines_t *ls) {
    if (!json_is_array(items) || json_array_size(items) == 0)
        return shop_invalid(c, "items", "Missing or invalid \"items\": expected non-empty array");
    if (json_array_size(items) > SHOP_MAX_LINES)
        return shop_invalid(c, "items", "Invalid \"items\": at most %d lines", SHOP_MAX_LINES);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        /* The labels name the line in error messages: items[i], items[i].productId … */
        char label[32], plabel[48], qlabel[48];
        int n = snprintf(label, sizeof label, "items[%zu]", i);
        memcpy(plabel, label, (size_t)n);
        memcpy(plabel + n, ".productId", sizeof ".productId");
        memcpy(qlabel, label, (size_t)n);
        memcpy(qlabel + n, ".quantity", sizeof ".quantity");
        if (!json_is_object(it))
            return shop_invalid(c, label, "Missing or invalid \"%s\": expected object", label);
        const char *k;
        json_t *v;
        json_object_foreach(it, k, v) {
            if (strcmp(k, "productId") != 0 && strcmp(k, "quantity") != 0)
                return shop_invalid(
                    c, label, "Unknown field \"%.100s\" in \"%s\" (expected productId, quantity)",
                    k, label);
        }
        const char *pid;
        int64_t qty;
        if (shop_in_string(c, it, "productId", plabel, true, SHOP_MAX_ID, &pid) < 0) return -1;
        if (shop_in_int(c, it, "quantity", qlabel, true, SHOP_MAX_QUANTITY, &qty) < 0) return -1;
        if (lines_add(c, ls, pid, qty, qlabel) < 0) return -1;
    }
    return 0;
}

static int load_cart(shop_ctx_t *c, lines_t *ls) {
    if (shop_where(c, B_CARTS, json_pack("{s:s}", "userId", c->user_id), &ls->cart) < 0) return -1;
    if (json_array_size(ls->cart) == 0)
        return shop_conflict(c, "cart_empty", NULL,
                             "The cart is empty: add products or pass \"items\"");
    ls->cart_ids = json_array();
    size_t i;
    json_t *line;
    json_array_foreach(ls->cart, i, line) {
        const char *pid = shop_str_field(line, "productId");
        int64_t qty = shop_int_field(line, "quantity");
        const char *id = shop_str_field(line, "id");
        if (id) json_array_append_new(ls->cart_ids, json_string(id));
        if (!pid || qty < 1) continue; /* a malformed line is dropped with the cart */
        if (lines_add(c, ls, pid, qty, "quantity") < 0) return -1;
    }
    if (ls->n == 0)
        return shop_conflict(c, "cart_empty", NULL,
                             "The cart is empty: add products or pass \"items\"");
    return 0;
}

/* The rate for converting `from` into `to`, from the fx-rates record "<from>:<to>". */
static int fx_rate(shop_ctx_t *c, const char *from, const char *to, int64_t *rate_e9) {
    char id[16];
    snprintf(id, sizeof id, "%s:%s", from, to);
    json_t *r = NULL;
    if (shop_get(c, B_FX, id, &r) < 0) return -1;
    json_t *v = json_object_get(r, "rate");
    err_t e = ERR_INIT;
    int rc = 0;
    if (!json_is_number(v)) {
        rc = -1;
    } else if (money_rate_from_double(json_number_value(v), "rate", rate_e9, &e) < 0) {
        log_warn("shop.fx_rate_unusable", "pair=%s reason=%s", id, e.msg);
        err_clear(&e);
        rc = -1;
    }
    json_decref(r);
    if (rc < 0)
        return shop_conflict(c, "no_fx_rate", json_pack("{s:s, s:s}", "from", from, "to", to),
                             "No exchange rate from %s to %s", from, to);
    return 0;
}

/* A copy of a stored record without its metadata (_version, _createdAt, _updatedAt). */
static json_t *public_copy(const json_t *rec) {
    json_t *o = json_deep_copy(rec);
    json_object_del(o, "_version");
    json_object_del(o, "_createdAt");
    json_object_del(o, "_updatedAt");
    return o;
}

static int order_total_too_large(shop_ctx_t *c) {
    return shop_invalid(c, "items", "Invalid \"items\": the order total is out of range");
}

int shop_proc_checkout(shop_ctx_t *c) {
    const char *cur, *key = NULL;
    if (shop_in_currency(c, "walletCurrency", true, &cur) < 0) return -1;
    json_t *items = json_object_get(c->input, "items");
    bool from_cart = !items || json_is_null(items);
    /* Only the first n lines are ever read, so the 100-line array is not zeroed. */
    lines_t *ls = xmalloc(sizeof *ls);
    ls->n = 0;
    ls->cart = ls->cart_ids = NULL;
    json_t *canonical = NULL, *wallet = NULL, *order_items = NULL;
    int rc = -1;
    if (!from_cart && parse_items(c, items, ls) < 0) goto out;
    if (shop_in_idem_key(c, &key) < 0) goto out;

    if (key) {
        /* The cart is named, not copied: a replay answers the first result even if
         * the cart changed since. */
        json_t *canon_items = from_cart ? json_string("cart") : json_array();
        for (size_t i = 0; !from_cart && i < ls->n; i++)
            json_array_append_new(canon_items,
                                  json_pack("{s:s, s:I}", "productId", ls->v[i].product_id,
                                            "quantity", (json_int_t)ls->v[i].qty));
        canonical = json_pack("{s:s, s:o}", "walletCurrency", cur, "items", canon_items);
        int r = shop_idem_begin(c, key, canonical);
        if (r != 0) {
            rc = r < 0 ? -1 : 0;
            goto out;
        }
    }
    if (from_cart && load_cart(c, ls) < 0) goto out;

    /* Prices, stock and FX, read by the server. */
    int64_t total = 0;
    order_items = json_array();
    for (size_t i = 0; i < ls->n; i++) {
        line_t *l = &ls->v[i];
        if (shop_get(c, B_PRODUCTS, l->product_id, &l->product) < 0) goto out;
        if (!l->product) {
            shop_not_found(c, "Product", l->product_id);
            goto out;
        }
        if (!json_is_true(json_object_get(l->product, "active"))) {
            shop_conflict(c, "product_inactive", json_pack("{s:s}", "productId", l->product_id),
                          "Product \"%.200s\" is not available", l->product_id);
            goto out;
        }
        int64_t stock = shop_int_field(l->product, "stock");
        if (stock < l->qty) {
            shop_conflict(c, "insufficient_stock",
                          json_pack("{s:s, s:I, s:I}", "productId", l->product_id, "available",
                                    (json_int_t)stock, "requested", (json_int_t)l->qty),
                          "Not enough stock for product \"%.200s\": %lld available, %lld requested",
                          l->product_id, (long long)stock, (long long)l->qty);
            goto out;
        }
        const char *pcur = shop_str_field(l->product, "currency");
        int64_t price = shop_int_field(l->product, "priceMinor");
        int64_t line_total, charged;
        if (!pcur || price < 0) {
            log_error("shop.product_unpriced", "product=%s", l->product_id);
            err_set(c->err, ERR_INTERNAL, "Internal error");
            goto out;
        }
        if (money_mul(price, l->qty, &line_total) < 0) {
            order_total_too_large(c);
            goto out;
        }
        json_t *title = json_object_get(l->product, "title");
        json_t *item = json_object();
        shop_set_str(item, "productId", l->product_id);
        json_object_set_nocheck(item, "title", title ? title : json_null());
        shop_set_int(item, "quantity", l->qty);
        shop_set_int(item, "unitPriceMinor", price);
        shop_set_str(item, "currency", pcur);
        shop_set_int(item, "lineTotalMinor", line_total);
        json_array_append_new(order_items, item);
        if (strcmp(pcur, cur) == 0) {
            charged = line_total;
        } else {
            int64_t rate;
            if (fx_rate(c, pcur, cur, &rate) < 0) goto out;
            if (money_convert(line_total, pcur, cur, rate, &charged, c->err) < 0) goto out;
            char rtext[32];
            money_rate_format(rate, rtext);
            shop_set_str(item, "fxRate", rtext);
        }
        shop_set_int(item, "chargedMinor", charged);
        if (money_add(total, charged, &total) < 0) {
            order_total_too_large(c);
            goto out;
        }
    }

    /* The wallet pays; it never goes below zero. */
    char wid[SHOP_KEY_BUF];
    shop_wallet_id(c->user_id, cur, wid, sizeof wid);
    if (shop_get(c, B_WALLETS, wid, &wallet) < 0) goto out;
    int64_t balance = wallet ? shop_int_field(wallet, "balanceMinor") : 0;
    if (balance < total) {
        shop_insufficient_funds(c, total, balance, cur);
        goto out;
    }

    char order_id[37];
    schema_uuid7(order_id);
    for (size_t i = 0; i < ls->n; i++) {
        line_t *l = &ls->v[i];
        json_t *patch = json_object();
        shop_set_int(patch, "stock", shop_int_field(l->product, "stock") - l->qty);
        shop_tx_update(c, B_PRODUCTS, l->product_id, patch);
    }
    shop_tx_wallet_set(c, wallet, wid, c->user_id, cur, balance - total);
    json_t *ledger_extra = json_object();
    shop_set_str(ledger_extra, "orderId", order_id);
    shop_tx_ledger(c, wid, c->user_id, cur, -total, balance - total, "payment", ledger_extra);
    json_t *order = json_object();
    shop_set_str(order, "id", order_id);
    shop_set_str(order, "userId", c->user_id);
    shop_set_str(order, "status", "paid");
    json_object_set_nocheck(order, "items", order_items);
    shop_set_int(order, "totalMinor", total);
    shop_set_str(order, "currency", cur);
    shop_set_int(order, "createdAt", c->now);
    shop_set_int(order, "updatedAt", c->now);
    shop_tx_insert_new(c, B_ORDERS, json_incref(order));
    json_t *details = json_object();
    shop_set_str(details, "orderId", order_id);
    shop_set_int(details, "totalMinor", total);
    shop_set_str(details, "currency", cur);
    shop_set_int(details, "lines", (int64_t)ls->n);
    shop_tx_audit(c, "order_placed", details);
    if (from_cart) {
        size_t i;
        json_t *id;
        json_array_foreach(ls->cart_ids, i, id) shop_tx_delete(c, B_CARTS, json_string_value(id));
    }
    json_t *ev = json_object();
    shop_set_str(ev, "orderId", order_id);
    shop_set_str(ev, "userId", c->user_id);
    shop_set_int(ev, "totalMinor", total);
    shop_set_str(ev, "currency", cur);
    shop_event(c, "order.placed", ev);
    shop_result(c, order);
    log_info("shop.order_placed", "order=%s user=%s total=%lld currency=%s lines=%zu", order_id,
             c->user_id, (long long)total, cur, ls->n);
    rc = 0;
out:
    lines_cleanup(ls);
    free(ls);
    json_decref(canonical);
    json_decref(wallet);
    json_decref(order_items);
    return rc;
}

/* Loads an order the caller may act on: customers see only their own (others answer
 * NOT_FOUND, so that an order id reveals nothing). */
static int load_order(shop_ctx_t *c, const char *order_id, json_t **out) {
    json_t *o = NULL;
    if (shop_get(c, B_ORDERS, order_id, &o) < 0) return -1;
    const char *owner = shop_str_field(o, "userId");
    if (!o || (!c->is_admin && (!owner || strcmp(owner, c->user_id) != 0))) {
        json_decref(o);
        return shop_not_found(c, "Order", order_id);
    }
    *out = o;
    return 0;
}

static int check_transition(shop_ctx_t *c, const json_t *order, order_action_t action) {
    const char *status = shop_str_field(order, "status");
    order_status_t from;
    if (order_status_parse(status, &from) < 0) {
        return shop_conflict(c, "invalid_transition",
                             json_pack("{s:s, s:s}", "from", status ? status : "", "to",
                                       order_status_name(order_action_target(action))),
                             "Cannot %s an order that is %.50s", order_action_name(action),
                             status ? status : "unknown");
    }
    return order_transition_check(from, action, c->is_admin, c->err);
}

int shop_proc_cancel_order(shop_ctx_t *c) {
    const char *oid, *reason = NULL;
    if (shop_in_string(c, c->input, "orderId", "orderId", true, SHOP_MAX_ID, &oid) < 0) return -1;
    if (shop_in_string(c, c->input, "reason", "reason", false, SHOP_MAX_REASON, &reason) < 0)
        return -1;
    json_t *order = NULL, *wallet = NULL, *restock = json_object();
    int rc = -1;
    if (load_order(c, oid, &order) < 0) goto out;
    if (check_transition(c, order, ORDER_CANCEL) < 0) goto out;

    const char *owner = shop_str_field(order, "userId");
    const char *cur = shop_str_field(order, "currency");
    int64_t total = shop_int_field(order, "totalMinor");
    if (!owner || !cur || !money_currency_ok(cur) || total < 0) {
        log_error("shop.order_malformed", "order=%s", oid);
        err_set(c->err, ERR_INTERNAL, "Internal error");
        goto out;
    }

    /* Stock goes back to every product that still exists (summed per product). */
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(order, "items"), i, item) {
        const char *pid = shop_str_field(item, "productId");
        int64_t qty = shop_int_field(item, "quantity");
        if (!pid || qty <= 0) continue;
        json_t *seen = json_object_get(restock, pid);
        if (!seen) {
            json_t *p = NULL;
            if (shop_get(c, B_PRODUCTS, pid, &p) < 0) goto out;
            if (!p) {
                log_warn("shop.restock_skipped", "order=%s product=%s reason=product_gone", oid,
                         pid);
                json_object_set_new(restock, pid, json_null());
                continue;
            }
            json_object_set_new(restock, pid, json_integer(shop_int_field(p, "stock")));
            json_decref(p);
            seen = json_object_get(restock, pid);
        }
        if (json_is_integer(seen)) json_integer_set(seen, json_integer_value(seen) + qty);
    }
    const char *pid;
    json_t *stock;
    json_object_foreach(restock, pid, stock) {
        if (json_is_integer(stock))
            shop_tx_update(c, B_PRODUCTS, pid, json_pack("{s:O}", "stock", stock));
    }

    /* The refund goes to the order's owner, whoever cancels. */
    char wid[SHOP_KEY_BUF];
    shop_wallet_id(owner, cur, wid, sizeof wid);
    if (shop_get(c, B_WALLETS, wid, &wallet) < 0) goto out;
    int64_t balance = wallet ? shop_int_field(wallet, "balanceMinor") : 0, after;
    if (money_add(balance, total, &after) < 0) {
        log_error("shop.refund_overflow", "order=%s wallet=%s", oid, wid);
        err_set(c->err, ERR_INTERNAL, "Internal error");
        goto out;
    }
    shop_tx_wallet_set(c, wallet, wid, owner, cur, after);
    shop_tx_ledger(c, wid, owner, cur, total, after, "refund", json_pack("{s:s}", "orderId", oid));

    json_t *patch =
        json_pack("{s:s, s:I, s:I, s:s}", "status", "cancelled", "updatedAt", (json_int_t)c->now,
                  "cancelledAt", (json_int_t)c->now, "cancelledBy", c->user_id);
    if (reason) json_object_set_new(patch, "cancelReason", json_string(reason));
    json_t *result = public_copy(order);
    json_object_update(result, patch);
    shop_tx_update(c, B_ORDERS, oid, patch);
    json_t *details = json_pack("{s:s, s:s, s:I, s:s}", "orderId", oid, "orderUserId", owner,
                                "refundMinor", (json_int_t)total, "currency", cur);
    if (reason) json_object_set_new(details, "reason", json_string(reason));
    shop_tx_audit(c, "order_cancelled", details);
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:I, s:s}", "orderId", oid, "userId", owner, "cancelledBy",
                  c->user_id, "totalMinor", (json_int_t)total, "currency", cur);
    json_object_set_new(ev, "reason", reason ? json_string(reason) : json_null());
    shop_event(c, "order.cancelled", ev);
    shop_result(c, result);
    log_info("shop.order_cancelled", "order=%s by=%s refund=%lld currency=%s", oid, c->user_id,
             (long long)total, cur);
    rc = 0;
out:
    json_decref(order);
    json_decref(wallet);
    json_decref(restock);
    return rc;
}

static int advance(shop_ctx_t *c, order_action_t action, const char *at_field, const char *audit,
                   const char *topic) {
    /* Customers are refused before the order is looked up, so the answer does not
     * depend on whether the order exists. */
    if (order_action_is_admin_only(action) && !c->is_admin) {
        err_set(c->err, ERR_FORBIDDEN, "Only admins may %s orders", order_action_name(action));
        return -1;
    }
    const char *oid;
    if (shop_in_string(c, c->input, "orderId", "orderId", true, SHOP_MAX_ID, &oid) < 0) return -1;
    json_t *order = NULL;
    if (load_order(c, oid, &order) < 0) return -1;
    if (check_transition(c, order, action) < 0) {
        json_decref(order);
        return -1;
    }
    const char *status = order_status_name(order_action_target(action));
    const char *owner = shop_str_field(order, "userId");
    json_t *patch = json_pack("{s:s, s:I, s:I}", "status", status, "updatedAt", (json_int_t)c->now,
                              at_field, (json_int_t)c->now);
    json_t *result = public_copy(order);
    json_object_update(result, patch);
    shop_tx_update(c, B_ORDERS, oid, patch);
    shop_tx_audit(c, audit,
                  json_pack("{s:s, s:s}", "orderId", oid, "orderUserId", owner ? owner : ""));
    shop_event(c, topic,
               json_pack("{s:s, s:s, s:s}", "orderId", oid, "userId", owner ? owner : "", "status",
                         status));
    shop_result(c, result);
    log_info("shop.order_advanced", "order=%s status=%s by=%s", oid, status, c->user_id);
    json_decref(order);
    return 0;
}

int shop_proc_ship_order(shop_ctx_t *c) {
    return advance(c, ORDER_SHIP, "shippedAt", "order_shipped", "order.shipped");
}

int shop_proc_deliver_order(shop_ctx_t *c) {
    return advance(c, ORDER_DELIVER, "deliveredAt", "order_delivered", "order.delivered");
}
