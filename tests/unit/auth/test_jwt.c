/* JWT verification through auth_verify(): HS256 with a secret, ES256/RS256/EdDSA with
 * keys generated here and written as a JWKS file, claim checks, refusal of unsafe and
 * malformed tokens, and the JWKS URL path against a loopback HTTP server. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth_test_util.h"
#include "core/clock.h"

#define HS_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const char hs_config[] =
    "{\"jwt\":{\"secret\":\"" TU_SECRET "\",\"issuer\":\"https://id.shop\","
    "\"audience\":\"shopd\",\"clockSkewSec\":30}}";

static char *hs_token(const char *claims) {
    return tu_jwt_hmac(HS_HEADER, claims, TU_SECRET, strlen(TU_SECRET));
}

/* Claims that pass hs_config, with extra members spliced in. */
static char *claims_with(const char *extra) {
    char *out = malloc(1024);
    snprintf(out, 1024, "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\",\"sub\":\"user-1\"%s%s}",
             *extra ? "," : "", extra);
    return out;
}

static void expect_invalid(auth_t *a, const char *token, const char *what) {
    tu_result_t r = tu_verify(a, token, TU_NOW_MS);
    cr_expect_eq(r.status, -1, "%s: expected refusal", what);
    cr_expect_eq(r.code, ERR_UNAUTHORIZED, "%s", what);
    cr_expect_str_eq(r.msg, "Invalid token", "%s", what);
    tu_result_cleanup(&r);
}

static void expect_hs_claims_invalid(const char *extra, const char *what) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with(extra);
    char *tok = hs_token(claims);
    expect_invalid(a, tok, what);
    free(tok);
    free(claims);
    auth_free(a);
}

/* ---- HS256 and claims ---- */

Test(auth_jwt, hs256_valid_token_gives_identity) {
    auth_t *a = tu_auth(NULL, hs_config);
    char claims[256];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\",\"sub\":\"user-1\","
             "\"roles\":[\"customer\",\"beta\"],\"iat\":%lld,\"exp\":%lld}",
             TU_NOW_SEC - 10, TU_NOW_SEC + 3600);
    char *tok = hs_token(claims);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_expect_str_eq(r.id.user_id, "user-1");
    cr_assert_eq(r.id.role_count, 2);
    cr_expect_str_eq(r.id.roles[0], "customer");
    cr_expect_str_eq(r.id.roles[1], "beta");
    cr_expect_eq(r.id.expires_at, (TU_NOW_SEC + 3600) * 1000 + 30000); /* exp + clock skew */
    tu_result_cleanup(&r);
    free(tok);
    auth_free(a);
}

Test(auth_jwt, token_without_exp_never_expires) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with("");
    char *tok = hs_token(claims);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_expect_eq(r.id.expires_at, 0);
    cr_expect_eq(r.id.role_count, 0);
    tu_result_cleanup(&r);
    free(tok);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, expired_token_says_token_has_expired) {
    auth_t *a = tu_auth(NULL, hs_config);
    char extra[64];
    snprintf(extra, sizeof extra, "\"exp\":%lld", TU_NOW_SEC - 31);
    char *claims = claims_with(extra);
    char *tok = hs_token(claims);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, -1);
    cr_expect_eq(r.code, ERR_UNAUTHORIZED);
    cr_expect_str_eq(r.msg, "Token has expired");
    free(tok);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, expiry_within_clock_skew_is_accepted) {
    auth_t *a = tu_auth(NULL, hs_config);
    char extra[64];
    snprintf(extra, sizeof extra, "\"exp\":%lld", TU_NOW_SEC - 29);
    char *claims = claims_with(extra);
    char *tok = hs_token(claims);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    cr_expect_eq(r.id.expires_at, (TU_NOW_SEC - 29) * 1000 + 30000); /* still usable */
    tu_result_cleanup(&r);
    free(tok);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, expired_token_with_bad_signature_is_just_invalid) {
    auth_t *a = tu_auth(NULL, hs_config);
    char extra[64];
    snprintf(extra, sizeof extra, "\"exp\":%lld", TU_NOW_SEC - 3600);
    char *claims = claims_with(extra);
    const char *other = "another-secret-another-secret-123";
    char *tok = tu_jwt_hmac(HS_HEADER, claims, other, strlen(other));
    expect_invalid(a, tok, "expired and forged");
    free(tok);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, nbf_in_the_future_is_refused) {
    char extra[64];
    snprintf(extra, sizeof extra, "\"nbf\":%lld", TU_NOW_SEC + 31);
    expect_hs_claims_invalid(extra, "nbf in the future");
}

Test(auth_jwt, nbf_within_skew_is_accepted) {
    auth_t *a = tu_auth(NULL, hs_config);
    char extra[64];
    snprintf(extra, sizeof extra, "\"nbf\":%lld,\"iat\":%lld", TU_NOW_SEC + 29, TU_NOW_SEC + 29);
    char *claims = claims_with(extra);
    char *tok = hs_token(claims);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    tu_result_cleanup(&r);
    free(tok);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, iat_in_the_future_is_refused) {
    char extra[64];
    snprintf(extra, sizeof extra, "\"iat\":%lld", TU_NOW_SEC + 600);
    expect_hs_claims_invalid(extra, "iat in the future");
}

Test(auth_jwt, time_claims_must_be_numbers) {
    expect_hs_claims_invalid("\"exp\":\"tomorrow\"", "string exp");
    expect_hs_claims_invalid("\"nbf\":null", "null nbf");
    expect_hs_claims_invalid("\"exp\":1e300", "absurd exp");
}

Test(auth_jwt, issuer_must_match) {
    auth_t *a = tu_auth(NULL, hs_config);
    const char *bad[] = {
        "{\"iss\":\"https://evil\",\"aud\":\"shopd\",\"sub\":\"u\"}",
        "{\"aud\":\"shopd\",\"sub\":\"u\"}",
        "{\"iss\":7,\"aud\":\"shopd\",\"sub\":\"u\"}",
    };
    for (size_t i = 0; i < 3; i++) {
        char *tok = hs_token(bad[i]);
        expect_invalid(a, tok, bad[i]);
        free(tok);
    }
    auth_free(a);
}

Test(auth_jwt, audience_may_be_a_string_or_an_array) {
    auth_t *a = tu_auth(NULL, hs_config);
    const char *good = "{\"iss\":\"https://id.shop\",\"aud\":[\"other\",\"shopd\"],\"sub\":\"u\"}";
    char *tok = hs_token(good);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    tu_result_cleanup(&r);
    free(tok);
    const char *bad[] = {
        "{\"iss\":\"https://id.shop\",\"aud\":\"other\",\"sub\":\"u\"}",
        "{\"iss\":\"https://id.shop\",\"aud\":[\"other\"],\"sub\":\"u\"}",
        "{\"iss\":\"https://id.shop\",\"sub\":\"u\"}",
    };
    for (size_t i = 0; i < 3; i++) {
        tok = hs_token(bad[i]);
        expect_invalid(a, tok, bad[i]);
        free(tok);
    }
    auth_free(a);
}

Test(auth_jwt, configured_audience_list_accepts_any_member) {
    auth_t *a =
        tu_auth(NULL, "{\"jwt\":{\"secret\":\"" TU_SECRET "\",\"audience\":[\"a\",\"b\"]}}");
    char *tok = hs_token("{\"aud\":\"b\",\"sub\":\"u\"}");
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    tu_result_cleanup(&r);
    free(tok);
    auth_free(a);
}

Test(auth_jwt, subject_is_required) {
    auth_t *a = tu_auth(NULL, hs_config);
    const char *bad[] = {
        "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\"}",
        "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\",\"sub\":\"\"}",
        "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\",\"sub\":42}",
    };
    for (size_t i = 0; i < 3; i++) {
        char *tok = hs_token(bad[i]);
        expect_invalid(a, tok, bad[i]);
        free(tok);
    }
    auth_free(a);
}

Test(auth_jwt, wrong_secret_is_refused) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with("");
    const char *other = "0123456789abcdef0123456789abcdeX";
    char *tok = tu_jwt_hmac(HS_HEADER, claims, other, strlen(other));
    expect_invalid(a, tok, "wrong secret");
    free(tok);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, tampered_claims_are_refused) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with("");
    char *tok = hs_token(claims);
    /* Swap the claims for an admin's, keep the signature. */
    const char *admin = "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\",\"sub\":\"admin-1\"}";
    char *evil = tu_b64url(admin, strlen(admin));
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    char forged[1024];
    snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(d1 - tok), tok, evil, d2);
    expect_invalid(a, forged, "tampered claims");
    free(evil);
    free(tok);
    free(claims);
    auth_free(a);
}

/* ---- unsafe headers ---- */

Test(auth_jwt, alg_none_is_refused) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with("");
    char *h = tu_b64url("{\"alg\":\"none\"}", 14);
    char *c = tu_b64url(claims, strlen(claims));
    char tok[1024];
    snprintf(tok, sizeof tok, "%s.%s.", h, c);
    expect_invalid(a, tok, "alg none, empty signature");
    snprintf(tok, sizeof tok, "%s.%s.AAAA", h, c);
    expect_invalid(a, tok, "alg none, some signature");
    free(h);
    free(c);
    /* Even signed with the right secret, "none" stays refused. */
    char *signed_none = tu_jwt_hmac("{\"alg\":\"none\"}", claims, TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, signed_none, "alg none signed");
    free(signed_none);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, algorithm_outside_the_list_is_refused) {
    auth_t *a =
        tu_auth(NULL, "{\"jwt\":{\"secret\":\"" TU_SECRET "\",\"algorithms\":[\"HS256\"]}}");
    EVP_PKEY *ec = tu_key_ec();
    char *tok = tu_jwt_sign(ec, "ES256", "{\"alg\":\"ES256\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, tok, "ES256 not configured");
    free(tok);
    tok = tu_jwt_hmac("{\"alg\":\"HS512\"}", "{\"sub\":\"u\"}", TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, tok, "HS512");
    free(tok);
    EVP_PKEY_free(ec);
    auth_free(a);
}

Test(auth_jwt, crit_header_is_refused) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with("");
    char *tok =
        tu_jwt_hmac("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims, TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, tok, "crit");
    free(tok);
    free(claims);
    auth_free(a);
}

/* ---- malformed shapes ---- */

Test(auth_jwt, malformed_tokens_are_invalid) {
    auth_t *a = tu_auth(NULL, hs_config);
    char *claims = claims_with("");
    char *good = hs_token(claims);
    tu_result_t r = tu_verify(a, good, TU_NOW_MS);
    cr_assert_eq(r.status, 0, "%s", r.msg);
    tu_result_cleanup(&r);

    char buf[2048];
    char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    snprintf(buf, sizeof buf, "%.*s", (int)(d2 - good), good);
    expect_invalid(a, buf, "two parts");
    snprintf(buf, sizeof buf, "%s.AAAA", good);
    expect_invalid(a, buf, "four parts");
    snprintf(buf, sizeof buf, "%s.", good);
    expect_invalid(a, buf, "trailing dot");
    snprintf(buf, sizeof buf, "%.*s.%s", (int)(d1 - good), good, d2);
    expect_invalid(a, buf, "empty payload");
    snprintf(buf, sizeof buf, "%s", good);
    buf[3] = '*';
    expect_invalid(a, buf, "bad base64 character");
    snprintf(buf, sizeof buf, "%.*s=%s", (int)(d2 - good), good, d2);
    expect_invalid(a, buf, "base64 padding");
    expect_invalid(a, "", "empty");
    expect_invalid(a, "..", "only dots");
    expect_invalid(a, "not a token", "words");

    /* Header that is not JSON, or JSON but not an object, with a valid MAC. */
    char *t = tu_jwt_hmac("alg=HS256", claims, TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, t, "non-JSON header");
    free(t);
    t = tu_jwt_hmac("[\"HS256\"]", claims, TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, t, "array header");
    free(t);
    t = tu_jwt_hmac(HS_HEADER, "[1,2]", TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, t, "array claims");
    free(t);
    t = tu_jwt_hmac(HS_HEADER, "{\"sub\":\"a\",\"sub\":\"b\"}", TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, t, "duplicate claim");
    free(t);
    t = tu_jwt_hmac("{\"alg\":\"HS256\",\"kid\":7}", claims, TU_SECRET, strlen(TU_SECRET));
    expect_invalid(a, t, "numeric kid");
    free(t);
    free(good);
    free(claims);
    auth_free(a);
}

Test(auth_jwt, oversized_token_is_refused_without_parsing) {
    auth_t *a = tu_auth(NULL, hs_config);
    /* A correctly signed token, just too long: refused on size alone. */
    size_t pad = AUTH_MAX_TOKEN;
    char *extra = malloc(pad + 32);
    memcpy(extra, "\"pad\":\"", 7);
    memset(extra + 7, 'x', pad);
    strcpy(extra + 7 + pad, "\"");
    char *claims = malloc(pad + 256);
    snprintf(claims, pad + 256, "{\"iss\":\"https://id.shop\",\"aud\":\"shopd\",\"sub\":\"u\",%s}",
             extra);
    char *tok = hs_token(claims);
    cr_assert_gt(strlen(tok), AUTH_MAX_TOKEN);
    expect_invalid(a, tok, "huge token");
    free(tok);
    free(claims);
    free(extra);
    auth_free(a);
}

/* ---- roles ---- */

static tu_result_t verify_roles(const char *config, const char *roles_member) {
    auth_t *a = tu_auth(NULL, config);
    char claims[4096];
    snprintf(claims, sizeof claims, "{\"sub\":\"u\"%s%s}", *roles_member ? "," : "", roles_member);
    char *tok = hs_token(claims);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    free(tok);
    auth_free(a);
    return r;
}

static const char plain_config[] = "{\"jwt\":{\"secret\":\"" TU_SECRET "\"}}";

Test(auth_jwt, roles_from_a_space_separated_string) {
    tu_result_t r = verify_roles(plain_config, "\"roles\":\"  admin customer \"");
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_assert_eq(r.id.role_count, 2);
    cr_expect_str_eq(r.id.roles[0], "admin");
    cr_expect_str_eq(r.id.roles[1], "customer");
    tu_result_cleanup(&r);
}

Test(auth_jwt, roles_claim_name_is_configurable) {
    const char *cfg = "{\"jwt\":{\"secret\":\"" TU_SECRET "\",\"rolesClaim\":\"scope\"}}";
    tu_result_t r = verify_roles(cfg, "\"roles\":[\"ignored\"],\"scope\":\"read write\"");
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_assert_eq(r.id.role_count, 2);
    cr_expect_str_eq(r.id.roles[1], "write");
    tu_result_cleanup(&r);
    cfg = "{\"jwt\":{\"secret\":\"" TU_SECRET "\",\"rolesClaim\":\"realm_access.roles\"}}";
    r = verify_roles(cfg, "\"realm_access\":{\"roles\":[\"admin\"]}");
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_assert_eq(r.id.role_count, 1);
    cr_expect_str_eq(r.id.roles[0], "admin");
    tu_result_cleanup(&r);
}

Test(auth_jwt, bad_roles_claims_are_refused) {
    tu_result_t r = verify_roles(plain_config, "\"roles\":[\"a\",1]");
    cr_expect_eq(r.status, -1);
    r = verify_roles(plain_config, "\"roles\":{\"a\":true}");
    cr_expect_eq(r.status, -1);
    char many[2048] = "\"roles\":[";
    for (int i = 0; i <= AUTH_MAX_ROLES; i++) {
        char one[16];
        snprintf(one, sizeof one, "%s\"r%d\"", i ? "," : "", i);
        strcat(many, one);
    }
    strcat(many, "]");
    r = verify_roles(plain_config, many);
    cr_expect_eq(r.status, -1, "more than AUTH_MAX_ROLES roles");
}

/* ---- public keys from a JWKS file ---- */

typedef struct {
    EVP_PKEY *rsa, *ec, *ed;
    char *jwks_path;
} keyring_t;

static keyring_t keyring_make(bool rsa) {
    keyring_t k = {0};
    k.ec = tu_key_ec();
    k.ed = tu_key_ed25519();
    if (rsa) k.rsa = tu_key_rsa();
    json_t *jwks[3];
    size_t n = 0;
    jwks[n++] = tu_jwk(k.ec, "ec-1");
    jwks[n++] = tu_jwk(k.ed, "ed-1");
    if (rsa) jwks[n++] = tu_jwk(k.rsa, "rsa-1");
    k.jwks_path = tu_write_jwks(jwks, n);
    for (size_t i = 0; i < n; i++) json_decref(jwks[i]);
    return k;
}

static void keyring_free(keyring_t *k) {
    EVP_PKEY_free(k->rsa);
    EVP_PKEY_free(k->ec);
    EVP_PKEY_free(k->ed);
    unlink(k->jwks_path);
    free(k->jwks_path);
}

static auth_t *jwks_auth(const keyring_t *k, const char *extra) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"jwt\":{\"jwksFile\":\"%s\"%s%s}}", k->jwks_path,
             *extra ? "," : "", extra);
    return tu_auth(NULL, cfg);
}

static void expect_valid_signed(auth_t *a, EVP_PKEY *key, const char *alg, const char *kid) {
    char header[128];
    if (kid)
        snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
    else
        snprintf(header, sizeof header, "{\"alg\":\"%s\"}", alg);
    char *tok = tu_jwt_sign(key, alg, header, "{\"sub\":\"user-9\",\"roles\":[\"admin\"]}");
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s kid=%s: %s", alg, kid ? kid : "-", r.msg);
    if (r.status == 0) cr_expect_str_eq(r.id.user_id, "user-9");
    tu_result_cleanup(&r);
    free(tok);
}

Test(auth_jwt, es256_rs256_and_eddsa_verify_from_jwks_file) {
    keyring_t k = keyring_make(true);
    auth_t *a = jwks_auth(&k, "");
    expect_valid_signed(a, k.ec, "ES256", "ec-1");
    expect_valid_signed(a, k.rsa, "RS256", "rsa-1");
    expect_valid_signed(a, k.ed, "EdDSA", "ed-1");
    /* Without a kid every key of the right type is tried. */
    expect_valid_signed(a, k.ec, "ES256", NULL);
    expect_valid_signed(a, k.ed, "EdDSA", NULL);
    auth_free(a);
    keyring_free(&k);
}

Test(auth_jwt, signature_by_another_key_is_refused) {
    keyring_t k = keyring_make(false);
    auth_t *a = jwks_auth(&k, "");
    EVP_PKEY *ec2 = tu_key_ec(), *ed2 = tu_key_ed25519();
    char *t = tu_jwt_sign(ec2, "ES256", "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, t, "ES256 by a stranger");
    free(t);
    t = tu_jwt_sign(ed2, "EdDSA", "{\"alg\":\"EdDSA\",\"kid\":\"ed-1\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, t, "EdDSA by a stranger");
    free(t);
    t = tu_jwt_sign(ed2, "EdDSA", "{\"alg\":\"EdDSA\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, t, "EdDSA by a stranger, no kid");
    free(t);
    EVP_PKEY_free(ec2);
    EVP_PKEY_free(ed2);
    auth_free(a);
    keyring_free(&k);
}

Test(auth_jwt, unknown_kid_without_url_is_refused) {
    keyring_t k = keyring_make(false);
    auth_t *a = jwks_auth(&k, "");
    char *t = tu_jwt_sign(k.ec, "ES256", "{\"alg\":\"ES256\",\"kid\":\"nope\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, t, "unknown kid");
    free(t);
    auth_free(a);
    keyring_free(&k);
}

Test(auth_jwt, kid_of_another_key_type_is_refused) {
    keyring_t k = keyring_make(false);
    auth_t *a = jwks_auth(&k, "");
    /* An ES256 signature presented under the Ed25519 key's kid. */
    char *t = tu_jwt_sign(k.ec, "ES256", "{\"alg\":\"ES256\",\"kid\":\"ed-1\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, t, "ES256 under an OKP kid");
    free(t);
    auth_free(a);
    keyring_free(&k);
}

Test(auth_jwt, hs256_signed_with_the_rsa_public_key_is_refused) {
    EVP_PKEY *rsa = tu_key_rsa();
    json_t *jwk = tu_jwk(rsa, "rsa-1");
    char *path = tu_write_jwks(&jwk, 1);
    size_t pem_len;
    char *pem = tu_pem_public(rsa, &pem_len);
    const char *claims = "{\"sub\":\"admin-1\",\"roles\":[\"admin\"]}";
    const char *headers[] = {"{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", "{\"alg\":\"HS256\"}"};

    /* 1. HS256 is not even configured: only RS256 may verify with this JWKS. */
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"jwt\":{\"jwksFile\":\"%s\",\"algorithms\":[\"RS256\"]}}", path);
    auth_t *a = tu_auth(NULL, cfg);
    for (size_t i = 0; i < 2; i++) {
        char *t = tu_jwt_hmac(headers[i], claims, pem, pem_len);
        expect_invalid(a, t, headers[i]);
        free(t);
    }
    auth_free(a);

    /* 2. HS256 allowed (a secret exists too): the RSA key still never acts as one. */
    snprintf(cfg, sizeof cfg,
             "{\"jwt\":{\"jwksFile\":\"%s\",\"secret\":\"" TU_SECRET "\","
             "\"algorithms\":[\"RS256\",\"HS256\"]}}",
             path);
    a = tu_auth(NULL, cfg);
    for (size_t i = 0; i < 2; i++) {
        char *t = tu_jwt_hmac(headers[i], claims, pem, pem_len);
        expect_invalid(a, t, headers[i]);
        free(t);
        /* Also the raw modulus bytes, a common variant of the attack. */
        const char *n = json_string_value(json_object_get(jwk, "n"));
        t = tu_jwt_hmac(headers[i], claims, n, strlen(n));
        expect_invalid(a, t, headers[i]);
        free(t);
    }
    /* And the genuine RS256 token still passes. */
    char *t = tu_jwt_sign(rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", claims);
    tu_result_t r = tu_verify(a, t, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    tu_result_cleanup(&r);
    free(t);
    auth_free(a);

    free(pem);
    json_decref(jwk);
    unlink(path);
    free(path);
    EVP_PKEY_free(rsa);
}

Test(auth_jwt, jwk_alg_pins_the_algorithm) {
    EVP_PKEY *ec = tu_key_ec();
    json_t *jwk = tu_jwk(ec, "ec-1");
    json_object_set_new(jwk, "alg", json_string("ES256"));
    json_object_set_new(jwk, "use", json_string("sig"));
    json_t *enc = tu_jwk(ec, "ec-enc");
    json_object_set_new(enc, "use", json_string("enc"));
    json_t *keys[2] = {jwk, enc};
    char *path = tu_write_jwks(keys, 2);
    char cfg[512];
    snprintf(cfg, sizeof cfg, "{\"jwt\":{\"jwksFile\":\"%s\"}}", path);
    auth_t *a = tu_auth(NULL, cfg);
    expect_valid_signed(a, ec, "ES256", "ec-1");
    /* A key marked for encryption is not loaded at all. */
    char *t = tu_jwt_sign(ec, "ES256", "{\"alg\":\"ES256\",\"kid\":\"ec-enc\"}", "{\"sub\":\"u\"}");
    expect_invalid(a, t, "enc key");
    free(t);
    auth_free(a);
    json_decref(jwk);
    json_decref(enc);
    unlink(path);
    free(path);
    EVP_PKEY_free(ec);
}

/* ---- JWKS from a URL ---- */

typedef struct {
    keyring_t keys;
    char *jwks_text;
    tu_http_t *srv;
    uv_loop_t loop;
    auth_t *auth;
} url_env_t;

static void url_env_start(url_env_t *e, tu_http_mode_t mode) {
    memset(e, 0, sizeof *e);
    e->keys.ec = tu_key_ec();
    json_t *jwk = tu_jwk(e->keys.ec, "url-ec");
    json_t *doc = json_pack("{s:[o]}", "keys", jwk);
    e->jwks_text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    e->srv = tu_http_start(mode, e->jwks_text);
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"jwt\":{\"jwksUrl\":\"http://127.0.0.1:%d/jwks.json\"}}",
             tu_http_port(e->srv));
    e->auth = tu_auth(&e->loop, cfg);
}

/* Returns the connections the server saw. */
static int url_env_stop(url_env_t *e) {
    if (e->auth) {
        auth_close(e->auth);
        uv_run(&e->loop, UV_RUN_DEFAULT);
        auth_free(e->auth);
    }
    cr_expect_eq(uv_loop_close(&e->loop), 0, "the loop must end with nothing alive");
    int n = tu_http_stop(e->srv);
    free(e->jwks_text);
    EVP_PKEY_free(e->keys.ec);
    return n;
}

static char *url_token(url_env_t *e, const char *kid) {
    char header[128];
    snprintf(header, sizeof header, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
    return tu_jwt_sign(e->keys.ec, "ES256", header, "{\"sub\":\"url-user\"}");
}

Test(auth_jwt_url, unknown_kid_fetches_the_jwks_once) {
    url_env_t e;
    url_env_start(&e, TU_HTTP_JWKS);
    char *tok = url_token(&e, "url-ec");
    tu_result_t r1, r2;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r1);
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r2);
    cr_assert_eq(r1.called + r2.called, 0, "both wait for the fetch");
    uint64_t t0 = clock_mono_ms();
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_expect_lt(clock_mono_ms() - t0, 5500);
    cr_assert_eq(r1.called, 1);
    cr_assert_eq(r2.called, 1);
    cr_expect_eq(r1.status, 0, "%s", r1.msg);
    cr_expect_eq(r2.status, 0, "%s", r2.msg);
    cr_expect(r1.on_main_thread, "callbacks run on the loop thread");
    cr_expect_str_eq(r1.id.user_id, "url-user");
    tu_result_cleanup(&r1);
    tu_result_cleanup(&r2);

    /* Known now: answered at once. */
    tu_result_t r3 = tu_verify(e.auth, tok, TU_NOW_MS);
    cr_expect_eq(r3.status, 0, "%s", r3.msg);
    tu_result_cleanup(&r3);
    /* Another unknown kid within the minute: refused at once, no second fetch. */
    char *other = url_token(&e, "rotated");
    tu_result_t r4 = tu_verify(e.auth, other, TU_NOW_MS);
    cr_expect_eq(r4.status, -1);
    cr_expect_str_eq(r4.msg, "Invalid token");
    free(other);
    free(tok);
    cr_expect_eq(url_env_stop(&e), 1, "exactly one fetch");
}

Test(auth_jwt_url, oversized_jwks_response_is_refused) {
    url_env_t e;
    url_env_start(&e, TU_HTTP_HUGE);
    char *tok = url_token(&e, "url-ec");
    tu_result_t r;
    memset(&r, 0, sizeof r);
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_assert_eq(r.called, 1);
    cr_expect_eq(r.status, -1);
    free(tok);
    url_env_stop(&e);
}

Test(auth_jwt_url, http_error_status_is_refused) {
    url_env_t e;
    url_env_start(&e, TU_HTTP_STATUS_500);
    char *tok = url_token(&e, "url-ec");
    tu_result_t r;
    memset(&r, 0, sizeof r);
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_assert_eq(r.called, 1);
    cr_expect_eq(r.status, -1);
    free(tok);
    url_env_stop(&e);
}

Test(auth_jwt_url, silent_server_times_out_in_five_seconds, .timeout = 20) {
    url_env_t e;
    url_env_start(&e, TU_HTTP_SILENT);
    char *tok = url_token(&e, "url-ec");
    tu_result_t r;
    memset(&r, 0, sizeof r);
    uint64_t t0 = clock_mono_ms();
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    uint64_t took = clock_mono_ms() - t0;
    cr_assert_eq(r.called, 1);
    cr_expect_eq(r.status, -1);
    cr_expect_geq(took, 4500);
    cr_expect_lt(took, 8000, "fetch took %llu ms", (unsigned long long)took);
    free(tok);
    url_env_stop(&e);
}

Test(auth_jwt_url, close_fails_waiting_verifications_and_aborts_the_fetch, .timeout = 20) {
    url_env_t e;
    url_env_start(&e, TU_HTTP_SILENT);
    char *tok = url_token(&e, "url-ec");
    tu_result_t r;
    memset(&r, 0, sizeof r);
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r);
    cr_assert_eq(r.called, 0);
    usleep(100 * 1000); /* let the worker reach the server */
    auth_close(e.auth);
    cr_assert_eq(r.called, 1, "auth_close answers waiting verifications");
    cr_expect_eq(r.status, -1);
    uint64_t t0 = clock_mono_ms();
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_expect_lt(clock_mono_ms() - t0, 2500, "the fetch is aborted, not waited out");
    /* After close nothing is fetched any more. */
    tu_result_t r2 = tu_verify(e.auth, tok, TU_NOW_MS);
    cr_expect_eq(r2.status, -1);
    free(tok);
    url_env_stop(&e);
}

Test(auth_jwt_url, free_during_a_fetch_detaches_it, .timeout = 20) {
    url_env_t e;
    url_env_start(&e, TU_HTTP_SILENT);
    char *tok = url_token(&e, "url-ec");
    tu_result_t r;
    memset(&r, 0, sizeof r);
    auth_verify(e.auth, tok, TU_NOW_MS, tu_result_cb, &r);
    auth_free(e.auth);
    e.auth = NULL;
    cr_assert_eq(r.called, 1);
    cr_expect_eq(r.status, -1);
    /* The worker finishes on its own and frees its state in the loop. */
    uv_run(&e.loop, UV_RUN_DEFAULT);
    free(tok);
    url_env_stop(&e);
}
