/* A small HTTP router: method + path pattern → handler. Patterns are literal
 * segments and `:name` parameters ("/api/products/:id"); a final "*" segment matches any
 * rest (for static files). The first added route that matches wins. A path that some
 * route matches with another method gives 405 and the Allow list; HEAD is served by
 * GET routes. */
#ifndef SHOPD_NET_ROUTER_H
#define SHOPD_NET_ROUTER_H

#include <stddef.h>

#include "net/http.h"

#define ROUTER_MAX_PARAMS 8

typedef struct {
    const char *name;
    char *value; /* percent-decoded, owned by the match */
} router_param_t;

typedef struct {
    router_param_t params[ROUTER_MAX_PARAMS];
    size_t param_count;
    const char *rest; /* what a final "*" segment matched, borrowed from the path ("" when none) */
} router_match_t;

typedef void (*router_handler_fn)(const http_request_t *req, const router_match_t *match,
                                  http_response_t *res, void *udata);

typedef struct router router_t;

router_t *router_new(void);
void router_free(router_t *r); /* NULL is fine */
/* Registers a route. method is "GET", "POST", … ; pattern must start with '/'. */
void router_add(router_t *r, const char *method, const char *pattern, router_handler_fn fn,
                void *udata);

/* Routes the request and fills res: the handler's answer, or 404, or 405 with Allow. */
void router_dispatch(const router_t *r, const http_request_t *req, http_response_t *res);

/* Returns the parameter's value or NULL. */
const char *router_param(const router_match_t *m, const char *name);

#endif
