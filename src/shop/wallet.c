/* Wallets: one per (user, currency), id "<userId>:<CUR>", balance in minor units, never
 * below zero. Every balance change writes a ledger entry in the same transaction, so a
 * wallet's balance always equals the sum of its ledger entries' amounts. */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "shop/shop_int.h"
#include "store/schema.h"

int shop_proc_top_up_wallet(shop_ctx_t *c) {
    const char *cur, *key = NULL;
    int64_t amount;
    if (shop_in_currency(c, "currency", true, &cur) < 0) return -1;
    if (shop_in_int(c, c->input, "amountMinor", "amountMinor", true, c->s->max_topup_minor,
                    &amount) < 0)
        return -1;
    if (shop_in_idem_key(c, &key) < 0) return -1;
    if (key) {
        json_t *canonical =
            json_pack("{s:s, s:I}", "currency", cur, "amountMinor", (json_int_t)amount);
        int r = shop_idem_begin(c, key, canonical);
        json_decref(canonical);
        if (r != 0) return r < 0 ? -1 : 0;
    }
    char wid[SHOP_KEY_BUF];
    shop_wallet_id(c->user_id, cur, wid, sizeof wid);
    json_t *wallet = NULL;
    if (shop_get(c, B_WALLETS, wid, &wallet) < 0) return -1;
    int64_t balance = wallet ? shop_int_field(wallet, "balanceMinor") : 0, after;
    if (money_add(balance, amount, &after) < 0) {
        json_decref(wallet);
        return shop_invalid(c, "amountMinor",
                            "Invalid \"amountMinor\": the balance would exceed %lld minor units",
                            (long long)MONEY_MAX_MINOR);
    }
    shop_tx_wallet_set(c, wallet, wid, c->user_id, cur, after);
    json_decref(wallet);
    shop_tx_ledger(c, wid, c->user_id, cur, amount, after, "topup", NULL);
    shop_tx_audit(c, "wallet_topped_up",
                  json_pack("{s:s, s:s, s:I}", "walletId", wid, "currency", cur, "amountMinor",
                            (json_int_t)amount));
    shop_event(c, "wallet.topped_up",
               json_pack("{s:s, s:s, s:s, s:I, s:I}", "userId", c->user_id, "walletId", wid,
                         "currency", cur, "amountMinor", (json_int_t)amount, "balanceMinor",
                         (json_int_t)after));
    shop_result(c, shop_wallet_view(wid, c->user_id, cur, after));
    log_info("shop.wallet_topped_up", "wallet=%s amount=%lld", wid, (long long)amount);
    return 0;
}

int shop_proc_transfer(shop_ctx_t *c) {
    const char *to, *cur, *key = NULL;
    int64_t amount;
    if (shop_in_string(c, c->input, "toUserId", "toUserId", true, SHOP_MAX_ID, &to) < 0) return -1;
    if (shop_in_currency(c, "currency", true, &cur) < 0) return -1;
    if (shop_in_int(c, c->input, "amountMinor", "amountMinor", true, c->s->max_transfer_minor,
                    &amount) < 0)
        return -1;
    if (shop_in_idem_key(c, &key) < 0) return -1;
    if (strcmp(to, c->user_id) == 0)
        return shop_invalid(c, "toUserId", "Invalid \"toUserId\": cannot transfer to yourself");
    if (key) {
        json_t *canonical = json_pack("{s:s, s:s, s:I}", "toUserId", to, "currency", cur,
                                      "amountMinor", (json_int_t)amount);
        int r = shop_idem_begin(c, key, canonical);
        json_decref(canonical);
        if (r != 0) return r < 0 ? -1 : 0;
    }
    json_t *user = NULL, *from_wallet = NULL, *to_wallet = NULL;
    int rc = -1;
    if (shop_get(c, B_USERS, to, &user) < 0) goto out;
    if (!user) {
        shop_not_found(c, "User", to);
        goto out;
    }
    char from_id[SHOP_KEY_BUF], to_id[SHOP_KEY_BUF];
    shop_wallet_id(c->user_id, cur, from_id, sizeof from_id);
    shop_wallet_id(to, cur, to_id, sizeof to_id);
    if (shop_get(c, B_WALLETS, from_id, &from_wallet) < 0) goto out;
    if (shop_get(c, B_WALLETS, to_id, &to_wallet) < 0) goto out;
    int64_t from_balance = from_wallet ? shop_int_field(from_wallet, "balanceMinor") : 0;
    int64_t to_balance = to_wallet ? shop_int_field(to_wallet, "balanceMinor") : 0, to_after;
    if (from_balance < amount) {
        shop_insufficient_funds(c, amount, from_balance, cur);
        goto out;
    }
    if (money_add(to_balance, amount, &to_after) < 0) {
        shop_invalid(
            c, "amountMinor",
            "Invalid \"amountMinor\": the recipient's balance would exceed %lld minor units",
            (long long)MONEY_MAX_MINOR);
        goto out;
    }
    int64_t from_after = from_balance - amount;
    char transfer_id[37];
    schema_uuid7(transfer_id);
    shop_tx_wallet_set(c, from_wallet, from_id, c->user_id, cur, from_after);
    shop_tx_wallet_set(c, to_wallet, to_id, to, cur, to_after);
    shop_tx_ledger(c, from_id, c->user_id, cur, -amount, from_after, "transfer_out",
                   json_pack("{s:s, s:s}", "counterparty", to, "transferId", transfer_id));
    shop_tx_ledger(c, to_id, to, cur, amount, to_after, "transfer_in",
                   json_pack("{s:s, s:s}", "counterparty", c->user_id, "transferId", transfer_id));
    shop_tx_audit(c, "wallet_transferred",
                  json_pack("{s:s, s:s, s:s, s:I}", "transferId", transfer_id, "toUserId", to,
                            "currency", cur, "amountMinor", (json_int_t)amount));
    shop_event(c, "wallet.transferred",
               json_pack("{s:s, s:s, s:s, s:s, s:I}", "transferId", transfer_id, "fromUserId",
                         c->user_id, "toUserId", to, "currency", cur, "amountMinor",
                         (json_int_t)amount));
    shop_result(c, json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "transferId", transfer_id,
                             "fromUserId", c->user_id, "toUserId", to, "currency", cur,
                             "amountMinor", (json_int_t)amount, "wallet",
                             shop_wallet_view(from_id, c->user_id, cur, from_after)));
    log_info("shop.wallet_transferred", "transfer=%s from=%s to=%s amount=%lld currency=%s",
             transfer_id, c->user_id, to, (long long)amount, cur);
    rc = 0;
out:
    json_decref(user);
    json_decref(from_wallet);
    json_decref(to_wallet);
    return rc;
}
