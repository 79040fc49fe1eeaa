/* JWT verification for auth_verify(): compact JWS only (RFC 7515 §7.1),
 *
 *     BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(signature)
 *
 * with HS256, ES256 and RS256 checked by cjose and EdDSA (Ed25519) by OpenSSL EVP,
 * since cjose has no EdDSA. Keys come from the HS256 `secret`, a `jwksFile` read at
 * start, and a `jwksUrl` fetched on demand.
 *
 * Invariants:
 *   - a header's `alg` must be in the configured list AND fit the key's type (HS256
 *     only with "oct" keys, ES256 with EC P-256, RS256 with RSA >= 2048 bits, EdDSA
 *     with OKP Ed25519) and the key's own `alg`, if it names one — so a public key
 *     can never be used as an HMAC secret;
 *   - header and claims are parsed strictly (canonical base64url, duplicate JSON
 *     members refused, `crit` refused) before any key is touched;
 *   - a JWKS URL is fetched on a libuv worker thread (libcurl, 5 s, 1 MiB) at most
 *     once a minute, only for a token whose key is unknown; verifications that need
 *     that fetch wait in a bounded queue and finish on the loop thread. */
#include "auth/auth_int.h"

#include <cjose/cjose.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"

/* libcurl is loaded only when a `jwksUrl` is configured: linked in, it and the libraries
 * it pulls in (TLS, Kerberos, LDAP, …) cost about 3.5 MiB of resident memory in every
 * shopd process, most of which never fetches a key. */
static struct {
    bool loaded;
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *c, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *c);
    CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *c);
    const char *(*easy_strerror)(CURLcode code);
} curlapi;

/* Loads libcurl once (loop thread, at configuration time). Returns 0 or -1. */
static int curlapi_load(void) {
    if (curlapi.loaded) return 0;
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) return -1;
    *(void **)&curlapi.global_init = dlsym(h, "curl_global_init");
    *(void **)&curlapi.global_cleanup = dlsym(h, "curl_global_cleanup");
    *(void **)&curlapi.easy_init = dlsym(h, "curl_easy_init");
    *(void **)&curlapi.easy_setopt = dlsym(h, "curl_easy_setopt");
    *(void **)&curlapi.easy_perform = dlsym(h, "curl_easy_perform");
    *(void **)&curlapi.easy_getinfo = dlsym(h, "curl_easy_getinfo");
    *(void **)&curlapi.easy_cleanup = dlsym(h, "curl_easy_cleanup");
    *(void **)&curlapi.easy_strerror = dlsym(h, "curl_easy_strerror");
    if (!curlapi.global_init || !curlapi.global_cleanup || !curlapi.easy_init || !curlapi.easy_setopt ||
        !curlapi.easy_perform || !curlapi.easy_getinfo || !curlapi.easy_cleanup || !curlapi.easy_strerror) {
        dlclose(h);
        return -1;
    }
    curlapi.loaded = true; /* the handle stays open for the life of the process */
    return 0;
}

#define JWKS_MAX_BYTES (1024 * 1024)
#define JWKS_MAX_KEYS 64
#define JWKS_FETCH_TIMEOUT_MS 5000
#define JWKS_REFETCH_MS 60000
#define JWT_MAX_PENDING 1024
#define JWT_MAX_AUDIENCES 16
#define JWT_MAX_URL 2048
#define JWT_MIN_SECRET 32
#define JWT_MIN_RSA_BITS 2048
#define JWT_DEFAULT_SKEW_SEC 30
#define JWT_MAX_SKEW_SEC 3600
/* 9999-12-31T23:59:59Z: larger NumericDates are refused rather than overflowed. */
#define JWT_MAX_NUMERIC_DATE 253402300799.0

enum { ALG_HS256 = 1, ALG_ES256 = 2, ALG_RS256 = 4, ALG_EDDSA = 8 };

static const struct {
    const char *name;
    unsigned bit;
} jwt_algs[] = {
    {"HS256", ALG_HS256}, {"ES256", ALG_ES256}, {"RS256", ALG_RS256}, {"EdDSA", ALG_EDDSA}};

typedef enum { KEY_OCT, KEY_RSA, KEY_EC_P256, KEY_ED25519 } jwt_key_type_t;

typedef struct {
    char *kid; /* NULL when the key has none */
    jwt_key_type_t type;
    unsigned alg; /* the JWK's own `alg` as an ALG_ bit, 0 when it names none */
    size_t bits;
    cjose_jwk_t *jwk;  /* oct, RSA, EC */
    EVP_PKEY *ed25519; /* OKP */
} jwt_key_t;

typedef struct {
    jwt_key_t *keys;
    size_t count;
    strmap_t by_kid; /* kid -> jwt_key_t* inside keys */
} jwt_keyset_t;

typedef struct jwt_pending {
    struct jwt_pending *next;
    char *token;
    size_t len;
    int64_t now_ms;
    uint64_t queued_mono_ms;
    auth_verify_cb done;
    void *udata;
} jwt_pending_t;

typedef struct {
    uv_work_t req;
    auth_jwt_t *owner; /* NULL once auth_jwt_free detached the fetch */
    char *url;
    atomic_int abort;
    /* Results, written by the worker and read after it finished. */
    jwt_keyset_t *keys;
    char why[256];
} jwks_fetch_t;

struct auth_jwt {
    uv_loop_t *loop;
    unsigned algs;
    char *issuer;
    char **audience;
    size_t audience_count;
    char *roles_claim;
    int64_t skew_ms;
    uint64_t refetch_ms; /* least time between two JWKS URL fetches */
    jwt_key_t *secret;
    jwt_keyset_t *file_keys;
    jwt_keyset_t *url_keys;
    char *jwks_url;
    bool curl_ready; /* holds one curl_global_init reference */
    jwks_fetch_t *fetch;
    bool fetched;
    uint64_t last_fetch_ms;
    jwt_pending_t *pending_head, *pending_tail;
    size_t pending_count;
    bool closed;
};

/* ---- base64url ---- */

static int b64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

unsigned char *auth_b64url_decode(const char *s, size_t n, size_t *out_len) {
    if (n % 4 == 1) return NULL;
    unsigned char *out = xmalloc(n / 4 * 3 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) goto bad;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero: one byte string, one encoding. */
    if (acc != 0) goto bad;
    out[o] = '\0';
    *out_len = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---- keys ---- */

static unsigned alg_bit(const char *name) {
    for (size_t i = 0; i < sizeof jwt_algs / sizeof *jwt_algs; i++)
        if (strcmp(name, jwt_algs[i].name) == 0) return jwt_algs[i].bit;
    return 0;
}

static void key_cleanup(jwt_key_t *k) {
    free(k->kid);
    if (k->jwk) cjose_jwk_release(k->jwk);
    EVP_PKEY_free(k->ed25519);
    memset(k, 0, sizeof *k);
}

static void keyset_free(jwt_keyset_t *ks) {
    if (!ks) return;
    for (size_t i = 0; i < ks->count; i++) key_cleanup(&ks->keys[i]);
    free(ks->keys);
    strmap_cleanup(&ks->by_kid);
    free(ks);
}

static bool key_fits(const jwt_key_t *k, unsigned alg) {
    if (k->alg && k->alg != alg) return false;
    switch (alg) {
    case ALG_HS256:
        return k->type == KEY_OCT && k->bits >= 8 * JWT_MIN_SECRET;
    case ALG_ES256:
        return k->type == KEY_EC_P256;
    case ALG_RS256:
        return k->type == KEY_RSA && k->bits >= JWT_MIN_RSA_BITS;
    case ALG_EDDSA:
        return k->type == KEY_ED25519;
    default:
        return false;
    }
}

static unsigned key_type_alg(jwt_key_type_t t) {
    switch (t) {
    case KEY_OCT:
        return ALG_HS256;
    case KEY_RSA:
        return ALG_RS256;
    case KEY_EC_P256:
        return ALG_ES256;
    case KEY_ED25519:
        return ALG_EDDSA;
    }
    return 0;
}

static int key_fail(char *why, size_t whylen, const char *msg) {
    snprintf(why, whylen, "%s", msg);
    return -1;
}

/* Imports one JWK. Returns 0 with *k filled, 1 when the key is not for us (another use,
 * curve or algorithm: skipped), -1 with `why` when the key is broken. */
static int key_import(const json_t *jk, bool from_url, jwt_key_t *k, char *why, size_t whylen) {
    memset(k, 0, sizeof *k);
    if (!json_is_object(jk)) return key_fail(why, whylen, "must be an object");
    const char *kty = json_string_value(json_object_get(jk, "kty"));
    if (!kty) return key_fail(why, whylen, "\"kty\" must be a string");
    const json_t *use = json_object_get(jk, "use");
    if (use && !json_is_string(use)) return key_fail(why, whylen, "\"use\" must be a string");
    if (use && strcmp(json_string_value(use), "sig") != 0) return 1;
    const json_t *kid = json_object_get(jk, "kid");
    if (kid && !json_is_string(kid)) return key_fail(why, whylen, "\"kid\" must be a string");
    const json_t *alg = json_object_get(jk, "alg");
    if (alg && !json_is_string(alg)) return key_fail(why, whylen, "\"alg\" must be a string");
    if (alg) {
        k->alg = alg_bit(json_string_value(alg));
        if (strcmp(json_string_value(alg), "Ed25519") == 0) k->alg = ALG_EDDSA;
        if (!k->alg) return 1; /* a key for an algorithm shopd does not verify */
    }

    cjose_err cerr;
    if (strcmp(kty, "OKP") == 0) {
        const char *crv = json_string_value(json_object_get(jk, "crv"));
        if (!crv) return key_fail(why, whylen, "\"crv\" must be a string");
        if (strcmp(crv, "Ed25519") != 0) return 1;
        const char *x = json_string_value(json_object_get(jk, "x"));
        size_t xlen = 0;
        unsigned char *raw = x ? auth_b64url_decode(x, strlen(x), &xlen) : NULL;
        if (!raw || xlen != 32) {
            free(raw);
            return key_fail(why, whylen, "Ed25519 \"x\" must be 32 bytes of base64url");
        }
        k->ed25519 = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, xlen);
        free(raw);
        if (!k->ed25519) return key_fail(why, whylen, "invalid Ed25519 key");
        k->type = KEY_ED25519;
        k->bits = 256;
    } else if (strcmp(kty, "RSA") == 0 || strcmp(kty, "EC") == 0 || strcmp(kty, "oct") == 0) {
        /* A symmetric key fetched over the network would be a shared secret sent in
         * the clear to anyone who can ask; only the config may hold those. */
        if (from_url && strcmp(kty, "oct") == 0) return 1;
        char *text = json_dumps(jk, JSON_COMPACT);
        k->jwk = text ? cjose_jwk_import(text, strlen(text), &cerr) : NULL;
        free(text);
        if (!k->jwk) {
            snprintf(why, whylen, "invalid %s key", kty);
            return -1;
        }
        k->bits = cjose_jwk_get_keysize(k->jwk, &cerr);
        if (strcmp(kty, "RSA") == 0) {
            k->type = KEY_RSA;
            if (k->bits < JWT_MIN_RSA_BITS) {
                snprintf(why, whylen, "RSA key shorter than %d bits", JWT_MIN_RSA_BITS);
                goto fail;
            }
        } else if (strcmp(kty, "EC") == 0) {
            if (cjose_jwk_EC_get_curve(k->jwk, &cerr) != CJOSE_JWK_EC_P_256) {
                key_cleanup(k);
                return 1;
            }
            k->type = KEY_EC_P256;
        } else {
            k->type = KEY_OCT;
            if (k->bits < 8 * JWT_MIN_SECRET) {
                snprintf(why, whylen, "\"oct\" key shorter than %d bytes", JWT_MIN_SECRET);
                goto fail;
            }
        }
    } else {
        return 1;
    }
    if (k->alg && k->alg != key_type_alg(k->type)) {
        snprintf(why, whylen, "\"alg\" %s does not fit kty \"%s\"", json_string_value(alg), kty);
        goto fail;
    }
    if (kid) k->kid = xstrdup(json_string_value(kid));
    return 0;
fail:
    key_cleanup(k);
    return -1;
}

/* Parses a JWKS document. From a file every broken key is an error (the config is
 * wrong); from a URL broken keys are skipped so one bad entry does not lock everyone
 * out. Returns NULL with `why` on a broken document. */
static jwt_keyset_t *keyset_parse(const char *text, size_t len, bool from_url, char *why,
                                  size_t whylen) {
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    jwt_keyset_t *ks = NULL;
    if (!doc) {
        snprintf(why, whylen, "not JSON (line %d: %s)", jerr.line, jerr.text);
        return NULL;
    }
    const json_t *keys = json_object_get(doc, "keys");
    if (!json_is_object(doc) || !json_is_array(keys)) {
        snprintf(why, whylen, "a JWKS must be an object with a \"keys\" array");
        goto out;
    }
    if (json_array_size(keys) > JWKS_MAX_KEYS) {
        snprintf(why, whylen, "more than %d keys", JWKS_MAX_KEYS);
        goto out;
    }
    ks = xcalloc(1, sizeof *ks);
    strmap_init(&ks->by_kid);
    ks->keys = xcalloc(json_array_size(keys) + 1, sizeof *ks->keys);
    for (size_t i = 0; i < json_array_size(keys); i++) {
        char kwhy[200];
        jwt_key_t *k = &ks->keys[ks->count];
        int rc = key_import(json_array_get(keys, i), from_url, k, kwhy, sizeof kwhy);
        if (rc == 0 && k->kid && strmap_get(&ks->by_kid, k->kid)) {
            snprintf(kwhy, sizeof kwhy, "duplicate \"kid\"");
            key_cleanup(k);
            rc = -1;
        }
        if (rc < 0 && !from_url) {
            snprintf(why, whylen, "keys[%zu]: %s", i, kwhy);
            keyset_free(ks);
            ks = NULL;
            goto out;
        }
        if (rc != 0) continue;
        if (k->kid) strmap_put(&ks->by_kid, k->kid, k);
        ks->count++;
    }
out:
    json_decref(doc);
    return ks;
}

static jwt_keyset_t *keyset_load_file(const char *path, char *why, size_t whylen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot read \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    char *text = xmalloc(JWKS_MAX_BYTES + 1);
    size_t n = fread(text, 1, JWKS_MAX_BYTES + 1, f);
    bool failed = ferror(f);
    fclose(f);
    jwt_keyset_t *ks = NULL;
    if (failed)
        snprintf(why, whylen, "cannot read \"%s\"", path);
    else if (n > JWKS_MAX_BYTES)
        snprintf(why, whylen, "\"%s\" is larger than 1 MiB", path);
    else
        ks = keyset_parse(text, n, false, why, whylen);
    free(text);
    return ks;
}

static jwt_key_t *keyset_find(const jwt_keyset_t *ks, const char *kid) {
    return ks ? strmap_get(&ks->by_kid, kid) : NULL;
}

/* ---- config ---- */

static int jwt_cfg_audience(auth_jwt_t *j, const json_t *v, const char *path, char *errbuf,
                            size_t errlen) {
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return auth_cfg_fail(errbuf, errlen, path, "must be a non-empty string or array");
        j->audience = xcalloc(1, sizeof *j->audience);
        j->audience[0] = xstrdup(json_string_value(v));
        j->audience_count = 1;
        return 0;
    }
    return auth_cfg_string_array(v, path, JWT_MAX_AUDIENCES, &j->audience, &j->audience_count,
                                 errbuf, errlen);
}

static bool url_is_acceptable(const char *url) {
    size_t n = strlen(url);
    if (n > JWT_MAX_URL) return false;
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f) return false;
    const char *host = strstr(url, "://") + 3;
    return *host && *host != '/';
}

static bool keyset_has_type(const jwt_keyset_t *ks, jwt_key_type_t t) {
    for (size_t i = 0; ks && i < ks->count; i++)
        if (ks->keys[i].type == t) return true;
    return false;
}

auth_jwt_t *auth_jwt_new(uv_loop_t *loop, const json_t *cfg, const char *path, char *errbuf,
                         size_t errlen) {
    static const char *const known[] = {"issuer",     "audience",     "algorithms",
                                        "secret",     "jwksFile",     "jwksUrl",
                                        "rolesClaim", "clockSkewSec", "jwksRefreshMinMs", NULL};
    char p[512];
    if (!json_is_object(cfg)) {
        auth_cfg_fail(errbuf, errlen, path, "must be an object");
        return NULL;
    }
    if (auth_cfg_known_fields(cfg, path, known, errbuf, errlen) < 0) return NULL;
    auth_jwt_t *j = xcalloc(1, sizeof *j);
    j->loop = loop;
    j->skew_ms = JWT_DEFAULT_SKEW_SEC * 1000;
    j->refetch_ms = JWKS_REFETCH_MS;

    const json_t *v = json_object_get(cfg, "issuer");
    if (v) {
        auth_path(p, sizeof p, "%s.issuer", path);
        if (!json_is_string(v) || json_string_length(v) == 0) {
            auth_cfg_fail(errbuf, errlen, p, "must be a non-empty string");
            goto fail;
        }
        j->issuer = xstrdup(json_string_value(v));
    }
    if ((v = json_object_get(cfg, "audience"))) {
        auth_path(p, sizeof p, "%s.audience", path);
        if (jwt_cfg_audience(j, v, p, errbuf, errlen) < 0) goto fail;
    }
    if ((v = json_object_get(cfg, "secret"))) {
        auth_path(p, sizeof p, "%s.secret", path);
        if (!json_is_string(v)) {
            auth_cfg_fail(errbuf, errlen, p, "must be a string");
            goto fail;
        }
        if (json_string_length(v) < JWT_MIN_SECRET) {
            auth_cfg_fail(errbuf, errlen, p, "must be at least %d bytes for HS256", JWT_MIN_SECRET);
            goto fail;
        }
        cjose_err cerr;
        j->secret = xcalloc(1, sizeof *j->secret);
        j->secret->type = KEY_OCT;
        j->secret->alg = ALG_HS256;
        j->secret->bits = 8 * json_string_length(v);
        j->secret->jwk = cjose_jwk_create_oct_spec((const uint8_t *)json_string_value(v),
                                                   json_string_length(v), &cerr);
        if (!j->secret->jwk) {
            auth_cfg_fail(errbuf, errlen, p, "cannot be used as a key (%s)", cerr.message);
            goto fail;
        }
    }
    if ((v = json_object_get(cfg, "jwksFile"))) {
        auth_path(p, sizeof p, "%s.jwksFile", path);
        if (!json_is_string(v) || json_string_length(v) == 0) {
            auth_cfg_fail(errbuf, errlen, p, "must be a non-empty string");
            goto fail;
        }
        char why[400];
        j->file_keys = keyset_load_file(json_string_value(v), why, sizeof why);
        if (!j->file_keys) {
            auth_cfg_fail(errbuf, errlen, p, "%s", why);
            goto fail;
        }
        if (j->file_keys->count == 0) {
            auth_cfg_fail(errbuf, errlen, p, "no usable signing keys in \"%s\"",
                          json_string_value(v));
            goto fail;
        }
    }
    if ((v = json_object_get(cfg, "jwksUrl"))) {
        auth_path(p, sizeof p, "%s.jwksUrl", path);
        if (!json_is_string(v) || !url_is_acceptable(json_string_value(v))) {
            auth_cfg_fail(errbuf, errlen, p, "must be an http:// or https:// URL");
            goto fail;
        }
        if (!loop) {
            auth_cfg_fail(errbuf, errlen, p, "needs an event loop to fetch keys");
            goto fail;
        }
        j->jwks_url = xstrdup(json_string_value(v));
        if (strncmp(j->jwks_url, "http://", 7) == 0)
            log_warn("auth.jwks_insecure", "note=\"jwksUrl is plain http; keys can be spoofed\"");
        if (curlapi_load() < 0) {
            auth_cfg_fail(errbuf, errlen, p, "needs libcurl (Debian package libcurl4), which could not be loaded");
            goto fail;
        }
        if (curlapi.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            auth_cfg_fail(errbuf, errlen, p, "libcurl failed to initialise");
            goto fail;
        }
        j->curl_ready = true;
    }
    if (!j->secret && !j->file_keys && !j->jwks_url) {
        auth_cfg_fail(errbuf, errlen, path, "needs one of \"secret\", \"jwksFile\" or \"jwksUrl\"");
        goto fail;
    }
    bool has_oct = j->secret || keyset_has_type(j->file_keys, KEY_OCT);
    bool has_public = j->file_keys || j->jwks_url;
    if ((v = json_object_get(cfg, "algorithms"))) {
        auth_path(p, sizeof p, "%s.algorithms", path);
        if (!json_is_array(v) || json_array_size(v) == 0) {
            auth_cfg_fail(errbuf, errlen, p, "must be a non-empty array of algorithm names");
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            auth_path(p, sizeof p, "%s.algorithms[%zu]", path, i);
            if (!json_is_string(e)) {
                auth_cfg_fail(errbuf, errlen, p, "must be a string");
                goto fail;
            }
            unsigned bit = alg_bit(json_string_value(e));
            if (!bit) {
                auth_cfg_fail(errbuf, errlen, p,
                              "unsupported algorithm \"%s\" (use HS256, ES256, RS256 or EdDSA)",
                              json_string_value(e));
                goto fail;
            }
            if (bit == ALG_HS256 && !has_oct) {
                auth_cfg_fail(errbuf, errlen, p,
                              "HS256 needs \"secret\" (or an \"oct\" key in jwksFile)");
                goto fail;
            }
            if (bit != ALG_HS256 && !has_public) {
                auth_cfg_fail(errbuf, errlen, p, "%s needs \"jwksFile\" or \"jwksUrl\"",
                              json_string_value(e));
                goto fail;
            }
            j->algs |= bit;
        }
    } else {
        if (has_oct) j->algs |= ALG_HS256;
        if (has_public) j->algs |= ALG_ES256 | ALG_RS256 | ALG_EDDSA;
    }
    if ((v = json_object_get(cfg, "rolesClaim"))) {
        auth_path(p, sizeof p, "%s.rolesClaim", path);
        if (!json_is_string(v) || json_string_length(v) == 0) {
            auth_cfg_fail(errbuf, errlen, p, "must be a non-empty string");
            goto fail;
        }
        j->roles_claim = xstrdup(json_string_value(v));
    } else {
        j->roles_claim = xstrdup("roles");
    }
    if ((v = json_object_get(cfg, "clockSkewSec"))) {
        auth_path(p, sizeof p, "%s.clockSkewSec", path);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > JWT_MAX_SKEW_SEC) {
            auth_cfg_fail(errbuf, errlen, p, "must be an integer from 0 to %d", JWT_MAX_SKEW_SEC);
            goto fail;
        }
        j->skew_ms = (int64_t)json_integer_value(v) * 1000;
    }
    if ((v = json_object_get(cfg, "jwksRefreshMinMs"))) {
        auth_path(p, sizeof p, "%s.jwksRefreshMinMs", path);
        if (!json_is_integer(v) || json_integer_value(v) < 1000 || json_integer_value(v) > 86400000) {
            auth_cfg_fail(errbuf, errlen, p, "must be an integer from 1000 to 86400000");
            goto fail;
        }
        j->refetch_ms = (uint64_t)json_integer_value(v);
    }
    return j;
fail:
    auth_jwt_free(j);
    return NULL;
}

/* ---- verification ---- */

typedef enum { CHECK_OK, CHECK_INVALID, CHECK_EXPIRED, CHECK_NEED_KEYS } jwt_check_t;

/* Reads a NumericDate claim into ms. Returns 0 (absent: *present false), or -1 when
 * the claim is not a number in range. */
static int claim_time(const json_t *claims, const char *name, bool *present, int64_t *ms) {
    const json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    if (!v) return 0;
    if (!json_is_number(v)) return -1;
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > JWT_MAX_NUMERIC_DATE) return -1;
    *ms = (int64_t)floor(d * 1000.0);
    return 0;
}

static const json_t *claim_lookup(const json_t *claims, const char *name) {
    const json_t *v = json_object_get(claims, name);
    if (v || !strchr(name, '.')) return v;
    /* A dotted rolesClaim that is not itself a claim name walks nested objects
     * ("realm_access.roles"). */
    char seg[256];
    const char *s = name;
    v = claims;
    while (v && *s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (n == 0 || n >= sizeof seg) return NULL;
        memcpy(seg, s, n);
        seg[n] = '\0';
        v = json_is_object(v) ? json_object_get(v, seg) : NULL;
        s = dot ? dot + 1 : s + n;
    }
    return v;
}

/* Collects roles from the claim: an array of strings or one space-separated string.
 * Empty entries are dropped. */
static int claim_roles(const json_t *v, char ***roles, size_t *count) {
    char **out = NULL;
    size_t n = 0;
    if (!v) goto done;
    out = xcalloc(AUTH_MAX_ROLES, sizeof *out);
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e)) goto fail;
            if (json_string_length(e) == 0) continue;
            if (n == AUTH_MAX_ROLES) goto fail;
            out[n++] = xstrdup(json_string_value(e));
        }
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        while (*s) {
            while (*s == ' ') s++;
            size_t len = strcspn(s, " ");
            if (!len) break;
            if (n == AUTH_MAX_ROLES) goto fail;
            out[n++] = xstrndup(s, len);
            s += len;
        }
    } else {
        goto fail;
    }
done:
    *roles = out;
    *count = n;
    return 0;
fail:
    auth_strv_free(out, n);
    return -1;
}

static bool audience_ok(const auth_jwt_t *j, const json_t *aud) {
    for (size_t i = 0; i < j->audience_count; i++) {
        if (json_is_string(aud) && strcmp(json_string_value(aud), j->audience[i]) == 0) return true;
        if (json_is_array(aud))
            for (size_t k = 0; k < json_array_size(aud); k++) {
                const json_t *e = json_array_get(aud, k);
                if (json_is_string(e) && strcmp(json_string_value(e), j->audience[i]) == 0)
                    return true;
            }
    }
    return false;
}

static jwt_check_t refuse(const char **reason, const char *why) {
    *reason = why;
    return CHECK_INVALID;
}

static jwt_check_t check_claims(const auth_jwt_t *j, const json_t *claims, int64_t now_ms,
                                auth_identity_t *id, const char **reason) {
    if (j->issuer) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (!iss || strcmp(iss, j->issuer) != 0) return refuse(reason, "issuer");
    }
    if (j->audience_count && !audience_ok(j, json_object_get(claims, "aud")))
        return refuse(reason, "audience");
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    if (!sub || !*sub) return refuse(reason, "no_subject");

    bool has_exp, has_nbf, has_iat;
    int64_t exp = 0, nbf = 0, iat = 0;
    if (claim_time(claims, "exp", &has_exp, &exp) < 0 ||
        claim_time(claims, "nbf", &has_nbf, &nbf) < 0 ||
        claim_time(claims, "iat", &has_iat, &iat) < 0)
        return refuse(reason, "bad_time_claim");
    if (has_nbf && nbf > now_ms + j->skew_ms) return refuse(reason, "not_yet_valid");
    if (has_iat && iat > now_ms + j->skew_ms) return refuse(reason, "issued_in_future");

    char **roles = NULL;
    size_t role_count = 0;
    if (claim_roles(claim_lookup(claims, j->roles_claim), &roles, &role_count) < 0)
        return refuse(reason, "bad_roles_claim");
    /* Expiry last: "Token has expired" is only said of a token that is otherwise good. */
    if (has_exp && now_ms >= exp + j->skew_ms) {
        auth_strv_free(roles, role_count);
        *reason = "expired";
        return CHECK_EXPIRED;
    }
    id->user_id = xstrdup(sub);
    id->roles = roles;
    id->role_count = role_count;
    /* 0 means "never" in auth_identity_t, so a real exp never maps to it. */
    /* The session lasts as long as verification would accept the token: a token taken
     * within the clock skew after its exp must not give a session that is over at once. */
    id->expires_at = has_exp ? (exp + j->skew_ms > 0 ? exp + j->skew_ms : 1) : 0;
    return CHECK_OK;
}

/* Checks the signature with one key. `signed_len` is the length of "header.claims";
 * *jws caches cjose's parse of the token across keys (the caller releases it). */
static bool verify_with(const jwt_key_t *k, unsigned alg, const char *token, size_t len,
                        size_t signed_len, const unsigned char *sig, size_t sig_len,
                        cjose_jws_t **jws) {
    if (alg == ALG_EDDSA) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok =
            ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->ed25519) == 1 &&
            EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)token, signed_len) == 1;
        EVP_MD_CTX_free(ctx);
        return ok;
    }
    if (alg == ALG_RS256 && sig_len != (k->bits + 7) / 8) return false;
    cjose_err cerr;
    if (!*jws) *jws = cjose_jws_import(token, len, &cerr);
    return *jws && cjose_jws_verify(*jws, k->jwk, &cerr);
}

/* Collects the keys a token may have been signed with. Returns the count, or -1 when a
 * kid names a key of the wrong type (never a fallback: that is how confusion starts). */
static int candidates(const auth_jwt_t *j, unsigned alg, const char *kid, const jwt_key_t **out,
                      size_t max) {
    size_t n = 0;
    if (kid) {
        const jwt_key_t *k = keyset_find(j->file_keys, kid);
        if (!k) k = keyset_find(j->url_keys, kid);
        if (k) {
            if (!key_fits(k, alg)) return -1;
            out[n++] = k;
            return (int)n;
        }
    } else {
        const jwt_keyset_t *sets[2] = {j->file_keys, j->url_keys};
        for (size_t s = 0; s < 2; s++)
            for (size_t i = 0; sets[s] && i < sets[s]->count && n < max; i++)
                if (key_fits(&sets[s]->keys[i], alg)) out[n++] = &sets[s]->keys[i];
    }
    /* The configured secret has no kid; issuers often stamp one on HS256 tokens anyway. */
    if (alg == ALG_HS256 && j->secret && n < max) out[n++] = j->secret;
    return (int)n;
}

static jwt_check_t jwt_check(const auth_jwt_t *j, const char *token, size_t len, int64_t now_ms,
                             auth_identity_t *id, const char **reason) {
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2) return refuse(reason, "not_three_parts");
    if (memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return refuse(reason, "not_three_parts");
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (!hlen || !plen || !slen) return refuse(reason, "empty_part");

    jwt_check_t rc = CHECK_INVALID;
    unsigned char *hraw = NULL, *praw = NULL, *sig = NULL;
    json_t *header = NULL, *claims = NULL;
    cjose_jws_t *jws = NULL;
    size_t hn, pn, sn;
    json_error_t jerr;

    *reason = "bad_base64";
    if (!(hraw = auth_b64url_decode(token, hlen, &hn))) goto out;
    if (!(praw = auth_b64url_decode(d1 + 1, plen, &pn))) goto out;
    if (!(sig = auth_b64url_decode(d2 + 1, slen, &sn))) goto out;
    *reason = "bad_header";
    header = json_loadb((const char *)hraw, hn, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(header)) goto out;
    const char *alg_name = json_string_value(json_object_get(header, "alg"));
    if (!alg_name) goto out;
    if (strcmp(alg_name, "none") == 0) {
        *reason = "alg_none";
        goto out;
    }
    unsigned alg = alg_bit(alg_name);
    if (!(alg & j->algs)) {
        *reason = "alg_not_allowed";
        goto out;
    }
    if (json_object_get(header, "crit")) {
        *reason = "crit_header";
        goto out;
    }
    const json_t *kidv = json_object_get(header, "kid");
    if (kidv && !json_is_string(kidv)) goto out;
    const char *kid = json_string_value(kidv);
    *reason = "bad_claims";
    claims = json_loadb((const char *)praw, pn, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(claims)) goto out;
    *reason = "bad_signature_length";
    if ((alg == ALG_HS256 && sn != 32) || ((alg == ALG_ES256 || alg == ALG_EDDSA) && sn != 64))
        goto out;

    const jwt_key_t *keys[2 * JWKS_MAX_KEYS + 1];
    int n = candidates(j, alg, kid, keys, sizeof keys / sizeof *keys);
    if (n < 0) {
        *reason = "key_type_mismatch";
        goto out;
    }
    if (n == 0) {
        *reason = kid ? "unknown_kid" : "no_key";
        if (j->jwks_url) rc = CHECK_NEED_KEYS;
        goto out;
    }
    bool verified = false;
    for (int i = 0; i < n && !verified; i++)
        verified = verify_with(keys[i], alg, token, len, (size_t)(d2 - token), sig, sn, &jws);
    if (!verified) {
        *reason = "bad_signature";
        goto out;
    }
    rc = check_claims(j, claims, now_ms, id, reason);
out:
    if (jws) cjose_jws_release(jws);
    json_decref(header);
    json_decref(claims);
    free(hraw);
    free(praw);
    free(sig);
    return rc;
}

static void jwt_complete(const auth_jwt_t *j, const char *token, size_t len, int64_t now_ms,
                         auth_verify_cb done, void *udata) {
    auth_identity_t id = {0};
    const char *reason = "invalid";
    switch (jwt_check(j, token, len, now_ms, &id, &reason)) {
    case CHECK_OK:
        auth_finish(done, udata, AUTH_OK, &id, NULL);
        break;
    case CHECK_EXPIRED:
        auth_finish(done, udata, AUTH_EXPIRED, NULL, reason);
        break;
    default:
        auth_finish(done, udata, AUTH_INVALID, NULL, reason);
        break;
    }
}

/* ---- JWKS URL fetch (worker thread) ---- */

typedef struct {
    buf_t body;
    jwks_fetch_t *fetch;
} fetch_sink_t;

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *userdata) {
    fetch_sink_t *sink = userdata;
    size_t n = size * nmemb;
    if (atomic_load(&sink->fetch->abort)) return 0;
    if (buf_append(&sink->body, data, n) < 0) return 0; /* over 1 MiB: curl stops */
    return n;
}

static int fetch_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    jwks_fetch_t *f = userdata;
    return atomic_load(&f->abort) ? 1 : 0;
}

static void fetch_work(uv_work_t *req) {
    jwks_fetch_t *f = req->data;
    fetch_sink_t sink;
    sink.fetch = f;
    buf_init(&sink.body, JWKS_MAX_BYTES);
    CURL *c = curlapi.easy_init();
    if (!c) {
        snprintf(f->why, sizeof f->why, "curl_easy_init failed");
        goto out;
    }
    bool https = strncmp(f->url, "https://", 8) == 0;
    curlapi.easy_setopt(c, CURLOPT_URL, f->url);
    curlapi.easy_setopt(c, CURLOPT_PROTOCOLS_STR, https ? "https" : "http,https");
    curlapi.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
    curlapi.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curlapi.easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curlapi.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curlapi.easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)JWKS_FETCH_TIMEOUT_MS);
    curlapi.easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)JWKS_FETCH_TIMEOUT_MS);
    curlapi.easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)JWKS_MAX_BYTES);
    curlapi.easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
    curlapi.easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curlapi.easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curlapi.easy_setopt(c, CURLOPT_XFERINFOFUNCTION, fetch_progress);
    curlapi.easy_setopt(c, CURLOPT_XFERINFODATA, f);
    curlapi.easy_setopt(c, CURLOPT_USERAGENT, "shopd");
    CURLcode cc = curlapi.easy_perform(c);
    long status = 0;
    curlapi.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curlapi.easy_cleanup(c);
    if (cc != CURLE_OK) {
        snprintf(f->why, sizeof f->why, "%s",
                 cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED
                     ? "response larger than 1 MiB"
                     : curlapi.easy_strerror(cc));
        goto out;
    }
    if (status != 200) {
        snprintf(f->why, sizeof f->why, "HTTP status %ld", status);
        goto out;
    }
    f->keys = keyset_parse(sink.body.data ? sink.body.data : "", sink.body.len, true, f->why,
                           sizeof f->why);
out:
    buf_cleanup(&sink.body);
}

static void fetch_free(jwks_fetch_t *f) {
    keyset_free(f->keys);
    free(f->url);
    free(f);
}

static jwt_pending_t *pending_take_all(auth_jwt_t *j) {
    jwt_pending_t *p = j->pending_head;
    j->pending_head = j->pending_tail = NULL;
    j->pending_count = 0;
    return p;
}

/* Fails every waiting verification (closing or freeing). */
static void pending_fail_all(auth_jwt_t *j, const char *reason) {
    jwt_pending_t *p = pending_take_all(j);
    while (p) {
        jwt_pending_t *next = p->next;
        auth_finish(p->done, p->udata, AUTH_INVALID, NULL, reason);
        free(p->token);
        free(p);
        p = next;
    }
}

static void fetch_done(uv_work_t *req, int status) {
    jwks_fetch_t *f = req->data;
    auth_jwt_t *j = f->owner;
    if (!j) {
        /* auth_jwt_free ran while the worker was busy and left the cleanup to us. */
        fetch_free(f);
        curlapi.global_cleanup();
        return;
    }
    j->fetch = NULL;
    if (j->closed) {
        fetch_free(f);
        return;
    }
    if (status == 0 && f->keys) {
        log_info("auth.jwks_fetched", "keys=%zu", f->keys->count);
        keyset_free(j->url_keys);
        j->url_keys = f->keys;
        f->keys = NULL;
    } else {
        char q[300];
        log_warn("auth.jwks_fetch_failed", "reason=%s",
                 log_quote(status ? uv_strerror(status) : f->why, q, sizeof q));
    }
    fetch_free(f);
    jwt_pending_t *p = pending_take_all(j);
    while (p) {
        jwt_pending_t *next = p->next;
        int64_t now = p->now_ms + (int64_t)(clock_mono_ms() - p->queued_mono_ms);
        jwt_complete(j, p->token, p->len, now, p->done, p->udata);
        free(p->token);
        free(p);
        p = next;
    }
}

static int fetch_start(auth_jwt_t *j) {
    jwks_fetch_t *f = xcalloc(1, sizeof *f);
    f->owner = j;
    f->url = xstrdup(j->jwks_url);
    atomic_init(&f->abort, 0);
    f->req.data = f;
    if (uv_queue_work(j->loop, &f->req, fetch_work, fetch_done) != 0) {
        fetch_free(f);
        return -1;
    }
    j->fetch = f;
    j->fetched = true;
    j->last_fetch_ms = clock_mono_ms();
    return 0;
}

void auth_jwt_verify(auth_jwt_t *j, const char *token, size_t len, int64_t now_ms,
                     auth_verify_cb done, void *udata) {
    auth_identity_t id = {0};
    const char *reason = "invalid";
    jwt_check_t rc = jwt_check(j, token, len, now_ms, &id, &reason);
    if (rc == CHECK_OK) {
        auth_finish(done, udata, AUTH_OK, &id, NULL);
        return;
    }
    if (rc == CHECK_EXPIRED || rc != CHECK_NEED_KEYS || j->closed) {
        auth_finish(done, udata, rc == CHECK_EXPIRED ? AUTH_EXPIRED : AUTH_INVALID, NULL, reason);
        return;
    }
    /* The key is unknown: wait for a fetch in flight, start one if the last is a
     * minute old, or give up. */
    if (!j->fetch) {
        bool due = !j->fetched || clock_mono_ms() - j->last_fetch_ms >= j->refetch_ms;
        if (!due || fetch_start(j) < 0) {
            auth_finish(done, udata, AUTH_INVALID, NULL,
                        due ? "jwks_fetch_not_started" : "unknown_key_refetch_wait");
            return;
        }
    }
    if (j->pending_count >= JWT_MAX_PENDING) {
        auth_finish(done, udata, AUTH_INVALID, NULL, "too_many_pending");
        return;
    }
    jwt_pending_t *p = xcalloc(1, sizeof *p);
    p->token = xmemdup(token, len);
    p->len = len;
    p->now_ms = now_ms;
    p->queued_mono_ms = clock_mono_ms();
    p->done = done;
    p->udata = udata;
    if (j->pending_tail)
        j->pending_tail->next = p;
    else
        j->pending_head = p;
    j->pending_tail = p;
    j->pending_count++;
}

void auth_jwt_close(auth_jwt_t *j) {
    if (!j || j->closed) return;
    j->closed = true;
    if (j->fetch) {
        atomic_store(&j->fetch->abort, 1);
        uv_cancel((uv_req_t *)&j->fetch->req);
    }
    pending_fail_all(j, "closing");
}

void auth_jwt_free(auth_jwt_t *j) {
    if (!j) return;
    pending_fail_all(j, "closing");
    if (j->fetch) {
        /* The worker may still be inside curl: hand it the cleanup, including this
         * verifier's curl_global_init reference. */
        atomic_store(&j->fetch->abort, 1);
        uv_cancel((uv_req_t *)&j->fetch->req);
        j->fetch->owner = NULL;
        j->curl_ready = false;
    }
    if (j->curl_ready) curlapi.global_cleanup();
    free(j->issuer);
    auth_strv_free(j->audience, j->audience_count);
    free(j->roles_claim);
    if (j->secret) {
        key_cleanup(j->secret);
        free(j->secret);
    }
    keyset_free(j->file_keys);
    keyset_free(j->url_keys);
    free(j->jwks_url);
    free(j);
}
