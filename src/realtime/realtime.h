/* The realtime WebSocket protocol over the server's connections: a session per
 * connection, the welcome, frame validation, a dispatch table by `type`, in-order
 * responses, pushes with backpressure, heartbeat and the shutdown notice.
 *
 * Handlers are registered per operation type by the modules that implement them
 * (store.*, rules.*, auth.*, server.*). A handler answers its call exactly once with
 * rt_call_result() or rt_call_error(), either before it returns or later (work done
 * off the loop); responses still leave in the order the requests arrived. Everything
 * here runs on the loop thread. */
#ifndef SHOPD_REALTIME_REALTIME_H
#define SHOPD_REALTIME_REALTIME_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "auth/auth.h"
#include "core/err.h"
#include "net/server.h"

typedef struct realtime realtime_t;
typedef struct rt_session rt_session_t;
typedef struct rt_call rt_call_t;

typedef struct {
    bool requires_auth;
    uint64_t heartbeat_interval_ms;
    uint64_t heartbeat_timeout_ms;
    size_t max_buffered_bytes;
    double high_water_mark;
    size_t max_subscriptions;       /* per connection, store and rules together */
    size_t max_subscriptions_total; /* over all connections */
    auth_t *auth;             /* NULL: auth not configured */
    ratelimit_t *ratelimit;   /* NULL: no rate limit */
} realtime_config_t;

typedef void (*rt_handler_fn)(rt_call_t *call, void *udata);

realtime_t *realtime_new(uv_loop_t *loop, const realtime_config_t *cfg);
/* Frees the realtime layer; sessions must be gone (after the server closed). */
void realtime_free(realtime_t *rt);
/* Registers the handler for one operation type, e.g. "store.get". */
void realtime_register(realtime_t *rt, const char *type, rt_handler_fn fn, void *udata);
/* Holding answers until a group commit: while pending(udata) gives a batch number (not
 * 0), answers are kept back (in order) instead of being sent, marked with it;
 * realtime_release_held() sends those of batches up to `batch` after their commit, or
 * replaces each with `failure` when the commit failed. */
void realtime_set_hold(realtime_t *rt, uint64_t (*pending)(void *udata), void *udata);
void realtime_release_held(realtime_t *rt, uint64_t batch, const err_t *failure);
/* Runs after every request has been answered (subscription flushing). */
void realtime_after_request(realtime_t *rt, void (*fn)(void *udata), void *udata);
/* The callbacks to give server_new, with the realtime_t as their udata. */
const server_ws_handlers_t *realtime_ws_handlers(void);
/* Tells every client the server is stopping, and stops the heartbeat. */
void realtime_shutdown_notice(realtime_t *rt, uint64_t grace_ms);
/* Closes the heartbeat timer handle. */
void realtime_close_handles(realtime_t *rt);

/* The request object (borrowed, valid until the call is answered). */
const json_t *rt_call_request(const rt_call_t *call);
const char *rt_call_type(const rt_call_t *call);
/* The caller's session, or NULL when the connection has gone away meanwhile. */
rt_session_t *rt_call_session(const rt_call_t *call);
/* Answers the call; takes ownership of data (NULL answers null). */
void rt_call_result(rt_call_t *call, json_t *data);
/* Answers the call with JSON text (copied), e.g. a store result. */
void rt_call_result_raw(rt_call_t *call, const char *json, size_t len);
/* Answers the call with an error; err stays the caller's. */
void rt_call_error(rt_call_t *call, const err_t *err);

uint64_t rt_session_id(const rt_session_t *s);
conn_t *rt_session_conn(const rt_session_t *s);
int64_t rt_session_connected_at(const rt_session_t *s);

/* The session's user id (NULL when not logged in); borrowed. */
const char *rt_session_user_id(const rt_session_t *s);
/* The session's identity (NULL when not logged in); borrowed. */
const auth_identity_t *rt_session_identity(const rt_session_t *s);
/* Replaces the session's identity, taking ownership of `id` (NULL logs out). The rate
 * limit key follows: the user id when logged in, else the remote address. */
void rt_session_set_identity(rt_session_t *s, auth_identity_t *id);
/* The ownership field the permission policy attached to this call, or NULL. */
const char *rt_call_owner_field(const rt_call_t *call);

/* Sends a push whose data is JSON text, unless the connection's unsent output is at or
 * above the high-water mark. Returns 0 when queued, 1 when dropped for backpressure,
 * -1 when the connection is gone. */
int rt_session_push_raw(rt_session_t *s, const char *channel, const char *subscription_id,
                        const char *data, size_t len);

/* ---- subscriptions held by a session (store and rules alike) ---- */

typedef void (*rt_sub_release_fn)(void *handle, void *udata);

/* Writes the session's next subscription id ("sub-N") into out. */
void rt_session_next_sub_id(rt_session_t *s, char out[32]);
typedef enum { RT_SUB_STORE, RT_SUB_RULES } rt_sub_kind_t;
/* Records a subscription; `release` runs when it is removed or the session ends. */
void rt_session_sub_attach(rt_session_t *s, const char *id, rt_sub_kind_t kind, void *handle,
                           rt_sub_release_fn release, void *udata);
/* Removes and releases a subscription. Returns 0, or -1 when the id is unknown.
 * `release` must match for the subscription to be found (store vs rules). */
int rt_session_sub_remove(rt_session_t *s, const char *id, rt_sub_release_fn release);
size_t rt_session_sub_count(const rt_session_t *s);
/* Whether one more subscription is allowed (per connection and in total); otherwise
 * RATE_LIMITED with the protocol's message. */
int rt_session_sub_admit(const rt_session_t *s, err_t *err);
/* Counts a session's subscriptions of one kind. */
size_t rt_session_sub_count_of(const rt_session_t *s, rt_sub_kind_t kind);
/* Iterates sessions: for (s = realtime_sessions(rt); s; s = rt_session_next(s)). */
rt_session_t *realtime_sessions(const realtime_t *rt);
rt_session_t *rt_session_next(const rt_session_t *s);
realtime_t *rt_session_realtime(const rt_session_t *s);

#endif
