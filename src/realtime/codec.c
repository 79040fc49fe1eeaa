/* Realtime frame validation and writing (see codec.h). */
#include "realtime/codec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"

#define RT_MAX_JSON_DEPTH 64

rt_frame_kind_t rt_frame_parse(const char *data, size_t len, json_t **msg_out, err_t *err) {
    json_parse_status_t st;
    json_t *msg = json_parse(data, len, RT_MAX_JSON_DEPTH, &st);
    *msg_out = NULL;
    if (st == JSON_PARSE_TOO_DEEP) { /* the message object itself is level 1 */
        err_set(err, ERR_PARSE, "Invalid message: nested deeper than %d levels", RT_MAX_JSON_DEPTH);
        return RT_FRAME_INVALID;
    }
    if (!msg) {
        err_set(err, ERR_PARSE, "Invalid JSON");
        return RT_FRAME_INVALID;
    }
    if (!json_is_object(msg)) {
        json_decref(msg);
        err_set(err, ERR_PARSE, "Invalid message: expected a JSON object");
        return RT_FRAME_INVALID;
    }
    json_t *type = json_object_get(msg, "type");
    if (!json_is_string(type) || json_string_length(type) == 0) {
        json_decref(msg);
        err_set(err, ERR_INVALID_REQUEST, "Missing or invalid \"type\": expected non-empty string");
        return RT_FRAME_INVALID;
    }
    if (strcmp(json_string_value(type), "pong") == 0) {
        json_t *ts = json_object_get(msg, "timestamp");
        int ok = json_is_number(ts);
        json_decref(msg);
        if (!ok) {
            err_set(err, ERR_INVALID_REQUEST, "Missing or invalid \"timestamp\": expected finite number");
            return RT_FRAME_INVALID;
        }
        return RT_FRAME_PONG;
    }
    /* The reader never produces NaN or infinities, so any number is finite. */
    if (!json_is_number(json_object_get(msg, "id"))) {
        json_decref(msg);
        err_set(err, ERR_INVALID_REQUEST, "Missing or invalid \"id\": expected finite number");
        return RT_FRAME_INVALID;
    }
    *msg_out = msg;
    return RT_FRAME_REQUEST;
}

static void write_id(buf_t *out, const json_t *id) {
    if (id) json_write(out, id);
    else buf_append_char(out, '0');
}

void rt_write_result(buf_t *out, const json_t *id, const json_t *data) {
    buf_append_str(out, "{\"id\":");
    write_id(out, id);
    buf_append_str(out, ",\"type\":\"result\",\"data\":");
    json_write(out, data);
    buf_append_char(out, '}');
}

void rt_write_error(buf_t *out, const json_t *id, const err_t *err) {
    buf_append_str(out, "{\"id\":");
    write_id(out, id);
    buf_append_str(out, ",\"type\":\"error\",\"code\":");
    const char *code = err_code_name(err->code == ERR_NONE ? ERR_INTERNAL : err->code);
    json_write_string(out, code, strlen(code));
    buf_append_str(out, ",\"message\":");
    json_write_string(out, err->msg, strlen(err->msg));
    if (err->details) {
        buf_append_str(out, ",\"details\":");
        json_write(out, err->details);
    }
    buf_append_char(out, '}');
}

void rt_write_push(buf_t *out, const char *channel, const char *subscription_id, const char *data,
                   size_t len) {
    buf_append_str(out, "{\"type\":\"push\",\"channel\":");
    json_write_string(out, channel, strlen(channel));
    buf_append_str(out, ",\"subscriptionId\":");
    json_write_string(out, subscription_id, strlen(subscription_id));
    buf_append_str(out, ",\"data\":");
    buf_append(out, data, len);
    buf_append_char(out, '}');
}

void rt_write_welcome(buf_t *out, int64_t server_time_ms, int requires_auth) {
    buf_printf(out,
               "{\"type\":\"welcome\",\"version\":\"" RT_PROTOCOL_VERSION
               "\",\"serverTime\":%lld,\"requiresAuth\":%s}",
               (long long)server_time_ms, requires_auth ? "true" : "false");
}

void rt_write_ping(buf_t *out, int64_t timestamp_ms) {
    buf_printf(out, "{\"type\":\"ping\",\"timestamp\":%lld}", (long long)timestamp_ms);
}

void rt_write_shutdown(buf_t *out, uint64_t grace_ms) {
    buf_printf(out, "{\"type\":\"system\",\"event\":\"shutdown\",\"gracePeriodMs\":%llu}",
               (unsigned long long)grace_ms);
}
