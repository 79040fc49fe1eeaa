/* store.* handlers (see store_api.h). Every handler answers synchronously: the SQLite
 * backend runs on the loop thread (docs/internals/db.md). */
#include "realtime/store_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/mem.h"

typedef struct {
    store_t *store;
    subs_t *subs;
    auth_t *auth; /* NULL: no auth */
    buf_t out;    /* result scratch, reused */
} store_api_t;

static store_api_t api_instance;

static const char *req_str(const json_t *req, const char *field) {
    json_t *v = json_object_get(req, field);
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

static void answer(rt_call_t *call, store_api_t *api, int rc, err_t *err) {
    if (rc < 0) rt_call_error(call, err);
    else rt_call_result_raw(call, api->out.data, api->out.len);
    err_clear(err);
    buf_reset(&api->out);
    if (api->out.cap > (1u << 20)) buf_cleanup(&api->out); /* do not hold on to a huge result */
}

/* The ownership constraint the policy put on this call, if any. */
static const store_owner_t *call_owner(rt_call_t *call, store_owner_t *buf) {
    rt_session_t *s = rt_call_session(call);
    buf->field = rt_call_owner_field(call);
    buf->user_id = s ? rt_session_user_id(s) : NULL;
    return buf->field ? buf : NULL;
}

static void h_op(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const char *op = rt_call_type(call) + 6; /* after "store." */
    store_owner_t ob;
    int rc = store_execute_as(api->store, op, rt_call_request(call), call_owner(call, &ob), &api->out, &err);
    answer(call, api, rc, &err);
}

typedef struct {
    store_api_t *api;
    const auth_identity_t *who;
} tx_check_t;

/* Each operation of a transaction passes the permission policy on its own. */
static int tx_check(void *udata, const char *type, const char *bucket, const json_t *op, store_owner_t *owner,
                    err_t *err) {
    tx_check_t *t = udata;
    const char *field = NULL;
    if (!auth_permit(t->api->auth, t->who, type, bucket, op, &field)) {
        err_set(err, ERR_FORBIDDEN, "No permission for %s on %s", type, bucket);
        return -1;
    }
    owner->field = field;
    owner->user_id = t->who->user_id;
    return 0;
}

static void h_transaction(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    rt_session_t *s = rt_call_session(call);
    const auth_identity_t *who = s ? rt_session_identity(s) : NULL;
    const json_t *ops = json_object_get(rt_call_request(call), "operations");
    int rc;
    if (api->auth && who && auth_has_policy(api->auth)) {
        tx_check_t t = {api, who};
        rc = store_transaction_checked(api->store, ops, tx_check, &t, &api->out, &err);
    } else {
        rc = store_transaction(api->store, ops, &api->out, &err);
    }
    answer(call, api, rc, &err);
}

static void h_buckets(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    store_buckets(api->store, &api->out);
    answer(call, api, 0, &err);
}

static void h_stats(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    int rc = store_stats(api->store, &api->out, &err);
    answer(call, api, rc, &err);
}

static int need_name(const json_t *req, const char **name, err_t *err) {
    *name = req_str(req, "name");
    if (!*name) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"name\": expected non-empty string");
        return -1;
    }
    return 0;
}

static int need_config(const json_t *req, err_t *err) {
    if (!json_is_object(json_object_get(req, "config"))) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"config\": expected object");
        return -1;
    }
    return 0;
}

/* {"name": name, "<verb>": true} */
static void name_result(buf_t *out, const char *name, const char *verb) {
    buf_append_str(out, "{\"name\":");
    json_write_string(out, name, strlen(name));
    buf_printf(out, ",\"%s\":true}", verb);
}

static void h_define_bucket(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    const char *name;
    int rc = need_name(req, &name, &err);
    if (rc == 0) rc = need_config(req, &err);
    if (rc == 0) rc = store_define_bucket(api->store, name, json_object_get(req, "config"), false, &err);
    if (rc == 0) name_result(&api->out, name, "defined");
    answer(call, api, rc, &err);
}

static void h_drop_bucket(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const char *name;
    int rc = need_name(rt_call_request(call), &name, &err);
    if (rc == 0) rc = store_drop_bucket(api->store, name, &err);
    if (rc == 0) name_result(&api->out, name, "dropped");
    answer(call, api, rc, &err);
}

static void h_update_bucket(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    const char *name;
    int rc = need_name(req, &name, &err);
    if (rc == 0) rc = store_update_bucket(api->store, name, json_object_get(req, "updates"), &err);
    if (rc == 0) name_result(&api->out, name, "updated");
    answer(call, api, rc, &err);
}

static void h_bucket_schema(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const char *name;
    int rc = need_name(rt_call_request(call), &name, &err);
    if (rc == 0) rc = store_bucket_schema(api->store, name, &api->out, &err);
    answer(call, api, rc, &err);
}

static void h_define_query(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const json_t *req = rt_call_request(call);
    const char *name;
    int rc = need_name(req, &name, &err);
    if (rc == 0) rc = need_config(req, &err);
    if (rc == 0) rc = store_define_query(api->store, name, json_object_get(req, "config"), false, &err);
    if (rc == 0) name_result(&api->out, name, "defined");
    answer(call, api, rc, &err);
}

static void h_undefine_query(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    const char *name;
    int rc = need_name(rt_call_request(call), &name, &err);
    if (rc == 0) rc = store_undefine_query(api->store, name, &err);
    if (rc == 0) name_result(&api->out, name, "undefined");
    answer(call, api, rc, &err);
}

static void h_list_queries(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    store_list_queries(api->store, &api->out);
    answer(call, api, 0, &err);
}

static void release_store_sub(void *handle, void *udata) {
    store_api_t *api = udata;
    subs_remove(api->subs, handle);
}

void store_api_deliver(void *owner, const char *sub_id, const char *data, size_t len) {
    rt_session_push_raw(owner, "subscription", sub_id, data, len);
}

static void h_subscribe(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    rt_session_t *s = rt_call_session(call);
    const json_t *req = rt_call_request(call);
    if (!s) { /* the connection is gone; the answer is dropped anyway */
        err_set(&err, ERR_INTERNAL, "Connection closed");
        answer(call, api, -1, &err);
        return;
    }
    if (rt_session_sub_admit(s, &err) < 0) {
        answer(call, api, -1, &err);
        return;
    }
    char id[32];
    rt_session_next_sub_id(s, id);
    store_session_t ss = {rt_session_user_id(s)};
    store_owner_t ob;
    buf_t initial;
    buf_init(&initial, 0);
    sub_t *sub = subs_add(api->subs, s, id, req_str(req, "query"), json_object_get(req, "params"), &ss,
                          call_owner(call, &ob),
                          &initial, &err);
    if (!sub) {
        buf_cleanup(&initial);
        answer(call, api, -1, &err);
        return;
    }
    rt_session_sub_attach(s, id, RT_SUB_STORE, sub, release_store_sub, api);
    buf_printf(&api->out, "{\"subscriptionId\":\"%s\",\"data\":", id);
    buf_append(&api->out, initial.data, initial.len);
    buf_append_char(&api->out, '}');
    buf_cleanup(&initial);
    answer(call, api, 0, &err);
}

static void h_unsubscribe(rt_call_t *call, void *udata) {
    store_api_t *api = udata;
    err_t err = ERR_INIT;
    rt_session_t *s = rt_call_session(call);
    const char *id = req_str(rt_call_request(call), "subscriptionId");
    int rc = 0;
    if (!id) {
        err_set(&err, ERR_VALIDATION, "Missing or invalid \"subscriptionId\": expected non-empty string");
        rc = -1;
    } else if (!s || rt_session_sub_remove(s, id, release_store_sub) < 0) {
        err_set(&err, ERR_NOT_FOUND, "Subscription \"%s\" not found", id);
        rc = -1;
    } else {
        buf_append_str(&api->out, "{\"unsubscribed\":true}");
    }
    answer(call, api, rc, &err);
}

void store_api_cleanup(void) { buf_cleanup(&api_instance.out); }

void store_api_register(realtime_t *rt, store_t *st, subs_t *subs, auth_t *auth) {
    static const char *const ops[] = {"insert", "get", "update", "delete", "all", "where", "findOne",
                                      "count", "first", "last", "paginate", "sum", "avg", "min", "max",
                                      "clear"};
    store_api_t *api = &api_instance;
    api->store = st;
    api->subs = subs;
    api->auth = auth;
    buf_init(&api->out, 0);
    char type[64];
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        snprintf(type, sizeof type, "store.%s", ops[i]);
        realtime_register(rt, type, h_op, api);
    }
    realtime_register(rt, "store.transaction", h_transaction, api);
    realtime_register(rt, "store.buckets", h_buckets, api);
    realtime_register(rt, "store.stats", h_stats, api);
    realtime_register(rt, "store.defineBucket", h_define_bucket, api);
    realtime_register(rt, "store.dropBucket", h_drop_bucket, api);
    realtime_register(rt, "store.updateBucket", h_update_bucket, api);
    realtime_register(rt, "store.getBucketSchema", h_bucket_schema, api);
    realtime_register(rt, "store.defineQuery", h_define_query, api);
    realtime_register(rt, "store.undefineQuery", h_undefine_query, api);
    realtime_register(rt, "store.listQueries", h_list_queries, api);
    realtime_register(rt, "store.subscribe", h_subscribe, api);
    realtime_register(rt, "store.unsubscribe", h_unsubscribe, api);
}
