/* The network front: a libuv TCP listener, the life of each connection, HTTP/1.1
 * request handling through the router, and the WebSocket upgrade on the realtime
 * path. Everything here runs on the loop thread.
 *
 * Invariants:
 * - A connection is closed by conn_close(): it leaves every list at once and its
 *   memory is freed only in the uv_close callback.
 * - Reads land in one loop-wide buffer; a connection holds input memory only while a
 *   request or message is partially received, and output memory only while output is
 *   queued, so idle connections stay small.
 * - Output queued on a connection is written in order; conn_queued_bytes() is exact
 *   at all times. Past `max_output_bytes` the connection stops being read until it
 *   drains (TCP backpressure), so a client that never reads cannot grow our memory
 *   by sending requests.
 * - Responses to pipelined requests go out in request order.
 */
#ifndef SHOPD_NET_SERVER_H
#define SHOPD_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/router.h"

typedef struct server server_t;
typedef struct conn conn_t;

typedef struct {
    const char *host;
    int port;
    const char *ws_path;
    size_t max_body;
    size_t max_message;
    uint64_t header_timeout_ms; /* a request must arrive whole within this */
    uint64_t idle_timeout_ms;   /* an idle keep-alive connection is closed after this */
    size_t max_connections;
    size_t max_output_bytes; /* queued output above which reading pauses */
} server_config_t;

/* What the realtime layer is told about WebSocket connections. */
typedef struct {
    void (*on_open)(conn_t *c, void *udata);
    void (*on_text)(conn_t *c, char *data, size_t len, void *udata);
    void (*on_close)(conn_t *c, void *udata); /* the connection is going away */
} server_ws_handlers_t;

/* The router and handlers are borrowed and must outlive the server. */
server_t *server_new(uv_loop_t *loop, const server_config_t *cfg, const router_t *router,
                     const server_ws_handlers_t *ws, void *udata);
/* Binds and listens. Returns 0 with the bound port in *port_out, or -1 with a message. */
int server_listen(server_t *s, int *port_out, char *errbuf, size_t errlen);
/* Graceful stop: stop accepting, let in-flight HTTP responses finish, close idle HTTP
 * connections, and after grace_ms close the remaining WebSocket connections with 1000.
 * Upgrades that arrive meanwhile are answered and closed with 1001. `done` runs once
 * when no connection is left. */
void server_shutdown(server_t *s, uint64_t grace_ms, void (*done)(void *arg), void *arg);
bool server_is_shutting_down(const server_t *s);
/* Writes out every connection's pending output now instead of before the loop next
 * waits (answers released by a commit, before the commit's listeners run). */
void server_flush(server_t *s);
/* Closes the server's own handles (listener, timers); after shutdown is done. */
void server_close_handles(server_t *s);
/* Closes everything at once (a second signal). */
void server_abort(server_t *s);
/* Frees the server; only after its handles have closed (after the loop ran dry). */
void server_free(server_t *s);

uint64_t conn_id(const conn_t *c);
void conn_set_udata(conn_t *c, void *udata);
void *conn_get_udata(const conn_t *c);
/* Writes "ip:port" of the peer into out. */
void conn_remote_address(const conn_t *c, char *out, size_t len);
/* Queues a text frame. Returns 0, or -1 when the connection is closing. */
int conn_ws_send_text(conn_t *c, const char *data, size_t len);
/* Bytes queued and not yet accepted by the kernel. */
size_t conn_queued_bytes(const conn_t *c);
/* Starts the close handshake with code and reason. */
void conn_ws_close(conn_t *c, uint16_t code, const char *reason);

#endif
