/* server.stats and server.connections (see server_api.h). */
#include "realtime/server_api.h"

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/metrics.h"

static server_api_config_t cfg;
static realtime_t *api_rt;

/* The session's user, or NULL when not logged in or when the session has expired
 * (expiry is otherwise noticed at the connection's next request). */
static const char *live_user(const rt_session_t *s, int64_t now) {
    const auth_identity_t *id = rt_session_identity(s);
    if (!id || (id->expires_at && now >= id->expires_at)) return NULL;
    return id->user_id;
}

static void h_stats(rt_call_t *call, void *u) {
    (void)u;
    size_t active = 0, authenticated = 0, store_subs = 0, rules_subs = 0;
    int64_t now = clock_now_ms();
    for (rt_session_t *s = realtime_sessions(api_rt); s; s = rt_session_next(s)) {
        active++;
        authenticated += live_user(s, now) != NULL;
        store_subs += rt_session_sub_count_of(s, RT_SUB_STORE);
        rules_subs += rt_session_sub_count_of(s, RT_SUB_RULES);
    }
    buf_t out;
    buf_init(&out, 0);
    buf_append_str(&out, "{\"name\":");
    json_write_string(&out, cfg.name, strlen(cfg.name));
    buf_printf(&out,
               ",\"connectionCount\":%zu,\"uptimeMs\":%lld,\"authEnabled\":%s,\"rateLimitEnabled\":%s,"
               "\"rulesEnabled\":%s,\"connections\":{\"active\":%zu,\"authenticated\":%zu,"
               "\"totalStoreSubscriptions\":%zu,\"totalRulesSubscriptions\":%zu},\"store\":",
               active, (long long)(clock_now_ms() - metrics.started_ms), cfg.auth_enabled ? "true" : "false",
               cfg.rate_limit_enabled ? "true" : "false", cfg.rules ? "true" : "false", active, authenticated,
               store_subs, rules_subs);
    err_t err = ERR_INIT;
    if (store_stats(cfg.store, &out, &err) < 0) {
        rt_call_error(call, &err);
        err_clear(&err);
        buf_cleanup(&out);
        return;
    }
    buf_append_str(&out, ",\"rules\":");
    if (cfg.rules) rules_stats(cfg.rules, &out);
    else buf_append_str(&out, "null");
    buf_append_char(&out, '}');
    rt_call_result_raw(call, out.data, out.len);
    buf_cleanup(&out);
}

static void h_connections(rt_call_t *call, void *u) {
    (void)u;
    buf_t out;
    buf_init(&out, 0);
    buf_append_char(&out, '[');
    int first = 1;
    int64_t now = clock_now_ms();
    for (rt_session_t *s = realtime_sessions(api_rt); s; s = rt_session_next(s)) {
        conn_t *c = rt_session_conn(s);
        if (!c) continue;
        char remote[80];
        conn_remote_address(c, remote, sizeof remote);
        char *colon = strrchr(remote, ':'); /* the address alone, as the reference reports it */
        if (colon) *colon = '\0';
        const char *user = live_user(s, now);
        if (!first) buf_append_char(&out, ',');
        first = 0;
        buf_printf(&out, "{\"connectionId\":\"conn-%llu\",\"remoteAddress\":", (unsigned long long)conn_id(c));
        json_write_string(&out, remote, strlen(remote));
        buf_printf(&out, ",\"connectedAt\":%lld,\"authenticated\":%s,\"userId\":",
                   (long long)rt_session_connected_at(s), user ? "true" : "false");
        if (user) json_write_string(&out, user, strlen(user));
        else buf_append_str(&out, "null");
        buf_printf(&out, ",\"storeSubscriptionCount\":%zu,\"rulesSubscriptionCount\":%zu}",
                   rt_session_sub_count_of(s, RT_SUB_STORE), rt_session_sub_count_of(s, RT_SUB_RULES));
    }
    buf_append_char(&out, ']');
    rt_call_result_raw(call, out.data, out.len);
    buf_cleanup(&out);
}

void server_api_register(realtime_t *rt, const server_api_config_t *c) {
    cfg = *c;
    api_rt = rt;
    realtime_register(rt, "server.stats", h_stats, NULL);
    realtime_register(rt, "server.connections", h_connections, NULL);
}
