/* Every bad `auth` configuration is refused at start with one line that names the
 * JSON path of the bad field. */
#include <criterion/criterion.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth_test_util.h"

#define S "\"" TU_SECRET "\""

static void expect_error(const char *json_text, const char *message) {
    json_error_t jerr;
    json_t *cfg = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(cfg, "bad test JSON %s: %s", json_text, jerr.text);
    char err[512] = "untouched";
    auth_t *a = auth_new(NULL, cfg, err, sizeof err);
    json_decref(cfg);
    cr_expect_null(a, "%s should be refused", json_text);
    auth_free(a);
    cr_expect_str_eq(err, message, "for %s", json_text);
}

/* Like expect_error, for messages that end in something system-dependent. */
static void expect_error_prefix(const char *json_text, const char *prefix) {
    json_t *cfg = json_loads(json_text, 0, NULL);
    cr_assert_not_null(cfg, "bad test JSON %s", json_text);
    char err[512] = "untouched";
    auth_t *a = auth_new(NULL, cfg, err, sizeof err);
    json_decref(cfg);
    cr_expect_null(a);
    auth_free(a);
    cr_expect_eq(strncmp(err, prefix, strlen(prefix)), 0, "got \"%s\", want \"%s…\"", err, prefix);
}

static void expect_jwks_error(const char *jwks_text, const char *message) {
    char *path = tu_write_temp(jwks_text);
    char cfg[512], want[512];
    snprintf(cfg, sizeof cfg, "{\"jwt\":{\"jwksFile\":\"%s\"}}", path);
    /* "{path}" in the expected message stands for the temporary file's name. */
    const char *at = strstr(message, "{path}");
    if (at)
        snprintf(want, sizeof want, "%.*s%s%s", (int)(at - message), message, path, at + 6);
    else
        snprintf(want, sizeof want, "%s", message);
    expect_error(cfg, want);
    unlink(path);
    free(path);
}

Test(auth_config, absent_auth_is_disabled_without_error) {
    char err[64] = "x";
    cr_expect_null(auth_new(NULL, NULL, err, sizeof err));
    cr_expect_str_empty(err);
    json_t *null = json_null();
    strcpy(err, "x");
    cr_expect_null(auth_new(NULL, null, err, sizeof err));
    cr_expect_str_empty(err);
    json_decref(null);
    cr_expect_not(auth_required(NULL));
    cr_expect_not(auth_has_policy(NULL));
    auth_close(NULL);
    auth_free(NULL);
}

Test(auth_config, full_configuration_is_accepted) {
    EVP_PKEY *ec = tu_key_ec();
    json_t *jwk = tu_jwk(ec, "k1");
    char *path = tu_write_jwks(&jwk, 1);
    char cfg[2048];
    snprintf(
        cfg, sizeof cfg,
        "{\"required\":false,"
        "\"tokens\":{\"customer-token-alice\":{\"userId\":\"user-alice\",\"roles\":[\"customer\"]},"
        "\"admin-token\":{\"userId\":\"admin-1\",\"roles\":[\"admin\"],\"expiresAt\":4102444800000}"
        ","
        "\"no-roles\":{\"userId\":\"nobody\",\"roles\":[]}},"
        "\"jwt\":{\"issuer\":\"https://id.shop\",\"audience\":[\"shopd\",\"admin\"],"
        "\"algorithms\":[\"ES256\",\"HS256\",\"EdDSA\"],\"secret\":" S ",\"jwksFile\":\"%s\","
        "\"rolesClaim\":\"roles\",\"clockSkewSec\":0},"
        "\"permissions\":{\"default\":\"deny\",\"rules\":[{\"role\":\"admin\",\"allow\":\"*\"},"
        "{\"role\":\"customer\",\"allow\":[\"store.get\",\"rules.*\"],\"buckets\":[\"products\"],"
        "\"topics\":[\"order.*\",\"product:*:low\"],\"match\":{\"data.userId\":\"$session.userId\","
        "\"params.n\":[1,{\"a\":null}]},\"owner\":\"userId\"}]}}",
        path);
    auth_t *a = tu_auth(NULL, cfg);
    cr_expect_not(auth_required(a));
    cr_expect(auth_has_policy(a));
    auth_close(a);
    auth_free(a);
    json_decref(jwk);
    unlink(path);
    free(path);
    EVP_PKEY_free(ec);
}

Test(auth_config, top_level_shape) {
    expect_error("[]", "config: $.auth: must be an object");
    expect_error("{}", "config: $.auth: needs \"tokens\" or \"jwt\" (no way to log in)");
    expect_error("{\"required\":\"yes\",\"tokens\":{}}",
                 "config: $.auth.required: must be true or false");
    expect_error("{\"tokenz\":{}}", "config: $.auth.tokenz: unknown field");
}

Test(auth_config, static_tokens_table) {
    expect_error("{\"tokens\":[]}", "config: $.auth.tokens: must be an object");
    expect_error("{\"tokens\":{\"t1\":{\"roles\":[\"a\"]}}}",
                 "config: $.auth.tokens.t1.userId: must be a non-empty string");
    expect_error("{\"tokens\":{\"t1\":{\"userId\":\"\"}}}",
                 "config: $.auth.tokens.t1.userId: must be a non-empty string");
    expect_error("{\"tokens\":{\"t1\":{\"userId\":\"u\",\"roles\":\"admin\"}}}",
                 "config: $.auth.tokens.t1.roles: must be a non-empty array of strings");
    expect_error("{\"tokens\":{\"t1\":{\"userId\":\"u\",\"roles\":[\"a\",3]}}}",
                 "config: $.auth.tokens.t1.roles[1]: must be a non-empty string");
    expect_error(
        "{\"tokens\":{\"t1\":{\"userId\":\"u\",\"expiresAt\":\"soon\"}}}",
        "config: $.auth.tokens.t1.expiresAt: must be a non-negative integer (ms since the epoch)");
    expect_error("{\"tokens\":{\"t1\":{\"userId\":\"u\",\"user\":\"x\"}}}",
                 "config: $.auth.tokens.t1.user: unknown field");
    expect_error("{\"tokens\":{\"a.b\":5}}", "config: $.auth.tokens[\"a.b\"]: must be an object");
    expect_error("{\"tokens\":{\"\":{\"userId\":\"u\"}}}",
                 "config: $.auth.tokens[\"\"]: a token must be 1 to 8192 bytes");
}

Test(auth_config, jwt_section) {
    expect_error("{\"jwt\":[]}", "config: $.auth.jwt: must be an object");
    expect_error("{\"jwt\":{}}",
                 "config: $.auth.jwt: needs one of \"secret\", \"jwksFile\" or \"jwksUrl\"");
    expect_error("{\"jwt\":{\"secret\":\"short\"}}",
                 "config: $.auth.jwt.secret: must be at least 32 bytes for HS256");
    expect_error("{\"jwt\":{\"secret\":42}}", "config: $.auth.jwt.secret: must be a string");
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithm\":\"HS256\"}}",
                 "config: $.auth.jwt.algorithm: unknown field");
    expect_error("{\"jwt\":{\"secret\":" S ",\"issuer\":5}}",
                 "config: $.auth.jwt.issuer: must be a non-empty string");
    expect_error("{\"jwt\":{\"secret\":" S ",\"audience\":[]}}",
                 "config: $.auth.jwt.audience: must be a non-empty array of strings");
    expect_error("{\"jwt\":{\"secret\":" S ",\"audience\":[\"a\",\"\"]}}",
                 "config: $.auth.jwt.audience[1]: must be a non-empty string");
    expect_error("{\"jwt\":{\"secret\":" S ",\"rolesClaim\":\"\"}}",
                 "config: $.auth.jwt.rolesClaim: must be a non-empty string");
    expect_error("{\"jwt\":{\"secret\":" S ",\"clockSkewSec\":-1}}",
                 "config: $.auth.jwt.clockSkewSec: must be an integer from 0 to 3600");
    expect_error("{\"jwt\":{\"secret\":" S ",\"clockSkewSec\":1.5}}",
                 "config: $.auth.jwt.clockSkewSec: must be an integer from 0 to 3600");
    expect_error("{\"jwt\":{\"jwksUrl\":\"ftp://keys.example/jwks\"}}",
                 "config: $.auth.jwt.jwksUrl: must be an http:// or https:// URL");
    expect_error("{\"jwt\":{\"jwksUrl\":\"https://\"}}",
                 "config: $.auth.jwt.jwksUrl: must be an http:// or https:// URL");
}

Test(auth_config, jwt_algorithms) {
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithms\":[\"none\"]}}",
                 "config: $.auth.jwt.algorithms[0]: unsupported algorithm \"none\" (use HS256, "
                 "ES256, RS256 or EdDSA)");
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithms\":[\"HS256\",\"RS512\"]}}",
                 "config: $.auth.jwt.algorithms[1]: unsupported algorithm \"RS512\" (use HS256, "
                 "ES256, RS256 or EdDSA)");
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithms\":[]}}",
                 "config: $.auth.jwt.algorithms: must be a non-empty array of algorithm names");
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithms\":\"HS256\"}}",
                 "config: $.auth.jwt.algorithms: must be a non-empty array of algorithm names");
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithms\":[5]}}",
                 "config: $.auth.jwt.algorithms[0]: must be a string");
    expect_error("{\"jwt\":{\"secret\":" S ",\"algorithms\":[\"HS256\",\"ES256\"]}}",
                 "config: $.auth.jwt.algorithms[1]: ES256 needs \"jwksFile\" or \"jwksUrl\"");
}

Test(auth_config, hs256_needs_a_symmetric_key) {
    EVP_PKEY *ec = tu_key_ec();
    json_t *jwk = tu_jwk(ec, "k1");
    char *path = tu_write_jwks(&jwk, 1);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"jwt\":{\"jwksFile\":\"%s\",\"algorithms\":[\"ES256\",\"HS256\"]}}", path);
    expect_error(cfg, "config: $.auth.jwt.algorithms[1]: HS256 needs \"secret\" (or an \"oct\" key "
                      "in jwksFile)");
    json_decref(jwk);
    unlink(path);
    free(path);
    EVP_PKEY_free(ec);
}

Test(auth_config, jwks_file_must_be_readable_and_valid) {
    expect_error(
        "{\"jwt\":{\"jwksFile\":\"/nonexistent/jwks.json\"}}",
        "config: $.auth.jwt.jwksFile: cannot read \"/nonexistent/jwks.json\": No such file "
        "or directory");
    expect_error("{\"jwt\":{\"jwksFile\":\"\"}}",
                 "config: $.auth.jwt.jwksFile: must be a non-empty string");
    char *path = tu_write_temp("{\"keys\":[");
    char cfg[512];
    snprintf(cfg, sizeof cfg, "{\"jwt\":{\"jwksFile\":\"%s\"}}", path);
    expect_error_prefix(cfg, "config: $.auth.jwt.jwksFile: not JSON");
    unlink(path);
    free(path);
    expect_jwks_error(
        "{\"keys\":{}}",
        "config: $.auth.jwt.jwksFile: a JWKS must be an object with a \"keys\" array");
    expect_jwks_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
                      "config: $.auth.jwt.jwksFile: keys[0]: invalid EC key");
    expect_jwks_error(
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}",
        "config: $.auth.jwt.jwksFile: keys[0]: Ed25519 \"x\" must be 32 bytes of base64url");
    expect_jwks_error("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}]}",
                      "config: $.auth.jwt.jwksFile: keys[0]: \"oct\" key shorter than 32 bytes");
    expect_jwks_error("{\"keys\":[{\"kid\":\"a\"}]}",
                      "config: $.auth.jwt.jwksFile: keys[0]: \"kty\" must be a string");
    expect_jwks_error("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}]}",
                      "config: $.auth.jwt.jwksFile: no usable signing keys in \"{path}\"");
}

Test(auth_config, jwks_file_key_rules) {
    EVP_PKEY *small = EVP_RSA_gen(1024);
    cr_assert_not_null(small);
    json_t *jwk = tu_jwk(small, "small");
    char *text = json_dumps(jwk, JSON_COMPACT);
    char doc[4096];
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", text);
    expect_jwks_error(doc, "config: $.auth.jwt.jwksFile: keys[0]: RSA key shorter than 2048 bits");
    free(text);
    json_decref(jwk);
    EVP_PKEY_free(small);

    EVP_PKEY *ec = tu_key_ec();
    jwk = tu_jwk(ec, "dup");
    text = json_dumps(jwk, JSON_COMPACT);
    snprintf(doc, sizeof doc, "{\"keys\":[%s,%s]}", text, text);
    expect_jwks_error(doc, "config: $.auth.jwt.jwksFile: keys[1]: duplicate \"kid\"");
    free(text);
    json_object_set_new(jwk, "alg", json_string("HS256"));
    text = json_dumps(jwk, JSON_COMPACT);
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", text);
    expect_jwks_error(
        doc, "config: $.auth.jwt.jwksFile: keys[0]: \"alg\" HS256 does not fit kty \"EC\"");
    free(text);
    json_decref(jwk);
    EVP_PKEY_free(ec);
}

Test(auth_config, permission_rules_shape) {
#define T "{\"tokens\":{\"t\":{\"userId\":\"u\"}},\"permissions\":"
    expect_error(T "[]}", "config: $.auth.permissions: must be an object");
    expect_error(T "{\"rule\":[]}}", "config: $.auth.permissions.rule: unknown field");
    expect_error(T "{\"default\":\"maybe\"}}",
                 "config: $.auth.permissions.default: must be \"allow\" or \"deny\"");
    expect_error(T "{\"rules\":{}}}",
                 "config: $.auth.permissions.rules: must be an array of rules");
    expect_error(T "{\"rules\":[5]}}", "config: $.auth.permissions.rules[0]: must be an object");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\"},{\"allow\":\"*\"}]}}",
                 "config: $.auth.permissions.rules[1].role: must be a non-empty string");
    expect_error(T "{\"rules\":[{\"role\":\"a\"}]}}",
                 "config: $.auth.permissions.rules[0].allow: must be an operation pattern or an "
                 "array of them");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"store.*.x\"}]}}",
                 "config: $.auth.permissions.rules[0].allow: invalid operation pattern "
                 "\"store.*.x\" (use \"*\", \"ns.*\" or \"ns.op\")");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":[\"store.get\",\"*.get\"]}]}}",
                 "config: $.auth.permissions.rules[0].allow[1]: invalid operation pattern "
                 "\"*.get\" (use \"*\", \"ns.*\" or \"ns.op\")");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"store\"}]}}",
                 "config: $.auth.permissions.rules[0].allow: invalid operation pattern \"store\" "
                 "(use \"*\", \"ns.*\" or \"ns.op\")");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":[]}]}}",
                 "config: $.auth.permissions.rules[0].allow: must be a non-empty array of strings");
    expect_error(
        T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"buckets\":\"products\"}]}}",
        "config: $.auth.permissions.rules[0].buckets: must be a non-empty array of strings");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"buckets\":[\"a\",\"\"]}]}}",
                 "config: $.auth.permissions.rules[0].buckets[1]: must be a non-empty string");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"topics\":[\"order.*x\"]}]}}",
                 "config: $.auth.permissions.rules[0].topics[0]: invalid topic pattern "
                 "\"order.*x\" ('*' stands for a whole segment)");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"match\":[]}]}}",
                 "config: $.auth.permissions.rules[0].match: must be a non-empty object");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"match\":{\"data..x\":1}}]}}",
                 "config: $.auth.permissions.rules[0].match[\"data..x\"]: must be a dotted "
                 "request path like \"data.userId\"");
    expect_error(
        T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"match\":{\"key\":\"$session.id\"}}]}}",
        "config: $.auth.permissions.rules[0].match.key: unknown session value "
        "\"$session.id\" (only \"$session.userId\")");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"owner\":5}]}}",
                 "config: $.auth.permissions.rules[0].owner: must be a non-empty field name");
    expect_error(T "{\"rules\":[{\"role\":\"a\",\"allow\":\"*\",\"deny\":\"store.delete\"}]}}",
                 "config: $.auth.permissions.rules[0].deny: unknown field");
#undef T
}
