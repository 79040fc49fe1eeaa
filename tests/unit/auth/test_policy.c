/* The permission policy through auth_permit(): rule order, operation patterns, bucket
 * and topic restrictions, `match` entries, ownership reporting and the default. */
#include <criterion/criterion.h>
#include <string.h>

#include "auth/auth.h"
#include "auth_test_util.h"

static auth_t *policy_auth(const char *required, const char *permissions) {
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "{\"required\":%s,\"tokens\":{\"t\":{\"userId\":\"u\"}},\"permissions\":%s}", required,
             permissions);
    return tu_auth(NULL, cfg);
}

/* Role arrays for the identities a test builds; a test uses at most a few. */
static char *role_store[16][2];

static auth_identity_t who(const char *user, const char *role1, const char *role2) {
    static int slot;
    char **roles = role_store[slot++ % 16];
    roles[0] = (char *)role1;
    roles[1] = (char *)role2;
    auth_identity_t id = {(char *)user, roles, role2 ? 2 : role1 ? 1 : 0, 0};
    return id;
}

/* permit() with the request given as JSON text (NULL: none). */
static bool permit(const auth_t *a, const auth_identity_t *id, const char *op, const char *res,
                   const char *request, const char **owner) {
    json_t *req = request ? json_loads(request, 0, NULL) : NULL;
    if (request) cr_assert_not_null(req, "bad request JSON %s", request);
    bool ok = auth_permit(a, id, op, res, req, owner);
    json_decref(req);
    return ok;
}

/* The e-commerce seed's table: admin everything; customers read products, read own
 * orders and place new ones, never touch users; emit/subscribe order events. */
static const char shop_policy[] =
    "{\"default\":\"deny\",\"rules\":["
    "{\"role\":\"admin\",\"allow\":\"*\"},"
    "{\"role\":\"customer\",\"allow\":[\"store.get\",\"store.all\",\"store.where\","
    "\"store.subscribe\"],\"buckets\":[\"products\"]},"
    "{\"role\":\"customer\",\"allow\":[\"store.get\",\"store.all\",\"store.insert\"],"
    "\"buckets\":[\"orders\"],\"owner\":\"userId\"},"
    "{\"role\":\"customer\",\"allow\":[\"rules.emit\",\"rules.subscribe\"],\"topics\":[\"order.*\"]"
    "},"
    "{\"role\":\"customer\",\"allow\":\"store.update\",\"buckets\":[\"users\"],"
    "\"match\":{\"key\":\"$session.userId\"}}]}";

Test(auth_policy, admin_may_do_everything) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t admin = who("admin-1", "admin", NULL);
    const char *owner = "sentinel";
    cr_expect(permit(a, &admin, "store.delete", "products", NULL, &owner));
    cr_expect_null(owner);
    cr_expect(permit(a, &admin, "store.clear", "users", NULL, NULL));
    cr_expect(permit(a, &admin, "server.stats", "*", NULL, NULL));
    cr_expect(permit(a, &admin, "rules.registerRule", "*", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, seed_step_9_customer_is_refused) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t alice = who("user-alice", "customer", NULL);
    cr_expect_not(permit(a, &alice, "store.delete", "products", NULL, NULL));
    cr_expect_not(permit(a, &alice, "store.all", "users", NULL, NULL));
    cr_expect_not(permit(a, &alice, "server.stats", "*", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, buckets_restrict_store_operations) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t alice = who("user-alice", "customer", NULL);
    const char *owner = "sentinel";
    cr_expect(permit(a, &alice, "store.get", "products", NULL, &owner));
    cr_expect_null(owner, "products are not an ownership rule");
    cr_expect(permit(a, &alice, "store.subscribe", "products", NULL, NULL));
    cr_expect_not(permit(a, &alice, "store.update", "products", NULL, NULL));
    cr_expect_not(permit(a, &alice, "store.get", "audit-logs", NULL, NULL));
    cr_expect_not(permit(a, &alice, "store.get", NULL, NULL, NULL), "no resource is \"*\"");
    auth_free(a);
}

Test(auth_policy, ownership_rule_reports_its_field) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t alice = who("user-alice", "customer", NULL);
    const char *owner = NULL;
    cr_expect(permit(a, &alice, "store.all", "orders", NULL, &owner));
    cr_expect_str_eq(owner, "userId");
    owner = "sentinel";
    cr_expect_not(permit(a, &alice, "store.delete", "orders", NULL, &owner));
    cr_expect_null(owner, "a refusal reports no owner field");
    auth_free(a);
}

Test(auth_policy, first_matching_rule_decides_the_owner_field) {
    const char *owned_first =
        "{\"rules\":[{\"role\":\"customer\",\"allow\":\"store.all\",\"buckets\":[\"orders\"],"
        "\"owner\":\"userId\"},{\"role\":\"customer\",\"allow\":\"store.*\"}]}";
    const char *open_first =
        "{\"rules\":[{\"role\":\"customer\",\"allow\":\"store.*\"},{\"role\":\"customer\","
        "\"allow\":\"store.all\",\"buckets\":[\"orders\"],\"owner\":\"userId\"}]}";
    auth_identity_t c = who("u1", "customer", NULL);
    const char *owner = NULL;
    auth_t *a = policy_auth("true", owned_first);
    cr_expect(permit(a, &c, "store.all", "orders", NULL, &owner));
    cr_expect_str_eq(owner, "userId");
    auth_free(a);
    a = policy_auth("true", open_first);
    cr_expect(permit(a, &c, "store.all", "orders", NULL, &owner));
    cr_expect_null(owner);
    auth_free(a);
}

Test(auth_policy, operation_patterns) {
    const char *pol = "{\"rules\":[{\"role\":\"r\",\"allow\":[\"store.*\",\"rules.emit\"]}]}";
    auth_t *a = policy_auth("true", pol);
    auth_identity_t r = who("u", "r", NULL);
    cr_expect(permit(a, &r, "store.get", "x", NULL, NULL));
    cr_expect(permit(a, &r, "store.defineBucket", "x", NULL, NULL));
    cr_expect(permit(a, &r, "rules.emit", "t", NULL, NULL));
    cr_expect_not(permit(a, &r, "rules.emitx", "t", NULL, NULL));
    cr_expect_not(permit(a, &r, "rules.setFact", "k", NULL, NULL));
    cr_expect_not(permit(a, &r, "storefront.get", "x", NULL, NULL));
    cr_expect_not(permit(a, &r, "store", "x", NULL, NULL));
    cr_expect_not(permit(a, &r, "store.", "x", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, roles_must_be_held) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t none = who("u", NULL, NULL);
    auth_identity_t other = who("u", "guest", NULL);
    auth_identity_t both = who("u", "guest", "admin");
    cr_expect_not(permit(a, &none, "store.get", "products", NULL, NULL));
    cr_expect_not(permit(a, &other, "store.get", "products", NULL, NULL));
    cr_expect(permit(a, &both, "store.clear", "orders", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, topics_restrict_rules_operations) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t alice = who("user-alice", "customer", NULL);
    cr_expect(permit(a, &alice, "rules.emit", "order.placed", NULL, NULL));
    cr_expect(permit(a, &alice, "rules.subscribe", "order.*", NULL, NULL),
              "a subscription pattern no wider than the rule's");
    cr_expect_not(permit(a, &alice, "rules.emit", "order.placed.eu", NULL, NULL));
    cr_expect_not(permit(a, &alice, "rules.emit", "order", NULL, NULL));
    cr_expect_not(permit(a, &alice, "rules.emit", "payment.failed", NULL, NULL));
    cr_expect_not(permit(a, &alice, "rules.subscribe", "*", NULL, NULL));
    cr_expect_not(permit(a, &alice, "rules.setFact", "order.placed", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, topic_patterns_cover_fact_keys) {
    const char *pol = "{\"rules\":[{\"role\":\"r\",\"allow\":\"rules.*\","
                      "\"topics\":[\"product:*:reserved\",\"cart.*.items\"]}]}";
    auth_t *a = policy_auth("true", pol);
    auth_identity_t r = who("u", "r", NULL);
    cr_expect(permit(a, &r, "rules.getFact", "product:1:reserved", NULL, NULL));
    cr_expect(permit(a, &r, "rules.emit", "cart.42.items", NULL, NULL));
    cr_expect_not(permit(a, &r, "rules.getFact", "product:1:stock", NULL, NULL));
    cr_expect_not(permit(a, &r, "rules.getFact", "product.1.reserved", NULL, NULL),
                  "separators must agree");
    cr_expect_not(permit(a, &r, "rules.getFact", "product::reserved", NULL, NULL),
                  "'*' needs a non-empty segment");
    cr_expect_not(permit(a, &r, "rules.getAllFacts", "*", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, restricted_rules_do_not_spill_into_other_namespaces) {
    const char *pol = "{\"rules\":[{\"role\":\"r\",\"allow\":\"*\",\"buckets\":[\"products\"]},"
                      "{\"role\":\"s\",\"allow\":\"*\",\"topics\":[\"order.*\"]}]}";
    auth_t *a = policy_auth("true", pol);
    auth_identity_t r = who("u", "r", NULL), s = who("u", "s", NULL);
    cr_expect(permit(a, &r, "store.delete", "products", NULL, NULL));
    cr_expect_not(permit(a, &r, "rules.emit", "order.placed", NULL, NULL));
    cr_expect_not(permit(a, &r, "server.stats", "*", NULL, NULL));
    cr_expect(permit(a, &s, "rules.emit", "order.placed", NULL, NULL));
    cr_expect_not(permit(a, &s, "store.get", "products", NULL, NULL));
    cr_expect_not(permit(a, &s, "server.connections", "*", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, bucket_star_means_any_bucket) {
    const char *pol = "{\"rules\":[{\"role\":\"r\",\"allow\":\"store.get\",\"buckets\":[\"*\"]}]}";
    auth_t *a = policy_auth("true", pol);
    auth_identity_t r = who("u", "r", NULL);
    cr_expect(permit(a, &r, "store.get", "anything", NULL, NULL));
    cr_expect_not(permit(a, &r, "rules.getFact", "k", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, match_session_user_id) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t alice = who("user-alice", "customer", NULL);
    cr_expect(permit(a, &alice, "store.update", "users",
                     "{\"bucket\":\"users\",\"key\":\"user-alice\"}", NULL));
    cr_expect_not(permit(a, &alice, "store.update", "users",
                         "{\"bucket\":\"users\",\"key\":\"user-bob\"}", NULL));
    cr_expect_not(permit(a, &alice, "store.update", "users", "{\"bucket\":\"users\"}", NULL),
                  "a missing value never matches");
    cr_expect_not(permit(a, &alice, "store.update", "users", "{\"key\":[\"user-alice\"]}", NULL));
    cr_expect_not(permit(a, &alice, "store.update", "users", NULL, NULL));
    auth_free(a);
}

Test(auth_policy, match_nested_paths_and_literals) {
    const char *pol = "{\"rules\":[{\"role\":\"r\",\"allow\":\"store.insert\",\"match\":{"
                      "\"data.userId\":\"$session.userId\",\"data.region\":\"eu\",\"data.qty\":1,"
                      "\"data.items.0.gift\":false}}]}";
    auth_t *a = policy_auth("true", pol);
    auth_identity_t r = who("u1", "r", NULL);
    cr_expect(permit(a, &r, "store.insert", "orders",
                     "{\"data\":{\"userId\":\"u1\",\"region\":\"eu\",\"qty\":1,"
                     "\"items\":[{\"gift\":false}]}}",
                     NULL));
    cr_expect_not(permit(a, &r, "store.insert", "orders",
                         "{\"data\":{\"userId\":\"u1\",\"region\":\"us\",\"qty\":1,"
                         "\"items\":[{\"gift\":false}]}}",
                         NULL));
    cr_expect_not(permit(a, &r, "store.insert", "orders",
                         "{\"data\":{\"userId\":\"u2\",\"region\":\"eu\",\"qty\":1,"
                         "\"items\":[{\"gift\":false}]}}",
                         NULL));
    cr_expect_not(permit(a, &r, "store.insert", "orders",
                         "{\"data\":{\"userId\":\"u1\",\"region\":\"eu\",\"qty\":\"1\","
                         "\"items\":[{\"gift\":false}]}}",
                         NULL),
                  "JSON values compare by type too");
    cr_expect_not(permit(a, &r, "store.insert", "orders",
                         "{\"data\":{\"userId\":\"u1\",\"region\":\"eu\",\"qty\":1,\"items\":[]}}",
                         NULL));
    auth_free(a);
}

Test(auth_policy, default_allow_and_default_deny) {
    const char *allow = "{\"default\":\"allow\",\"rules\":[]}";
    const char *deny = "{\"rules\":[]}";
    auth_identity_t r = who("u", "r", NULL);
    const char *owner = "sentinel";
    auth_t *a = policy_auth("true", allow);
    cr_expect(permit(a, &r, "store.clear", "orders", NULL, &owner));
    cr_expect_null(owner);
    auth_free(a);
    a = policy_auth("true", deny);
    cr_expect_not(permit(a, &r, "store.get", "orders", NULL, NULL), "default is deny");
    auth_free(a);
}

Test(auth_policy, without_a_session) {
    auth_t *optional = policy_auth("false", shop_policy);
    cr_expect(auth_has_policy(optional));
    cr_expect(permit(optional, NULL, "store.clear", "orders", NULL, NULL),
              "optional auth: permissions apply only to sessions (protocol §6)");
    auth_free(optional);
    auth_t *required = policy_auth("true", shop_policy);
    cr_expect_not(permit(required, NULL, "store.get", "products", NULL, NULL));
    auth_free(required);
}

Test(auth_policy, no_policy_allows_everything) {
    auth_t *a = tu_auth(NULL, "{\"tokens\":{\"t\":{\"userId\":\"u\"}}}");
    cr_expect_not(auth_has_policy(a));
    auth_identity_t r = who("u", NULL, NULL);
    const char *owner = "sentinel";
    cr_expect(permit(a, &r, "store.clear", "orders", NULL, &owner));
    cr_expect_null(owner);
    auth_free(a);
    cr_expect(auth_permit(NULL, &r, "store.clear", "orders", NULL, NULL), "auth disabled");
}

/* Whether a decision may be reused for the same identity, operation and resource: not
 * once a rule's `match` looked at the request, whichever way it went. */
static bool reusable_after(const auth_t *a, const auth_identity_t *id, const char *op, const char *res,
                           const char *request, bool *allowed) {
    json_t *req = request ? json_loads(request, 0, NULL) : NULL;
    bool reusable = false;
    *allowed = auth_permit_reusable(a, id, op, res, req, NULL, &reusable);
    json_decref(req);
    return reusable;
}

Test(auth_policy, decisions_that_read_the_request_are_not_reusable) {
    auth_t *a = policy_auth("true", shop_policy);
    auth_identity_t cust = who("user-1", "customer", NULL);
    auth_identity_t admin = who("admin-1", "admin", NULL);
    bool allowed;
    cr_expect(reusable_after(a, &cust, "store.get", "products", NULL, &allowed));
    cr_expect(allowed);
    cr_expect(reusable_after(a, &cust, "store.delete", "products", NULL, &allowed), "a denial by default");
    cr_expect_not(allowed);
    /* users: only the rule with `match` allows store.update, so both answers read it. */
    cr_expect_not(reusable_after(a, &cust, "store.update", "users", "{\"key\":\"user-1\"}", &allowed));
    cr_expect(allowed);
    cr_expect_not(reusable_after(a, &cust, "store.update", "users", "{\"key\":\"user-2\"}", &allowed));
    cr_expect_not(allowed);
    /* An earlier rule without `match` decides before the match rule is reached. */
    cr_expect(reusable_after(a, &admin, "store.update", "users", "{\"key\":\"x\"}", &allowed));
    cr_expect(allowed);
    auth_free(a);
}
