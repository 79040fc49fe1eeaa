/* Fuzz target: a token as `auth.login` receives it from a client, verified against a
 * static token table, an HS256 secret and a JWKS file with EC, RSA and Ed25519 keys
 * (fuzz/jwt_token.jwks). Checks that verification never crashes or leaks and always
 * answers exactly once, synchronously (no key source here needs a fetch). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

static auth_t *auth;
static uv_loop_t loop;
static int answers;

static void done(void *udata, int status, auth_identity_t *id, const err_t *err) {
    (void)udata, (void)err;
    answers++;
    if (status == 0) auth_identity_cleanup(id);
}

static void setup(void) {
    uv_loop_init(&loop);
    const char *dir = getenv("SHOPD_FUZZ_DIR");
    char jwks[512];
    snprintf(jwks, sizeof jwks, "%s/jwt_token.jwks", dir ? dir : "fuzz");
    json_t *cfg = json_pack("{s:b,s:{s:{s:s,s:[s]}},s:{s:s,s:s,s:[s,s,s,s],s:s,s:s}}", "required", 1,
                            "tokens", "dev-token", "userId", "u1", "roles", "customer", "jwt",
                            "secret", "0123456789abcdef0123456789abcdef", "jwksFile", jwks,
                            "algorithms", "HS256", "ES256", "RS256", "EdDSA", "issuer", "https://id.example",
                            "audience", "shopd");
    char errbuf[512] = "";
    auth = auth_new(&loop, cfg, errbuf, sizeof errbuf);
    json_decref(cfg);
    if (!auth) {
        fprintf(stderr, "fuzz setup: %s\n", errbuf);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!auth) setup();
    char *token = malloc(size + 1);
    memcpy(token, data, size);
    token[size] = '\0';
    answers = 0;
    auth_verify(auth, token, 1800000000000, done, NULL);
    if (answers != 1) abort(); /* every verification answers once, here synchronously */
    free(token);
    return 0;
}
