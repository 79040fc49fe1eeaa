/* HTTP/1.1 request reading and response writing, as pure functions over bytes.
 *
 * The reader wraps http-parser (Debian's libhttp-parser). It is fed whatever bytes the
 * socket delivered and stops after each complete request, so the server handles
 * pipelined requests one at a time and answers them in order. Everything it keeps is
 * capped: the request target (HTTP_MAX_TARGET, else 414), the header block
 * (HTTP_MAX_HEADER_BYTES, else 431), the body (the configured limit, else 413).
 * Malformed or ambiguous requests (bad syntax, Content-Length twice, Content-Length
 * together with Transfer-Encoding, a Transfer-Encoding other than chunked, bad chunk
 * sizes, HTTP/1.1 without Host or with two) fail with 400. A reader that failed stays
 * failed: the connection answers the status and closes.
 *
 * Not thread-safe; one reader per connection. Nothing here touches libuv. */
#ifndef SHOPD_NET_HTTP_H
#define SHOPD_NET_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define HTTP_MAX_TARGET (8 * 1024)
#define HTTP_MAX_HEADER_BYTES (16 * 1024)
#define HTTP_MAX_HEADERS 100
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)

typedef struct {
    const char *name; /* as received; compare case-insensitively */
    const char *value;
} http_header_t;

/* One parsed request. All strings are NUL-terminated and owned by the request. */
typedef struct {
    enum http_method method;
    const char *method_name; /* "GET", "POST", … */
    char *target;            /* request target as received, e.g. "/a%20b?x=1" */
    char *path;              /* target before '?', percent-decoded; never contains NUL */
    char *query;             /* after '?', raw; "" when absent */
    http_header_t headers[HTTP_MAX_HEADERS];
    size_t header_count;
    buf_t body;
    unsigned short http_major, http_minor;
    bool keep_alive; /* what the client asked for (HTTP/1.1 default on, Connection: close off) */
    bool upgrade;    /* the request asks for a protocol upgrade (Connection: upgrade + Upgrade) */
    buf_t strings_;  /* private: storage behind target/path/query/headers */
} http_request_t;

/* Looks a header up case-insensitively; returns its value or NULL (borrowed). */
const char *http_request_header(const http_request_t *req, const char *name);
/* Frees everything the request owns; the struct itself is the caller's. */
void http_request_cleanup(http_request_t *req);

typedef enum {
    HTTP_READ_MORE,    /* all bytes consumed; the request is not complete yet */
    HTTP_READ_REQUEST, /* a request is complete: take it with http_reader_take() */
    HTTP_READ_ERROR,   /* the input is not acceptable; see http_reader_error_status() */
} http_read_result_t;

typedef struct http_reader http_reader_t;

/* Returns a new reader whose bodies may not exceed max_body bytes. */
http_reader_t *http_reader_new(size_t max_body);
void http_reader_free(http_reader_t *r); /* NULL is fine */

/* Parses up to len bytes and stops after one complete request. *consumed is how many
 * bytes were used; the rest belongs to the next request (or, after an upgrade request,
 * to the upgraded protocol). */
http_read_result_t http_reader_feed(http_reader_t *r, const char *data, size_t len,
                                    size_t *consumed);
/* Moves the completed request into *out (which the caller later cleans up) and makes
 * the reader ready for the next one. Only after HTTP_READ_REQUEST. */
void http_reader_take(http_reader_t *r, http_request_t *out);
/* After HTTP_READ_ERROR: the status to answer (400, 413, 414 or 431) and a short reason. */
int http_reader_error_status(const http_reader_t *r);
const char *http_reader_error_reason(const http_reader_t *r);
/* Whether a request has started but is not complete (bytes of it were consumed). */
bool http_reader_in_request(const http_reader_t *r);

/* A response under construction. Handlers set status, content type, extra headers and
 * body; the server adds Date, Content-Length and Connection when it serialises. */
typedef struct {
    int status;
    const char *content_type; /* static string, or NULL for no Content-Type */
    buf_t headers;            /* extra header lines, each "Name: value\r\n" */
    buf_t body;
} http_response_t;

void http_response_init(http_response_t *res);
void http_response_cleanup(http_response_t *res);
/* Adds one header line; the value must not contain CR or LF. */
void http_response_header(http_response_t *res, const char *name, const char *value);
/* Sets status, content type and a body copied from `body`. */
void http_response_set(http_response_t *res, int status, const char *content_type,
                       const void *body, size_t len);
/* A small JSON error body: {"error":{"code":…,"message":…}}. */
void http_response_error(http_response_t *res, int status, const char *code, const char *message);

/* Serialises status line, headers and (unless head_only) body onto out. Adds Date
 * (cached per second), Content-Length and "Connection: close" when !keep_alive. */
void http_response_serialize(const http_response_t *res, bool head_only, bool keep_alive,
                             buf_t *out);
/* Serialises a bare error response (used when no request could be parsed). */
void http_error_serialize(int status, const char *reason, bool keep_alive, buf_t *out);

const char *http_status_text(int status);

/* Percent-decodes len bytes of `in` into `out`, which has room for len + 1 bytes; the
 * result is NUL-terminated and its length goes to *out_len. '+' is not special (this is
 * for paths, not forms). Returns 0, or -1 for a malformed escape or an encoded NUL. */
int http_percent_decode(const char *in, size_t len, char *out, size_t *out_len);

#endif
