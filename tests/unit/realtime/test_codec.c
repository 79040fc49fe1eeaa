#include <criterion/criterion.h>
#include <string.h>

#include "realtime/codec.h"

static rt_frame_kind_t parse(const char *s, json_t **msg, err_t *err) {
    return rt_frame_parse(s, strlen(s), msg, err);
}

static void expect_invalid(const char *frame, err_code_t code, const char *msg_part) {
    json_t *msg = NULL;
    err_t err = ERR_INIT;
    cr_assert_eq(parse(frame, &msg, &err), RT_FRAME_INVALID, "frame %s", frame);
    cr_assert_null(msg);
    cr_assert_eq(err.code, code, "frame %s gave %s", frame, err_code_name(err.code));
    cr_assert(strstr(err.msg, msg_part) != NULL, "message %s", err.msg);
    err_clear(&err);
}

Test(rt_frame, invalid_json_is_a_parse_error) { expect_invalid("{nope", ERR_PARSE, "Invalid JSON"); }

Test(rt_frame, non_objects_are_parse_errors) {
    expect_invalid("[1,2]", ERR_PARSE, "object");
    expect_invalid("null", ERR_PARSE, "object");
    expect_invalid("\"str\"", ERR_PARSE, "object");
    expect_invalid("42", ERR_PARSE, "object");
}

Test(rt_frame, type_must_be_a_non_empty_string) {
    expect_invalid("{\"id\":1}", ERR_INVALID_REQUEST, "\"type\"");
    expect_invalid("{\"id\":1,\"type\":\"\"}", ERR_INVALID_REQUEST, "\"type\"");
    expect_invalid("{\"id\":1,\"type\":5}", ERR_INVALID_REQUEST, "\"type\"");
}

Test(rt_frame, type_is_checked_before_id) {
    expect_invalid("{\"type\":7}", ERR_INVALID_REQUEST, "\"type\"");
}

Test(rt_frame, pong_needs_a_numeric_timestamp) {
    json_t *msg = NULL;
    err_t err = ERR_INIT;
    cr_assert_eq(parse("{\"type\":\"pong\",\"timestamp\":123}", &msg, &err), RT_FRAME_PONG);
    cr_assert_null(msg);
    expect_invalid("{\"type\":\"pong\"}", ERR_INVALID_REQUEST, "\"timestamp\"");
    expect_invalid("{\"type\":\"pong\",\"timestamp\":\"1\"}", ERR_INVALID_REQUEST, "\"timestamp\"");
}

Test(rt_frame, requests_need_a_numeric_id) {
    expect_invalid("{\"type\":\"store.get\"}", ERR_INVALID_REQUEST, "\"id\"");
    expect_invalid("{\"type\":\"store.get\",\"id\":\"1\"}", ERR_INVALID_REQUEST, "\"id\"");
    expect_invalid("{\"type\":\"store.get\",\"id\":null}", ERR_INVALID_REQUEST, "\"id\"");
    json_t *msg = NULL;
    err_t err = ERR_INIT;
    cr_assert_eq(parse("{\"type\":\"store.get\",\"id\":1.5,\"bucket\":\"b\"}", &msg, &err),
                 RT_FRAME_REQUEST);
    cr_assert_not_null(msg);
    json_decref(msg);
}

Test(rt_frame, deep_nesting_is_refused) {
    char frame[400] = "{\"id\":1,\"type\":\"x\",\"d\":";
    for (int i = 0; i < 100; i++) strcat(frame, "[");
    for (int i = 0; i < 100; i++) strcat(frame, "]");
    strcat(frame, "}");
    expect_invalid(frame, ERR_PARSE, "deeper");
}

static char *written(void (*fn)(buf_t *, const json_t *, const err_t *), const json_t *id,
                     const err_t *e) {
    buf_t b;
    buf_init(&b, 0);
    fn(&b, id, e);
    return buf_take(&b, NULL);
}

static void write_error_adapter(buf_t *b, const json_t *id, const err_t *e) { rt_write_error(b, id, e); }

Test(rt_write, error_frames_follow_the_protocol_shape) {
    err_t e = ERR_INIT;
    err_set(&e, ERR_UNKNOWN_OPERATION, "Unknown operation \"%s\"", "nope.op");
    json_t *id = json_integer(3);
    char *s = written(write_error_adapter, id, &e);
    cr_assert_str_eq(s, "{\"id\":3,\"type\":\"error\",\"code\":\"UNKNOWN_OPERATION\","
                        "\"message\":\"Unknown operation \\\"nope.op\\\"\"}");
    free(s);
    err_details_take(&e, json_pack("{s:i}", "retryAfterMs", 10));
    s = written(write_error_adapter, NULL, &e);
    cr_assert(strstr(s, "{\"id\":0,") == s, "%s", s);
    cr_assert(strstr(s, ",\"details\":{\"retryAfterMs\":10}}") != NULL, "%s", s);
    free(s);
    json_decref(id);
    err_clear(&e);
}

Test(rt_write, result_push_welcome_ping_and_shutdown) {
    buf_t b;
    buf_init(&b, 0);
    json_t *id = json_integer(9), *data = json_pack("{s:b}", "ok", 1);
    rt_write_result(&b, id, data);
    cr_assert_str_eq(buf_cstr(&b), "{\"id\":9,\"type\":\"result\",\"data\":{\"ok\":true}}");
    buf_cleanup(&b);
    rt_write_push(&b, "subscription", "sub-1", "{\"ok\":true}", 11);
    cr_assert_str_eq(buf_cstr(&b),
                     "{\"type\":\"push\",\"channel\":\"subscription\",\"subscriptionId\":\"sub-1\","
                     "\"data\":{\"ok\":true}}");
    buf_cleanup(&b);
    rt_write_welcome(&b, 1700000000000, 1);
    cr_assert_str_eq(buf_cstr(&b), "{\"type\":\"welcome\",\"version\":\"1.0.0\","
                                   "\"serverTime\":1700000000000,\"requiresAuth\":true}");
    buf_cleanup(&b);
    rt_write_ping(&b, 5);
    cr_assert_str_eq(buf_cstr(&b), "{\"type\":\"ping\",\"timestamp\":5}");
    buf_cleanup(&b);
    rt_write_shutdown(&b, 300);
    cr_assert_str_eq(buf_cstr(&b), "{\"type\":\"system\",\"event\":\"shutdown\",\"gracePeriodMs\":300}");
    buf_cleanup(&b);
    json_decref(id);
    json_decref(data);
}
