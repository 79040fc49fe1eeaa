/* /healthz, /readyz and /metrics (see ops.h). */
#include "app/ops.h"

#include "core/metrics.h"

static const char json_type[] = "application/json";

static void healthz(const http_request_t *req, const router_match_t *m, http_response_t *res, void *u) {
    (void)req, (void)m, (void)u;
    static const char body[] = "{\"status\":\"ok\"}";
    http_response_set(res, 200, json_type, body, sizeof body - 1);
    http_response_header(res, "Cache-Control", "no-store");
}

static void readyz(const http_request_t *req, const router_match_t *m, http_response_t *res, void *u) {
    (void)req, (void)m;
    server_t *const *server = u;
    if (*server && server_is_shutting_down(*server)) {
        static const char body[] = "{\"status\":\"shutting_down\"}";
        http_response_set(res, 503, json_type, body, sizeof body - 1);
    } else {
        static const char body[] = "{\"status\":\"ready\"}";
        http_response_set(res, 200, json_type, body, sizeof body - 1);
    }
    http_response_header(res, "Cache-Control", "no-store");
}

static void metrics_route(const http_request_t *req, const router_match_t *m, http_response_t *res,
                          void *u) {
    (void)req, (void)m, (void)u;
    res->status = 200;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    metrics_render(&res->body);
    http_response_header(res, "Cache-Control", "no-store");
}

void ops_register(router_t *router, server_t *const *server) {
    router_add(router, "GET", "/healthz", healthz, NULL);
    router_add(router, "GET", "/readyz", readyz, (void *)server);
    router_add(router, "GET", "/metrics", metrics_route, NULL);
}
