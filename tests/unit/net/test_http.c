/* The HTTP/1.1 reader and response writer, through net/http.h: parsing, pipelining,
 * split input, every limit and every refusal, and the exact bytes of responses. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "net/http.h"

#define SMALL_BODY_LIMIT 64

/* Feeds all of raw in one go; on success the request lands in *out. */
static http_read_result_t read_one(http_reader_t *r, const char *raw, size_t len,
                                   http_request_t *out, size_t *consumed) {
    size_t used = 0;
    http_read_result_t res = http_reader_feed(r, raw, len, &used);
    if (consumed) *consumed = used;
    if (res == HTTP_READ_REQUEST) http_reader_take(r, out);
    return res;
}

/* Parses a whole request with the default body limit; returns the result and, when a
 * request came out, fills *out. */
static http_read_result_t parse(const char *raw, http_request_t *out) {
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    http_read_result_t res = read_one(r, raw, strlen(raw), out, NULL);
    http_reader_free(r);
    return res;
}

/* Parses raw expecting a refusal and returns the status the reader chose. */
static int refusal_status(const char *raw, size_t len, size_t max_body) {
    http_reader_t *r = http_reader_new(max_body);
    http_request_t req;
    http_read_result_t res = read_one(r, raw, len, &req, NULL);
    if (res == HTTP_READ_REQUEST) http_request_cleanup(&req);
    cr_assert_eq(res, HTTP_READ_ERROR, "expected a refusal for: %.60s", raw);
    cr_assert_not_null(http_reader_error_reason(r));
    int status = http_reader_error_status(r);
    http_reader_free(r);
    return status;
}

static int refusal_of(const char *raw) {
    return refusal_status(raw, strlen(raw), HTTP_DEFAULT_MAX_BODY);
}

/* ----------------------------------------------------------------------------------- */
/* Parsing                                                                              */
/* ----------------------------------------------------------------------------------- */

Test(http_reader, parses_simple_get) {
    http_request_t req;
    cr_assert_eq(
        parse("GET /api/products HTTP/1.1\r\nHost: shop.test\r\nAccept: */*\r\n\r\n", &req),
        HTTP_READ_REQUEST);
    cr_assert_eq(req.method, HTTP_GET);
    cr_assert_str_eq(req.method_name, "GET");
    cr_assert_str_eq(req.target, "/api/products");
    cr_assert_str_eq(req.path, "/api/products");
    cr_assert_str_eq(req.query, "");
    cr_assert_eq(req.header_count, 2);
    cr_assert_str_eq(req.headers[0].name, "Host");
    cr_assert_str_eq(req.headers[0].value, "shop.test");
    cr_assert_str_eq(req.headers[1].name, "Accept");
    cr_assert_str_eq(req.headers[1].value, "*/*");
    cr_assert_eq(req.http_major, 1);
    cr_assert_eq(req.http_minor, 1);
    cr_assert(req.keep_alive);
    cr_assert_not(req.upgrade);
    cr_assert_eq(req.body.len, 0);
    http_request_cleanup(&req);
}

Test(http_reader, looks_headers_up_case_insensitively) {
    http_request_t req;
    cr_assert_eq(parse("GET / HTTP/1.1\r\nhOsT: a\r\nX-Token: abc\r\n\r\n", &req),
                 HTTP_READ_REQUEST);
    cr_assert_str_eq(http_request_header(&req, "host"), "a");
    cr_assert_str_eq(http_request_header(&req, "X-TOKEN"), "abc");
    cr_assert_null(http_request_header(&req, "Cookie"));
    http_request_cleanup(&req);
}

Test(http_reader, trims_header_value_whitespace_and_keeps_empty_values) {
    http_request_t req;
    cr_assert_eq(parse("GET / HTTP/1.1\r\nHost:   a  \t\r\nX-Empty:\r\nX-Blank:   \r\n\r\n", &req),
                 HTTP_READ_REQUEST);
    cr_assert_str_eq(http_request_header(&req, "Host"), "a");
    cr_assert_str_eq(http_request_header(&req, "X-Empty"), "");
    cr_assert_str_eq(http_request_header(&req, "X-Blank"), "");
    http_request_cleanup(&req);
}

Test(http_reader, splits_query_and_decodes_path) {
    http_request_t req;
    cr_assert_eq(parse("GET /a%20b/c%2Fd?x=1&y=%20#frag HTTP/1.1\r\nHost: a\r\n\r\n", &req),
                 HTTP_READ_REQUEST);
    cr_assert_str_eq(req.target, "/a%20b/c%2Fd?x=1&y=%20#frag");
    cr_assert_str_eq(req.path, "/a b/c/d");
    cr_assert_str_eq(req.query, "x=1&y=%20");
    http_request_cleanup(&req);
}

Test(http_reader, takes_path_from_absolute_form_target) {
    http_request_t req;
    cr_assert_eq(
        parse("GET http://shop.test/api/x%41?q=1 HTTP/1.1\r\nHost: shop.test\r\n\r\n", &req),
        HTTP_READ_REQUEST);
    cr_assert_str_eq(req.path, "/api/xA");
    cr_assert_str_eq(req.query, "q=1");
    http_request_cleanup(&req);
}

Test(http_reader, rejects_encoded_nul_in_path) {
    cr_assert_eq(refusal_of("GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

Test(http_reader, rejects_malformed_percent_escapes) {
    cr_assert_eq(refusal_of("GET /a%zzb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET /a% HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

Test(http_reader, ignores_percent_escapes_in_query) {
    http_request_t req;
    cr_assert_eq(parse("GET /a?x=%zz HTTP/1.1\r\nHost: a\r\n\r\n", &req), HTTP_READ_REQUEST);
    cr_assert_str_eq(req.query, "x=%zz");
    http_request_cleanup(&req);
}

Test(http_reader, reads_content_length_body) {
    http_request_t req;
    cr_assert_eq(
        parse("POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", &req),
        HTTP_READ_REQUEST);
    cr_assert_eq(req.method, HTTP_POST);
    cr_assert_eq(req.body.len, 11);
    cr_assert_eq(memcmp(req.body.data, "hello world", 11), 0);
    http_request_cleanup(&req);
}

Test(http_reader, reads_chunked_body_with_extensions_and_trailers) {
    http_request_t req;
    cr_assert_eq(parse("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
                       &req),
                 HTTP_READ_REQUEST);
    cr_assert_eq(req.body.len, 11);
    cr_assert_eq(memcmp(req.body.data, "hello world", 11), 0);
    /* Trailers are not kept, and the headers are untouched by them. */
    cr_assert_null(http_request_header(&req, "X-Trailer"));
    cr_assert_str_eq(http_request_header(&req, "Host"), "a");
    http_request_cleanup(&req);
}

Test(http_reader, reads_pipelined_requests_one_at_a_time) {
    const char *raw = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                      "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                      "GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    const char *targets[] = {"/one", "/two", "/three"};
    size_t len = strlen(raw), off = 0;
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);

    for (int i = 0; i < 3; i++) {
        http_request_t req;
        size_t used;
        cr_assert_eq(read_one(r, raw + off, len - off, &req, &used), HTTP_READ_REQUEST);
        cr_assert_str_eq(req.target, targets[i]);
        off += used;
        if (i == 1) cr_assert_eq(memcmp(req.body.data, "abc", 3), 0);
        cr_assert_eq(req.keep_alive, i != 2);
        http_request_cleanup(&req);
    }
    cr_assert_eq(off, len);
    http_reader_free(r);
}

Test(http_reader, reports_complete_request_again_until_taken) {
    const char *raw = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t used, again;
    cr_assert_eq(http_reader_feed(r, raw, strlen(raw), &used), HTTP_READ_REQUEST);
    cr_assert_eq(used, strlen(raw) / 2);
    cr_assert_eq(http_reader_feed(r, raw + used, strlen(raw) - used, &again), HTTP_READ_REQUEST);
    cr_assert_eq(again, 0);
    http_request_t req;
    http_reader_take(r, &req);
    cr_assert_str_eq(req.target, "/a");
    http_request_cleanup(&req);
    cr_assert_eq(read_one(r, raw + used, strlen(raw) - used, &req, &again), HTTP_READ_REQUEST);
    cr_assert_str_eq(req.target, "/b");
    http_request_cleanup(&req);
    http_reader_free(r);
}

/* Feeds raw one byte at a time; returns the request count and checks all was used. */
static size_t read_bytewise(const char *raw, size_t len, http_request_t *reqs, size_t max) {
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        size_t used;
        http_read_result_t res = http_reader_feed(r, raw + i, 1, &used);
        cr_assert_neq(res, HTTP_READ_ERROR, "refused at byte %zu", i);
        cr_assert_eq(used, 1);
        if (res == HTTP_READ_REQUEST) {
            cr_assert_lt(n, max);
            http_reader_take(r, &reqs[n++]);
        } else {
            cr_assert(http_reader_in_request(r) || raw[i] == '\r' || raw[i] == '\n');
        }
    }
    cr_assert_not(http_reader_in_request(r));
    http_reader_free(r);
    return n;
}

Test(http_reader, parses_requests_split_byte_by_byte) {
    const char *raw = "POST /p%41th?q=1 HTTP/1.1\r\nHost: shop.test\r\nX-Long-Header-Name: "
                      "some value\r\nContent-Length: 5\r\n\r\nhello"
                      "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    http_request_t reqs[2];
    cr_assert_eq(read_bytewise(raw, strlen(raw), reqs, 2), 2);
    cr_assert_str_eq(reqs[0].path, "/pAth");
    cr_assert_str_eq(reqs[0].query, "q=1");
    cr_assert_str_eq(http_request_header(&reqs[0], "x-long-header-name"), "some value");
    cr_assert_eq(reqs[0].body.len, 5);
    cr_assert_eq(memcmp(reqs[0].body.data, "hello", 5), 0);
    cr_assert_eq(reqs[1].method, HTTP_PUT);
    cr_assert_eq(reqs[1].body.len, 5);
    cr_assert_eq(memcmp(reqs[1].body.data, "abcde", 5), 0);
    http_request_cleanup(&reqs[0]);
    http_request_cleanup(&reqs[1]);
}

Test(http_reader, skips_blank_lines_between_requests) {
    const char *raw = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    http_request_t reqs[1];
    cr_assert_eq(read_bytewise(raw, strlen(raw), reqs, 1), 1);
    http_request_cleanup(&reqs[0]);
}

Test(http_reader, tracks_whether_a_request_is_in_progress) {
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t used;
    cr_assert_not(http_reader_in_request(r));
    cr_assert_eq(http_reader_feed(r, "GET / HT", 8, &used), HTTP_READ_MORE);
    cr_assert_eq(used, 8);
    cr_assert(http_reader_in_request(r));
    cr_assert_eq(http_reader_feed(r, "TP/1.1\r\nHost: a\r\n\r\n", 19, &used), HTTP_READ_REQUEST);
    cr_assert_not(http_reader_in_request(r));
    http_request_t req;
    http_reader_take(r, &req);
    http_request_cleanup(&req);
    cr_assert_not(http_reader_in_request(r));
    http_reader_free(r);
}

Test(http_reader, treats_empty_feed_as_nothing_new) {
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t used = 99;
    cr_assert_eq(http_reader_feed(r, "", 0, &used), HTTP_READ_MORE);
    cr_assert_eq(used, 0);
    cr_assert_eq(http_reader_feed(r, "GET /", 5, &used), HTTP_READ_MORE);
    cr_assert_eq(http_reader_feed(r, "", 0, &used), HTTP_READ_MORE);
    cr_assert_eq(http_reader_error_status(r), 0);
    cr_assert_null(http_reader_error_reason(r));
    http_reader_free(r);
}

Test(http_reader, reports_head_method) {
    http_request_t req;
    cr_assert_eq(parse("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", &req), HTTP_READ_REQUEST);
    cr_assert_eq(req.method, HTTP_HEAD);
    cr_assert_str_eq(req.method_name, "HEAD");
    cr_assert_eq(req.body.len, 0);
    http_request_cleanup(&req);
}

/* ----------------------------------------------------------------------------------- */
/* Keep-alive and upgrade                                                               */
/* ----------------------------------------------------------------------------------- */

static bool keep_alive_of(const char *raw) {
    http_request_t req;
    cr_assert_eq(parse(raw, &req), HTTP_READ_REQUEST);
    bool k = req.keep_alive;
    http_request_cleanup(&req);
    return k;
}

Test(http_reader, keeps_http11_alive_unless_asked_to_close) {
    cr_assert(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"));
}

Test(http_reader, closes_http10_unless_asked_to_keep_alive) {
    cr_assert_not(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
    cr_assert(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
}

Test(http_reader, stops_upgrade_request_at_end_of_headers) {
    const char *head =
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    char raw[512];
    size_t head_len = strlen(head);
    memcpy(raw, head, head_len);
    memcpy(raw + head_len, frame, sizeof frame - 1);

    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    http_request_t req;
    size_t used;
    cr_assert_eq(read_one(r, raw, head_len + sizeof frame - 1, &req, &used), HTTP_READ_REQUEST);
    cr_assert_eq(used, head_len);
    cr_assert(req.upgrade);
    cr_assert_str_eq(http_request_header(&req, "Upgrade"), "websocket");
    http_request_cleanup(&req);
    http_reader_free(r);
}

Test(http_reader, stops_upgrade_request_split_byte_by_byte) {
    const char *raw =
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        "\x81\x80";
    size_t head_len = strlen(raw) - 2;
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    for (size_t i = 0; i < head_len; i++) {
        size_t used;
        http_read_result_t res = http_reader_feed(r, raw + i, 1, &used);
        cr_assert_eq(used, 1);
        cr_assert_eq(res, i + 1 == head_len ? HTTP_READ_REQUEST : HTTP_READ_MORE);
    }
    http_request_t req;
    http_reader_take(r, &req);
    cr_assert(req.upgrade);
    http_request_cleanup(&req);
    http_reader_free(r);
}

Test(http_reader, does_not_report_upgrade_without_connection_upgrade) {
    http_request_t req;
    cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &req),
                 HTTP_READ_REQUEST);
    cr_assert_not(req.upgrade);
    http_request_cleanup(&req);
}

Test(http_reader, answers_connect_without_upgrade_and_closes) {
    const char *raw = "CONNECT shop.test:443 HTTP/1.1\r\nHost: shop.test:443\r\n\r\nTUNNEL";
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    http_request_t req;
    size_t used;
    cr_assert_eq(read_one(r, raw, strlen(raw), &req, &used), HTTP_READ_REQUEST);
    cr_assert_eq(used, strlen(raw) - 6);
    cr_assert_eq(req.method, HTTP_CONNECT);
    cr_assert_not(req.upgrade);
    cr_assert_not(req.keep_alive);
    cr_assert_str_eq(req.path, "shop.test:443");
    http_request_cleanup(&req);
    http_reader_free(r);
}

/* ----------------------------------------------------------------------------------- */
/* Limits                                                                               */
/* ----------------------------------------------------------------------------------- */

/* "GET /aaa… HTTP/1.1" with a target of exactly target_len bytes. */
static char *request_with_target(size_t target_len) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "GET /");
    for (size_t i = 1; i < target_len; i++) buf_append_char(&b, 'a');
    buf_append_str(&b, " HTTP/1.1\r\nHost: a\r\n\r\n");
    return buf_take(&b, NULL);
}

Test(http_reader, accepts_target_at_limit) {
    char *raw = request_with_target(HTTP_MAX_TARGET);
    http_request_t req;
    cr_assert_eq(parse(raw, &req), HTTP_READ_REQUEST);
    cr_assert_eq(strlen(req.target), HTTP_MAX_TARGET);
    http_request_cleanup(&req);
    free(raw);
}

Test(http_reader, rejects_target_over_limit_with_414) {
    char *raw = request_with_target(HTTP_MAX_TARGET + 1);
    cr_assert_eq(refusal_of(raw), 414);
    free(raw);
}

Test(http_reader, rejects_oversized_target_split_across_feeds_with_414) {
    char *raw = request_with_target(HTTP_MAX_TARGET + 1);
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t used, len = strlen(raw);
    cr_assert_eq(http_reader_feed(r, raw, 4000, &used), HTTP_READ_MORE);
    cr_assert_eq(http_reader_feed(r, raw + 4000, 4000, &used), HTTP_READ_MORE);
    cr_assert_eq(http_reader_feed(r, raw + 8000, len - 8000, &used), HTTP_READ_ERROR);
    cr_assert_eq(http_reader_error_status(r), 414);
    http_reader_free(r);
    free(raw);
}

/* A request whose header block holds `count` headers "X-Hnnnn: <value_len bytes>". */
static char *request_with_headers(size_t count, size_t value_len) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 0; i < count; i++) {
        buf_printf(&b, "X-H%04zu: ", i);
        for (size_t k = 0; k < value_len; k++) buf_append_char(&b, 'v');
        buf_append_str(&b, "\r\n");
    }
    buf_append_str(&b, "\r\n");
    return buf_take(&b, NULL);
}

Test(http_reader, accepts_max_header_count) {
    char *raw = request_with_headers(HTTP_MAX_HEADERS - 1, 1); /* + Host */
    http_request_t req;
    cr_assert_eq(parse(raw, &req), HTTP_READ_REQUEST);
    cr_assert_eq(req.header_count, HTTP_MAX_HEADERS);
    cr_assert_str_eq(req.headers[HTTP_MAX_HEADERS - 1].name, "X-H0098");
    http_request_cleanup(&req);
    free(raw);
}

Test(http_reader, rejects_too_many_headers_with_431) {
    char *raw = request_with_headers(HTTP_MAX_HEADERS, 1);
    cr_assert_eq(refusal_of(raw), 431);
    free(raw);
}

Test(http_reader, rejects_header_block_over_limit_with_431) {
    /* 20 lines of ~1 KiB: under the count limit, over the byte limit. */
    char *raw = request_with_headers(20, 1000);
    cr_assert_eq(refusal_of(raw), 431);
    free(raw);
}

Test(http_reader, rejects_single_huge_header_with_431) {
    char *raw = request_with_headers(1, HTTP_MAX_HEADER_BYTES);
    cr_assert_eq(refusal_of(raw), 431);
    free(raw);
}

Test(http_reader, accepts_header_block_under_limit) {
    char *raw = request_with_headers(15, 1000);
    http_request_t req;
    cr_assert_eq(parse(raw, &req), HTTP_READ_REQUEST);
    cr_assert_eq(strlen(req.headers[15].value), 1000);
    http_request_cleanup(&req);
    free(raw);
}

Test(http_reader, rejects_oversized_trailers_with_431) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(
        &b, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n");
    for (int i = 0; i < 20; i++) {
        buf_printf(&b, "X-T%d: ", i);
        for (int k = 0; k < 1000; k++) buf_append_char(&b, 't');
        buf_append_str(&b, "\r\n");
    }
    buf_append_str(&b, "\r\n");
    cr_assert_eq(refusal_status(b.data, b.len, HTTP_DEFAULT_MAX_BODY), 431);
    buf_cleanup(&b);
}

Test(http_reader, rejects_body_over_limit_from_content_length_with_413) {
    const char *raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n";
    http_reader_t *r = http_reader_new(SMALL_BODY_LIMIT);
    size_t used;
    /* Refused from the header alone, before any body byte arrives. */
    cr_assert_eq(http_reader_feed(r, raw, strlen(raw), &used), HTTP_READ_ERROR);
    cr_assert_eq(http_reader_error_status(r), 413);
    http_reader_free(r);
}

Test(http_reader, accepts_body_at_limit) {
    char raw[256];
    int n = snprintf(raw, sizeof raw, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
                     SMALL_BODY_LIMIT);
    memset(raw + n, 'b', SMALL_BODY_LIMIT);
    http_reader_t *r = http_reader_new(SMALL_BODY_LIMIT);
    http_request_t req;
    cr_assert_eq(read_one(r, raw, (size_t)n + SMALL_BODY_LIMIT, &req, NULL), HTTP_READ_REQUEST);
    cr_assert_eq(req.body.len, SMALL_BODY_LIMIT);
    http_request_cleanup(&req);
    http_reader_free(r);
}

Test(http_reader, rejects_chunked_body_over_limit_by_chunk_size_with_413) {
    const char *raw = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\n";
    cr_assert_eq(refusal_status(raw, strlen(raw), SMALL_BODY_LIMIT), 413);
}

Test(http_reader, rejects_chunked_body_growing_over_limit_with_413) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 9; i++) buf_append_str(&b, "8\r\n12345678\r\n"); /* 72 > 64 bytes */
    buf_append_str(&b, "0\r\n\r\n");
    cr_assert_eq(refusal_status(b.data, b.len, SMALL_BODY_LIMIT), 413);
    buf_cleanup(&b);
}

Test(http_reader, rejects_any_body_when_limit_is_zero) {
    const char *raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx";
    cr_assert_eq(refusal_status(raw, strlen(raw), 0), 413);
}

/* ----------------------------------------------------------------------------------- */
/* Refusals                                                                             */
/* ----------------------------------------------------------------------------------- */

Test(http_reader, rejects_http11_without_host) {
    cr_assert_eq(refusal_of("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), 400);
}

Test(http_reader, accepts_http10_without_host) {
    http_request_t req;
    cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &req), HTTP_READ_REQUEST);
    http_request_cleanup(&req);
}

Test(http_reader, rejects_repeated_host) {
    cr_assert_eq(refusal_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

Test(http_reader, rejects_duplicate_content_length_with_different_values) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                            "Content-Length: 2\r\n\r\nab"),
                 400);
}

Test(http_reader, rejects_duplicate_content_length_with_equal_values) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                            "content-length: 2\r\n\r\nab"),
                 400);
}

Test(http_reader, rejects_content_length_list) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nab"), 400);
}

Test(http_reader, rejects_non_numeric_content_length) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\nab"), 400);
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nab"), 400);
}

Test(http_reader, rejects_content_length_with_transfer_encoding) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
                 400);
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                            "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
                 400);
}

Test(http_reader, rejects_transfer_encoding_other_than_chunked) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                            "0\r\n\r\n"),
                 400);
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                 400);
}

Test(http_reader, rejects_bad_chunk_sizes) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "zz\r\nabc\r\n0\r\n\r\n"),
                 400);
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "-1\r\nabc\r\n0\r\n\r\n"),
                 400);
    /* Larger than 64 bits: refused as malformed before any limit is asked. */
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "fffffffffffffffffff\r\n"),
                 400);
}

Test(http_reader, rejects_chunk_without_crlf) {
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "3\r\nabcX\r\n0\r\n\r\n"),
                 400);
}

Test(http_reader, rejects_malformed_request_lines) {
    cr_assert_eq(refusal_of("GARBAGE\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET / HTTP/12.1\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("get / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

Test(http_reader, rejects_malformed_headers) {
    cr_assert_eq(refusal_of("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400);
    static const char nul_in_value[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    cr_assert_eq(refusal_status(nul_in_value, sizeof nul_in_value - 1, HTTP_DEFAULT_MAX_BODY), 400);
}

Test(http_reader, rejects_whitespace_between_header_name_and_colon) {
    /* Read as some other header, this Content-Length would leave "hello" to be parsed
     * as the next request. */
    cr_assert_eq(refusal_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"), 400);
}

Test(http_reader, rejects_control_characters_in_target) {
    cr_assert_eq(refusal_of("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET /a\fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(refusal_of("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

Test(http_reader, stays_failed_after_a_refusal) {
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t used;
    const char *good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    cr_assert_eq(http_reader_feed(r, "BAD\r\n\r\n", 7, &used), HTTP_READ_ERROR);
    cr_assert_eq(http_reader_feed(r, good, strlen(good), &used), HTTP_READ_ERROR);
    cr_assert_eq(used, 0);
    cr_assert_eq(http_reader_error_status(r), 400);
    http_reader_free(r);
}

Test(http_reader, frees_a_partial_request) {
    http_reader_t *r = http_reader_new(HTTP_DEFAULT_MAX_BODY);
    size_t used;
    const char *raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc";
    cr_assert_eq(http_reader_feed(r, raw, strlen(raw), &used), HTTP_READ_MORE);
    http_reader_free(r); /* ASan checks that nothing leaks */
    http_reader_free(NULL);
}

/* ----------------------------------------------------------------------------------- */
/* Percent-decoding                                                                     */
/* ----------------------------------------------------------------------------------- */

Test(http_percent_decode, decodes_escapes_and_leaves_plus_alone) {
    char out[32];
    size_t n = 0;
    cr_assert_eq(http_percent_decode("a%20b+c%2fd%41", 14, out, &n), 0);
    cr_assert_str_eq(out, "a b+c/dA");
    cr_assert_eq(n, 8);
}

Test(http_percent_decode, refuses_nul_and_malformed_escapes) {
    char out[32];
    size_t n = 42;
    cr_assert_eq(http_percent_decode("%00", 3, out, &n), -1);
    cr_assert_eq(http_percent_decode("%g0", 3, out, &n), -1);
    cr_assert_eq(http_percent_decode("ab%2", 4, out, &n), -1);
    cr_assert_eq(n, 42, "the length is written only on success");
}

/* ----------------------------------------------------------------------------------- */
/* Responses                                                                            */
/* ----------------------------------------------------------------------------------- */

/* Checks the Date line (second header, an IMF-fixdate of about now) and returns the
 * serialisation without it, for exact comparison. Caller frees. */
static char *without_date(const buf_t *out) {
    const char *s = out->data;
    const char *date = strstr(s, "\r\nDate: ");
    cr_assert_not_null(date);
    date += 2;
    const char *eol = strstr(date, "\r\n");
    cr_assert_eq(eol - date, 6 + 29, "Date line: %.*s", (int)(eol - date), date);
    cr_assert_eq(memcmp(eol - 4, " GMT", 4), 0);

    char now[30], before[30];
    int64_t sec = clock_now_ms() / 1000;
    clock_http_date(sec, now);
    clock_http_date(sec - 1, before);
    cr_assert(memcmp(date + 6, now, 29) == 0 || memcmp(date + 6, before, 29) == 0);

    buf_t rest;
    buf_init(&rest, 0);
    buf_append(&rest, s, (size_t)(date - s));
    buf_append(&rest, eol + 2, out->len - (size_t)(eol + 2 - s));
    return buf_take(&rest, NULL);
}

static char *serialize(const http_response_t *res, bool head_only, bool keep_alive) {
    buf_t out;
    buf_init(&out, 0);
    http_response_serialize(res, head_only, keep_alive, &out);
    char *text = without_date(&out);
    buf_cleanup(&out);
    return text;
}

Test(http_response, serializes_status_headers_and_body_exactly) {
    http_response_t res;
    http_response_init(&res);
    http_response_set(&res, 201, "application/json", "{\"id\":1}", 8);
    http_response_header(&res, "Location", "/api/orders/1");
    http_response_header(&res, "X-Request-Id", "r-7");
    char *text = serialize(&res, false, true);
    cr_assert_str_eq(text, "HTTP/1.1 201 Created\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: 8\r\n"
                           "Location: /api/orders/1\r\n"
                           "X-Request-Id: r-7\r\n"
                           "\r\n"
                           "{\"id\":1}");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, adds_connection_close_when_not_keeping_alive) {
    http_response_t res;
    http_response_init(&res);
    http_response_set(&res, 200, NULL, "ok", 2);
    http_response_header(&res, "X-A", "b");
    char *text = serialize(&res, false, false);
    cr_assert_str_eq(text, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n"
                           "Connection: close\r\n\r\nok");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, keeps_content_length_but_drops_body_for_head) {
    http_response_t res;
    http_response_init(&res);
    http_response_set(&res, 200, "text/plain; charset=utf-8", "hello", 5);
    char *text = serialize(&res, true, true);
    cr_assert_str_eq(text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           "Content-Length: 5\r\n\r\n");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, sends_empty_body_with_zero_length) {
    http_response_t res;
    http_response_init(&res);
    char *text = serialize(&res, false, true);
    cr_assert_str_eq(text, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, omits_length_and_body_for_204) {
    http_response_t res;
    http_response_init(&res);
    http_response_set(&res, 204, NULL, "ignored", 7);
    char *text = serialize(&res, false, true);
    cr_assert_str_eq(text, "HTTP/1.1 204 No Content\r\n\r\n");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, keeps_headers_but_no_body_for_304) {
    http_response_t res;
    http_response_init(&res);
    http_response_set(&res, 304, NULL, NULL, 0);
    http_response_header(&res, "ETag", "\"abc\"");
    http_response_header(&res, "Cache-Control", "no-cache");
    char *text = serialize(&res, false, false);
    cr_assert_str_eq(text, "HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n"
                           "Cache-Control: no-cache\r\nConnection: close\r\n\r\n");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, switches_protocols_without_length_or_close) {
    http_response_t res;
    http_response_init(&res);
    res.status = 101;
    http_response_header(&res, "Upgrade", "websocket");
    http_response_header(&res, "Connection", "Upgrade");
    char *text = serialize(&res, false, false);
    cr_assert_str_eq(text, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n\r\n");
    free(text);
    http_response_cleanup(&res);
}

Test(http_response, writes_json_error_body) {
    http_response_t res;
    http_response_init(&res);
    http_response_error(&res, 404, "NOT_FOUND", "no \"such\" product");
    cr_assert_eq(res.status, 404);
    cr_assert_str_eq(res.content_type, "application/json");
    cr_assert_str_eq(
        buf_cstr(&res.body),
        "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no \\\"such\\\" product\"}}");
    http_response_cleanup(&res);
}

Test(http_response, replaces_body_on_set) {
    http_response_t res;
    http_response_init(&res);
    http_response_set(&res, 200, "text/plain", "a long first body", 17);
    http_response_set(&res, 202, NULL, "b", 1);
    cr_assert_eq(res.status, 202);
    cr_assert_null(res.content_type);
    cr_assert_eq(res.body.len, 1);
    cr_assert_str_eq(buf_cstr(&res.body), "b");
    http_response_cleanup(&res);
}

Test(http_response, refuses_header_lines_that_could_split_the_response) {
    http_response_t res;
    http_response_init(&res);
    http_response_header(&res, "X-A", "ok\r\nSet-Cookie: evil=1");
    http_response_header(&res, "X-B\r\nEvil", "x");
    http_response_header(&res, "Bad Name", "x");
    http_response_header(&res, "", "x");
    http_response_header(&res, "X-C", "fine");
    cr_assert_str_eq(buf_cstr(&res.headers), "X-C: fine\r\n");
    http_response_cleanup(&res);
}

Test(http_response, serializes_bare_error_responses) {
    buf_t out;
    buf_init(&out, 0);
    http_error_serialize(413, "request body too large", false, &out);
    char *text = without_date(&out);
    const char *body =
        "{\"error\":{\"code\":\"PAYLOAD_TOO_LARGE\",\"message\":\"request body too large\"}}";
    char expected[512];
    snprintf(expected, sizeof expected,
             "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    cr_assert_str_eq(text, expected);
    free(text);
    buf_cleanup(&out);
}

Test(http_response, names_bare_error_codes_after_the_status) {
    const struct {
        int status;
        const char *code;
    } cases[] = {{400, "\"BAD_REQUEST\""},
                 {414, "\"URI_TOO_LONG\""},
                 {431, "\"REQUEST_HEADER_FIELDS_TOO_LARGE\""},
                 {503, "\"SERVICE_UNAVAILABLE\""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t out;
        buf_init(&out, 0);
        http_error_serialize(cases[i].status, NULL, true, &out);
        cr_assert_not_null(strstr(out.data, cases[i].code), "%s", out.data);
        cr_assert_null(strstr(out.data, "Connection: close"));
        buf_cleanup(&out);
    }
}

Test(http_response, knows_the_common_status_texts) {
    const struct {
        int status;
        const char *text;
    } cases[] = {
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Payload Too Large"},
        {414, "URI Too Long"},
        {422, "Unprocessable Entity"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {499, "Client Error"},
        {599, "Server Error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_str_eq(http_status_text(cases[i].status), cases[i].text);
}

Test(http_response, serializes_out_of_range_status_as_500) {
    http_response_t res;
    http_response_init(&res);
    res.status = 42;
    char *text = serialize(&res, false, true);
    cr_assert_str_eq(text, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
    free(text);
    http_response_cleanup(&res);
}
