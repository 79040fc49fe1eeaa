/* The router, through net/router.h: literal and parameter segments, the trailing
 * rest match, first-match order, HEAD on GET routes, and the 404/405 answers. Requests
 * come from the real reader so paths are decoded exactly as in the server. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "net/http.h"
#include "net/router.h"

/* What a handler saw. */
typedef struct {
    int calls;
    const char *tag;
    char params[ROUTER_MAX_PARAMS][64];
    size_t param_count;
    char rest[256];
} seen_t;

static seen_t seen;

static void record(const http_request_t *req, const router_match_t *m, http_response_t *res,
                   void *udata) {
    (void)req;
    seen.calls++;
    seen.tag = udata;
    seen.param_count = m->param_count;
    for (size_t i = 0; i < m->param_count; i++)
        strncpy(seen.params[i], m->params[i].value, sizeof seen.params[i] - 1);
    strncpy(seen.rest, m->rest, sizeof seen.rest - 1);
    http_response_set(res, 200, "text/plain", udata, strlen(udata));
}

static void check_ids(const http_request_t *req, const router_match_t *m, http_response_t *res,
                      void *udata) {
    (void)req;
    (void)udata;
    seen.calls++;
    cr_assert_str_eq(router_param(m, "shop"), "s1");
    cr_assert_str_eq(router_param(m, "id"), "p 2");
    cr_assert_null(router_param(m, "missing"));
    http_response_set(res, 204, NULL, NULL, 0);
}

static void reset_seen(void) {
    memset(&seen, 0, sizeof seen);
}

/* Reads "METHOD target" into a request through the real reader. */
static void make_request(const char *method, const char *target, http_request_t *req) {
    char raw[1024];
    snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, target);
    http_reader_t *r = http_reader_new(1024);
    size_t used;
    cr_assert_eq(http_reader_feed(r, raw, strlen(raw), &used), HTTP_READ_REQUEST, "%s", raw);
    http_reader_take(r, req);
    http_reader_free(r);
}

/* Dispatches and returns the status; the response is left in *res. */
static int dispatch(const router_t *rt, const char *method, const char *target,
                    http_response_t *res) {
    http_request_t req;
    make_request(method, target, &req);
    http_response_init(res);
    reset_seen();
    router_dispatch(rt, &req, res);
    http_request_cleanup(&req);
    return res->status;
}

static int status_of(const router_t *rt, const char *method, const char *target) {
    http_response_t res;
    int status = dispatch(rt, method, target, &res);
    http_response_cleanup(&res);
    return status;
}

Test(router, routes_literal_paths) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/healthz", record, "health");
    router_add(rt, "GET", "/api/products", record, "list");
    cr_assert_eq(status_of(rt, "GET", "/api/products"), 200);
    cr_assert_str_eq(seen.tag, "list");
    cr_assert_eq(seen.param_count, 0);
    cr_assert_str_eq(seen.rest, "");
    cr_assert_eq(status_of(rt, "GET", "/healthz"), 200);
    cr_assert_str_eq(seen.tag, "health");
    router_free(rt);
}

Test(router, ignores_the_query_when_matching) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products", record, "list");
    cr_assert_eq(status_of(rt, "GET", "/api/products?limit=10&x=%zz"), 200);
    router_free(rt);
}

Test(router, extracts_named_parameters) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/shops/:shop/products/:id", check_ids, NULL);
    cr_assert_eq(status_of(rt, "GET", "/api/shops/s1/products/p%202"), 204);
    cr_assert_eq(seen.calls, 1);
    router_free(rt);
}

Test(router, decodes_each_parameter_on_its_own) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products/:id", record, "one");
    /* An encoded slash stays inside the parameter instead of adding a segment. */
    cr_assert_eq(status_of(rt, "GET", "/api/products/a%2Fb%3F"), 200);
    cr_assert_str_eq(seen.params[0], "a/b?");
    cr_assert_eq(status_of(rt, "GET", "/api/products/caf%C3%A9"), 200);
    cr_assert_str_eq(seen.params[0], "caf\xc3\xa9");
    router_free(rt);
}

Test(router, matches_literals_against_decoded_segments) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products", record, "list");
    cr_assert_eq(status_of(rt, "GET", "/api/%70roducts"), 200);
    cr_assert_eq(status_of(rt, "GET", "/api%2Fproducts"), 404);
    router_free(rt);
}

Test(router, never_matches_an_empty_parameter) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products/:id", record, "one");
    cr_assert_eq(status_of(rt, "GET", "/api/products/"), 404);
    cr_assert_eq(status_of(rt, "GET", "/api/products"), 404);
    router_free(rt);
}

Test(router, treats_trailing_slash_as_a_different_path) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products", record, "list");
    cr_assert_eq(status_of(rt, "GET", "/api/products/"), 404);
    cr_assert_eq(status_of(rt, "GET", "/api/products/x"), 404);
    cr_assert_eq(status_of(rt, "GET", "/api"), 404);
    router_free(rt);
}

Test(router, matches_the_root_pattern_only_at_root) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/", record, "root");
    cr_assert_eq(status_of(rt, "GET", "/"), 200);
    cr_assert_eq(status_of(rt, "GET", "/x"), 404);
    router_free(rt);
}

Test(router, lets_the_first_added_route_win) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products/featured", record, "literal");
    router_add(rt, "GET", "/api/products/:id", record, "param");
    router_add(rt, "GET", "/api/products/featured", record, "never");
    cr_assert_eq(status_of(rt, "GET", "/api/products/featured"), 200);
    cr_assert_str_eq(seen.tag, "literal");
    cr_assert_eq(status_of(rt, "GET", "/api/products/42"), 200);
    cr_assert_str_eq(seen.tag, "param");
    cr_assert_str_eq(seen.params[0], "42");
    router_free(rt);
}

Test(router, gives_the_rest_after_a_star_segment) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/static/*", record, "static");
    cr_assert_eq(status_of(rt, "GET", "/static/css/site.css"), 200);
    cr_assert_str_eq(seen.rest, "css/site.css");
    cr_assert_eq(status_of(rt, "GET", "/static/"), 200);
    cr_assert_str_eq(seen.rest, "");
    cr_assert_eq(status_of(rt, "GET", "/static"), 200);
    cr_assert_str_eq(seen.rest, "");
    cr_assert_eq(status_of(rt, "GET", "/staticx/a"), 404);
    router_free(rt);
}

Test(router, gives_a_decoded_rest) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/f%69les/:dir/*", record, "files");
    /* The pattern is literal text: "%69" is not decoded in patterns. */
    cr_assert_eq(status_of(rt, "GET", "/files/a/b"), 404);
    router_free(rt);

    rt = router_new();
    router_add(rt, "GET", "/files/:dir/*", record, "files");
    cr_assert_eq(status_of(rt, "GET", "/%66iles/d%2Fx/my%20file.txt?x=1"), 200);
    cr_assert_str_eq(seen.params[0], "d/x");
    cr_assert_str_eq(seen.rest, "my file.txt");
    router_free(rt);
}

Test(router, matches_everything_with_a_root_star) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/products", record, "api");
    router_add(rt, "GET", "/*", record, "fallback");
    cr_assert_eq(status_of(rt, "GET", "/"), 200);
    cr_assert_str_eq(seen.tag, "fallback");
    cr_assert_str_eq(seen.rest, "");
    cr_assert_eq(status_of(rt, "GET", "/index.html"), 200);
    cr_assert_str_eq(seen.rest, "index.html");
    cr_assert_eq(status_of(rt, "GET", "/api/products"), 200);
    cr_assert_str_eq(seen.tag, "api");
    router_free(rt);
}

Test(router, answers_404_json_when_nothing_matches) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/a", record, "a");
    http_response_t res;
    cr_assert_eq(dispatch(rt, "GET", "/b", &res), 404);
    cr_assert_eq(seen.calls, 0);
    cr_assert_str_eq(res.content_type, "application/json");
    cr_assert_str_eq(buf_cstr(&res.body),
                     "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"not found\"}}");
    http_response_cleanup(&res);
    router_free(rt);
}

Test(router, answers_404_for_a_target_without_a_path) {
    router_t *rt = router_new();
    router_add(rt, "OPTIONS", "/*", record, "any");
    cr_assert_eq(status_of(rt, "OPTIONS", "*"), 404);
    router_free(rt);
}

Test(router, answers_405_with_allow_list) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/orders/:id", record, "get");
    router_add(rt, "POST", "/api/orders/:id", record, "post");
    router_add(rt, "DELETE", "/api/other", record, "other");
    http_response_t res;
    cr_assert_eq(dispatch(rt, "PUT", "/api/orders/7", &res), 405);
    cr_assert_eq(seen.calls, 0);
    cr_assert_str_eq(buf_cstr(&res.headers), "Allow: GET, HEAD, POST\r\n");
    cr_assert_str_eq(
        buf_cstr(&res.body),
        "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\",\"message\":\"method not allowed\"}}");
    http_response_cleanup(&res);
    router_free(rt);
}

Test(router, lists_each_method_once_in_allow) {
    router_t *rt = router_new();
    router_add(rt, "POST", "/x", record, "post");
    router_add(rt, "HEAD", "/x", record, "head");
    router_add(rt, "GET", "/x", record, "get");
    router_add(rt, "POST", "/x", record, "post again");
    router_add(rt, "DELETE", "/:any", record, "delete");
    http_response_t res;
    cr_assert_eq(dispatch(rt, "PATCH", "/x", &res), 405);
    cr_assert_str_eq(buf_cstr(&res.headers), "Allow: POST, HEAD, GET, DELETE\r\n");
    http_response_cleanup(&res);
    router_free(rt);
}

Test(router, serves_head_with_get_routes) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/page", record, "get");
    cr_assert_eq(status_of(rt, "HEAD", "/page"), 200);
    cr_assert_str_eq(seen.tag, "get");
    router_free(rt);
}

Test(router, does_not_serve_head_from_other_methods) {
    router_t *rt = router_new();
    router_add(rt, "POST", "/form", record, "post");
    http_response_t res;
    cr_assert_eq(dispatch(rt, "HEAD", "/form", &res), 405);
    cr_assert_str_eq(buf_cstr(&res.headers), "Allow: POST\r\n");
    http_response_cleanup(&res);
    router_free(rt);
}

Test(router, prefers_a_later_route_with_the_right_method) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/api/carts/:id", record, "get");
    router_add(rt, "PUT", "/api/carts/:id", record, "put");
    cr_assert_eq(status_of(rt, "PUT", "/api/carts/c1"), 200);
    cr_assert_str_eq(seen.tag, "put");
    cr_assert_str_eq(seen.params[0], "c1");
    router_free(rt);
}

Test(router, takes_up_to_max_parameters) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/:a/:b/:c/:d/:e/:f/:g/:h", record, "eight");
    cr_assert_eq(status_of(rt, "GET", "/1/2/3/4/5/6/7/8"), 200);
    cr_assert_eq(seen.param_count, ROUTER_MAX_PARAMS);
    cr_assert_str_eq(seen.params[7], "8");
    router_free(rt);
}

Test(router, frees_null) {
    router_free(NULL);
}
