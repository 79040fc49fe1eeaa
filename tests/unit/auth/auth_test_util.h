/* Helpers shared by the auth unit tests: base64url, keys and tokens made with OpenSSL,
 * JWKS files, a verification-result catcher and a one-thread HTTP server on
 * 127.0.0.1 that serves a JWKS (or misbehaves on purpose). */
#ifndef SHOPD_TESTS_AUTH_TEST_UTIL_H
#define SHOPD_TESTS_AUTH_TEST_UTIL_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "auth/auth.h"

#define TU_SECRET "0123456789abcdef0123456789abcdef" /* 32 bytes: the HS256 minimum */
#define TU_NOW_MS 1700000000000LL
#define TU_NOW_SEC 1700000000LL

char *tu_b64url(const void *data, size_t n);

EVP_PKEY *tu_key_rsa(void);
EVP_PKEY *tu_key_ec(void);
EVP_PKEY *tu_key_ed25519(void);
/* The public JWK of key (kid may be NULL); a new reference. */
json_t *tu_jwk(EVP_PKEY *key, const char *kid);
/* The SubjectPublicKeyInfo PEM of key (for algorithm-confusion attempts). */
char *tu_pem_public(EVP_PKEY *key, size_t *len);

/* A compact JWS over the given header and claims JSON texts. */
char *tu_jwt_hmac(const char *header, const char *claims, const void *secret, size_t secret_len);
char *tu_jwt_sign(EVP_PKEY *key, const char *alg, const char *header, const char *claims);
/* "header.claims.signature" from raw parts (base64url-encoded here). */
char *tu_jwt_raw(const char *header, const char *claims, const void *sig, size_t sig_len);

/* Writes text to a fresh temporary file and returns its path (free it, unlink it). */
char *tu_write_temp(const char *text);
/* Writes a JWKS {"keys":[...]} holding the given JWKs (references are taken). */
char *tu_write_jwks(json_t *const *jwks, size_t n);

/* Catches one auth_verify result; the identity is moved in. */
typedef struct {
    int called;
    int status;
    auth_identity_t id;
    err_code_t code;
    char msg[ERR_MSG_MAX];
    int on_main_thread;
} tu_result_t;

void tu_result_cb(void *udata, int status, auth_identity_t *id, const err_t *err);
void tu_result_cleanup(tu_result_t *r);
/* Parses the config text, builds auth (loop may be NULL) and asserts it worked. */
auth_t *tu_auth(uv_loop_t *loop, const char *json_text);
/* Synchronous verification (asserts the callback ran before auth_verify returned). */
tu_result_t tu_verify(auth_t *a, const char *token, int64_t now_ms);

/* ---- a tiny HTTP server ---- */

typedef enum {
    TU_HTTP_JWKS,   /* 200 with the body */
    TU_HTTP_SILENT, /* reads the request and never answers */
    TU_HTTP_HUGE,   /* 200 and 2 MiB without Content-Length */
    TU_HTTP_STATUS_500,
} tu_http_mode_t;

typedef struct tu_http tu_http_t;
tu_http_t *tu_http_start(tu_http_mode_t mode, const char *body);
int tu_http_port(const tu_http_t *s);
/* Stops the server and returns how many connections it accepted. */
int tu_http_stop(tu_http_t *s);

#endif
