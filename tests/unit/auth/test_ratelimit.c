/* The sliding-log rate limiter: windows slide request by request, retry-after is the
 * time until the oldest counted request leaves the window, keys are independent, and
 * memory stays bounded (idle keys forgotten, key count capped). */
#include <criterion/criterion.h>
#include <stdio.h>

#include "auth/auth.h"

static ratelimit_t *rl_make(const char *json_text) {
    json_t *cfg = json_loads(json_text, 0, NULL);
    cr_assert_not_null(cfg);
    char err[256];
    ratelimit_t *rl = ratelimit_new(cfg, err, sizeof err);
    json_decref(cfg);
    cr_assert_not_null(rl, "%s", err);
    return rl;
}

Test(auth_ratelimit, allows_max_requests_per_window) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":3,\"windowMs\":1000}");
    cr_expect_eq(ratelimit_max(rl), 3);
    cr_expect_eq(ratelimit_hit(rl, "a", 10000), 0);
    cr_expect_eq(ratelimit_hit(rl, "a", 10100), 0);
    cr_expect_eq(ratelimit_hit(rl, "a", 10200), 0);
    cr_expect_eq(ratelimit_hit(rl, "a", 10300), 700, "oldest (10000) leaves at 11000");
    cr_expect_eq(ratelimit_hit(rl, "a", 10999), 1);
    cr_expect_eq(ratelimit_hit(rl, "a", 11000), 0, "the window slid past the first request");
    cr_expect_eq(ratelimit_hit(rl, "a", 11001), 99, "next oldest is 10100");
    ratelimit_free(rl);
}

Test(auth_ratelimit, window_slides_rather_than_resets) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":2,\"windowMs\":1000}");
    /* Two requests just before a fixed-window boundary and two just after would pass a
     * fixed window; the sliding log refuses the second pair. */
    cr_expect_eq(ratelimit_hit(rl, "k", 1900), 0);
    cr_expect_eq(ratelimit_hit(rl, "k", 1950), 0);
    cr_expect_eq(ratelimit_hit(rl, "k", 2050), 850);
    cr_expect_eq(ratelimit_hit(rl, "k", 2100), 800);
    cr_expect_eq(ratelimit_hit(rl, "k", 2900), 0);
    ratelimit_free(rl);
}

Test(auth_ratelimit, refused_requests_are_not_counted) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":1,\"windowMs\":60000}");
    cr_expect_eq(ratelimit_hit(rl, "k", 0 + 1000), 0);
    for (int i = 1; i < 100; i++) cr_expect_gt(ratelimit_hit(rl, "k", 1000 + (uint64_t)i * 500), 0);
    cr_expect_eq(ratelimit_hit(rl, "k", 61000), 0, "knocking while refused does not extend it");
    ratelimit_free(rl);
}

Test(auth_ratelimit, seed_step_10_retry_after) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":100,\"windowMs\":60000}");
    uint64_t t0 = 1706745600000ull;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(ratelimit_hit(rl, "user-alice", t0 + (uint64_t)i * 450), 0);
    cr_expect_eq(ratelimit_hit(rl, "user-alice", t0 + 45000), 15000);
    ratelimit_free(rl);
}

Test(auth_ratelimit, keys_are_independent) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":1,\"windowMs\":1000}");
    cr_expect_eq(ratelimit_hit(rl, "user-alice", 5000), 0);
    cr_expect_eq(ratelimit_hit(rl, "user-bob", 5000), 0);
    cr_expect_eq(ratelimit_hit(rl, "127.0.0.1", 5000), 0);
    cr_expect_gt(ratelimit_hit(rl, "user-alice", 5001), 0);
    cr_expect_gt(ratelimit_hit(rl, "user-bob", 5001), 0);
    cr_expect_eq(ratelimit_key_count(rl), 3);
    ratelimit_free(rl);
}

Test(auth_ratelimit, clock_stepping_back_does_not_break_the_log) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":2,\"windowMs\":1000}");
    cr_expect_eq(ratelimit_hit(rl, "k", 5000), 0);
    cr_expect_eq(ratelimit_hit(rl, "k", 4000), 0);
    uint64_t retry = ratelimit_hit(rl, "k", 4500);
    cr_expect_geq(retry, 1);
    cr_expect_leq(retry, 1000);
    ratelimit_free(rl);
}

Test(auth_ratelimit, idle_keys_are_forgotten) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":5,\"windowMs\":1000}");
    for (int i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof key, "10.0.0.%d", i);
        ratelimit_hit(rl, key, 1000);
    }
    cr_expect_eq(ratelimit_key_count(rl), 100);
    ratelimit_hit(rl, "10.0.0.1", 1500);
    ratelimit_hit(rl, "late", 2000);
    cr_expect_eq(ratelimit_key_count(rl), 2, "keys idle for a whole window are dropped");
    ratelimit_hit(rl, "later", 3000);
    cr_expect_eq(ratelimit_key_count(rl), 1, "a full window after its last hit, \"late\" is gone");
    ratelimit_free(rl);
}

Test(auth_ratelimit, key_count_is_capped) {
    ratelimit_t *rl = rl_make("{\"maxRequests\":1,\"windowMs\":3600000}");
    char key[32];
    for (int i = 0; i < 70000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ratelimit_hit(rl, key, 1000);
    }
    cr_expect_leq(ratelimit_key_count(rl), 65536);
    cr_expect_gt(ratelimit_key_count(rl), 1000);
    /* The newest key is still limited; the least recently used were evicted. */
    cr_expect_gt(ratelimit_hit(rl, "k69999", 1001), 0);
    cr_expect_eq(ratelimit_hit(rl, "k0", 1001), 0);
    ratelimit_free(rl);
}

static void expect_bad(const char *json_text, const char *message) {
    json_t *cfg = json_loads(json_text, 0, NULL);
    cr_assert_not_null(cfg);
    char err[256] = "x";
    ratelimit_t *rl = ratelimit_new(cfg, err, sizeof err);
    json_decref(cfg);
    cr_expect_null(rl, "%s should be refused", json_text);
    ratelimit_free(rl);
    cr_expect_str_eq(err, message, "%s", json_text);
}

Test(auth_ratelimit, bad_configs_name_their_path) {
    expect_bad("[]", "config: $.rateLimit: must be an object");
    expect_bad("{\"windowMs\":1000}",
               "config: $.rateLimit.maxRequests: must be a positive integer (at most 10000)");
    expect_bad("{\"maxRequests\":0,\"windowMs\":1000}",
               "config: $.rateLimit.maxRequests: must be a positive integer (at most 10000)");
    expect_bad("{\"maxRequests\":1.5,\"windowMs\":1000}",
               "config: $.rateLimit.maxRequests: must be a positive integer (at most 10000)");
    expect_bad("{\"maxRequests\":5,\"windowMs\":-1}",
               "config: $.rateLimit.windowMs: must be a positive integer (at most 86400000)");
    expect_bad("{\"maxRequests\":5,\"windowMs\":\"60s\"}",
               "config: $.rateLimit.windowMs: must be a positive integer (at most 86400000)");
    expect_bad("{\"maxRequests\":5,\"windowMs\":1000,\"burst\":2}",
               "config: $.rateLimit.burst: unknown field");
}

Test(auth_ratelimit, absent_config_disables) {
    char err[64] = "x";
    cr_expect_null(ratelimit_new(NULL, err, sizeof err));
    cr_expect_str_empty(err);
    cr_expect_eq(ratelimit_hit(NULL, "k", 1), 0);
    ratelimit_free(NULL);
}
