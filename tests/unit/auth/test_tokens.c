/* Static tokens, identities and the login result's JSON. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>

#include "auth/auth.h"
#include "auth_test_util.h"
#include "core/log.h"

static const char tokens_config[] =
    "{\"tokens\":{"
    "\"customer-token-alice\":{\"userId\":\"user-alice\",\"roles\":[\"customer\"]},"
    "\"admin-token\":{\"userId\":\"admin-1\",\"roles\":[\"admin\"]},"
    "\"old-token\":{\"userId\":\"ghost\",\"expiresAt\":1600000000000},"
    "\"day-token\":{\"userId\":\"temp\",\"roles\":[],\"expiresAt\":1700000086400000}}}";

Test(auth_tokens, static_token_gives_its_identity) {
    auth_t *a = tu_auth(NULL, tokens_config);
    cr_expect(auth_required(a), "auth is required unless the config says otherwise");
    tu_result_t r = tu_verify(a, "customer-token-alice", TU_NOW_MS);
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_expect_str_eq(r.id.user_id, "user-alice");
    cr_expect(auth_identity_has_role(&r.id, "customer"));
    cr_expect_not(auth_identity_has_role(&r.id, "admin"));
    cr_expect_eq(r.id.expires_at, 0);
    buf_t out;
    buf_init(&out, 0);
    auth_identity_write(&r.id, &out);
    cr_expect_str_eq(buf_cstr(&out),
                     "{\"userId\":\"user-alice\",\"roles\":[\"customer\"],\"expiresAt\":null}");
    buf_cleanup(&out);
    tu_result_cleanup(&r);
    auth_free(a);
}

Test(auth_tokens, static_token_expiry) {
    auth_t *a = tu_auth(NULL, tokens_config);
    tu_result_t r = tu_verify(a, "old-token", TU_NOW_MS);
    cr_expect_eq(r.status, -1);
    cr_expect_eq(r.code, ERR_UNAUTHORIZED);
    cr_expect_str_eq(r.msg, "Token has expired");
    r = tu_verify(a, "day-token", TU_NOW_MS);
    cr_assert_eq(r.status, 0, "%s", r.msg);
    cr_expect_eq(r.id.expires_at, 1700000086400000LL);
    cr_expect_eq(r.id.role_count, 0);
    buf_t out;
    buf_init(&out, 0);
    auth_identity_write(&r.id, &out);
    cr_expect_str_eq(buf_cstr(&out),
                     "{\"userId\":\"temp\",\"roles\":[],\"expiresAt\":1700000086400000}");
    buf_cleanup(&out);
    tu_result_cleanup(&r);
    r = tu_verify(a, "day-token", 1700000086400000LL);
    cr_expect_str_eq(r.msg, "Token has expired", "expired at exactly expiresAt");
    auth_free(a);
}

Test(auth_tokens, unknown_and_odd_tokens_are_invalid) {
    auth_t *a = tu_auth(NULL, tokens_config);
    const char *bad[] = {"", "customer-token-alic", "customer-token-alice ",
                         "CUSTOMER-TOKEN-ALICE"};
    for (size_t i = 0; i < 4; i++) {
        tu_result_t r = tu_verify(a, bad[i], TU_NOW_MS);
        cr_expect_eq(r.status, -1, "\"%s\"", bad[i]);
        cr_expect_str_eq(r.msg, "Invalid token");
    }
    tu_result_t r;
    memset(&r, 0, sizeof r);
    auth_verify(NULL, "admin-token", TU_NOW_MS, tu_result_cb, &r);
    cr_expect_eq(r.called, 1);
    cr_expect_eq(r.status, -1);
    auth_free(a);
}

Test(auth_tokens, static_tokens_are_looked_up_before_jwt) {
    auth_t *a = tu_auth(NULL, "{\"required\":false,\"tokens\":{\"dev\":{\"userId\":\"d\"}},"
                              "\"jwt\":{\"secret\":\"" TU_SECRET "\"}}");
    cr_expect_not(auth_required(a));
    tu_result_t r = tu_verify(a, "dev", TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    tu_result_cleanup(&r);
    char *tok =
        tu_jwt_hmac("{\"alg\":\"HS256\"}", "{\"sub\":\"jwt-user\"}", TU_SECRET, strlen(TU_SECRET));
    r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, 0, "%s", r.msg);
    cr_expect_str_eq(r.id.user_id, "jwt-user");
    tu_result_cleanup(&r);
    free(tok);
    auth_free(a);
}

Test(auth_tokens, identity_json_escapes_strings) {
    char *roles[] = {"a\"b", "c\\d"};
    auth_identity_t id = {"u\n1", roles, 2, 5};
    buf_t out;
    buf_init(&out, 0);
    auth_identity_write(&id, &out);
    cr_expect_str_eq(buf_cstr(&out),
                     "{\"userId\":\"u\\n1\",\"roles\":[\"a\\\"b\",\"c\\\\d\"],\"expiresAt\":5}");
    buf_cleanup(&out);
    cr_expect_not(auth_identity_has_role(NULL, "a"));
    auth_identity_cleanup(NULL);
}

static void capture_stderr(void) {
    cr_redirect_stderr();
}

Test(auth_tokens, failures_are_logged_with_a_reason_but_never_the_token, .init = capture_stderr) {
    log_setup(LOG_TEXT, LOG_DEBUG);
    auth_t *a = tu_auth(NULL, "{\"jwt\":{\"secret\":\"" TU_SECRET "\"}}");
    char *tok = tu_jwt_hmac("{\"alg\":\"HS256\"}", "{\"sub\":\"u\"}",
                            "wrong-secret-wrong-secret-wrong!!", 33);
    tu_result_t r = tu_verify(a, tok, TU_NOW_MS);
    cr_expect_eq(r.status, -1);
    auth_free(a);
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char logs[4096] = {0};
    size_t n = fread(logs, 1, sizeof logs - 1, f);
    logs[n] = '\0';
    cr_expect_not_null(strstr(logs, "auth.verify_failed reason=bad_signature"), "logs: %s", logs);
    char *dot = strchr(tok, '.');
    *dot = '\0'; /* the token's header part alone must not appear either */
    cr_expect_null(strstr(logs, tok), "the token leaked into the log");
    free(tok);
}
