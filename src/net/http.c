/* HTTP/1.1 requests in, responses out (see http.h).
 *
 * The reader drives http-parser and copies what it reports into the request being
 * built: the target and the header names and values go, NUL-terminated, into the
 * request's strings_ buffer. That buffer moves when it grows, so the callbacks record
 * offsets, and the public pointers are set once the header block is complete; nothing
 * is appended to strings_ after that (trailers of chunked bodies are counted against
 * the header cap and dropped). The parser is paused in on_message_complete, so a feed
 * never runs past the end of a request, and it is re-initialised when the request is
 * taken, so every request starts from a fresh parser. */
#include "net/http.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"

/* Room for the target, the header names and values (each NUL-terminated), the decoded
 * path and the query. The limits stop a request long before this, so a failed append
 * here means a bug in the accounting, not a big request. */
#define HTTP_STRINGS_MAX                                                                           \
    (3 * (HTTP_MAX_TARGET + 1) + HTTP_MAX_HEADER_BYTES + 2 * HTTP_MAX_HEADERS + 64)
_Static_assert(HTTP_STRINGS_MAX <= UINT16_MAX, "header offsets are 16 bits");
/* A header line costs its name and value plus ": " and CRLF. */
#define HTTP_HEADER_LINE_COST 4

/* ------------------------------------------------------------------------------------ */
/* Request reader                                                                       */
/* ------------------------------------------------------------------------------------ */

/* What the previous data callback delivered: a string still being appended to. */
typedef enum { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE } http_piece_t;

struct http_reader {
    http_parser parser;
    size_t max_body;
    http_request_t req; /* the request being read; moved out by http_reader_take */
    size_t target_len;
    /* Offsets into req.strings_ until the headers are complete; 16 bits keep a reader,
     * which every connection holds, small. */
    uint16_t name_off[HTTP_MAX_HEADERS];
    uint16_t value_off[HTTP_MAX_HEADERS];
    size_t header_bytes; /* names + values + line cost, trailers included */
    http_piece_t last;
    bool headers_done;
    bool started;  /* on_message_begin ran for the current request */
    bool complete; /* a request waits to be taken */
    bool failed;   /* sticky */
    int status;    /* after failure: 400, 413, 414 or 431 */
    const char *reason;
};

/* Records why the request is refused; the callback then returns this to stop the
 * parser. The first reason wins. */
static int http_reader_refuse(http_reader_t *r, int status, const char *reason) {
    if (!r->status) {
        r->status = status;
        r->reason = reason;
    }
    return -1;
}

static bool http_is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* Ends the string the previous callbacks were building: the target, a header name
 * (whose value is then empty) or a header value (trailing whitespace trimmed, since
 * http-parser only skips the leading whitespace). */
static int http_reader_end_piece(http_reader_t *r) {
    buf_t *s = &r->req.strings_;
    uint16_t *value_off = r->req.header_count ? &r->value_off[r->req.header_count - 1] : NULL;

    switch (r->last) {
    case PIECE_NONE:
        return 0;
    case PIECE_URL:
        break;
    case PIECE_FIELD:
        if (buf_append_char(s, '\0') < 0) return -1;
        *value_off = (uint16_t)s->len;
        break;
    case PIECE_VALUE:
        while (s->len > *value_off && http_is_ows(s->data[s->len - 1])) s->len--;
        break;
    }
    r->last = PIECE_NONE;
    return buf_append_char(s, '\0');
}

static int on_message_begin(http_parser *p) {
    http_reader_t *r = p->data;
    r->started = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    http_reader_t *r = p->data;
    if (len > HTTP_MAX_TARGET - r->target_len)
        return http_reader_refuse(r, 414, "request target too long");
    /* Debian builds http-parser without HTTP_PARSER_STRICT, which lets tabs and form
     * feeds into the target. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)at[i] <= ' ' || at[i] == 0x7f)
            return http_reader_refuse(r, 400, "invalid character in request target");
    if (buf_append(&r->req.strings_, at, len) < 0)
        return http_reader_refuse(r, 431, "request headers too large");
    r->target_len += len;
    r->last = PIECE_URL;
    return 0;
}

/* Charges n header bytes against HTTP_MAX_HEADER_BYTES. */
static int http_reader_charge(http_reader_t *r, size_t n) {
    if (n > HTTP_MAX_HEADER_BYTES - r->header_bytes)
        return http_reader_refuse(r, 431, "request headers too large");
    r->header_bytes += n;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    http_reader_t *r = p->data;
    buf_t *s = &r->req.strings_;
    bool new_line = r->last != PIECE_FIELD;

    if (http_reader_charge(r, len + (new_line ? HTTP_HEADER_LINE_COST : 0)) < 0) return -1;
    if (r->headers_done) { /* a trailer: counted, not kept */
        r->last = PIECE_FIELD;
        return 0;
    }
    if (new_line) {
        if (r->req.header_count == HTTP_MAX_HEADERS)
            return http_reader_refuse(r, 431, "too many request headers");
        if (http_reader_end_piece(r) < 0)
            return http_reader_refuse(r, 431, "request headers too large");
        r->name_off[r->req.header_count++] = (uint16_t)s->len;
    }
    if (buf_append(s, at, len) < 0) return http_reader_refuse(r, 431, "request headers too large");
    r->last = PIECE_FIELD;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    http_reader_t *r = p->data;
    buf_t *s = &r->req.strings_;

    if (http_reader_charge(r, len) < 0) return -1;
    if (r->headers_done) {
        r->last = PIECE_VALUE;
        return 0;
    }
    if (r->last == PIECE_FIELD) {
        if (buf_append_char(s, '\0') < 0)
            return http_reader_refuse(r, 431, "request headers too large");
        r->value_off[r->req.header_count - 1] = (uint16_t)s->len;
    }
    if (buf_append(s, at, len) < 0) return http_reader_refuse(r, 431, "request headers too large");
    r->last = PIECE_VALUE;
    return 0;
}

/* Finds where path and query lie in the target. Origin-form ("/a?b") is split at '?'
 * and '#'; absolute-form ("http://h/a?b") goes through http-parser's URL parser;
 * anything else ("*", "host:443") is all path. */
static void http_target_split(const char *t, size_t len, bool is_connect, size_t *path_off,
                              size_t *path_len, size_t *query_off, size_t *query_len) {
    *path_off = 0;
    *path_len = len;
    *query_off = len;
    *query_len = 0;

    if (len && t[0] != '/') {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(t, len, is_connect, &u) == 0 &&
            (u.field_set & (1 << UF_SCHEMA))) {
            *path_len = 0;
            if (u.field_set & (1 << UF_PATH)) {
                *path_off = u.field_data[UF_PATH].off;
                *path_len = u.field_data[UF_PATH].len;
            }
            if (u.field_set & (1 << UF_QUERY)) {
                *query_off = u.field_data[UF_QUERY].off;
                *query_len = u.field_data[UF_QUERY].len;
            }
            return;
        }
    }
    for (size_t i = 0; i < len; i++) {
        if (t[i] != '?' && t[i] != '#') continue;
        *path_len = i;
        if (t[i] == '?') {
            *query_off = i + 1;
            while (*query_off + *query_len < len && t[*query_off + *query_len] != '#')
                (*query_len)++;
        }
        break;
    }
}

/* Appends the decoded path and the query to strings_ and points the request's strings
 * into it; strings_ does not grow after this. Returns 0, -1 for a bad percent escape. */
static int http_reader_set_strings(http_reader_t *r) {
    http_request_t *req = &r->req;
    buf_t *s = &req->strings_;
    size_t path_off, path_len, query_off, query_len, decoded_len;

    http_target_split(s->data, r->target_len, r->parser.method == HTTP_CONNECT, &path_off,
                      &path_len, &query_off, &query_len);
    /* An absolute-form target without a path ("http://host") asks for "/". */
    bool root = path_len == 0;
    size_t src_len = root ? 1 : path_len;

    /* One reservation for both strings: the sources live in the same buffer, so it
     * must not move between reading them and writing their copies. */
    size_t path_at = s->len;
    char *dst = buf_reserve(s, src_len + 1 + query_len);
    if (!dst) return -1;
    const char *t = s->data;
    if (http_percent_decode(root ? "/" : t + path_off, src_len, dst, &decoded_len) < 0) return -1;
    memcpy(dst + decoded_len + 1, t + query_off, query_len);
    buf_commit(s, decoded_len + 1 + query_len); /* adds the query's NUL */
    size_t query_at = path_at + decoded_len + 1;

    char *d = s->data;
    req->target = d;
    req->path = d + path_at;
    req->query = d + query_at;
    for (size_t i = 0; i < req->header_count; i++) {
        req->headers[i].name = d + r->name_off[i];
        req->headers[i].value = d + r->value_off[i];
    }
    return 0;
}

/* Whether s is a non-empty token (RFC 9110 tchar). */
static bool http_is_token(const char *s) {
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !strchr("!#$%&'*+-.^_`|~", c)) return false;
    }
    return true;
}

/* Framing and Host rules that http-parser leaves to us (or enforces only in part). */
static int http_reader_check_headers(http_reader_t *r) {
    const http_request_t *req = &r->req;
    size_t hosts = 0, lengths = 0, encodings = 0;
    const char *encoding = NULL;

    for (size_t i = 0; i < req->header_count; i++) {
        const char *name = req->headers[i].name;
        /* The non-strict parser takes "Content-Length : 5" as some other header and
         * would read the body as the next request; RFC 9112 §5.1 asks for 400. */
        if (!http_is_token(name)) return http_reader_refuse(r, 400, "invalid header name");
        if (strcasecmp(name, "Host") == 0) {
            hosts++;
        } else if (strcasecmp(name, "Content-Length") == 0) {
            lengths++;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            encodings++;
            encoding = req->headers[i].value;
        }
    }
    bool needs_host = req->http_major > 1 || (req->http_major == 1 && req->http_minor >= 1);
    if (hosts > 1 || (hosts == 0 && needs_host))
        return http_reader_refuse(r, 400, "missing or repeated Host header");
    if (lengths > 1) return http_reader_refuse(r, 400, "repeated Content-Length");
    if (lengths && encodings)
        return http_reader_refuse(r, 400, "Content-Length together with Transfer-Encoding");
    /* Only plain "chunked" frames a request body we can read; anything else would
     * leave the body length unknown. */
    if (encodings > 1 || (encodings && strcasecmp(encoding, "chunked") != 0))
        return http_reader_refuse(r, 400, "unsupported Transfer-Encoding");
    if (lengths && r->parser.content_length != ULLONG_MAX && r->parser.content_length > r->max_body)
        return http_reader_refuse(r, 413, "request body too large");
    return 0;
}

static int on_headers_complete(http_parser *p) {
    http_reader_t *r = p->data;
    http_request_t *req = &r->req;

    if (http_reader_end_piece(r) < 0)
        return http_reader_refuse(r, 431, "request headers too large");
    r->headers_done = true;
    req->method = (enum http_method)p->method;
    req->method_name = http_method_str(req->method);
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    /* CONNECT also sets p->upgrade, but shopd is no proxy: it is answered like any
     * other request, and the connection closes after it (see on_message_complete). */
    req->upgrade = p->upgrade && req->method != HTTP_CONNECT;
    if (http_reader_set_strings(r) < 0)
        return http_reader_refuse(r, 400, "malformed percent-encoding in path");
    return http_reader_check_headers(r);
}

static int on_body(http_parser *p, const char *at, size_t len) {
    http_reader_t *r = p->data;
    buf_t *body = &r->req.body;
    if (len > r->max_body - body->len || buf_append(body, at, len) < 0)
        return http_reader_refuse(r, 413, "request body too large");
    return 0;
}

/* A chunked body is refused as soon as a chunk header announces more than fits. */
static int on_chunk_header(http_parser *p) {
    http_reader_t *r = p->data;
    if (p->content_length > r->max_body - r->req.body.len)
        return http_reader_refuse(r, 413, "request body too large");
    return 0;
}

static int on_message_complete(http_parser *p) {
    http_reader_t *r = p->data;
    r->complete = true;
    /* After CONNECT the client sends tunnel bytes, not requests. */
    r->req.keep_alive = http_should_keep_alive(p) && r->req.method != HTTP_CONNECT;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings http_reader_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* Makes the reader ready for a new request. The request's storage must have been moved
 * out or freed before. */
static void http_reader_reset(http_reader_t *r) {
    memset(&r->req, 0, sizeof r->req);
    buf_init(&r->req.body, r->max_body);
    buf_init(&r->req.strings_, HTTP_STRINGS_MAX);
    r->target_len = 0;
    r->header_bytes = 0;
    r->last = PIECE_NONE;
    r->headers_done = false;
    r->started = false;
    r->complete = false;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

http_reader_t *http_reader_new(size_t max_body) {
    http_reader_t *r = xcalloc(1, sizeof *r);
    r->max_body = max_body;
    http_reader_reset(r);
    return r;
}

void http_reader_free(http_reader_t *r) {
    if (!r) return;
    http_request_cleanup(&r->req);
    free(r);
}

static void http_reader_fail(http_reader_t *r, enum http_errno e) {
    r->failed = true;
    if (r->status) return; /* a callback said why */
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        r->status = 431;
        r->reason = "request headers too large";
        break;
    case HPE_INVALID_CHUNK_SIZE:
        r->status = 400;
        r->reason = "bad chunk size";
        break;
    case HPE_INVALID_CONTENT_LENGTH:
        r->status = 400;
        r->reason = "bad Content-Length or chunk size";
        break;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        r->status = 400;
        r->reason = "conflicting Content-Length";
        break;
    case HPE_INVALID_TRANSFER_ENCODING:
        r->status = 400;
        r->reason = "unsupported Transfer-Encoding";
        break;
    default:
        r->status = 400;
        r->reason = "malformed request";
        break;
    }
}

http_read_result_t http_reader_feed(http_reader_t *r, const char *data, size_t len,
                                    size_t *consumed) {
    *consumed = 0;
    if (r->failed) return HTTP_READ_ERROR;
    if (r->complete) return HTTP_READ_REQUEST; /* not taken yet */
    if (len == 0) return HTTP_READ_MORE;       /* http-parser would read it as end of input */

    size_t n = http_parser_execute(&r->parser, &http_reader_settings, data, len);
    *consumed = n;
    if (r->complete) return HTTP_READ_REQUEST;
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e != HPE_OK || n != len) {
        http_reader_fail(r, e);
        return HTTP_READ_ERROR;
    }
    return HTTP_READ_MORE;
}

void http_reader_take(http_reader_t *r, http_request_t *out) {
    assert(r->complete);
    *out = r->req; /* the buffers move with the struct; the pointers stay valid */
    http_reader_reset(r);
}

int http_reader_error_status(const http_reader_t *r) {
    return r->failed ? r->status : 0;
}

const char *http_reader_error_reason(const http_reader_t *r) {
    return r->failed ? r->reason : NULL;
}

bool http_reader_in_request(const http_reader_t *r) {
    return r->started && !r->complete;
}

const char *http_request_header(const http_request_t *req, const char *name) {
    for (size_t i = 0; i < req->header_count; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

void http_request_cleanup(http_request_t *req) {
    buf_cleanup(&req->body);
    buf_cleanup(&req->strings_);
    req->target = req->path = req->query = NULL;
    req->header_count = 0;
}

static int http_hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int http_percent_decode(const char *in, size_t len, char *out, size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            if (len - i < 3) return -1;
            int hi = http_hex_value(in[i + 1]), lo = http_hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0') return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    *out_len = o;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Responses                                                                            */
/* ------------------------------------------------------------------------------------ */

void http_response_init(http_response_t *res) {
    res->status = 200;
    res->content_type = NULL;
    buf_init(&res->headers, 0);
    buf_init(&res->body, 0);
}

void http_response_cleanup(http_response_t *res) {
    buf_cleanup(&res->headers);
    buf_cleanup(&res->body);
}

/* The name must be a token and the value free of CR and LF, so that no caller can
 * split the response. */
void http_response_header(http_response_t *res, const char *name, const char *value) {
    if (!http_is_token(name) || strpbrk(value, "\r\n")) {
        char quoted[80];
        log_warn("http_header_refused", "name=%s", log_quote(name, quoted, sizeof quoted));
        return;
    }
    buf_printf(&res->headers, "%s: %s\r\n", name, value);
}

void http_response_set(http_response_t *res, int status, const char *content_type, const void *body,
                       size_t len) {
    res->status = status;
    res->content_type = content_type;
    buf_consume(&res->body, res->body.len);
    if (len) buf_append(&res->body, body, len);
}

void http_response_error(http_response_t *res, int status, const char *code, const char *message) {
    json_t *doc = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    if (!doc) /* not UTF-8: nothing of it is worth echoing */
        doc = json_pack("{s:{s:s,s:s}}", "error", "code", "ERROR", "message",
                        http_status_text(status));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text) abort(); /* jansson fails here only when out of memory */
    http_response_set(res, status, "application/json", text, strlen(text));
    free(text);
}

/* The Date value, formatted once per second. */
static const char *http_date_now(void) {
    static _Thread_local int64_t cached_sec = -1;
    static _Thread_local char cached[30];
    int64_t sec = clock_now_ms() / 1000;
    if (sec != cached_sec) {
        clock_http_date(sec, cached);
        cached_sec = sec;
    }
    return cached;
}

void http_response_serialize(const http_response_t *res, bool head_only, bool keep_alive,
                             buf_t *out) {
    int status = res->status >= 100 && res->status <= 599 ? res->status : 500;
    bool informational = status < 200;
    /* RFC 9110: 1xx and 204 never carry Content-Length; a 304 carries the headers it was
     * given but no body, and no Content-Length that would describe an empty one. */
    bool bodiless = informational || status == 204 || status == 304;

    buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_text(status),
               http_date_now());
    if (res->content_type) buf_printf(out, "Content-Type: %s\r\n", res->content_type);
    if (!bodiless) buf_printf(out, "Content-Length: %zu\r\n", res->body.len);
    buf_append(out, res->headers.data, res->headers.len);
    if (!keep_alive && !informational) buf_append_str(out, "Connection: close\r\n");
    buf_append_str(out, "\r\n");
    if (!head_only && !bodiless) buf_append(out, res->body.data, res->body.len);
}

/* The machine-readable code of a bare error: the status text in upper snake case
 * ("Payload Too Large" → "PAYLOAD_TOO_LARGE"), as the router's codes are. */
static void http_error_code(int status, char *out, size_t size) {
    const char *text = http_status_text(status);
    size_t o = 0;
    for (; *text && o + 1 < size; text++) {
        char c = *text;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        out[o++] = c;
    }
    out[o] = '\0';
}

void http_error_serialize(int status, const char *reason, bool keep_alive, buf_t *out) {
    http_response_t res;
    char code[64];
    http_response_init(&res);
    http_error_code(status, code, sizeof code);
    http_response_error(&res, status, code, reason ? reason : http_status_text(status));
    http_response_serialize(&res, false, keep_alive, out);
    http_response_cleanup(&res);
}

static const struct {
    int status;
    const char *text;
} http_status_texts[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {422, "Unprocessable Entity"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_status_text(int status) {
    for (size_t i = 0; i < sizeof http_status_texts / sizeof http_status_texts[0]; i++)
        if (http_status_texts[i].status == status) return http_status_texts[i].text;
    if (status >= 100 && status < 200) return "Informational";
    if (status >= 200 && status < 300) return "Success";
    if (status >= 300 && status < 400) return "Redirection";
    if (status >= 400 && status < 500) return "Client Error";
    return "Server Error";
}
