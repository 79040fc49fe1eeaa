/* The order state machine (see order.h). */
#include "shop/order.h"

#include <string.h>

#include <jansson.h>

static const char *const status_names[] = {"paid", "shipped", "delivered", "cancelled"};
static const char *const action_names[] = {"ship", "deliver", "cancel"};

int order_status_parse(const char *name, order_status_t *out) {
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, status_names[i]) == 0) {
            *out = (order_status_t)i;
            return 0;
        }
    return -1;
}

const char *order_status_name(order_status_t status) {
    return (unsigned)status < 4 ? status_names[status] : "unknown";
}

const char *order_action_name(order_action_t action) {
    return (unsigned)action < 3 ? action_names[action] : "unknown";
}

order_status_t order_action_target(order_action_t action) {
    switch (action) {
    case ORDER_SHIP:
        return ORDER_SHIPPED;
    case ORDER_DELIVER:
        return ORDER_DELIVERED;
    case ORDER_CANCEL:
        return ORDER_CANCELLED;
    }
    return ORDER_CANCELLED;
}

bool order_action_is_admin_only(order_action_t action) {
    return action != ORDER_CANCEL;
}

int order_transition_check(order_status_t from, order_action_t action, bool is_admin, err_t *err) {
    if (order_action_is_admin_only(action) && !is_admin) {
        err_set(err, ERR_FORBIDDEN, "Only admins may %s orders", order_action_name(action));
        return -1;
    }
    order_status_t to = order_action_target(action);
    bool ok;
    switch (action) {
    case ORDER_SHIP:
        ok = from == ORDER_PAID;
        break;
    case ORDER_DELIVER:
        ok = from == ORDER_SHIPPED;
        break;
    case ORDER_CANCEL:
        ok = from == ORDER_PAID || (is_admin && from == ORDER_SHIPPED);
        break;
    default:
        ok = false;
        break;
    }
    if (ok) return 0;
    err_set(err, ERR_CONFLICT, "Cannot %s an order that is %s", order_action_name(action),
            order_status_name(from));
    json_t *d = json_object();
    json_object_set_new(d, "reason", json_string("invalid_transition"));
    json_object_set_new(d, "from", json_string(order_status_name(from)));
    json_object_set_new(d, "to", json_string(order_status_name(to)));
    err_details_take(err, d);
    return -1;
}
