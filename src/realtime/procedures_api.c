/* procedures.call and procedures.list (see procedures_api.h). */
#include "realtime/procedures_api.h"

#include <string.h>

#include "core/buf.h"

static shop_t *api_shop;

static void h_call(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    rt_session_t *s = rt_call_session(call);
    const json_t *name = json_object_get(req, "name");
    const json_t *input = json_object_get(req, "input");
    buf_t out;
    buf_init(&out, 0);
    int rc = -1;
    if (!json_is_string(name) || json_string_length(name) == 0) {
        err_set(&err, ERR_VALIDATION, "Missing or invalid \"name\": expected non-empty string");
    } else if (input && !json_is_object(input)) {
        err_set(&err, ERR_VALIDATION, "Missing or invalid \"input\": expected object");
    } else {
        const auth_identity_t *id = s ? rt_session_identity(s) : NULL;
        shop_caller_t caller = {id ? id->user_id : NULL, id ? (const char *const *)id->roles : NULL,
                                id ? id->role_count : 0};
        json_t *empty = input ? NULL : json_object();
        rc = shop_call(api_shop, &caller, json_string_value(name), input ? input : empty, &out, &err);
        json_decref(empty);
    }
    if (rc < 0) rt_call_error(call, &err);
    else rt_call_result_raw(call, out.data, out.len);
    err_clear(&err);
    buf_cleanup(&out);
}

static void h_list(rt_call_t *call, void *u) {
    (void)u;
    buf_t out;
    buf_init(&out, 0);
    shop_list(api_shop, &out);
    rt_call_result_raw(call, out.data, out.len);
    buf_cleanup(&out);
}

void procedures_api_register(realtime_t *rt, shop_t *shop) {
    api_shop = shop;
    realtime_register(rt, "procedures.call", h_call, NULL);
    realtime_register(rt, "procedures.list", h_list, NULL);
}
