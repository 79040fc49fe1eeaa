/* rules.* of the realtime protocol (spec §5) over the rules engine. */
#include "realtime/rules_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

typedef struct {
    rules_t *rules;
    buf_t out;
} rules_api_t;

static rules_api_t api;

static const char *req_str(const json_t *req, const char *field) {
    json_t *v = json_object_get(req, field);
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

static void answer(rt_call_t *call, int rc, err_t *err) {
    if (rc < 0) rt_call_error(call, err);
    else rt_call_result_raw(call, api.out.data, api.out.len);
    err_clear(err);
    buf_reset(&api.out);
    if (api.out.cap > (1u << 20)) buf_cleanup(&api.out);
}

/* Fetches a required non-empty string field or sets the protocol's message. */
static const char *need_str(const json_t *req, const char *field, err_t *err) {
    const char *v = req_str(req, field);
    if (!v) err_set(err, ERR_VALIDATION, "Missing or invalid \"%s\": expected non-empty string", field);
    return v;
}

static const char *opt_str(const json_t *req, const char *field, int *bad, err_t *err) {
    json_t *v = json_object_get(req, field);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v)) {
        err_set(err, ERR_VALIDATION, "Invalid \"%s\": expected string", field);
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

static void h_emit(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    int bad = 0, rc = -1;
    const char *topic = need_str(req, "topic", &err);
    const char *corr = opt_str(req, "correlationId", &bad, &err);
    const char *caus = bad ? NULL : opt_str(req, "causationId", &bad, &err);
    json_t *data = json_object_get(req, "data");
    if (topic && !bad) {
        if (data && !json_is_null(data) && !json_is_object(data))
            err_set(&err, ERR_VALIDATION, "Invalid \"data\": expected object");
        else rc = rules_emit(api.rules, topic, json_is_object(data) ? data : NULL, corr, caus, &api.out, &err);
    }
    answer(call, rc, &err);
}

static void h_set_fact(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    const char *key = need_str(req, "key", &err);
    json_t *value = json_object_get(req, "value");
    int rc = -1;
    if (key && !value) err_set(&err, ERR_VALIDATION, "Missing \"value\": expected any JSON value");
    else if (key) rc = rules_set_fact(api.rules, key, value, &api.out, &err);
    answer(call, rc, &err);
}

static void h_get_fact(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const char *key = need_str(rt_call_request(call), "key", &err);
    answer(call, key ? rules_get_fact(api.rules, key, &api.out, &err) : -1, &err);
}

static void h_delete_fact(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const char *key = need_str(rt_call_request(call), "key", &err);
    answer(call, key ? rules_delete_fact(api.rules, key, &api.out, &err) : -1, &err);
}

static void h_query_facts(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const char *pattern = need_str(rt_call_request(call), "pattern", &err);
    answer(call, pattern ? rules_query_facts(api.rules, pattern, &api.out, &err) : -1, &err);
}

static void h_all_facts(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    answer(call, rules_all_facts(api.rules, &api.out, &err), &err);
}

static void release_rules_sub(void *handle, void *udata) {
    (void)udata;
    rules_unsubscribe(api.rules, handle);
}

void rules_api_deliver(void *owner, const char *sub_id, const char *message, size_t len) {
    rt_session_push_raw(owner, "event", sub_id, message, len);
}

static void h_subscribe(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    rt_session_t *s = rt_call_session(call);
    const char *pattern = need_str(rt_call_request(call), "pattern", &err);
    int rc = -1;
    if (pattern && s) {
        if (rt_session_sub_admit(s, &err) == 0) {
            char id[32];
            rt_session_next_sub_id(s, id);
            rules_sub_t *sub = rules_subscribe(api.rules, s, id, pattern, &err);
            if (sub) {
                rt_session_sub_attach(s, id, RT_SUB_RULES, sub, release_rules_sub, NULL);
                buf_printf(&api.out, "{\"subscriptionId\":\"%s\"}", id);
                rc = 0;
            }
        }
    } else if (pattern) {
        err_set(&err, ERR_INTERNAL, "Connection closed");
    }
    answer(call, rc, &err);
}

static void h_unsubscribe(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    rt_session_t *s = rt_call_session(call);
    const char *id = need_str(rt_call_request(call), "subscriptionId", &err);
    int rc = -1;
    if (id) {
        if (!s || rt_session_sub_remove(s, id, release_rules_sub) < 0) {
            err_set(&err, ERR_NOT_FOUND, "Subscription \"%s\" not found", id);
        } else {
            buf_append_str(&api.out, "{\"unsubscribed\":true}");
            rc = 0;
        }
    }
    answer(call, rc, &err);
}

static void h_stats(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    rules_stats(api.rules, &api.out);
    answer(call, 0, &err);
}

static const json_t *need_rule(const json_t *req, err_t *err) {
    const json_t *rule = json_object_get(req, "rule");
    if (!json_is_object(rule)) err_set(err, ERR_VALIDATION, "Missing or invalid \"rule\": expected object");
    return json_is_object(rule) ? rule : NULL;
}

static void h_register(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const json_t *rule = need_rule(rt_call_request(call), &err);
    answer(call, rule ? rules_register(api.rules, rule, &api.out, &err) : -1, &err);
}

static void h_unregister(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const char *name = need_str(rt_call_request(call), "name", &err);
    answer(call, name ? rules_unregister(api.rules, name, &api.out, &err) : -1, &err);
}

static void h_update(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    const char *name = need_str(req, "name", &err);
    const json_t *rule = name ? need_rule(req, &err) : NULL;
    answer(call, rule ? rules_update(api.rules, name, rule, &api.out, &err) : -1, &err);
}

static void set_enabled(rt_call_t *call, bool on) {
    err_t err = ERR_INIT;
    const char *name = need_str(rt_call_request(call), "name", &err);
    answer(call, name ? rules_set_enabled(api.rules, name, on, &api.out, &err) : -1, &err);
}

static void h_enable(rt_call_t *call, void *u) {
    (void)u;
    set_enabled(call, true);
}

static void h_disable(rt_call_t *call, void *u) {
    (void)u;
    set_enabled(call, false);
}

static void h_get_rule(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const char *name = need_str(rt_call_request(call), "name", &err);
    answer(call, name ? rules_get(api.rules, name, &api.out, &err) : -1, &err);
}

static void h_get_rules(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    rules_get_all(api.rules, &api.out);
    answer(call, 0, &err);
}

static void h_validate(rt_call_t *call, void *u) {
    (void)u;
    err_t err = ERR_INIT;
    const json_t *rule = need_rule(rt_call_request(call), &err);
    if (rule) rules_validate(api.rules, rule, &api.out);
    answer(call, rule ? 0 : -1, &err);
}

void rules_api_cleanup(void) { buf_cleanup(&api.out); }

void rules_api_register(realtime_t *rt, rules_t *rules) {
    static const struct {
        const char *type;
        rt_handler_fn fn;
    } table[] = {
        {"rules.emit", h_emit},
        {"rules.setFact", h_set_fact},
        {"rules.getFact", h_get_fact},
        {"rules.deleteFact", h_delete_fact},
        {"rules.queryFacts", h_query_facts},
        {"rules.getAllFacts", h_all_facts},
        {"rules.subscribe", h_subscribe},
        {"rules.unsubscribe", h_unsubscribe},
        {"rules.stats", h_stats},
        {"rules.registerRule", h_register},
        {"rules.unregisterRule", h_unregister},
        {"rules.updateRule", h_update},
        {"rules.enableRule", h_enable},
        {"rules.disableRule", h_disable},
        {"rules.getRule", h_get_rule},
        {"rules.getRules", h_get_rules},
        {"rules.validateRule", h_validate},
    };
    api.rules = rules;
    buf_init(&api.out, 0);
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) realtime_register(rt, table[i].type, table[i].fn, NULL);
}
