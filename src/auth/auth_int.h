/* Private declarations shared by the files of src/auth/: the auth object, the JWT
 * verifier (jwt.c), the permission policy (policy.c) and the helpers that turn the
 * `auth` config object into them. Nothing outside src/auth/ includes this file.
 *
 * Threading: everything here runs on the loop thread, except jwt.c's JWKS fetch,
 * which runs on a libuv worker and touches only its own auth_jwks_fetch_t. */
#ifndef SHOPD_AUTH_AUTH_INT_H
#define SHOPD_AUTH_AUTH_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "core/strmap.h"

typedef struct auth_jwt auth_jwt_t;
typedef struct auth_policy auth_policy_t;

struct auth {
    uv_loop_t *loop;
    bool required;
    bool closed;
    /* Static tokens keyed by the hex SHA-256 of the token, so that the map's probing
     * never compares secret bytes. Values are auth_static_token_t. */
    strmap_t tokens;
    auth_jwt_t *jwt;       /* NULL: no `jwt` section */
    auth_policy_t *policy; /* NULL: no `permissions` section */
};

/* ---- config helpers ---- */

/* Writes "config: <path>: <message>" into errbuf and returns -1. */
/* Formats a JSON path for a config message into out (truncated to fit). */
void auth_path(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int auth_cfg_fail(char *errbuf, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes into out the path of member `name` under `parent`: `parent.name`, or
 * `parent["na.me"]` when the name is not a plain identifier. */
void auth_cfg_path_key(char *out, size_t size, const char *parent, const char *name);
/* Returns 0 when every member of obj is one of the NULL-terminated `known` names, else
 * fails naming the first unknown member. */
int auth_cfg_known_fields(const json_t *obj, const char *path, const char *const *known,
                          char *errbuf, size_t errlen);
/* Validates an array of non-empty strings (at most max entries, at least one) and
 * returns an owned copy in *out / *count. */
int auth_cfg_string_array(const json_t *v, const char *path, size_t max, char ***out, size_t *count,
                          char *errbuf, size_t errlen);
void auth_strv_free(char **v, size_t n);

/* ---- identities ---- */

/* Fills id with copies of the given values. */
void auth_identity_make(auth_identity_t *id, const char *user_id, char *const *roles, size_t n,
                        int64_t expires_at);
/* Ends a verification: status 0 hands `id` to the callback, otherwise the callback
 * gets UNAUTHORIZED "Token has expired" (expired) or "Invalid token". */
typedef enum { AUTH_OK, AUTH_INVALID, AUTH_EXPIRED } auth_outcome_t;
void auth_finish(auth_verify_cb done, void *udata, auth_outcome_t outcome, auth_identity_t *id,
                 const char *reason);

/* ---- JWT (jwt.c) ---- */

/* Parses and checks the `jwt` section; loads jwksFile. NULL with errbuf set on error. */
auth_jwt_t *auth_jwt_new(uv_loop_t *loop, const json_t *cfg, const char *path, char *errbuf,
                         size_t errlen);
/* Ends a fetch in flight (its pending verifications fail at once). */
void auth_jwt_close(auth_jwt_t *j);
/* Frees the verifier; a fetch still in flight is detached and frees itself. */
void auth_jwt_free(auth_jwt_t *j);
/* Verifies a compact JWS (len <= AUTH_MAX_TOKEN) and calls done exactly once. */
void auth_jwt_verify(auth_jwt_t *j, const char *token, size_t len, int64_t now_ms,
                     auth_verify_cb done, void *udata);

/* Strict base64url (RFC 4648 §5, no padding, no stray bits). Returns a NUL-terminated
 * owned buffer and its length in *out_len, or NULL when s is not canonical base64url. */
unsigned char *auth_b64url_decode(const char *s, size_t n, size_t *out_len);

/* ---- permissions (policy.c) ---- */

auth_policy_t *auth_policy_new(const json_t *cfg, const char *path, char *errbuf, size_t errlen);
void auth_policy_free(auth_policy_t *p);
/* *reusable (when given) is set false when the decision consulted the request (a
 * rule's `match`). */
bool auth_policy_permit(const auth_policy_t *p, const auth_identity_t *who, const char *op,
                        const char *resource, const json_t *request, const char **owner_field_out,
                        bool *reusable);

#endif
