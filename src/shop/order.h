/* The order state machine. Pure: no I/O, no store.
 *
 *     paid ──ship (admin)──▶ shipped ──deliver (admin)──▶ delivered
 *       │                       │
 *       └──cancel──▶ cancelled ◀┘ cancel (admin only)
 *
 * A customer may cancel their own order while it is `paid`; an admin may cancel any
 * order that is not yet `delivered` (paid or shipped); only admins ship and deliver.
 * `delivered` and `cancelled` are final. Whether the order belongs to the customer is
 * the caller's business (shop answers NOT_FOUND for other people's orders before it
 * asks the state machine). */
#ifndef SHOPD_SHOP_ORDER_H
#define SHOPD_SHOP_ORDER_H

#include <stdbool.h>

#include "core/err.h"

typedef enum { ORDER_PAID, ORDER_SHIPPED, ORDER_DELIVERED, ORDER_CANCELLED } order_status_t;
typedef enum { ORDER_SHIP, ORDER_DELIVER, ORDER_CANCEL } order_action_t;

/* "paid" → ORDER_PAID …; returns 0, or -1 for an unknown name. */
int order_status_parse(const char *name, order_status_t *out);
const char *order_status_name(order_status_t status);
const char *order_action_name(order_action_t action); /* "ship", "deliver", "cancel" */
/* The status an action leads to. */
order_status_t order_action_target(order_action_t action);
/* Whether only admins may perform the action at all (ship, deliver). */
bool order_action_is_admin_only(order_action_t action);

/* Checks that an actor (admin or not) may apply `action` to an order in `from`.
 * Returns 0, or -1 with err set: FORBIDDEN for a customer shipping or delivering;
 * CONFLICT "Cannot <action> an order that is <from>" with details
 * {"reason":"invalid_transition","from":…,"to":…} for every other refusal. */
int order_transition_check(order_status_t from, order_action_t action, bool is_admin, err_t *err);

#endif
