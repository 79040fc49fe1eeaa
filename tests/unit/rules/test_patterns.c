/* Topic and fact-key patterns, and name validation (pure functions of rules.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "rules/rules.h"

Test(rules_patterns, topic_wildcard_matches_exactly_one_segment) {
    cr_assert(rules_topic_match("order.*", "order.placed"));
    cr_assert(rules_topic_match("order.placed", "order.placed"));
    cr_assert(rules_topic_match("*.placed", "order.placed"));
    cr_assert(rules_topic_match("*", "order"));
    cr_assert(rules_topic_match("*.*.eu", "order.placed.eu"));
    cr_assert_not(rules_topic_match("order.*", "order.placed.eu"));
    cr_assert_not(rules_topic_match("order.*", "order"));
    cr_assert_not(rules_topic_match("*", "order.placed"));
    cr_assert_not(rules_topic_match("order.placed", "order.place"));
    cr_assert_not(rules_topic_match("order.placed", "order.placedx"));
    cr_assert_not(rules_topic_match("inventory.*", "order.placed"));
}

Test(rules_patterns, topic_wildcard_never_matches_an_empty_segment) {
    cr_assert_not(rules_topic_match("order.*", "order."));
    cr_assert_not(rules_topic_match("*.placed", ".placed"));
}

Test(rules_patterns, fact_patterns_follow_the_spec_examples) {
    cr_assert(rules_fact_match("user:*:name", "user:1:name"));
    cr_assert_not(rules_fact_match("user:*:name", "user:1"));
    cr_assert_not(rules_fact_match("user:*:name", "user:1:name:x"));
    cr_assert(rules_fact_match("*", "config"));
    cr_assert_not(rules_fact_match("*", "user:1"));
    cr_assert(rules_fact_match("order:*:status", "order:order-1:status"));
    cr_assert(rules_fact_match("*:*", "a:b"));
}

Test(rules_patterns, fact_matching_splits_on_colons_only) {
    cr_assert(rules_fact_match("user:*", "user:alice@example.com"));
    cr_assert(rules_topic_match("user.*", "user.a:b"));
    cr_assert_not(rules_fact_match("user:*", "user.alice"));
}

Test(rules_patterns, null_arguments_never_match) {
    cr_assert_not(rules_topic_match(NULL, "a"));
    cr_assert_not(rules_topic_match("a", NULL));
    cr_assert_not(rules_fact_match(NULL, NULL));
}

Test(rules_patterns, names_need_non_empty_segments) {
    cr_assert(rules_name_ok("order.placed", '.', false));
    cr_assert(rules_name_ok("order", '.', false));
    cr_assert_not(rules_name_ok("", '.', false));
    cr_assert_not(rules_name_ok(NULL, '.', false));
    cr_assert_not(rules_name_ok("order..placed", '.', false));
    cr_assert_not(rules_name_ok(".order", '.', false));
    cr_assert_not(rules_name_ok("order.", '.', false));
    cr_assert_not(rules_name_ok(".", '.', true));
    cr_assert_not(rules_name_ok("user::name", ':', true));
    cr_assert_not(rules_name_ok("user:", ':', false));
    cr_assert(rules_name_ok("user:1:name", ':', false));
}

Test(rules_patterns, wildcards_only_in_patterns_and_only_as_whole_segments) {
    cr_assert(rules_name_ok("order.*", '.', true));
    cr_assert(rules_name_ok("*", ':', true));
    cr_assert_not(rules_name_ok("order.*", '.', false));
    cr_assert_not(rules_name_ok("order.pl*", '.', true));
    cr_assert_not(rules_name_ok("**", '.', true));
    cr_assert_not(rules_name_ok("user:*x", ':', true));
}

Test(rules_patterns, names_reject_control_characters_and_overlong_input) {
    cr_assert_not(rules_name_ok("order\n.placed", '.', false));
    char big[RULES_MAX_KEY + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_not(rules_name_ok(big, '.', false));
    big[RULES_MAX_KEY] = '\0';
    cr_assert(rules_name_ok(big, '.', false));
}
