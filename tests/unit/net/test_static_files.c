/* Static files, through net/static_files.h, over a tree made in a temporary directory
 * for each test: content types, ETag and If-None-Match, index.html and the slash
 * redirect, and every way out of the root (dot-dot, symlinks) answered with 404. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "net/http.h"
#include "net/router.h"
#include "net/static_files.h"

static char root[64];
static static_files_t *files;

static void write_file(const char *rel, const char *content) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(content, f);
    fclose(f);
}

static void make_dir(const char *rel) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    cr_assert_eq(mkdir(path, 0755), 0);
}

static void make_link(const char *target, const char *rel) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    cr_assert_eq(symlink(target, path), 0);
}

static void setup(void) {
    strcpy(root, "/tmp/shopd-static-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    write_file("index.html", "<h1>shop</h1>");
    write_file("app.js", "console.log(1)");
    write_file("a b.txt", "spaced");
    make_dir("shop");
    write_file("shop/index.html", "<h1>catalog</h1>");
    make_dir("empty");
    files = static_files_new(root);
    cr_assert_not_null(files);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void) {
    static_files_free(files);
    files = NULL;
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(static_files, .init = setup, .fini = teardown);

static void make_request(const char *method, const char *target, const char *extra_header,
                         http_request_t *req) {
    char raw[1024];
    snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: a\r\n%s%s\r\n", method, target,
             extra_header ? extra_header : "", extra_header ? "\r\n" : "");
    http_reader_t *r = http_reader_new(1024);
    size_t used;
    cr_assert_eq(http_reader_feed(r, raw, strlen(raw), &used), HTTP_READ_REQUEST, "%s", raw);
    http_reader_take(r, req);
    http_reader_free(r);
}

/* Serves the request's path (minus the leading slash) and returns the status. */
static int serve(const char *method, const char *target, const char *extra_header,
                 http_response_t *res) {
    http_request_t req;
    make_request(method, target, extra_header, &req);
    http_response_init(res);
    static_files_serve(files, &req, req.path + 1, res);
    http_request_cleanup(&req);
    return res->status;
}

static int status_of(const char *target) {
    http_response_t res;
    int status = serve("GET", target, NULL, &res);
    http_response_cleanup(&res);
    return status;
}

/* The value of an extra header line of the response, copied into out. */
static const char *header_of(http_response_t *res, const char *name, char *out, size_t size) {
    char key[64];
    snprintf(key, sizeof key, "%s: ", name);
    const char *h = strstr(buf_cstr(&res->headers), key);
    if (!h) return NULL;
    h += strlen(key);
    size_t n = strcspn(h, "\r");
    cr_assert_lt(n, size);
    memcpy(out, h, n);
    out[n] = '\0';
    return out;
}

Test(static_files, serves_a_file_with_its_type_and_validators) {
    http_response_t res;
    char value[128];
    cr_assert_eq(serve("GET", "/app.js", NULL, &res), 200);
    cr_assert_str_eq(res.content_type, "text/javascript; charset=utf-8");
    cr_assert_eq(res.body.len, 14);
    cr_assert_str_eq(buf_cstr(&res.body), "console.log(1)");
    cr_assert_str_eq(header_of(&res, "Cache-Control", value, sizeof value), "no-cache");
    /* A strong tag: quoted, no W/ prefix, size-mtime-inode in hex. */
    const char *etag = header_of(&res, "ETag", value, sizeof value);
    cr_assert_not_null(etag);
    cr_assert_eq(etag[0], '"');
    cr_assert_eq(strncmp(etag, "\"e-", 3), 0, "%s", etag);
    cr_assert_eq(etag[strlen(etag) - 1], '"');
    http_response_cleanup(&res);
}

Test(static_files, picks_content_types_by_extension) {
    const struct {
        const char *name, *type;
    } cases[] = {
        {"a.html", "text/html; charset=utf-8"},
        {"a.css", "text/css; charset=utf-8"},
        {"a.js", "text/javascript; charset=utf-8"},
        {"a.mjs", "text/javascript; charset=utf-8"},
        {"a.json", "application/json"},
        {"a.svg", "image/svg+xml"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.JPEG", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"favicon.ico", "image/x-icon"},
        {"a.txt", "text/plain; charset=utf-8"},
        {"a.woff", "font/woff"},
        {"a.woff2", "font/woff2"},
        {"a.wasm", "application/wasm"},
        {"app.js.map", "application/json"},
        {"a.bin", "application/octet-stream"},
        {"README", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char target[64];
        http_response_t res;
        write_file(cases[i].name, "x");
        snprintf(target, sizeof target, "/%s", cases[i].name);
        cr_assert_eq(serve("GET", target, NULL, &res), 200);
        cr_assert_str_eq(res.content_type, cases[i].type, "%s", cases[i].name);
        http_response_cleanup(&res);
    }
}

/* The ETag the server gives /app.js now. */
static void current_etag(char *out, size_t size) {
    http_response_t res;
    cr_assert_eq(serve("GET", "/app.js", NULL, &res), 200);
    cr_assert_not_null(header_of(&res, "ETag", out, size));
    http_response_cleanup(&res);
}

Test(static_files, answers_304_when_if_none_match_names_the_etag) {
    char etag[128], header[256], value[128];
    current_etag(etag, sizeof etag);
    snprintf(header, sizeof header, "If-None-Match: %s", etag);
    http_response_t res;
    cr_assert_eq(serve("GET", "/app.js", header, &res), 304);
    cr_assert_eq(res.body.len, 0);
    cr_assert_null(res.content_type);
    cr_assert_str_eq(header_of(&res, "ETag", value, sizeof value), etag);
    cr_assert_str_eq(header_of(&res, "Cache-Control", value, sizeof value), "no-cache");
    http_response_cleanup(&res);
}

Test(static_files, matches_etag_lists_weak_tags_and_star) {
    char etag[128], header[512];
    const struct {
        const char *before, *after;
    } forms[] = {{"\"nope\", ", ", \"other\""}, {"W/", ""}, {"\"a\",", ""}};
    current_etag(etag, sizeof etag);
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        http_response_t res;
        snprintf(header, sizeof header, "If-None-Match: %s%s%s", forms[i].before, etag,
                 forms[i].after);
        cr_assert_eq(serve("GET", "/app.js", header, &res), 304, "%s", header);
        http_response_cleanup(&res);
    }
    http_response_t res;
    cr_assert_eq(serve("GET", "/app.js", "If-None-Match: *", &res), 304);
    http_response_cleanup(&res);
}

Test(static_files, serves_the_file_when_if_none_match_differs) {
    http_response_t res;
    cr_assert_eq(serve("GET", "/app.js", "If-None-Match: \"stale\", garbage, \"", &res), 200);
    cr_assert_eq(res.body.len, 14);
    http_response_cleanup(&res);
}

Test(static_files, changes_the_etag_when_the_file_changes) {
    char before[128], after[128], path[256];
    current_etag(before, sizeof before);
    /* Same size, new mtime: the tag must still change. */
    write_file("app.js", "console.log(2)");
    snprintf(path, sizeof path, "%s/app.js", root);
    struct timespec times[2] = {{.tv_sec = 1000000000, .tv_nsec = 123},
                                {.tv_sec = 1000000000, .tv_nsec = 123}};
    cr_assert_eq(utimensat(AT_FDCWD, path, times, 0), 0);
    current_etag(after, sizeof after);
    cr_assert_str_neq(before, after);
}

Test(static_files, serves_index_html_for_directories) {
    http_response_t res;
    cr_assert_eq(serve("GET", "/shop/", NULL, &res), 200);
    cr_assert_str_eq(buf_cstr(&res.body), "<h1>catalog</h1>");
    cr_assert_str_eq(res.content_type, "text/html; charset=utf-8");
    http_response_cleanup(&res);
    cr_assert_eq(serve("GET", "/", NULL, &res), 200);
    cr_assert_str_eq(buf_cstr(&res.body), "<h1>shop</h1>");
    http_response_cleanup(&res);
}

Test(static_files, redirects_directory_without_slash) {
    http_response_t res;
    char value[128];
    cr_assert_eq(serve("GET", "/shop?page=2", NULL, &res), 301);
    cr_assert_str_eq(header_of(&res, "Location", value, sizeof value), "/shop/?page=2");
    cr_assert_eq(res.body.len, 0);
    http_response_cleanup(&res);
}

Test(static_files, encodes_the_redirect_location) {
    http_response_t res;
    char value[128];
    make_dir("new items");
    cr_assert_eq(serve("GET", "/new%20items", NULL, &res), 301);
    cr_assert_str_eq(header_of(&res, "Location", value, sizeof value), "/new%20items/");
    http_response_cleanup(&res);
}

Test(static_files, never_redirects_to_another_host) {
    http_response_t res;
    char value[128];
    cr_assert_eq(serve("GET", "//shop", NULL, &res), 301);
    cr_assert_str_eq(header_of(&res, "Location", value, sizeof value), "/shop/");
    http_response_cleanup(&res);
}

Test(static_files, answers_404_for_directory_without_index) {
    cr_assert_eq(status_of("/empty/"), 404);
}

Test(static_files, answers_404_for_missing_files) {
    http_response_t res;
    cr_assert_eq(serve("GET", "/missing.css", NULL, &res), 404);
    cr_assert_str_eq(res.content_type, "application/json");
    cr_assert_str_eq(buf_cstr(&res.body),
                     "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"not found\"}}");
    http_response_cleanup(&res);
    cr_assert_eq(status_of("/app.js/x"), 404);
}

Test(static_files, refuses_dot_dot_segments) {
    cr_assert_eq(status_of("/../etc/passwd"), 404);
    cr_assert_eq(status_of("/shop/../index.html"), 404);
    cr_assert_eq(status_of("/shop/%2e%2e/index.html"), 404);
    cr_assert_eq(status_of("/%2E%2E/%2E%2E/etc/passwd"), 404);
    cr_assert_eq(status_of("/shop/.."), 404);
    http_response_t res;
    http_request_t req;
    make_request("GET", "/", NULL, &req);
    http_response_init(&res);
    static_files_serve(files, &req, "../../../../etc/passwd", &res);
    cr_assert_eq(res.status, 404);
    http_response_cleanup(&res);
    http_request_cleanup(&req);
}

Test(static_files, refuses_symlinks_that_lead_outside) {
    make_link("/etc", "etc");
    make_link("/etc/passwd", "passwd.txt");
    make_link("..", "up");
    cr_assert_eq(status_of("/etc/passwd"), 404);
    cr_assert_eq(status_of("/etc/"), 404);
    cr_assert_eq(status_of("/passwd.txt"), 404);
    cr_assert_eq(status_of("/up/"), 404);
}

Test(static_files, refuses_an_index_symlink_that_leads_outside) {
    make_dir("trap");
    make_link("/etc/passwd", "trap/index.html");
    cr_assert_eq(status_of("/trap/"), 404);
}

Test(static_files, follows_symlinks_inside_the_root) {
    make_link("app.js", "current.js");
    make_link("shop", "store");
    cr_assert_eq(status_of("/current.js"), 200);
    cr_assert_eq(status_of("/store/index.html"), 200);
}

Test(static_files, serves_percent_decoded_names) {
    http_response_t res;
    cr_assert_eq(serve("GET", "/a%20b.txt", NULL, &res), 200);
    cr_assert_str_eq(buf_cstr(&res.body), "spaced");
    http_response_cleanup(&res);
}

Test(static_files, refuses_files_over_the_size_limit) {
    char path[256];
    snprintf(path, sizeof path, "%s/huge.bin", root);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, STATIC_MAX_FILE + 1), 0); /* sparse: no real disk use */
    close(fd);
    cr_assert_eq(status_of("/huge.bin"), 404);

    snprintf(path, sizeof path, "%s/limit.bin", root);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    cr_assert_eq(ftruncate(fd, STATIC_MAX_FILE), 0);
    close(fd);
    cr_assert_eq(status_of("/limit.bin"), 200);
}

Test(static_files, serves_only_regular_files) {
    char path[256];
    snprintf(path, sizeof path, "%s/pipe", root);
    cr_assert_eq(mkfifo(path, 0644), 0);
    cr_assert_eq(status_of("/pipe"), 404); /* and does not block opening it */
}

Test(static_files, serves_head_like_get) {
    http_response_t res;
    cr_assert_eq(serve("HEAD", "/app.js", NULL, &res), 200);
    cr_assert_eq(res.body.len, 14, "the body gives Content-Length; the server leaves it out");
    http_response_cleanup(&res);
}

Test(static_files, answers_405_to_other_methods) {
    http_response_t res;
    char value[64];
    cr_assert_eq(serve("POST", "/app.js", NULL, &res), 405);
    cr_assert_str_eq(header_of(&res, "Allow", value, sizeof value), "GET, HEAD");
    http_response_cleanup(&res);
}

Test(static_files, refuses_a_missing_root) {
    char path[256];
    snprintf(path, sizeof path, "%s/nope", root);
    cr_assert_null(static_files_new(path));
    snprintf(path, sizeof path, "%s/app.js", root);
    cr_assert_null(static_files_new(path));
    static_files_free(NULL);
}

Test(static_files, answers_404_without_a_root) {
    http_response_t res;
    http_request_t req;
    make_request("GET", "/app.js", NULL, &req);
    http_response_init(&res);
    static_files_serve(NULL, &req, "app.js", &res);
    cr_assert_eq(res.status, 404);
    http_response_cleanup(&res);
    http_request_cleanup(&req);
}

Test(static_files, serves_the_rest_of_a_router_match) {
    router_t *rt = router_new();
    router_add(rt, "GET", "/assets/*", static_files_handler, files);
    http_request_t req;
    http_response_t res;

    make_request("GET", "/assets/shop/index.html", NULL, &req);
    http_response_init(&res);
    router_dispatch(rt, &req, &res);
    cr_assert_eq(res.status, 200);
    cr_assert_str_eq(buf_cstr(&res.body), "<h1>catalog</h1>");
    http_response_cleanup(&res);
    http_request_cleanup(&req);

    make_request("GET", "/assets", NULL, &req);
    http_response_init(&res);
    router_dispatch(rt, &req, &res);
    cr_assert_eq(res.status, 301);
    char value[64];
    cr_assert_str_eq(header_of(&res, "Location", value, sizeof value), "/assets/");
    http_response_cleanup(&res);
    http_request_cleanup(&req);
    router_free(rt);
}

Test(static_files, keeps_hidden_files_private) {
    write_file(".env", "SECRET=1");
    write_file("shop/.hidden.css", "x");
    cr_assert_eq(status_of("/.env"), 404);
    cr_assert_eq(status_of("/%2Eenv"), 404);
    cr_assert_eq(status_of("/shop/.hidden.css"), 404);
}
