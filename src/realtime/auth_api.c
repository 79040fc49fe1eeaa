/* auth.* of the realtime protocol (spec §6): login with a token, logout, whoami.
 * Registered only when the configuration has an `auth` section; otherwise auth.*
 * answers UNKNOWN_OPERATION like any unregistered type. */
#include "realtime/auth_api.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"

static auth_t *api_auth;

static void login_done(void *udata, int status, auth_identity_t *id, const err_t *err) {
    rt_call_t *call = udata;
    rt_session_t *s = rt_call_session(call);
    if (status < 0 || !s) {
        if (status == 0) auth_identity_cleanup(id);
        if (status < 0) rt_call_error(call, err);
        else {
            err_t gone = ERR_INIT;
            err_set(&gone, ERR_INTERNAL, "Connection closed");
            rt_call_error(call, &gone);
        }
        return;
    }
    auth_identity_t *mine = xmalloc(sizeof *mine);
    *mine = *id; /* the identity moves into the session */
    memset(id, 0, sizeof *id);
    buf_t out;
    buf_init(&out, 0);
    auth_identity_write(mine, &out);
    log_info("auth.login", "conn=%llu user=%s", (unsigned long long)rt_session_id(s), mine->user_id);
    rt_session_set_identity(s, mine);
    rt_call_result_raw(call, out.data, out.len);
    buf_cleanup(&out);
}

static void h_login(rt_call_t *call, void *udata) {
    (void)udata;
    const json_t *tok = json_object_get(rt_call_request(call), "token");
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        err_t err = ERR_INIT;
        err_set(&err, ERR_VALIDATION, "Missing or invalid \"token\": expected non-empty string");
        rt_call_error(call, &err);
        err_clear(&err);
        return;
    }
    auth_verify(api_auth, json_string_value(tok), clock_now_ms(), login_done, call);
}

static void h_logout(rt_call_t *call, void *udata) {
    (void)udata;
    rt_session_t *s = rt_call_session(call);
    if (s) rt_session_set_identity(s, NULL);
    static const char r[] = "{\"loggedOut\":true}";
    rt_call_result_raw(call, r, sizeof r - 1);
}

static void h_whoami(rt_call_t *call, void *udata) {
    (void)udata;
    rt_session_t *s = rt_call_session(call);
    const auth_identity_t *id = s ? rt_session_identity(s) : NULL;
    if (id && id->expires_at && clock_now_ms() >= id->expires_at) {
        rt_session_set_identity(s, NULL);
        id = NULL;
    }
    if (!id) {
        static const char r[] = "{\"authenticated\":false}";
        rt_call_result_raw(call, r, sizeof r - 1);
        return;
    }
    buf_t out;
    buf_init(&out, 0);
    buf_append_str(&out, "{\"authenticated\":true,");
    auth_identity_write(id, &out);
    /* auth_identity_write wrote a whole object: splice its members after ours. */
    size_t brace = strlen("{\"authenticated\":true,");
    memmove(out.data + brace, out.data + brace + 1, out.len - brace - 1);
    out.len--;
    rt_call_result_raw(call, out.data, out.len);
    buf_cleanup(&out);
}

void auth_api_register(realtime_t *rt, auth_t *auth) {
    api_auth = auth;
    realtime_register(rt, "auth.login", h_login, NULL);
    realtime_register(rt, "auth.logout", h_logout, NULL);
    realtime_register(rt, "auth.whoami", h_whoami, NULL);
}
