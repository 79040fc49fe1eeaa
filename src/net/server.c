/* Connections: accept, read, parse, answer, write, close (see server.h).
 *
 * A connection is in one of two modes. HTTP mode owns an http_reader_t and answers
 * each complete request synchronously before parsing the next, which keeps pipelined
 * responses in order. A request for the realtime path with a valid WebSocket
 * handshake switches it to WebSocket mode: the reader is freed and a ws_parser_t
 * takes over the rest of the bytes.
 *
 * Output: bytes are appended to `out`; a flush first tries uv_try_write and hands
 * only what the kernel did not take to uv_write (moving it to `inflight`). Output
 * made outside a read callback (timers, pushes for other connections) is flushed
 * by a prepare handle just before the loop blocks.
 *
 * Closing: close_after_write drains output, then shuts the write side down and
 * lingers a moment for the peer's EOF (so that unread request bytes do not turn our
 * last response into a reset), then closes. */
#include "net/server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "net/http.h"
#include "net/ws.h"

#define READ_BUF_SIZE (64 * 1024)
#define LINGER_MS 2000
#define WS_CLOSE_WAIT_MS 2000

typedef enum { MODE_HTTP, MODE_WS } conn_mode_t;

struct conn {
    uv_tcp_t tcp;
    server_t *server;
    uint64_t id;
    conn_mode_t mode;
    bool closing;           /* uv_close called */
    bool close_after_write; /* finish output, then shut down */
    bool lingering;         /* write side shut down; waiting for EOF */
    bool read_paused;       /* output above max_output_bytes */
    bool ws_close_sent;
    bool ws_close_received;
    bool in_request; /* HTTP: bytes of a request have arrived */
    uint64_t deadline_ms; /* 0 = none */
    uint64_t requests;
    http_reader_t *http;
    ws_parser_t *ws;
    buf_t out;
    buf_t inflight;
    uv_write_t *wreq; /* non-NULL while a write is in flight */
    void *udata;
    conn_t *prev, *next;             /* all connections */
    conn_t *dirty_prev, *dirty_next; /* connections with output to flush */
    bool dirty;
};

struct server {
    uv_loop_t *loop;
    server_config_t cfg;
    char *host;
    char *ws_path;
    const router_t *router;
    server_ws_handlers_t ws;
    void *udata;
    uv_tcp_t listener;
    bool listening;
    uv_timer_t sweep;
    uv_timer_t grace;
    uv_prepare_t flusher;
    conn_t *conns;
    conn_t *dirty;
    size_t conn_count;
    uint64_t next_id;
    bool shutting_down;
    bool grace_over;
    bool handles_ready; /* sweep, grace and flusher initialised */
    void (*done)(void *);
    void *done_arg;
    char read_buf[READ_BUF_SIZE];
    bool read_buf_busy;
};

static void conn_close(conn_t *c, const char *reason);
static void conn_flush(conn_t *c);
static void conn_ws_input(conn_t *c, uint8_t *data, size_t len);
static void conn_resume_read(conn_t *c);

/* ---- lists ---- */

static void dirty_add(conn_t *c) {
    if (c->dirty || c->closing) return;
    server_t *s = c->server;
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = s->dirty;
    if (s->dirty) s->dirty->dirty_prev = c;
    s->dirty = c;
}

static void dirty_remove(conn_t *c) {
    if (!c->dirty) return;
    if (c->dirty_prev) c->dirty_prev->dirty_next = c->dirty_next;
    else c->server->dirty = c->dirty_next;
    if (c->dirty_next) c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty = false;
    c->dirty_prev = c->dirty_next = NULL;
}

static void conns_remove(conn_t *c) {
    server_t *s = c->server;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* ---- accessors ---- */

uint64_t conn_id(const conn_t *c) { return c->id; }
void conn_set_udata(conn_t *c, void *udata) { c->udata = udata; }
void *conn_get_udata(const conn_t *c) { return c->udata; }
size_t conn_queued_bytes(const conn_t *c) { return c->out.len + c->inflight.len; }
bool server_is_shutting_down(const server_t *s) { return s->shutting_down; }

void conn_remote_address(const conn_t *c, char *out, size_t len) {
    struct sockaddr_storage ss;
    int n = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof ip);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof ip);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(out, len, "%s:%d", ip, port);
}

/* ---- closing ---- */

static void server_check_done(server_t *s) {
    if (s->shutting_down && s->conn_count == 0 && s->done) {
        void (*done)(void *) = s->done;
        s->done = NULL;
        done(s->done_arg);
    }
}

static void on_conn_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    server_t *s = c->server;
    http_reader_free(c->http);
    if (c->ws) {
        ws_parser_cleanup(c->ws);
        free(c->ws);
    }
    buf_cleanup(&c->out);
    /* An in-flight write still references `inflight`; its callback frees both. */
    if (c->wreq) {
        c->wreq->data = NULL;
        free(c->inflight.data);
    } else {
        buf_cleanup(&c->inflight);
    }
    free(c);
    s->conn_count--;
    server_check_done(s);
}

static void conn_close(conn_t *c, const char *reason) {
    if (c->closing) return;
    c->closing = true;
    dirty_remove(c);
    conns_remove(c);
    if (c->mode == MODE_WS) {
        metrics.ws_active--;
        if (c->server->ws.on_close) c->server->ws.on_close(c, c->server->udata);
    } else {
        metrics.http_active--;
    }
    log_info("conn.close", "conn=%llu mode=%s requests=%llu reason=%s", (unsigned long long)c->id,
             c->mode == MODE_WS ? "websocket" : "http", (unsigned long long)c->requests, reason);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown_done(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    free(req);
    if (!c) return;
    if (status < 0) conn_close(c, "shutdown_error");
}

/* Output is drained and the connection is to end: send FIN and wait for the peer. */
static void conn_linger(conn_t *c) {
    if (c->lingering || c->closing) return;
    c->lingering = true;
    c->deadline_ms = clock_mono_ms() + LINGER_MS;
    uv_shutdown_t *req = xmalloc(sizeof *req);
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown_done) < 0) {
        free(req);
        conn_close(c, "shutdown_error");
    }
}

/* ---- output ---- */

static void on_write_done(uv_write_t *req, int status) {
    conn_t *c = req->data;
    free(req);
    if (!c) return; /* connection already closed; on_conn_closed freed the buffer */
    c->wreq = NULL;
    buf_cleanup(&c->inflight);
    if (status < 0) {
        conn_close(c, "write_error");
        return;
    }
    conn_flush(c);
}

static void conn_flush(conn_t *c) {
    /* Off the dirty list first: a connection with a write in flight is flushed again
     * by its write callback, and the prepare loop must never see it again meanwhile. */
    dirty_remove(c);
    if (c->closing || c->wreq) return;
    if (c->out.len > 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c, "write_error");
            return;
        }
        if (n > 0) {
            metrics.bytes_out += (uint64_t)n;
            buf_consume(&c->out, (size_t)n);
        }
        if (c->out.len > 0) {
            /* The kernel is full: hand the rest to libuv and start a fresh buffer. */
            c->inflight = c->out;
            buf_init(&c->out, 0);
            metrics.bytes_out += c->inflight.len;
            c->wreq = xmalloc(sizeof *c->wreq);
            c->wreq->data = c;
            uv_buf_t wb = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
            if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, &wb, 1, on_write_done) < 0) {
                free(c->wreq);
                c->wreq = NULL;
                conn_close(c, "write_error");
            }
            return;
        }
        buf_cleanup(&c->out);
    }
    if (c->read_paused && conn_queued_bytes(c) < c->server->cfg.max_output_bytes / 2) {
        c->read_paused = false;
        conn_resume_read(c);
    }
    if (c->close_after_write && conn_queued_bytes(c) == 0) conn_linger(c);
}

/* Appends bytes to the connection's output and schedules a flush. */
static void conn_send(conn_t *c, const void *data, size_t len) {
    if (c->closing || c->lingering) return;
    buf_append(&c->out, data, len);
    dirty_add(c);
}

static void conn_check_output_cap(conn_t *c) {
    if (!c->read_paused && conn_queued_bytes(c) > c->server->cfg.max_output_bytes) {
        c->read_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

void server_flush(server_t *s) {
    while (s->dirty) conn_flush(s->dirty); /* conn_flush removes it from the list */
}

static void on_flush_prepare(uv_prepare_t *h) { server_flush(h->data); }

/* ---- WebSocket mode ---- */

int conn_ws_send_text(conn_t *c, const char *data, size_t len) {
    if (c->closing || c->lingering || c->ws_close_sent || c->mode != MODE_WS) return -1;
    uint8_t hdr[10];
    size_t h = ws_frame_header(hdr, WS_OP_TEXT, len);
    buf_append(&c->out, hdr, h);
    buf_append(&c->out, data, len);
    metrics.ws_messages_out++;
    dirty_add(c);
    return 0;
}

void conn_ws_close(conn_t *c, uint16_t code, const char *reason) {
    if (c->closing || c->ws_close_sent) return;
    c->ws_close_sent = true;
    buf_t frame;
    buf_init(&frame, 0);
    ws_close_frame_append(&frame, code, reason);
    conn_send(c, frame.data, frame.len);
    buf_cleanup(&frame);
    log_info("ws.close", "conn=%llu code=%u reason=%s", (unsigned long long)c->id, code,
             reason && *reason ? reason : "-");
    if (c->ws_close_received) {
        c->close_after_write = true; /* handshake complete: we close the TCP side first */
    } else {
        c->deadline_ms = clock_mono_ms() + WS_CLOSE_WAIT_MS;
    }
}

static void ws_on_text(void *udata, char *data, size_t len) {
    conn_t *c = udata;
    if (c->closing || c->ws_close_sent) return;
    metrics.ws_messages_in++;
    c->requests++;
    c->server->ws.on_text(c, data, len, c->server->udata);
}

static void ws_on_control(void *udata, int opcode, const uint8_t *data, size_t len) {
    conn_t *c = udata;
    if (c->closing) return;
    if (opcode == WS_OP_PING) {
        if (c->ws_close_sent) return;
        buf_t frame;
        buf_init(&frame, 0);
        ws_frame_append(&frame, WS_OP_PONG, data, len);
        conn_send(c, frame.data, frame.len);
        buf_cleanup(&frame);
    } else if (opcode == WS_OP_CLOSE) {
        c->ws_close_received = true;
        if (c->ws_close_sent) {
            conn_close(c, "ws_closed"); /* our close was answered */
            return;
        }
        uint16_t code = len >= 2 ? (uint16_t)((data[0] << 8) | data[1]) : WS_CLOSE_NORMAL;
        conn_ws_close(c, code, "");
        c->close_after_write = true;
    }
}

static const ws_callbacks_t ws_callbacks = {ws_on_text, ws_on_control};

static void conn_ws_input(conn_t *c, uint8_t *data, size_t len) {
    if (c->ws_close_received || len == 0) return;
    uint16_t code = 0;
    if (ws_parser_feed(c->ws, data, len, &ws_callbacks, c, &code) < 0 && !c->closing) {
        log_info("ws.protocol_error", "conn=%llu code=%u", (unsigned long long)c->id, code);
        c->ws_close_received = true; /* ignore whatever follows */
        conn_ws_close(c, code, "");
        c->close_after_write = true;
    }
}

/* ---- HTTP answers ---- */

static void conn_log_request(const conn_t *c, const http_request_t *req, int status, size_t bytes,
                             uint64_t started);

static void count_status(int status) {
    if (status >= 100 && status < 600) metrics.http_status[status]++;
}

/* Queues a response to a parsed request and logs it; ends the connection after it
 * when keep-alive is off. */
static void conn_respond(conn_t *c, const http_request_t *req, const http_response_t *res, bool keep_alive,
                         uint64_t started) {
    buf_t out;
    buf_init(&out, 0);
    http_response_serialize(res, req->method == HTTP_HEAD, keep_alive, &out);
    conn_send(c, out.data, out.len);
    buf_cleanup(&out);
    count_status(res->status);
    conn_log_request(c, req, res->status, res->body.len, started);
    if (!keep_alive) c->close_after_write = true;
}

/* A bare error answer (no request to answer): queued behind the connection's output,
 * or, when `now`, written at once before the connection is closed by the caller. */
static void conn_send_error(conn_t *c, int status, const char *reason, bool now) {
    buf_t out;
    buf_init(&out, 0);
    http_error_serialize(status, reason, false, &out);
    if (now) {
        uv_buf_t wb = uv_buf_init(out.data, (unsigned)out.len);
        uv_try_write((uv_stream_t *)&c->tcp, &wb, 1);
    } else {
        conn_send(c, out.data, out.len);
    }
    buf_cleanup(&out);
    count_status(status);
}

/* ---- HTTP mode ---- */

static bool header_has_token(const char *value, const char *token) {
    if (!value) return false;
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0) return true;
    }
    return false;
}

static void conn_log_request(const conn_t *c, const http_request_t *req, int status, size_t bytes,
                             uint64_t started) {
    if (!log_enabled(LOG_INFO)) return;
    char path[300];
    log_quote(req->target, path, sizeof path);
    log_write(LOG_INFO, "http.request", "conn=%llu req=%llu method=%s target=%s status=%d bytes=%zu ms=%llu",
              (unsigned long long)c->id, (unsigned long long)c->requests, req->method_name, path,
              status, bytes, (unsigned long long)(clock_mono_ms() - started));
}

/* Answers an upgrade request on the realtime path. Returns true when the connection
 * switched to WebSocket mode. */
static bool conn_try_upgrade(conn_t *c, const http_request_t *req, uint64_t started) {
    server_t *s = c->server;
    http_response_t res;
    http_response_init(&res);
    bool upgraded = false;
    const char *version = http_request_header(req, "Sec-WebSocket-Version");
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    char accept[29];

    if (req->method != HTTP_GET) {
        http_response_error(&res, 405, "METHOD_NOT_ALLOWED", "WebSocket upgrades use GET");
        http_response_header(&res, "Allow", "GET");
    } else if (!version || strcmp(version, "13") != 0) {
        http_response_error(&res, 426, "UPGRADE_REQUIRED", "Unsupported WebSocket version");
        http_response_header(&res, "Sec-WebSocket-Version", "13");
    } else if (!key || ws_handshake_accept(key, accept) < 0) {
        http_response_error(&res, 400, "BAD_REQUEST", "Missing or invalid Sec-WebSocket-Key");
    } else {
        upgraded = true;
    }

    if (!upgraded) {
        conn_respond(c, req, &res, req->keep_alive && !s->shutting_down, started);
        http_response_cleanup(&res);
        return false;
    }
    http_response_cleanup(&res);

    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conn_send(c, head, (size_t)n);
    metrics.http_status[101]++;
    conn_log_request(c, req, 101, 0, started);

    http_reader_free(c->http);
    c->http = NULL;
    c->mode = MODE_WS;
    c->deadline_ms = 0;
    c->ws = xmalloc(sizeof *c->ws);
    ws_parser_init(c->ws, s->cfg.max_message);
    metrics.http_active--;
    metrics.ws_active++;
    log_info("ws.open", "conn=%llu", (unsigned long long)c->id);
    if (s->shutting_down) {
        conn_ws_close(c, WS_CLOSE_GOING_AWAY, "server_shutting_down");
        return true;
    }
    if (s->ws.on_open) s->ws.on_open(c, s->udata);
    return true;
}

static void conn_handle_request(conn_t *c, http_request_t *req) {
    server_t *s = c->server;
    uint64_t started = clock_mono_ms();
    c->requests++;

    if (req->upgrade && strcmp(req->path, s->ws_path) == 0 &&
        header_has_token(http_request_header(req, "Upgrade"), "websocket")) {
        conn_try_upgrade(c, req, started);
        return;
    }

    http_response_t res;
    http_response_init(&res);
    router_dispatch(s->router, req, &res);
    conn_respond(c, req, &res, req->keep_alive && !s->shutting_down, started);
    http_response_cleanup(&res);
}

static void conn_http_input(conn_t *c, char *data, size_t len) {
    server_t *s = c->server;
    while (len > 0 && !c->closing && !c->close_after_write && c->mode == MODE_HTTP) {
        size_t used = 0;
        http_read_result_t r = http_reader_feed(c->http, data, len, &used);
        data += used;
        len -= used;
        if (r == HTTP_READ_MORE) {
            if (!c->in_request && http_reader_in_request(c->http)) {
                c->in_request = true;
                c->deadline_ms = clock_mono_ms() + s->cfg.header_timeout_ms;
            }
            break;
        }
        if (r == HTTP_READ_ERROR) {
            int status = http_reader_error_status(c->http);
            conn_send_error(c, status, http_reader_error_reason(c->http), false);
            log_info("http.bad_request", "conn=%llu status=%d reason=%s", (unsigned long long)c->id,
                     status, http_reader_error_reason(c->http));
            c->close_after_write = true;
            break;
        }
        http_request_t req;
        http_reader_take(c->http, &req);
        c->in_request = false;
        conn_handle_request(c, &req);
        http_request_cleanup(&req);
        if (c->mode == MODE_WS) {
            conn_ws_input(c, (uint8_t *)data, len);
            return;
        }
    }
    if (c->mode == MODE_HTTP && !c->in_request && !c->close_after_write)
        c->deadline_ms = clock_mono_ms() + s->cfg.idle_timeout_ms;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)suggested;
    conn_t *c = h->data;
    server_t *s = c->server;
    /* Every read is processed to the end inside on_read, so one buffer serves all. */
    if (s->read_buf_busy) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    s->read_buf_busy = true;
    b->base = s->read_buf;
    b->len = sizeof s->read_buf;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b) {
    conn_t *c = stream->data;
    server_t *s = c->server;
    if (b->base == s->read_buf) s->read_buf_busy = false;
    if (nread == 0) return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
        return;
    }
    metrics.bytes_in += (uint64_t)nread;
    if (c->lingering || c->closing) return; /* discard what arrives after our last response */
    if (c->mode == MODE_HTTP) conn_http_input(c, b->base, (size_t)nread);
    else conn_ws_input(c, (uint8_t *)b->base, (size_t)nread);
    conn_flush(c);
    if (!c->closing) conn_check_output_cap(c);
}

static void conn_resume_read(conn_t *c) {
    if (!c->closing) uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *listener, int status) {
    server_t *s = listener->data;
    if (status < 0) {
        log_warn("accept.error", "error=%s", uv_err_name(status));
        return;
    }
    conn_t *c = xcalloc(1, sizeof *c);
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        c->closing = true;
        s->conn_count++;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    s->conn_count++;
    c->id = ++s->next_id;
    c->mode = MODE_HTTP;
    metrics.connections_total++;
    metrics.http_active++;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;

    if (s->conn_count > s->cfg.max_connections || s->shutting_down) {
        metrics.connections_refused++;
        log_warn("conn.refused", "conn=%llu reason=%s", (unsigned long long)c->id,
                 s->shutting_down ? "shutting_down" : "connection_limit");
        /* A short 503 tells well-behaved clients what happened. */
        conn_send_error(c, 503, "Server busy", true);
        conn_close(c, "refused");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->http = http_reader_new(s->cfg.max_body);
    c->deadline_ms = clock_mono_ms() + s->cfg.idle_timeout_ms;
    if (log_enabled(LOG_INFO)) {
        char remote[64];
        conn_remote_address(c, remote, sizeof remote);
        log_write(LOG_INFO, "conn.open", "conn=%llu remote=%s", (unsigned long long)c->id, remote);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- timers ---- */

static void on_sweep(uv_timer_t *t) {
    server_t *s = t->data;
    uint64_t now = clock_mono_ms();
    conn_t *next;
    for (conn_t *c = s->conns; c; c = next) {
        next = c->next;
        if (!c->deadline_ms || now < c->deadline_ms) continue;
        if (c->lingering) {
            conn_close(c, "linger_timeout");
        } else if (c->mode == MODE_WS) {
            conn_close(c, "close_handshake_timeout");
        } else if (c->in_request) {
            conn_send_error(c, 408, "Request timeout", true);
            conn_close(c, "request_timeout");
        } else if (conn_queued_bytes(c) == 0 && !c->wreq) {
            conn_close(c, "idle_timeout");
        }
    }
}

/* ---- lifecycle ---- */

server_t *server_new(uv_loop_t *loop, const server_config_t *cfg, const router_t *router,
                     const server_ws_handlers_t *ws, void *udata) {
    server_t *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->cfg = *cfg;
    s->host = xstrdup(cfg->host);
    s->ws_path = xstrdup(cfg->ws_path);
    s->cfg.host = s->host;
    s->cfg.ws_path = s->ws_path;
    if (!s->cfg.max_output_bytes) s->cfg.max_output_bytes = 4u << 20;
    s->router = router;
    if (ws) s->ws = *ws;
    s->udata = udata;
    return s;
}

int server_listen(server_t *s, int *port_out, char *errbuf, size_t errlen) {
    struct sockaddr_storage addr;
    int rc;
    if (strchr(s->host, ':')) rc = uv_ip6_addr(s->host, s->cfg.port, (struct sockaddr_in6 *)&addr);
    else rc = uv_ip4_addr(s->host, s->cfg.port, (struct sockaddr_in *)&addr);
    if (rc < 0) {
        snprintf(errbuf, errlen, "invalid host \"%s\": expected an IPv4 or IPv6 address", s->host);
        return -1;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->listening = true;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc < 0) {
        snprintf(errbuf, errlen, "cannot listen on %s:%d: %s", s->host, s->cfg.port, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    *port_out = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);

    uint64_t tick = s->cfg.header_timeout_ms;
    if (s->cfg.idle_timeout_ms < tick) tick = s->cfg.idle_timeout_ms;
    tick /= 4;
    if (tick < 25) tick = 25;
    if (tick > 500) tick = 500;
    uv_timer_init(s->loop, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, tick, tick);
    uv_unref((uv_handle_t *)&s->sweep);
    uv_prepare_init(s->loop, &s->flusher);
    s->flusher.data = s;
    uv_prepare_start(&s->flusher, on_flush_prepare);
    uv_unref((uv_handle_t *)&s->flusher);
    uv_timer_init(s->loop, &s->grace);
    s->grace.data = s;
    uv_unref((uv_handle_t *)&s->grace);
    s->handles_ready = true;
    return 0;
}

static void on_grace_over(uv_timer_t *t) {
    server_t *s = t->data;
    s->grace_over = true;
    conn_t *next;
    for (conn_t *c = s->conns; c; c = next) {
        next = c->next;
        if (c->mode == MODE_WS) conn_ws_close(c, WS_CLOSE_NORMAL, "server_shutdown");
        else if (!c->wreq && conn_queued_bytes(c) == 0) conn_close(c, "shutdown");
        else c->close_after_write = true;
    }
    /* Peers that do not answer the close handshake are cut off by the sweep. */
}

void server_shutdown(server_t *s, uint64_t grace_ms, void (*done)(void *arg), void *arg) {
    if (s->shutting_down) return;
    s->shutting_down = true;
    s->done = done;
    s->done_arg = arg;
    if (s->listening) {
        s->listening = false;
        uv_close((uv_handle_t *)&s->listener, NULL);
    }
    uv_ref((uv_handle_t *)&s->sweep);
    conn_t *next;
    for (conn_t *c = s->conns; c; c = next) {
        next = c->next;
        if (c->mode != MODE_HTTP) continue;
        /* A request that has started is answered (with Connection: close); an idle
         * connection goes now; one still writing goes when its output is out. */
        if (c->in_request) continue;
        if (!c->wreq && conn_queued_bytes(c) == 0) conn_close(c, "shutdown");
        else c->close_after_write = true;
    }
    uv_timer_start(&s->grace, on_grace_over, grace_ms, 0);
    server_check_done(s);
}

void server_abort(server_t *s) {
    conn_t *next;
    for (conn_t *c = s->conns; c; c = next) {
        next = c->next;
        conn_close(c, "abort");
    }
}

void server_free(server_t *s) {
    if (!s) return;
    free(s->host);
    free(s->ws_path);
    free(s);
}

void server_close_handles(server_t *s) {
    if (s->listening) {
        s->listening = false;
        uv_close((uv_handle_t *)&s->listener, NULL);
    }
    if (!s->handles_ready) return;
    s->handles_ready = false;
    if (!uv_is_closing((uv_handle_t *)&s->sweep)) uv_close((uv_handle_t *)&s->sweep, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->grace)) uv_close((uv_handle_t *)&s->grace, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->flusher)) uv_close((uv_handle_t *)&s->flusher, NULL);
}
