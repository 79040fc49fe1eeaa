/* The order state machine: every (status, action, role) combination. */
#include <criterion/criterion.h>
#include <string.h>

#include "shop/order.h"

typedef enum { OK, FORBID, CONFL } outcome_t;

typedef struct {
    order_status_t from;
    order_action_t action;
    bool admin;
    outcome_t want;
} case_t;

static const case_t cases[] = {
    /* admin */
    {ORDER_PAID, ORDER_SHIP, true, OK},
    {ORDER_SHIPPED, ORDER_SHIP, true, CONFL},
    {ORDER_DELIVERED, ORDER_SHIP, true, CONFL},
    {ORDER_CANCELLED, ORDER_SHIP, true, CONFL},
    {ORDER_PAID, ORDER_DELIVER, true, CONFL},
    {ORDER_SHIPPED, ORDER_DELIVER, true, OK},
    {ORDER_DELIVERED, ORDER_DELIVER, true, CONFL},
    {ORDER_CANCELLED, ORDER_DELIVER, true, CONFL},
    {ORDER_PAID, ORDER_CANCEL, true, OK},
    {ORDER_SHIPPED, ORDER_CANCEL, true, OK},
    {ORDER_DELIVERED, ORDER_CANCEL, true, CONFL},
    {ORDER_CANCELLED, ORDER_CANCEL, true, CONFL},
    /* customer (acting on their own order) */
    {ORDER_PAID, ORDER_SHIP, false, FORBID},
    {ORDER_SHIPPED, ORDER_SHIP, false, FORBID},
    {ORDER_DELIVERED, ORDER_SHIP, false, FORBID},
    {ORDER_CANCELLED, ORDER_SHIP, false, FORBID},
    {ORDER_PAID, ORDER_DELIVER, false, FORBID},
    {ORDER_SHIPPED, ORDER_DELIVER, false, FORBID},
    {ORDER_DELIVERED, ORDER_DELIVER, false, FORBID},
    {ORDER_CANCELLED, ORDER_DELIVER, false, FORBID},
    {ORDER_PAID, ORDER_CANCEL, false, OK},
    {ORDER_SHIPPED, ORDER_CANCEL, false, CONFL},
    {ORDER_DELIVERED, ORDER_CANCEL, false, CONFL},
    {ORDER_CANCELLED, ORDER_CANCEL, false, CONFL},
};

Test(orders, every_transition_is_allowed_or_refused_per_role) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const case_t *k = &cases[i];
        err_t err = ERR_INIT;
        int rc = order_transition_check(k->from, k->action, k->admin, &err);
        const char *who = k->admin ? "admin" : "customer";
        const char *from = order_status_name(k->from), *act = order_action_name(k->action);
        switch (k->want) {
        case OK:
            cr_expect_eq(rc, 0, "%s %s from %s: %s", who, act, from, err.msg);
            cr_expect_eq(err.code, ERR_NONE);
            break;
        case FORBID:
            cr_expect_eq(rc, -1, "%s %s from %s allowed", who, act, from);
            cr_expect_eq(err.code, ERR_FORBIDDEN, "%s %s from %s: %s", who, act, from, err.msg);
            break;
        case CONFL: {
            cr_expect_eq(rc, -1, "%s %s from %s allowed", who, act, from);
            cr_expect_eq(err.code, ERR_CONFLICT, "%s %s from %s: %s", who, act, from, err.msg);
            const char *reason = json_string_value(json_object_get(err.details, "reason"));
            cr_expect_str_eq(reason ? reason : "", "invalid_transition");
            cr_expect_str_eq(json_string_value(json_object_get(err.details, "from")), from);
            cr_expect_str_eq(json_string_value(json_object_get(err.details, "to")),
                             order_status_name(order_action_target(k->action)));
            break;
        }
        }
        err_clear(&err);
    }
}

Test(orders, conflict_messages_name_the_action_and_the_status) {
    err_t err = ERR_INIT;
    cr_assert_eq(order_transition_check(ORDER_DELIVERED, ORDER_CANCEL, true, &err), -1);
    cr_expect_str_eq(err.msg, "Cannot cancel an order that is delivered");
    err_clear(&err);
    cr_assert_eq(order_transition_check(ORDER_PAID, ORDER_SHIP, false, &err), -1);
    cr_expect_str_eq(err.msg, "Only admins may ship orders");
    cr_expect_null(err.details);
    err_clear(&err);
}

Test(orders, actions_lead_to_their_status) {
    cr_expect_eq(order_action_target(ORDER_SHIP), ORDER_SHIPPED);
    cr_expect_eq(order_action_target(ORDER_DELIVER), ORDER_DELIVERED);
    cr_expect_eq(order_action_target(ORDER_CANCEL), ORDER_CANCELLED);
    cr_expect(order_action_is_admin_only(ORDER_SHIP));
    cr_expect(order_action_is_admin_only(ORDER_DELIVER));
    cr_expect_not(order_action_is_admin_only(ORDER_CANCEL));
}

Test(orders, status_names_round_trip) {
    const char *names[] = {"paid", "shipped", "delivered", "cancelled"};
    for (size_t i = 0; i < 4; i++) {
        order_status_t st;
        cr_assert_eq(order_status_parse(names[i], &st), 0, "%s", names[i]);
        cr_expect_str_eq(order_status_name(st), names[i]);
    }
    order_status_t st = ORDER_PAID;
    cr_expect_eq(order_status_parse("pending", &st), -1);
    cr_expect_eq(order_status_parse("Paid", &st), -1);
    cr_expect_eq(order_status_parse(NULL, &st), -1);
    cr_expect_eq(st, ORDER_PAID);
}
