/* The auth layer's front: the `auth` config object, identities and the static token
 * table (see auth.h). JWT verification lives in jwt.c, the permission policy in
 * policy.c and the rate limiter in ratelimit.c; this file ties them together.
 *
 * Every verification ends in auth_finish(), which is the one place that turns an
 * outcome into the client-visible error ("Invalid token" / "Token has expired") and
 * logs the reason at debug level. Tokens themselves are never logged. */
#include "auth/auth_int.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"

typedef struct {
    char *user_id;
    char **roles;
    size_t role_count;
    int64_t expires_at; /* ms epoch; 0 = never */
} auth_static_token_t;

/* ---- config helpers ---- */

int auth_cfg_fail(char *errbuf, size_t errlen, const char *path, const char *fmt, ...) {
    if (!errbuf || !errlen) return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(errbuf, errlen, "config: %s: %s", path, msg);
    return -1;
}

static bool is_plain_name(const char *s) {
    if (!*s) return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void auth_cfg_path_key(char *out, size_t size, const char *parent, const char *name) {
    if (is_plain_name(name)) {
        snprintf(out, size, "%s.%s", parent, name);
        return;
    }
    /* Quote the name as a JSON string so that dots and brackets stay unambiguous. */
    buf_t b;
    buf_init(&b, 0);
    json_write_string(&b, name, strlen(name));
    snprintf(out, size, "%s[%s]", parent, buf_cstr(&b));
    buf_cleanup(&b);
}

int auth_cfg_known_fields(const json_t *obj, const char *path, const char *const *known,
                          char *errbuf, size_t errlen) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            if (strcmp(key, known[i]) == 0) ok = true;
        if (!ok) {
            char p[512];
            auth_cfg_path_key(p, sizeof p, path, key);
            return auth_cfg_fail(errbuf, errlen, p, "unknown field");
        }
    }
    return 0;
}

void auth_strv_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int auth_cfg_string_array(const json_t *v, const char *path, size_t max, char ***out, size_t *count,
                          char *errbuf, size_t errlen) {
    if (!json_is_array(v) || json_array_size(v) == 0)
        return auth_cfg_fail(errbuf, errlen, path, "must be a non-empty array of strings");
    size_t n = json_array_size(v);
    if (n > max) return auth_cfg_fail(errbuf, errlen, path, "at most %zu entries", max);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || json_string_length(e) == 0) {
            char p[512];
            auth_path(p, sizeof p, "%s[%zu]", path, i);
            return auth_cfg_fail(errbuf, errlen, p, "must be a non-empty string");
        }
    }
    char **arr = xcalloc(n, sizeof *arr);
    for (size_t i = 0; i < n; i++) arr[i] = xstrdup(json_string_value(json_array_get(v, i)));
    *out = arr;
    *count = n;
    return 0;
}

/* ---- identities ---- */

void auth_identity_make(auth_identity_t *id, const char *user_id, char *const *roles, size_t n,
                        int64_t expires_at) {
    id->user_id = xstrdup(user_id);
    id->roles = n ? xcalloc(n, sizeof *id->roles) : NULL;
    for (size_t i = 0; i < n; i++) id->roles[i] = xstrdup(roles[i]);
    id->role_count = n;
    id->expires_at = expires_at;
}

void auth_identity_cleanup(auth_identity_t *id) {
    if (!id) return;
    free(id->user_id);
    auth_strv_free(id->roles, id->role_count);
    memset(id, 0, sizeof *id);
}

bool auth_identity_has_role(const auth_identity_t *id, const char *role) {
    if (!id || !role) return false;
    for (size_t i = 0; i < id->role_count; i++)
        if (strcmp(id->roles[i], role) == 0) return true;
    return false;
}

void auth_identity_write(const auth_identity_t *id, buf_t *out) {
    buf_append_str(out, "{\"userId\":");
    const char *uid = id->user_id ? id->user_id : "";
    json_write_string(out, uid, strlen(uid));
    buf_append_str(out, ",\"roles\":[");
    for (size_t i = 0; i < id->role_count; i++) {
        if (i) buf_append_char(out, ',');
        json_write_string(out, id->roles[i], strlen(id->roles[i]));
    }
    buf_append_str(out, "],\"expiresAt\":");
    if (id->expires_at > 0)
        buf_printf(out, "%lld", (long long)id->expires_at);
    else
        buf_append_str(out, "null");
    buf_append_char(out, '}');
}

void auth_finish(auth_verify_cb done, void *udata, auth_outcome_t outcome, auth_identity_t *id,
                 const char *reason) {
    err_t err = ERR_INIT;
    if (outcome == AUTH_OK) {
        done(udata, 0, id, &err);
        return;
    }
    log_debug("auth.verify_failed", "reason=%s", reason ? reason : "unknown");
    err_set(&err, ERR_UNAUTHORIZED, "%s",
            outcome == AUTH_EXPIRED ? "Token has expired" : "Invalid token");
    done(udata, -1, NULL, &err);
    err_clear(&err);
}

/* ---- static tokens ---- */

static void token_digest(const char *token, size_t len, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL);
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

static void static_token_free(auth_static_token_t *t) {
    if (!t) return;
    free(t->user_id);
    auth_strv_free(t->roles, t->role_count);
    free(t);
}

static int static_token_parse(const char *token, const json_t *v, const char *path,
                              auth_static_token_t **out, char *errbuf, size_t errlen) {
    static const char *const known[] = {"userId", "roles", "expiresAt", NULL};
    char p[512];
    if (strlen(token) == 0 || strlen(token) > AUTH_MAX_TOKEN)
        return auth_cfg_fail(errbuf, errlen, path, "a token must be 1 to %d bytes", AUTH_MAX_TOKEN);
    if (!json_is_object(v)) return auth_cfg_fail(errbuf, errlen, path, "must be an object");
    if (auth_cfg_known_fields(v, path, known, errbuf, errlen) < 0) return -1;

    const json_t *uid = json_object_get(v, "userId");
    if (!json_is_string(uid) || json_string_length(uid) == 0) {
        auth_path(p, sizeof p, "%s.userId", path);
        return auth_cfg_fail(errbuf, errlen, p, "must be a non-empty string");
    }
    auth_static_token_t *t = xcalloc(1, sizeof *t);
    t->user_id = xstrdup(json_string_value(uid));
    const json_t *roles = json_object_get(v, "roles");
    if (roles) {
        auth_path(p, sizeof p, "%s.roles", path);
        /* An empty roles array is allowed here: a user without roles. */
        if (json_is_array(roles) && json_array_size(roles) == 0)
            roles = NULL;
        else if (auth_cfg_string_array(roles, p, AUTH_MAX_ROLES, &t->roles, &t->role_count, errbuf,
                                       errlen) < 0)
            goto fail;
    }
    const json_t *exp = json_object_get(v, "expiresAt");
    if (exp) {
        if (!json_is_integer(exp) || json_integer_value(exp) < 0) {
            auth_path(p, sizeof p, "%s.expiresAt", path);
            auth_cfg_fail(errbuf, errlen, p, "must be a non-negative integer (ms since the epoch)");
            goto fail;
        }
        t->expires_at = json_integer_value(exp);
    }
    *out = t;
    return 0;
fail:
    static_token_free(t);
    return -1;
}

static int tokens_parse(auth_t *a, const json_t *tokens, char *errbuf, size_t errlen) {
    if (!json_is_object(tokens))
        return auth_cfg_fail(errbuf, errlen, "$.auth.tokens", "must be an object");
    const char *token;
    json_t *v;
    json_object_foreach((json_t *)tokens, token, v) {
        char p[512];
        auth_cfg_path_key(p, sizeof p, "$.auth.tokens", token);
        auth_static_token_t *t = NULL;
        if (static_token_parse(token, v, p, &t, errbuf, errlen) < 0) return -1;
        char hex[65];
        token_digest(token, strlen(token), hex);
        static_token_free(strmap_put(&a->tokens, hex, t));
    }
    return 0;
}

/* ---- the auth object ---- */

auth_t *auth_new(uv_loop_t *loop, const json_t *config, char *errbuf, size_t errlen) {
    static const char *const known[] = {"required", "tokens", "jwt", "permissions", NULL};
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!config || json_is_null(config)) return NULL;
    if (!json_is_object(config)) {
        auth_cfg_fail(errbuf, errlen, "$.auth", "must be an object");
        return NULL;
    }
    if (auth_cfg_known_fields(config, "$.auth", known, errbuf, errlen) < 0) return NULL;

    auth_t *a = xcalloc(1, sizeof *a);
    a->loop = loop;
    a->required = true;
    strmap_init(&a->tokens);

    const json_t *req = json_object_get(config, "required");
    if (req) {
        if (!json_is_boolean(req)) {
            auth_cfg_fail(errbuf, errlen, "$.auth.required", "must be true or false");
            goto fail;
        }
        a->required = json_is_true(req);
    }
    const json_t *tokens = json_object_get(config, "tokens");
    const json_t *jwt = json_object_get(config, "jwt");
    if (!tokens && !jwt) {
        auth_cfg_fail(errbuf, errlen, "$.auth", "needs \"tokens\" or \"jwt\" (no way to log in)");
        goto fail;
    }
    if (tokens && tokens_parse(a, tokens, errbuf, errlen) < 0) goto fail;
    if (jwt) {
        a->jwt = auth_jwt_new(loop, jwt, "$.auth.jwt", errbuf, errlen);
        if (!a->jwt) goto fail;
    }
    const json_t *perms = json_object_get(config, "permissions");
    if (perms) {
        a->policy = auth_policy_new(perms, "$.auth.permissions", errbuf, errlen);
        if (!a->policy) goto fail;
    }
    if (a->tokens.count)
        log_warn("auth.static_tokens", "count=%zu note=\"static tokens are for development\"",
                 a->tokens.count);
    return a;
fail:
    auth_free(a);
    return NULL;
}

void auth_close(auth_t *a) {
    if (!a || a->closed) return;
    a->closed = true;
    if (a->jwt) auth_jwt_close(a->jwt);
}

void auth_free(auth_t *a) {
    if (!a) return;
    const char *key;
    void *v;
    for (size_t i = 0; strmap_next(&a->tokens, &i, &key, &v);) static_token_free(v);
    strmap_cleanup(&a->tokens);
    auth_jwt_free(a->jwt);
    auth_policy_free(a->policy);
    free(a);
}

bool auth_required(const auth_t *a) {
    return a && a->required;
}

bool auth_has_policy(const auth_t *a) {
    return a && a->policy;
}

void auth_verify(auth_t *a, const char *token, int64_t now_ms, auth_verify_cb done, void *udata) {
    if (!a || !token) {
        auth_finish(done, udata, AUTH_INVALID, NULL, "no_token");
        return;
    }
    size_t len = strnlen(token, AUTH_MAX_TOKEN + 1);
    if (len == 0 || len > AUTH_MAX_TOKEN) {
        auth_finish(done, udata, AUTH_INVALID, NULL, len ? "too_long" : "empty");
        return;
    }
    if (a->tokens.count) {
        char hex[65];
        token_digest(token, len, hex);
        const auth_static_token_t *t = strmap_get(&a->tokens, hex);
        if (t) {
            if (t->expires_at && now_ms >= t->expires_at) {
                auth_finish(done, udata, AUTH_EXPIRED, NULL, "static_token_expired");
                return;
            }
            auth_identity_t id;
            auth_identity_make(&id, t->user_id, t->roles, t->role_count, t->expires_at);
            auth_finish(done, udata, AUTH_OK, &id, NULL);
            return;
        }
    }
    if (!a->jwt) {
        auth_finish(done, udata, AUTH_INVALID, NULL, "unknown_static_token");
        return;
    }
    auth_jwt_verify(a->jwt, token, len, now_ms, done, udata);
}

bool auth_permit(const auth_t *a, const auth_identity_t *who, const char *op, const char *resource,
                 const json_t *request, const char **owner_field_out) {
    return auth_permit_reusable(a, who, op, resource, request, owner_field_out, NULL);
}

bool auth_permit_reusable(const auth_t *a, const auth_identity_t *who, const char *op, const char *resource,
                          const json_t *request, const char **owner_field_out, bool *reusable) {
    if (reusable) *reusable = true;
    if (owner_field_out) *owner_field_out = NULL;
    if (!a || !a->policy) return true;
    if (!who) {
        /* Protocol §6: without a session, permissions apply only when auth is optional
         * (and then not at all); a required-auth server never gets here without one,
         * and refuses if it does. */
        return !a->required;
    }
    return auth_policy_permit(a->policy, who, op, resource, request, owner_field_out, reusable);
}

void auth_path(char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}
