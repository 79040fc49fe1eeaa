/* Method + path pattern → handler (see router.h).
 *
 * Patterns are cut into segments when they are added. A request is split into
 * segments once per dispatch: for an origin-form target ("/a/b?q") the raw path is
 * split at '/' first and each segment is percent-decoded on its own, so
 * "/products/a%2Fb" gives :id = "a/b" instead of an extra segment; other target forms
 * are split from the already decoded path. Routes are tried in the order they were
 * added with a linear scan: shopd registers a few dozen, and each try is a handful of
 * string compares. */
#include "net/router.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"

typedef struct {
    char *method;
    char *pattern; /* owned copy, cut in place into the segments below */
    char **segs;   /* literal text, or ":name" */
    size_t seg_count;
    bool rest; /* the pattern ended in a "*" segment */
    router_handler_fn fn;
    void *udata;
} router_route_t;

struct router {
    router_route_t *routes;
    size_t count, cap;
};

/* A request path cut into decoded segments. */
typedef struct {
    char *text;         /* the decoded segments, each NUL-terminated */
    size_t *seg;        /* offset of each segment in text */
    size_t *path_start; /* where each segment starts in req->path, for the rest */
    size_t count;
    const char *path; /* req->path, or "" */
} router_path_t;

router_t *router_new(void) {
    return xcalloc(1, sizeof(router_t));
}

void router_free(router_t *r) {
    if (!r) return;
    for (size_t i = 0; i < r->count; i++) {
        free(r->routes[i].method);
        free(r->routes[i].pattern);
        free(r->routes[i].segs);
    }
    free(r->routes);
    free(r);
}

void router_add(router_t *r, const char *method, const char *pattern, router_handler_fn fn,
                void *udata) {
    assert(pattern[0] == '/');
    if (r->count == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->routes = xrealloc(r->routes, r->cap * sizeof *r->routes);
    }
    router_route_t *rt = &r->routes[r->count++];
    size_t len = strlen(pattern);

    rt->method = xstrdup(method);
    rt->rest = len >= 2 && strcmp(pattern + len - 2, "/*") == 0;
    if (rt->rest) len -= 2;
    rt->pattern = xstrndup(pattern, len);
    rt->fn = fn;
    rt->udata = udata;

    /* "/" is one empty segment, "/a/" is "a" and "", and a lone "*" leaves none. */
    rt->seg_count = 0;
    if (len > 0) {
        rt->seg_count = 1;
        for (size_t i = 1; i < len; i++) rt->seg_count += rt->pattern[i] == '/';
    }
    rt->segs = xcalloc(rt->seg_count, sizeof *rt->segs);
    size_t params = 0;
    char *p = rt->pattern + 1;
    for (size_t i = 0; i < rt->seg_count; i++) {
        rt->segs[i] = p;
        char *slash = strchr(p, '/');
        if (slash) {
            *slash = '\0';
            p = slash + 1;
        }
        if (rt->segs[i][0] == ':') {
            assert(rt->segs[i][1] != '\0' && "a parameter needs a name");
            params++;
        }
    }
    assert(params <= ROUTER_MAX_PARAMS);
    (void)params;
}

/* Cuts the request path into decoded segments. Returns 0, or -1 when the path cannot
 * be routed (not starting with '/', or a malformed escape the reader would have
 * refused). */
static int router_path_split(const http_request_t *req, router_path_t *out) {
    const char *raw;
    size_t len;
    bool encoded = req->target && req->target[0] == '/';

    memset(out, 0, sizeof *out);
    out->path = req->path ? req->path : "";
    if (encoded) {
        raw = req->target;
        len = strcspn(raw, "?#");
    } else {
        raw = out->path;
        len = strlen(raw);
    }
    if (len == 0 || raw[0] != '/') return -1;

    size_t count = 1;
    for (size_t i = 1; i < len; i++) count += raw[i] == '/';
    out->text = xmalloc(len + 1);
    out->seg = xcalloc(count, sizeof *out->seg);
    out->path_start = xcalloc(count, sizeof *out->path_start);

    /* t: write position in text; d: position in the decoded path. */
    size_t t = 0, d = 1, start = 1;
    for (size_t i = 0; i < count; i++) {
        size_t end = start;
        while (end < len && raw[end] != '/') end++;
        size_t n = end - start, escapes = 0, dec_len;
        out->seg[i] = t;
        out->path_start[i] = d;
        if (encoded) {
            if (http_percent_decode(raw + start, n, out->text + t, &dec_len) < 0) return -1;
            for (size_t k = start; k < end; k++) escapes += raw[k] == '%';
        } else {
            memcpy(out->text + t, raw + start, n);
            out->text[t + n] = '\0';
            dec_len = n;
        }
        t += dec_len + 1;
        d += n - 2 * escapes + 1;
        start = end + 1;
    }
    out->count = count;
    return 0;
}

static void router_path_cleanup(router_path_t *p) {
    free(p->text);
    free(p->seg);
    free(p->path_start);
}

static bool router_route_matches(const router_route_t *rt, const router_path_t *p) {
    if (p->count < rt->seg_count || (!rt->rest && p->count != rt->seg_count)) return false;
    for (size_t i = 0; i < rt->seg_count; i++) {
        const char *seg = p->text + p->seg[i];
        if (rt->segs[i][0] == ':') {
            if (seg[0] == '\0') return false; /* a parameter is never empty */
        } else if (strcmp(rt->segs[i], seg) != 0) {
            return false;
        }
    }
    return true;
}

/* HEAD is served by GET routes (the server then leaves the body out). */
static bool router_route_serves(const router_route_t *rt, const char *method) {
    return strcmp(rt->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
}

static void router_match_fill(const router_route_t *rt, const router_path_t *p, router_match_t *m) {
    m->param_count = 0;
    for (size_t i = 0; i < rt->seg_count; i++) {
        if (rt->segs[i][0] != ':') continue;
        router_param_t *param = &m->params[m->param_count++];
        param->name = rt->segs[i] + 1;
        param->value = xstrdup(p->text + p->seg[i]);
    }
    m->rest = "";
    if (rt->rest && rt->seg_count < p->count) {
        size_t at = p->path_start[rt->seg_count];
        if (at <= strlen(p->path)) m->rest = p->path + at;
    }
}

static void router_match_cleanup(router_match_t *m) {
    for (size_t i = 0; i < m->param_count; i++) free(m->params[i].value);
    m->param_count = 0;
}

/* Answers 405 with the methods the path does have, HEAD listed right after GET. */
static void router_method_not_allowed(const router_t *r, const router_path_t *p,
                                      http_response_t *res) {
    const char **seen = xcalloc(r->count + 1, sizeof *seen);
    size_t n = 0;
    buf_t allow;
    buf_init(&allow, 0);

    for (size_t i = 0; i < r->count; i++) {
        const router_route_t *rt = &r->routes[i];
        if (!router_route_matches(rt, p)) continue;
        const char *methods[2] = {rt->method, strcmp(rt->method, "GET") == 0 ? "HEAD" : NULL};
        for (size_t k = 0; k < 2 && methods[k]; k++) {
            bool dup = false;
            for (size_t j = 0; j < n && !dup; j++) dup = strcmp(seen[j], methods[k]) == 0;
            if (dup) continue;
            seen[n++] = methods[k];
            buf_printf(&allow, "%s%s", allow.len ? ", " : "", methods[k]);
        }
    }
    http_response_error(res, 405, "METHOD_NOT_ALLOWED", "method not allowed");
    http_response_header(res, "Allow", buf_cstr(&allow));
    buf_cleanup(&allow);
    free(seen);
}

void router_dispatch(const router_t *r, const http_request_t *req, http_response_t *res) {
    router_path_t path;
    const char *method = req->method_name ? req->method_name : http_method_str(req->method);
    bool path_known = false;

    if (router_path_split(req, &path) < 0) goto not_found;
    for (size_t i = 0; i < r->count; i++) {
        const router_route_t *rt = &r->routes[i];
        if (!router_route_matches(rt, &path)) continue;
        if (!router_route_serves(rt, method)) {
            path_known = true;
            continue;
        }
        router_match_t m;
        router_match_fill(rt, &path, &m);
        rt->fn(req, &m, res, rt->udata);
        router_match_cleanup(&m);
        goto out;
    }
    if (path_known) {
        router_method_not_allowed(r, &path, res);
        goto out;
    }
not_found:
    http_response_error(res, 404, "NOT_FOUND", "not found");
out:
    router_path_cleanup(&path);
}

const char *router_param(const router_match_t *m, const char *name) {
    for (size_t i = 0; i < m->param_count; i++)
        if (strcmp(m->params[i].name, name) == 0) return m->params[i].value;
    return NULL;
}
