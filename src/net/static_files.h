/* Serving files from a directory: content types by extension, ETag and
 * If-None-Match (304), index.html for directories, and no way out of the root
 * (".." segments, NUL bytes and symlinks leading outside are refused with 404).
 * Files larger than STATIC_MAX_FILE are not served (404 is logged as such). */
#ifndef SHOPD_NET_STATIC_FILES_H
#define SHOPD_NET_STATIC_FILES_H

#include "net/http.h"
#include "net/router.h"

#define STATIC_MAX_FILE (16 * 1024 * 1024)

typedef struct static_files static_files_t;

/* root must exist; returns NULL when it does not (nothing is served then). */
static_files_t *static_files_new(const char *root);
void static_files_free(static_files_t *s); /* NULL is fine */

/* Serves rel_path (already percent-decoded, relative to the root) into res. */
void static_files_serve(const static_files_t *s, const http_request_t *req, const char *rel_path,
                        http_response_t *res);

/* A router handler that serves match->rest; udata is the static_files_t. */
void static_files_handler(const http_request_t *req, const router_match_t *match,
                          http_response_t *res, void *udata);

#endif
