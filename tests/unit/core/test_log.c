#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "core/log.h"

Test(log, text_lines_carry_level_event_and_pairs) {
    char line[512];
    log_format_line(LOG_TEXT, LOG_INFO, "http.request", "conn=1 req=2 method=GET", line, sizeof line);
    cr_assert(strstr(line, " info http.request conn=1 req=2 method=GET\n") != NULL, "%s", line);
}

Test(log, json_lines_are_objects_with_typed_values) {
    char line[512], q[64];
    char pairs[256];
    snprintf(pairs, sizeof pairs, "conn=7 target=%s status=200 neg=-3 code=007",
             log_quote("/a b\"c", q, sizeof q));
    log_format_line(LOG_JSON, LOG_WARN, "http.request", pairs, line, sizeof line);
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    cr_assert_not_null(o, "not JSON: %s (%s)", line, e.text);
    cr_assert_str_eq(json_string_value(json_object_get(o, "level")), "warn");
    cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "http.request");
    cr_assert_eq(json_integer_value(json_object_get(o, "conn")), 7);
    cr_assert_eq(json_integer_value(json_object_get(o, "neg")), -3);
    cr_assert_str_eq(json_string_value(json_object_get(o, "code")), "007");
    cr_assert_str_eq(json_string_value(json_object_get(o, "target")), "/a b\"c");
    cr_assert(json_is_string(json_object_get(o, "ts")));
    json_decref(o);
}

Test(log, quote_neutralises_control_characters) {
    char q[32];
    log_quote("a\nb\x01", q, sizeof q);
    cr_assert_str_eq(q, "\"a?b?\"");
}

Test(log, levels_below_the_minimum_are_disabled) {
    log_setup(LOG_TEXT, LOG_WARN);
    cr_assert_not(log_enabled(LOG_INFO));
    cr_assert(log_enabled(LOG_ERROR));
    log_setup(LOG_TEXT, LOG_INFO);
}
