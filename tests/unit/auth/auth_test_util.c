/* Helpers for the auth unit tests (see auth_test_util.h). Keys are generated fresh in
 * every test process with OpenSSL; nothing here is a fixture file. */
#include "auth_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static pthread_t tu_main_thread;

/* ---- base64url and tokens ---- */

char *tu_b64url(const void *data, size_t n) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = malloc(n / 3 * 4 + 5);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

char *tu_jwt_raw(const char *header, const char *claims, const void *sig, size_t sig_len) {
    char *h = tu_b64url(header, strlen(header));
    char *c = tu_b64url(claims, strlen(claims));
    char *s = tu_b64url(sig, sig_len);
    size_t n = strlen(h) + strlen(c) + strlen(s) + 3;
    char *out = malloc(n);
    snprintf(out, n, "%s.%s.%s", h, c, s);
    free(h);
    free(c);
    free(s);
    return out;
}

/* "header.claims" — the JWS signing input. */
static char *signing_input(const char *header, const char *claims) {
    char *h = tu_b64url(header, strlen(header));
    char *c = tu_b64url(claims, strlen(claims));
    size_t n = strlen(h) + strlen(c) + 2;
    char *out = malloc(n);
    snprintf(out, n, "%s.%s", h, c);
    free(h);
    free(c);
    return out;
}

static char *join_sig(char *input, const unsigned char *sig, size_t sig_len) {
    char *s = tu_b64url(sig, sig_len);
    size_t n = strlen(input) + strlen(s) + 2;
    char *out = malloc(n);
    snprintf(out, n, "%s.%s", input, s);
    free(s);
    free(input);
    return out;
}

char *tu_jwt_hmac(const char *header, const char *claims, const void *secret, size_t secret_len) {
    char *input = signing_input(header, claims);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)input,
                            strlen(input), md, &mdlen));
    return join_sig(input, md, mdlen);
}

char *tu_jwt_sign(EVP_PKEY *key, const char *alg, const char *header, const char *claims) {
    char *input = signing_input(header, claims);
    const EVP_MD *md = strcmp(alg, "EdDSA") == 0 ? NULL : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    cr_assert_eq(EVP_DigestSignInit(ctx, NULL, md, NULL, key), 1);
    size_t len = 0;
    cr_assert_eq(EVP_DigestSign(ctx, NULL, &len, (const unsigned char *)input, strlen(input)), 1);
    unsigned char *sig = malloc(len);
    cr_assert_eq(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    if (strcmp(alg, "ES256") == 0) {
        /* OpenSSL writes ECDSA signatures as DER; JWS wants r || s, 32 bytes each. */
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
        cr_assert_not_null(es);
        unsigned char raw[64];
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        free(sig);
        return join_sig(input, raw, sizeof raw);
    }
    char *out = join_sig(input, sig, len);
    free(sig);
    return out;
}

/* ---- keys ---- */

EVP_PKEY *tu_key_rsa(void) {
    EVP_PKEY *k = EVP_RSA_gen(2048);
    cr_assert_not_null(k);
    return k;
}

EVP_PKEY *tu_key_ec(void) {
    EVP_PKEY *k = EVP_EC_gen("P-256");
    cr_assert_not_null(k);
    return k;
}

EVP_PKEY *tu_key_ed25519(void) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    cr_assert_not_null(k);
    return k;
}

static json_t *bn_b64(EVP_PKEY *key, const char *param, int pad) {
    BIGNUM *bn = NULL;
    cr_assert_eq(EVP_PKEY_get_bn_param(key, param, &bn), 1, "param %s", param);
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = malloc((size_t)n);
    BN_bn2binpad(bn, buf, n);
    char *s = tu_b64url(buf, (size_t)n);
    json_t *v = json_string(s);
    free(s);
    free(buf);
    BN_free(bn);
    return v;
}

json_t *tu_jwk(EVP_PKEY *key, const char *kid) {
    json_t *jwk = json_object();
    if (EVP_PKEY_is_a(key, "RSA")) {
        json_object_set_new(jwk, "kty", json_string("RSA"));
        json_object_set_new(jwk, "n", bn_b64(key, OSSL_PKEY_PARAM_RSA_N, 0));
        json_object_set_new(jwk, "e", bn_b64(key, OSSL_PKEY_PARAM_RSA_E, 0));
    } else if (EVP_PKEY_is_a(key, "EC")) {
        json_object_set_new(jwk, "kty", json_string("EC"));
        json_object_set_new(jwk, "crv", json_string("P-256"));
        json_object_set_new(jwk, "x", bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, 32));
        json_object_set_new(jwk, "y", bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32));
    } else {
        unsigned char raw[32];
        size_t n = sizeof raw;
        cr_assert_eq(EVP_PKEY_get_raw_public_key(key, raw, &n), 1);
        char *x = tu_b64url(raw, n);
        json_object_set_new(jwk, "kty", json_string("OKP"));
        json_object_set_new(jwk, "crv", json_string("Ed25519"));
        json_object_set_new(jwk, "x", json_string(x));
        free(x);
    }
    if (kid) json_object_set_new(jwk, "kid", json_string(kid));
    return jwk;
}

char *tu_pem_public(EVP_PKEY *key, size_t *len) {
    BIO *bio = BIO_new(BIO_s_mem());
    cr_assert_eq(PEM_write_bio_PUBKEY(bio, key), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
    *len = (size_t)n;
    return out;
}

/* ---- files ---- */

char *tu_write_temp(const char *text) {
    char *path = strdup("/tmp/shopd-auth-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

char *tu_write_jwks(json_t *const *jwks, size_t n) {
    json_t *doc = json_object(), *keys = json_array();
    for (size_t i = 0; i < n; i++) json_array_append(keys, jwks[i]);
    json_object_set_new(doc, "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    char *path = tu_write_temp(text);
    free(text);
    json_decref(doc);
    return path;
}

/* ---- verification ---- */

void tu_result_cb(void *udata, int status, auth_identity_t *id, const err_t *err) {
    tu_result_t *r = udata;
    r->called++;
    r->status = status;
    r->on_main_thread = pthread_equal(pthread_self(), tu_main_thread);
    cr_assert_not_null(err);
    r->code = err->code;
    snprintf(r->msg, sizeof r->msg, "%s", err->msg);
    if (status == 0) {
        cr_assert_not_null(id);
        cr_assert_eq(err->code, ERR_NONE);
        r->id = *id; /* moved out, as auth.h asks */
    } else {
        cr_assert_null(id);
    }
}

void tu_result_cleanup(tu_result_t *r) {
    auth_identity_cleanup(&r->id);
}

auth_t *tu_auth(uv_loop_t *loop, const char *json_text) {
    tu_main_thread = pthread_self();
    /* Start-up warnings (static tokens, plain-http JWKS) are expected here. */
    if (!log_enabled(LOG_DEBUG)) log_setup(LOG_TEXT, LOG_ERROR);
    json_error_t jerr;
    json_t *cfg = json_loads(json_text, 0, &jerr);
    cr_assert_not_null(cfg, "bad test JSON: %s: %s", jerr.text, json_text);
    char err[512];
    auth_t *a = auth_new(loop, cfg, err, sizeof err);
    json_decref(cfg);
    cr_assert_not_null(a, "auth_new failed: %s", err);
    cr_assert_str_empty(err);
    return a;
}

tu_result_t tu_verify(auth_t *a, const char *token, int64_t now_ms) {
    tu_result_t r;
    memset(&r, 0, sizeof r);
    auth_verify(a, token, now_ms, tu_result_cb, &r);
    cr_assert_eq(r.called, 1, "the callback must run at once");
    return r;
}

/* ---- HTTP server ---- */

struct tu_http {
    int fd;
    int port;
    tu_http_mode_t mode;
    char *body;
    pthread_t thread;
    atomic_int stop;
    atomic_int accepted;
};

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void serve_one(tu_http_t *s, int c) {
    /* Read the request head (bounded) before answering. */
    char req[4096];
    size_t got = 0;
    while (got < sizeof req - 1) {
        struct pollfd pfd = {c, POLLIN, 0};
        if (poll(&pfd, 1, 5000) <= 0) break;
        ssize_t r = recv(c, req + got, sizeof req - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    char head[256];
    switch (s->mode) {
    case TU_HTTP_JWKS:
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 strlen(s->body));
        send_all(c, head, strlen(head));
        send_all(c, s->body, strlen(s->body));
        break;
    case TU_HTTP_STATUS_500: {
        const char *r = "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(c, r, strlen(r));
        break;
    }
    case TU_HTTP_HUGE: {
        const char *r = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"keys\":[";
        send_all(c, r, strlen(r));
        char chunk[16384];
        memset(chunk, ' ', sizeof chunk);
        for (int i = 0; i < 128 && !atomic_load(&s->stop); i++) send_all(c, chunk, sizeof chunk);
        break;
    }
    case TU_HTTP_SILENT: {
        /* Hold the connection until the client gives up (or 10 s pass). */
        for (int i = 0; i < 100 && !atomic_load(&s->stop); i++) {
            struct pollfd pfd = {c, POLLIN, 0};
            char tmp[256];
            if (poll(&pfd, 1, 100) > 0 && recv(c, tmp, sizeof tmp, 0) <= 0) break;
        }
        break;
    }
    }
    close(c);
}

static void *http_thread(void *arg) {
    tu_http_t *s = arg;
    /* Bounded: the server gives up after 15 s whatever happens. */
    for (int i = 0; i < 150 && !atomic_load(&s->stop); i++) {
        struct pollfd pfd = {s->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        atomic_fetch_add(&s->accepted, 1);
        serve_one(s, c);
    }
    return NULL;
}

tu_http_t *tu_http_start(tu_http_mode_t mode, const char *body) {
    tu_http_t *s = calloc(1, sizeof *s);
    s->mode = mode;
    s->body = strdup(body ? body : "");
    atomic_init(&s->stop, 0);
    atomic_init(&s->accepted, 0);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s->fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(s->fd, 8), 0);
    socklen_t len = sizeof sa;
    getsockname(s->fd, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&s->thread, NULL, http_thread, s), 0);
    return s;
}

int tu_http_port(const tu_http_t *s) {
    return s->port;
}

int tu_http_stop(tu_http_t *s) {
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
    int n = atomic_load(&s->accepted);
    free(s->body);
    free(s);
    return n;
}
