/* Fuzz target: a realtime-protocol text message as it arrives from a client. Checks
 * that validation never crashes or leaks, and that whatever it answers is itself
 * valid JSON of the protocol's error shape. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/buf.h"
#include "core/err.h"
#include "realtime/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *msg = NULL;
    err_t err = ERR_INIT;
    buf_t out;
    buf_init(&out, 0);
    rt_frame_kind_t kind = rt_frame_parse((const char *)data, size, &msg, &err);
    if (kind == RT_FRAME_INVALID) {
        rt_write_error(&out, NULL, &err);
    } else if (kind == RT_FRAME_REQUEST) {
        rt_write_result(&out, json_object_get(msg, "id"), msg);
    }
    if (out.len) {
        json_t *back = json_loadb(out.data, out.len, 0, NULL);
        if (!back) abort(); /* we wrote something that is not JSON */
        json_decref(back);
    }
    json_decref(msg);
    err_clear(&err);
    buf_cleanup(&out);
    return 0;
}
