/* Carts: one record per cart line in bucket `carts`, keyed "<userId>:<productId>".
 * Prices are never stored in the cart: the view reads the current product. */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "shop/shop_int.h"

int shop_cart_view(shop_ctx_t *c, json_t **out) {
    json_t *lines = NULL;
    if (shop_where(c, B_CARTS, json_pack("{s:s}", "userId", c->user_id), &lines) < 0) return -1;
    json_t *items = json_array();
    json_t *totals = json_array(); /* [{currency, totalMinor}] in order of first appearance */
    int rc = 0;
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line) {
        const char *pid = shop_str_field(line, "productId");
        int64_t qty = shop_int_field(line, "quantity");
        if (!pid) continue;
        json_t *p = NULL;
        if (shop_get(c, B_PRODUCTS, pid, &p) < 0) {
            rc = -1;
            break;
        }
        const char *cur = shop_str_field(p, "currency");
        int64_t price = shop_int_field(p, "priceMinor");
        int64_t line_total = 0;
        bool available = p && cur && json_is_true(json_object_get(p, "active")) &&
                         money_mul(price, qty, &line_total) == 0;
        json_t *item =
            json_pack("{s:s, s:O, s:I}", "productId", pid, "title",
                      p && json_object_get(p, "title") ? json_object_get(p, "title") : json_null(),
                      "quantity", (json_int_t)qty);
        if (p && cur) {
            json_object_set_new(item, "unitPriceMinor", json_integer(price));
            json_object_set_new(item, "currency", json_string(cur));
            json_object_set_new(item, "lineTotalMinor",
                                available ? json_integer(line_total) : json_null());
        } else {
            json_object_set_new(item, "unitPriceMinor", json_null());
            json_object_set_new(item, "currency", json_null());
            json_object_set_new(item, "lineTotalMinor", json_null());
        }
        json_object_set_new(item, "available", json_boolean(available));
        json_array_append_new(items, item);
        if (available) {
            json_t *t = NULL;
            size_t k;
            json_t *tt;
            json_array_foreach(totals, k, tt) if (strcmp(shop_str_field(tt, "currency"), cur) == 0)
                t = tt;
            if (!t) {
                t = json_pack("{s:s, s:I}", "currency", cur, "totalMinor", (json_int_t)0);
                json_array_append_new(totals, t);
            }
            int64_t sum;
            if (money_add(shop_int_field(t, "totalMinor"), line_total, &sum) == 0)
                json_object_set_new(t, "totalMinor", json_integer(sum));
        }
        json_decref(p);
    }
    json_decref(lines);
    if (rc < 0) {
        json_decref(items);
        json_decref(totals);
        return -1;
    }
    *out = json_pack("{s:o, s:o}", "items", items, "totals", totals);
    return 0;
}

static int answer_cart(shop_ctx_t *c) {
    json_t *view = NULL;
    if (shop_cart_view(c, &view) < 0) return -1;
    shop_result(c, view);
    return 0;
}

static void line_id(const shop_ctx_t *c, const char *product_id, char *out, size_t size) {
    snprintf(out, size, "%s:%s", c->user_id, product_id);
}

/* The {productId, quantity} input of addToCart and updateCartItem. */
static int line_input(shop_ctx_t *c, const char **pid, int64_t *qty) {
    if (shop_in_string(c, c->input, "productId", "productId", true, SHOP_MAX_ID, pid) < 0) return -1;
    return shop_in_int(c, c->input, "quantity", "quantity", true, SHOP_MAX_QUANTITY, qty);
}

int shop_proc_get_cart(shop_ctx_t *c) {
    return answer_cart(c);
}

int shop_proc_add_to_cart(shop_ctx_t *c) {
    const char *pid;
    int64_t qty;
    if (line_input(c, &pid, &qty) < 0) return -1;
    json_t *p = NULL, *line = NULL;
    int rc = -1;
    if (shop_get(c, B_PRODUCTS, pid, &p) < 0) return -1;
    if (!p) return shop_not_found(c, "Product", pid);
    if (!json_is_true(json_object_get(p, "active"))) {
        shop_conflict(c, "product_inactive", json_pack("{s:s}", "productId", pid),
                      "Product \"%.200s\" is not available", pid);
        goto out;
    }
    char id[SHOP_KEY_BUF];
    line_id(c, pid, id, sizeof id);
    if (shop_get(c, B_CARTS, id, &line) < 0) goto out;
    if (line) {
        int64_t have = shop_int_field(line, "quantity");
        if (have + qty > SHOP_MAX_QUANTITY) {
            shop_invalid(
                c, "quantity",
                "Invalid \"quantity\": a cart line holds at most %d (%lld already in the cart)",
                SHOP_MAX_QUANTITY, (long long)have);
            goto out;
        }
        shop_tx_update(c, B_CARTS, id, json_pack("{s:I}", "quantity", (json_int_t)(have + qty)));
    } else {
        json_t *lines = NULL;
        if (shop_where(c, B_CARTS, json_pack("{s:s}", "userId", c->user_id), &lines) < 0) goto out;
        size_t n = json_array_size(lines);
        json_decref(lines);
        if (n >= SHOP_MAX_LINES) {
            shop_conflict(c, "cart_full", json_pack("{s:i}", "maxLines", SHOP_MAX_LINES),
                          "The cart is full (at most %d different products)", SHOP_MAX_LINES);
            goto out;
        }
        shop_tx_insert(c, B_CARTS,
                       json_pack("{s:s, s:s, s:s, s:I}", "id", id, "userId", c->user_id,
                                 "productId", pid, "quantity", (json_int_t)qty));
    }
    c->after_commit = answer_cart;
    rc = 0;
out:
    json_decref(p);
    json_decref(line);
    return rc;
}

int shop_proc_update_cart_item(shop_ctx_t *c) {
    const char *pid;
    int64_t qty;
    if (line_input(c, &pid, &qty) < 0) return -1;
    char id[SHOP_KEY_BUF];
    line_id(c, pid, id, sizeof id);
    json_t *line = NULL;
    if (shop_get(c, B_CARTS, id, &line) < 0) return -1;
    if (!line) {
        err_set(c->err, ERR_NOT_FOUND, "Product \"%.200s\" is not in the cart", pid);
        return -1;
    }
    json_decref(line);
    shop_tx_update(c, B_CARTS, id, json_pack("{s:I}", "quantity", (json_int_t)qty));
    c->after_commit = answer_cart;
    return 0;
}

int shop_proc_remove_from_cart(shop_ctx_t *c) {
    const char *pid;
    if (shop_in_string(c, c->input, "productId", "productId", true, SHOP_MAX_ID, &pid) < 0)
        return -1;
    char id[SHOP_KEY_BUF];
    line_id(c, pid, id, sizeof id);
    json_t *line = NULL;
    if (shop_get(c, B_CARTS, id, &line) < 0) return -1;
    if (line) shop_tx_delete(c, B_CARTS, id);
    json_decref(line);
    c->after_commit = answer_cart;
    return 0;
}
