/* The realtime protocol's frames (spec/realtime-protocol.md §1–§2) as pure functions:
 * validating an incoming text frame in the order the spec gives, and writing the
 * server's frames. Every frame is one JSON object:
 *   in:  {"id":<finite number>,"type":"ns.op",...}   {"type":"pong","timestamp":<n>}
 *   out: welcome, result, error, push, ping, system (see the writers below). */
#ifndef SHOPD_REALTIME_CODEC_H
#define SHOPD_REALTIME_CODEC_H

#include <jansson.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

#define RT_PROTOCOL_VERSION "1.0.0"

typedef enum {
    RT_FRAME_REQUEST, /* *msg_out is the request object (owned by the caller) */
    RT_FRAME_PONG,    /* a valid pong; nothing to answer */
    RT_FRAME_INVALID, /* err holds PARSE_ERROR or INVALID_REQUEST; answer with id 0 */
} rt_frame_kind_t;

/* Validates one text frame. */
rt_frame_kind_t rt_frame_parse(const char *data, size_t len, json_t **msg_out, err_t *err);

/* {"id":<id>,"type":"result","data":<data>} — data NULL writes null. */
void rt_write_result(buf_t *out, const json_t *id, const json_t *data);
/* {"id":<id or 0>,"type":"error","code":…,"message":…[,"details":…]} */
void rt_write_error(buf_t *out, const json_t *id, const err_t *err);
/* {"type":"push","channel":…,"subscriptionId":…,"data":<data>} — data is JSON text,
 * serialised once and shared by every subscriber. */
void rt_write_push(buf_t *out, const char *channel, const char *subscription_id, const char *data,
                   size_t len);
void rt_write_welcome(buf_t *out, int64_t server_time_ms, int requires_auth);
void rt_write_ping(buf_t *out, int64_t timestamp_ms);
void rt_write_shutdown(buf_t *out, uint64_t grace_ms);

#endif
