/* Files from one directory tree (see static_files.h).
 *
 * A path is let through in three steps: no segment starting with "." (so no "..",
 * and no hidden files), realpath() must
 * resolve it, and the result must lie inside the resolved root, which also refuses
 * symlinks that lead out. The file is then opened with O_NOFOLLOW and checked with
 * fstat, so what is served is the regular file that was checked. Files are read whole
 * (at most STATIC_MAX_FILE). The strong ETag is built from size, mtime in nanoseconds
 * and inode, so rewriting or replacing a file changes it; Cache-Control: no-cache makes
 * browsers revalidate with it on every use. Runs on the loop thread: the files are the
 * storefront's small assets, served from the page cache. */
#include "net/static_files.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"

struct static_files {
    char *root; /* realpath of the root directory */
    size_t root_len;
};

static const struct {
    const char *ext;
    const char *type;
} static_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"wasm", "application/wasm"},
};

static const char *static_content_type(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof static_types / sizeof static_types[0]; i++)
            if (strcasecmp(dot + 1, static_types[i].ext) == 0) return static_types[i].type;
    return "application/octet-stream";
}

static_files_t *static_files_new(const char *root) {
    struct stat st;
    char *real = realpath(root, NULL);
    if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return NULL;
    }
    static_files_t *s = xcalloc(1, sizeof *s);
    s->root = real;
    s->root_len = strlen(real);
    return s;
}

void static_files_free(static_files_t *s) {
    if (!s) return;
    free(s->root);
    free(s);
}

/* Whether no segment of rel starts with a dot: that refuses "." and ".." and keeps
 * hidden files (.git, .env) private even when they end up in the public tree. */
static bool static_path_is_plain(const char *rel) {
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n >= 1 && p[0] == '.') return false;
        p += n;
        if (*p == '/') p++;
    }
    return true;
}

/* Resolves path and returns it (owned) when it exists inside the root, else NULL. */
static char *static_resolve(const static_files_t *s, const char *path) {
    char *real = realpath(path, NULL);
    if (!real) return NULL;
    bool inside = s->root_len == 1 || /* the root is "/" */
                  (strncmp(real, s->root, s->root_len) == 0 &&
                   (real[s->root_len] == '/' || real[s->root_len] == '\0'));
    if (!inside) {
        free(real);
        return NULL;
    }
    return real;
}

/* Opens a resolved path without following a symlink swapped in since realpath().
 * O_NONBLOCK keeps a FIFO in the tree from blocking the loop in open(); it changes
 * nothing for the regular files that are read afterwards. */
static int static_open(const char *real, struct stat *st) {
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -1;
    if (fstat(fd, st) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether the If-None-Match list names etag ("*" names any). Comparison is weak, as
 * RFC 9110 asks for If-None-Match: W/"x" matches "x". */
static bool static_etag_listed(const char *list, const char *etag) {
    size_t etag_len = strlen(etag);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (*p == '*') return true;
        if (p[0] == 'W' && p[1] == '/') p += 2;
        if (*p != '"') { /* not an entity tag: skip to the next element */
            p += strcspn(p, ",");
            continue;
        }
        const char *end = strchr(p + 1, '"');
        if (!end) return false;
        if ((size_t)(end + 1 - p) == etag_len && memcmp(p, etag, etag_len) == 0) return true;
        p = end + 1;
    }
    return false;
}

/* 301 to the path with a slash added. The path is decoded, so it is encoded again;
 * leading slashes collapse to one, or "//host" would send the browser to another
 * site. */
static void static_redirect_to_dir(const http_request_t *req, http_response_t *res) {
    static const char safe[] = "-._~!$&'()*+,;=:@/";
    const char *path = req->path ? req->path : "/";
    buf_t loc;

    buf_init(&loc, 0);
    while (path[0] == '/' && path[1] == '/') path++;
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr(safe, c))
            buf_append_char(&loc, (char)c);
        else
            buf_printf(&loc, "%%%02X", c);
    }
    buf_append_char(&loc, '/');
    if (req->query && req->query[0]) buf_printf(&loc, "?%s", req->query);
    http_response_set(res, 301, NULL, NULL, 0);
    http_response_header(res, "Location", buf_cstr(&loc));
    buf_cleanup(&loc);
}

/* Reads the whole file into the body. Returns 0 or -1 (errno set). */
static int static_read(int fd, size_t size, buf_t *body) {
    buf_consume(body, body->len);
    char *dst = buf_reserve(body, size);
    if (!dst) return -1;
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, dst + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break; /* shrank since fstat: serve what is there */
        got += (size_t)n;
    }
    buf_commit(body, got);
    return 0;
}

void static_files_serve(const static_files_t *s, const http_request_t *req, const char *rel_path,
                        http_response_t *res) {
    char full[PATH_MAX], etag[80], quoted[128];
    char *real = NULL;
    const char *name = rel_path; /* what the content type is taken from */
    int fd = -1;
    struct stat st;

    assert(req);
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_response_error(res, 405, "METHOD_NOT_ALLOWED", "method not allowed");
        http_response_header(res, "Allow", "GET, HEAD");
        return;
    }
    if (!s) goto not_found;
    while (*rel_path == '/') rel_path++;
    name = rel_path;
    if (!static_path_is_plain(rel_path)) goto not_found;
    int n = snprintf(full, sizeof full, "%s/%s", s->root, rel_path);
    if (n < 0 || (size_t)n >= sizeof full) goto not_found;
    if (!(real = static_resolve(s, full)) || (fd = static_open(real, &st)) < 0) goto not_found;

    if (S_ISDIR(st.st_mode)) {
        const char *path = req->path ? req->path : "";
        size_t len = strlen(path);
        if (len == 0 || path[len - 1] != '/') {
            static_redirect_to_dir(req, res);
            goto out;
        }
        close(fd);
        fd = -1;
        name = "index.html";
        n = snprintf(full, sizeof full, "%s/index.html", real);
        free(real);
        if (n < 0 || (size_t)n >= sizeof full) {
            real = NULL;
            goto not_found;
        }
        if (!(real = static_resolve(s, full)) || (fd = static_open(real, &st)) < 0) goto not_found;
    }
    if (!S_ISREG(st.st_mode)) goto not_found;
    if (st.st_size > STATIC_MAX_FILE) {
        log_warn("static_file_too_large", "path=%s size=%lld",
                 log_quote(rel_path, quoted, sizeof quoted), (long long)st.st_size);
        goto not_found;
    }

    unsigned long long mtime_ns = (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                                  (unsigned long long)st.st_mtim.tv_nsec;
    snprintf(etag, sizeof etag, "\"%llx-%llx-%llx\"", (unsigned long long)st.st_size, mtime_ns,
             (unsigned long long)st.st_ino);
    const char *inm = http_request_header(req, "If-None-Match");
    if (inm && static_etag_listed(inm, etag)) {
        http_response_set(res, 304, NULL, NULL, 0);
    } else if (static_read(fd, (size_t)st.st_size, &res->body) < 0) {
        int e = errno;
        log_error("static_file_read_failed", "path=%s errno=%d",
                  log_quote(rel_path, quoted, sizeof quoted), e);
        http_response_error(res, 500, "INTERNAL_ERROR", "internal error");
        goto out;
    } else {
        res->status = 200;
        res->content_type = static_content_type(name);
    }
    http_response_header(res, "ETag", etag);
    http_response_header(res, "Cache-Control", "no-cache");
    goto out;

not_found:
    http_response_error(res, 404, "NOT_FOUND", "not found");
out:
    if (fd >= 0) close(fd);
    free(real);
}

void static_files_handler(const http_request_t *req, const router_match_t *match,
                          http_response_t *res, void *udata) {
    static_files_serve(udata, req, match->rest, res);
}
