/* Sessions, dispatch and in-order responses of the realtime protocol (see realtime.h
 * and docs/internals/realtime.md).
 *
 * Each session keeps a FIFO of its calls. A call that is answered is serialised at
 * once, but it is written only when every earlier call of the session has been
 * written, which is what keeps responses in request order when some handlers answer
 * later than others. Answers made while a group commit is open or committing are held
 * in that queue, marked with the newest batch, until realtime_release_held() reports
 * that batch committed, and pushes to the requesting session made during its
 * request queue behind its answer. A session outlives its connection while calls are
 * pending: their answers are then dropped, and the last one frees the session. */
#include "realtime/realtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/strmap.h"
#include "realtime/codec.h"

typedef struct {
    rt_handler_fn fn;
    void *udata;
} rt_route_t;

struct realtime {
    uv_loop_t *loop;
    realtime_config_t cfg;
    strmap_t routes;
    rt_session_t *sessions;
    size_t sub_total; /* subscriptions over all sessions */
    uv_timer_t heartbeat;
    bool heartbeat_on;
    buf_t scratch;   /* push frame being serialised */
    buf_t answer;    /* answer frame being serialised */
    rt_session_t *current; /* whose request is being handled */
    buf_t deferred;  /* its pushes, sent after the answer: [size_t len][frame]… */
    void (*after_fn)(void *);
    void *after_udata;
    uint64_t (*hold_fn)(void *);
    void *hold_udata;
    rt_call_t **held; /* answered calls waiting for the group commit */
    size_t held_count, held_cap;
};

struct rt_call {
    rt_session_t *session;
    json_t *req;
    bool held; /* answered, waiting for the group commit */
    uint64_t hold_batch; /* which one (hold_fn's number) */
    const char *owner_field; /* from the permission policy (borrowed from auth's config) */
    bool answered;
    char *frame; /* the serialised answer, until written */
    size_t frame_len;
    rt_call_t *next;
};

typedef struct rt_sub {
    char *id;
    rt_sub_kind_t kind;
    void *handle;
    rt_sub_release_fn release;
    void *udata;
    struct rt_sub *next;
} rt_sub_t;

struct rt_session {
    realtime_t *rt;
    bool marked; /* scratch flag for realtime_release_held */
    auth_identity_t *identity;
    char *remote_ip; /* for the rate limit key; only when rate limiting is on */
    rt_sub_t *subs;
    size_t sub_count;
    uint64_t next_sub;
    conn_t *conn; /* NULL once the connection is gone */
    int64_t connected_at;
    rt_call_t *head, *tail;
    bool awaiting_pong;
    uint64_t ping_sent_ms;
    rt_session_t *prev, *next;
    struct perm_memo *perm; /* the last reusable permission decision; NULL until one */
};

/* A client repeats the same operation on the same bucket or topic; the policy's
 * decision for it does not change while the identity stays (auth_permit_reusable),
 * so the last one is kept and the policy is not walked again. Any change of identity
 * forgets it. Allocated on first use: idle connections do not pay for it. */
struct perm_memo {
    bool valid;
    bool allowed;
    const char *owner_field; /* the policy's own string */
    char op[48];
    char resource[80];
};

/* ---- sessions ---- */

uint64_t rt_session_id(const rt_session_t *s) { return s->conn ? conn_id(s->conn) : 0; }
conn_t *rt_session_conn(const rt_session_t *s) { return s->conn; }
int64_t rt_session_connected_at(const rt_session_t *s) { return s->connected_at; }

static void session_send(rt_session_t *s, const char *frame, size_t len) {
    if (s->conn) conn_ws_send_text(s->conn, frame, len);
}

/* Sends a push frame unless backpressure says drop. A push for the session whose
 * request is being handled waits until that request has been answered, so a client
 * always sees the result of its own request before the pushes it caused. */
static int push_frame(rt_session_t *s, const char *frame, size_t len) {
    realtime_t *rt = s->rt;
    double limit = (double)rt->cfg.max_buffered_bytes * rt->cfg.high_water_mark;
    if ((double)(conn_queued_bytes(s->conn) + rt->deferred.len) >= limit) return 1;
    if (s == rt->current) {
        buf_append(&rt->deferred, &len, sizeof len);
        buf_append(&rt->deferred, frame, len);
        return 0;
    }
    return conn_ws_send_text(s->conn, frame, len) < 0 ? -1 : 0;
}

/* Sends the pushes held back while the current request was handled. */
static void call_hold(realtime_t *rt, rt_call_t *call, uint64_t batch);
static void session_drain(rt_session_t *s);

/* Queues the pushes held back while the current request was handled behind its answer:
 * as answered entries of the session's queue, so they also wait for a group commit the
 * answer waits for (and are dropped if that commit fails). */
static void send_deferred(realtime_t *rt, rt_session_t *s) {
    size_t off = 0;
    uint64_t hold = rt->hold_fn ? rt->hold_fn(rt->hold_udata) : 0;
    while (off + sizeof(size_t) <= rt->deferred.len) {
        size_t len;
        memcpy(&len, rt->deferred.data + off, sizeof len);
        off += sizeof len;
        rt_call_t *c = xcalloc(1, sizeof *c);
        c->session = s;
        c->answered = true;
        c->frame = xmemdup(rt->deferred.data + off, len);
        c->frame_len = len;
        if (s->tail) s->tail->next = c;
        else s->head = c;
        s->tail = c;
        if (hold) call_hold(rt, c, hold);
        off += len;
    }
    buf_reset(&rt->deferred);
    session_drain(s);
}

int rt_session_push_raw(rt_session_t *s, const char *channel, const char *subscription_id,
                        const char *data, size_t len) {
    if (!s->conn) return -1;
    realtime_t *rt = s->rt;
    buf_reset(&rt->scratch);
    rt_write_push(&rt->scratch, channel, subscription_id, data, len);
    return push_frame(s, rt->scratch.data, rt->scratch.len);
}

static void session_free(rt_session_t *s) {
    rt_session_set_identity(s, NULL);
    free(s->perm);
    free(s->remote_ip);
    free(s);
}

const char *rt_session_user_id(const rt_session_t *s) { return s->identity ? s->identity->user_id : NULL; }
const auth_identity_t *rt_session_identity(const rt_session_t *s) { return s->identity; }
const char *rt_call_owner_field(const rt_call_t *call) { return call->owner_field; }

static void session_release_subs(rt_session_t *s);

void rt_session_set_identity(rt_session_t *s, auth_identity_t *id) {
    /* Subscriptions were authorised for the previous user and filtered by ownership
     * for them: a different user (or none) must not inherit them. */
    const char *before = s->identity ? s->identity->user_id : NULL;
    const char *after = id ? id->user_id : NULL;
    if (before && (!after || strcmp(before, after) != 0)) session_release_subs(s);
    if (s->identity) {
        auth_identity_cleanup(s->identity);
        free(s->identity);
    }
    s->identity = id;
    if (s->perm) s->perm->valid = false; /* decided for the identity before */
}

static void session_release_subs(rt_session_t *s) {
    while (s->subs) {
        rt_sub_t *sub = s->subs;
        s->subs = sub->next;
        s->rt->sub_total--;
        sub->release(sub->handle, sub->udata);
        free(sub->id);
        free(sub);
    }
    s->sub_count = 0;
}

void rt_session_next_sub_id(rt_session_t *s, char out[32]) {
    snprintf(out, 32, "sub-%llu", (unsigned long long)++s->next_sub);
}

void rt_session_sub_attach(rt_session_t *s, const char *id, rt_sub_kind_t kind, void *handle,
                           rt_sub_release_fn release, void *udata) {
    rt_sub_t *sub = xcalloc(1, sizeof *sub);
    sub->id = xstrdup(id);
    sub->kind = kind;
    sub->handle = handle;
    sub->release = release;
    sub->udata = udata;
    sub->next = s->subs;
    s->subs = sub;
    s->sub_count++;
    s->rt->sub_total++;
}

int rt_session_sub_admit(const rt_session_t *s, err_t *err) {
    const realtime_t *rt = s->rt;
    if (s->sub_count >= rt->cfg.max_subscriptions) {
        err_set(err, ERR_RATE_LIMITED, "Subscription limit reached (max %zu per connection)", rt->cfg.max_subscriptions);
        return -1;
    }
    if (rt->cfg.max_subscriptions_total && rt->sub_total >= rt->cfg.max_subscriptions_total) {
        err_set(err, ERR_RATE_LIMITED, "Subscription limit reached (max %zu in total)", rt->cfg.max_subscriptions_total);
        return -1;
    }
    return 0;
}

int rt_session_sub_remove(rt_session_t *s, const char *id, rt_sub_release_fn release) {
    for (rt_sub_t **p = &s->subs; *p; p = &(*p)->next) {
        rt_sub_t *sub = *p;
        if (sub->release != release || strcmp(sub->id, id) != 0) continue;
        *p = sub->next;
        s->sub_count--;
        s->rt->sub_total--;
        sub->release(sub->handle, sub->udata);
        free(sub->id);
        free(sub);
        return 0;
    }
    return -1;
}

size_t rt_session_sub_count(const rt_session_t *s) { return s->sub_count; }

size_t rt_session_sub_count_of(const rt_session_t *s, rt_sub_kind_t kind) {
    size_t n = 0;
    for (const rt_sub_t *sub = s->subs; sub; sub = sub->next) n += sub->kind == kind;
    return n;
}

rt_session_t *realtime_sessions(const realtime_t *rt) { return rt->sessions; }
rt_session_t *rt_session_next(const rt_session_t *s) { return s->next; }
realtime_t *rt_session_realtime(const rt_session_t *s) { return s->rt; }

/* Writes every answered call at the head of the queue, in order. */
static void session_drain(rt_session_t *s) {
    while (s->head && s->head->answered && !s->head->held) {
        rt_call_t *c = s->head;
        s->head = c->next;
        if (!s->head) s->tail = NULL;
        if (c->frame_len) session_send(s, c->frame, c->frame_len); /* empty: a dropped push */
        free(c->frame);
        json_decref(c->req);
        free(c);
    }
    if (!s->conn && !s->head) session_free(s);
}

/* ---- calls ---- */

const json_t *rt_call_request(const rt_call_t *call) { return call->req; }
const char *rt_call_type(const rt_call_t *call) {
    return json_string_value(json_object_get(call->req, "type"));
}
rt_session_t *rt_call_session(const rt_call_t *call) {
    return call->session->conn ? call->session : NULL;
}

/* Takes the answer in rt->answer. The common case — the call is the oldest of its
 * session and nothing holds answers back — writes it out at once, without a copy. */
static void call_finish(rt_call_t *call) {
    realtime_t *rt = call->session->rt;
    rt_session_t *s = call->session;
    uint64_t hold = rt->hold_fn ? rt->hold_fn(rt->hold_udata) : 0;
    if (!hold && s->head == call) {
        s->head = call->next;
        if (!s->head) s->tail = NULL;
        session_send(s, rt->answer.data, rt->answer.len);
        buf_reset(&rt->answer);
        json_decref(call->req);
        free(call);
        session_drain(s); /* later answers that were waiting for this one */
        return;
    }
    call->frame = xmemdup(rt->answer.data, rt->answer.len);
    call->frame_len = rt->answer.len;
    buf_reset(&rt->answer);
    call->answered = true;
    if (hold) {
        call_hold(rt, call, hold);
        return;
    }
    session_drain(s);
}

static void call_hold(realtime_t *rt, rt_call_t *call, uint64_t batch) {
    call->held = true;
    call->hold_batch = batch;
    if (rt->held_count == rt->held_cap) {
        rt->held_cap = rt->held_cap ? rt->held_cap * 2 : 64;
        rt->held = xrealloc(rt->held, rt->held_cap * sizeof *rt->held);
    }
    rt->held[rt->held_count++] = call;
}

void realtime_set_hold(realtime_t *rt, uint64_t (*pending)(void *udata), void *udata) {
    rt->hold_fn = pending;
    rt->hold_udata = udata;
}

void realtime_release_held(realtime_t *rt, uint64_t batch, const err_t *failure) {
    size_t n = rt->held_count, kept = 0;
    rt_session_t **sessions = xmalloc((n ? n : 1) * sizeof *sessions);
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        rt_call_t *c = rt->held[i];
        if (c->hold_batch > batch) { /* waits for a later batch */
            rt->held[kept++] = c;
            continue;
        }
        c->held = false;
        if (failure && !c->req) { /* a push about what was not saved */
            c->frame_len = 0;
        } else if (failure) {
            buf_t b;
            buf_init(&b, 0);
            rt_write_error(&b, json_object_get(c->req, "id"), failure);
            free(c->frame);
            c->frame = buf_take(&b, &c->frame_len);
        }
        if (!c->session->marked) {
            c->session->marked = true;
            sessions[ns++] = c->session;
        }
    }
    rt->held_count = kept;
    /* Each session once: draining may free a session whose connection is gone. */
    for (size_t i = 0; i < ns; i++) {
        sessions[i]->marked = false;
        session_drain(sessions[i]);
    }
    free(sessions);
}

void rt_call_result(rt_call_t *call, json_t *data) {
    buf_t *b = &call->session->rt->answer;
    rt_write_result(b, json_object_get(call->req, "id"), data);
    json_decref(data);
    call_finish(call);
}

void rt_call_result_raw(rt_call_t *call, const char *json, size_t len) {
    buf_t *b = &call->session->rt->answer;
    buf_append_str(b, "{\"id\":");
    json_write(b, json_object_get(call->req, "id"));
    buf_append_str(b, ",\"type\":\"result\",\"data\":");
    buf_append(b, json, len);
    buf_append_char(b, '}');
    call_finish(call);
}

void rt_call_error(rt_call_t *call, const err_t *err) {
    buf_t *b = &call->session->rt->answer;
    rt_write_error(b, json_object_get(call->req, "id"), err);
    call_finish(call);
}

/* ---- connection events ---- */

static void rt_on_open(conn_t *conn, void *udata) {
    realtime_t *rt = udata;
    rt_session_t *s = xcalloc(1, sizeof *s);
    s->rt = rt;
    s->conn = conn;
    s->connected_at = clock_now_ms();
    s->next = rt->sessions;
    if (rt->sessions) rt->sessions->prev = s;
    rt->sessions = s;
    conn_set_udata(conn, s);
    if (rt->cfg.ratelimit) {
        char remote[80];
        conn_remote_address(conn, remote, sizeof remote);
        char *colon = strrchr(remote, ':');
        if (colon) *colon = '\0';
        s->remote_ip = xstrdup(remote);
    }

    buf_reset(&rt->scratch);
    rt_write_welcome(&rt->scratch, s->connected_at, rt->cfg.requires_auth);
    session_send(s, rt->scratch.data, rt->scratch.len);
}

static void rt_on_close(conn_t *conn, void *udata) {
    realtime_t *rt = udata;
    rt_session_t *s = conn_get_udata(conn);
    if (!s) return;
    if (s->prev) s->prev->next = s->next;
    else rt->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    session_release_subs(s);
    s->conn = NULL;
    conn_set_udata(conn, NULL);
    if (!s->head) session_free(s);
}

static void rt_send_invalid(rt_session_t *s, const err_t *err) {
    realtime_t *rt = s->rt;
    /* Frame-level errors are answered at once; they have no id to order by, but
     * the queue is kept so they never overtake earlier answers. */
    rt_call_t *c = xcalloc(1, sizeof *c);
    c->session = s;
    buf_reset(&rt->scratch);
    rt_write_error(&rt->scratch, NULL, err);
    c->frame = xmemdup(rt->scratch.data, rt->scratch.len);
    c->frame_len = rt->scratch.len;
    c->answered = true;
    if (s->tail) s->tail->next = c;
    else s->head = c;
    s->tail = c;
    session_drain(s);
}

/* The resource a permission check is about (spec §2). */
static const char *rt_resource(const char *type, const json_t *req) {
    const char *v = NULL;
    if (strncmp(type, "store.", 6) == 0) {
        if (strcmp(type, "store.subscribe") == 0) v = json_string_value(json_object_get(req, "query"));
        else if (strcmp(type, "store.unsubscribe") == 0)
            v = json_string_value(json_object_get(req, "subscriptionId"));
        else v = json_string_value(json_object_get(req, "bucket"));
    } else if (strncmp(type, "rules.", 6) == 0) {
        static const char *const fields[] = {"topic", "key", "pattern"};
        for (size_t i = 0; i < 3 && !v; i++) v = json_string_value(json_object_get(req, fields[i]));
    }
    return v && *v ? v : "*";
}

/* The policy's decision for the session's identity (see struct perm_memo). */
static bool permit(auth_t *auth, rt_session_t *s, const char *op, const char *resource, rt_call_t *call) {
    struct perm_memo *m = s->perm;
    if (m && m->valid && strcmp(m->op, op) == 0 && strcmp(m->resource, resource) == 0) {
        call->owner_field = m->owner_field;
        return m->allowed;
    }
    bool reusable;
    bool allowed = auth_permit_reusable(auth, s->identity, op, resource, call->req, &call->owner_field, &reusable);
    if (reusable && strlen(op) < sizeof m->op && strlen(resource) < sizeof m->resource) {
        if (!m) m = s->perm = xmalloc(sizeof *m);
        m->valid = true;
        m->allowed = allowed;
        m->owner_field = call->owner_field;
        strcpy(m->op, op);
        strcpy(m->resource, resource);
    }
    return allowed;
}

/* Auth check, then rate limit (spec §2). Returns 0 to go on, or -1 with err set. */
static int rt_guard(realtime_t *rt, rt_session_t *s, rt_call_t *call, const char *type, err_t *err) {
    auth_t *auth = rt->cfg.auth;
    if (auth && strncmp(type, "auth.", 5) != 0) {
        if (s->identity && s->identity->expires_at && clock_now_ms() >= s->identity->expires_at) {
            rt_session_set_identity(s, NULL);
            err_set(err, ERR_UNAUTHORIZED, "Session expired");
            return -1;
        }
        if (!s->identity && auth_required(auth)) {
            err_set(err, ERR_UNAUTHORIZED, "Authentication required");
            return -1;
        }
        if (s->identity && auth_has_policy(auth)) {
            const char *resource = rt_resource(type, call->req);
            if (!permit(auth, s, type, resource, call)) {
                err_set(err, ERR_FORBIDDEN, "No permission for %s on %s", type, resource);
                return -1;
            }
        }
    }
    if (rt->cfg.ratelimit) {
        char key[300];
        if (s->identity) snprintf(key, sizeof key, "u:%s", s->identity->user_id);
        else snprintf(key, sizeof key, "a:%s", s->remote_ip ? s->remote_ip : "?");
        uint64_t retry = ratelimit_hit(rt->cfg.ratelimit, key, clock_mono_ms());
        if (retry) {
            err_set(err, ERR_RATE_LIMITED, "Rate limit exceeded. Retry after %llums", (unsigned long long)retry);
            err_details_take(err, json_pack("{s:I}", "retryAfterMs", (json_int_t)retry));
            return -1;
        }
    }
    return 0;
}

static void rt_on_text(conn_t *conn, char *data, size_t len, void *udata) {
    realtime_t *rt = udata;
    rt_session_t *s = conn_get_udata(conn);
    if (!s) return;
    err_t err = ERR_INIT;
    json_t *msg = NULL;
    switch (rt_frame_parse(data, len, &msg, &err)) {
    case RT_FRAME_PONG:
        s->awaiting_pong = false;
        return;
    case RT_FRAME_INVALID:
        rt_send_invalid(s, &err);
        err_clear(&err);
        return;
    case RT_FRAME_REQUEST:
        break;
    }

    rt_call_t *call = xcalloc(1, sizeof *call);
    call->session = s;
    call->req = msg;
    if (s->tail) s->tail->next = call;
    else s->head = call;
    s->tail = call;

    const char *type = json_string_value(json_object_get(msg, "type"));
    if (rt_guard(rt, s, call, type, &err) < 0) {
        rt_call_error(call, &err);
        err_clear(&err);
        return;
    }
    rt_route_t *route = strmap_get(&rt->routes, type);
    if (!route) {
        err_set(&err, ERR_UNKNOWN_OPERATION, "Unknown operation \"%s\"", type);
        rt_call_error(call, &err);
        err_clear(&err);
        return;
    }
    rt->current = s;
    route->fn(call, route->udata);
    rt->current = NULL;
    if (rt->deferred.len) send_deferred(rt, s);
    if (rt->after_fn) rt->after_fn(rt->after_udata);
}

void realtime_after_request(realtime_t *rt, void (*fn)(void *udata), void *udata) {
    rt->after_fn = fn;
    rt->after_udata = udata;
}

static const server_ws_handlers_t rt_handlers = {rt_on_open, rt_on_text, rt_on_close};

const server_ws_handlers_t *realtime_ws_handlers(void) { return &rt_handlers; }

/* ---- heartbeat ---- */

static void on_heartbeat(uv_timer_t *t) {
    realtime_t *rt = t->data;
    uint64_t now = clock_mono_ms();
    int64_t wall = clock_now_ms();
    buf_reset(&rt->scratch);
    rt_write_ping(&rt->scratch, wall);
    rt_session_t *next;
    for (rt_session_t *s = rt->sessions; s; s = next) {
        next = s->next;
        if (s->awaiting_pong) {
            if (now - s->ping_sent_ms >= rt->cfg.heartbeat_timeout_ms) {
                log_info("ws.heartbeat_timeout", "conn=%llu", (unsigned long long)rt_session_id(s));
                conn_ws_close(s->conn, 4001, "heartbeat_timeout");
            }
            continue;
        }
        s->awaiting_pong = true;
        s->ping_sent_ms = now;
        session_send(s, rt->scratch.data, rt->scratch.len);
    }
}

/* ---- lifecycle ---- */

realtime_t *realtime_new(uv_loop_t *loop, const realtime_config_t *cfg) {
    realtime_t *rt = xcalloc(1, sizeof *rt);
    rt->loop = loop;
    rt->cfg = *cfg;
    strmap_init(&rt->routes);
    buf_init(&rt->scratch, 0);
    buf_init(&rt->answer, 0);
    buf_init(&rt->deferred, 0);
    uv_timer_init(loop, &rt->heartbeat);
    rt->heartbeat.data = rt;
    if (cfg->heartbeat_interval_ms > 0) {
        uv_timer_start(&rt->heartbeat, on_heartbeat, cfg->heartbeat_interval_ms,
                       cfg->heartbeat_interval_ms);
        uv_unref((uv_handle_t *)&rt->heartbeat);
        rt->heartbeat_on = true;
    }
    return rt;
}

void realtime_register(realtime_t *rt, const char *type, rt_handler_fn fn, void *udata) {
    rt_route_t *r = xmalloc(sizeof *r);
    r->fn = fn;
    r->udata = udata;
    free(strmap_put(&rt->routes, type, r));
}

void realtime_shutdown_notice(realtime_t *rt, uint64_t grace_ms) {
    uv_timer_stop(&rt->heartbeat);
    buf_reset(&rt->scratch);
    rt_write_shutdown(&rt->scratch, grace_ms);
    for (rt_session_t *s = rt->sessions; s; s = s->next) session_send(s, rt->scratch.data, rt->scratch.len);
}

void realtime_close_handles(realtime_t *rt) {
    if (!uv_is_closing((uv_handle_t *)&rt->heartbeat)) uv_close((uv_handle_t *)&rt->heartbeat, NULL);
}

void realtime_free(realtime_t *rt) {
    if (!rt) return;
    size_t it = 0;
    void *v;
    while (strmap_next(&rt->routes, &it, NULL, &v)) free(v);
    strmap_cleanup(&rt->routes);
    buf_cleanup(&rt->scratch);
    buf_cleanup(&rt->answer);
    buf_cleanup(&rt->deferred);
    free(rt->held);
    free(rt);
}
