/* Authentication, permissions and rate limits (spec/realtime-protocol.md §6, §7).
 *
 * Configuration is the config file's `auth` object:
 *   { "required": true,
 *     "tokens": { "<token>": { "userId": "…", "roles": ["…"], "expiresAt": <ms>? } },
 *     "jwt": { "issuer": "…", "audience": "…" | ["…"], "algorithms": ["ES256", …],
 *              "secret": "…" (HS256) | "jwksFile": "path" | "jwksUrl": "http(s)://…",
 *              "rolesClaim": "roles", "clockSkewSec": 30,
              "jwksRefreshMinMs": 60000 },
 *     "permissions": { "default": "deny" | "allow", "rules": [ … ] } }
 * and the top-level `rateLimit` { "maxRequests": n, "windowMs": ms }.
 *
 * Tokens: the static table is looked up first (development; a warning is logged at
 * start when it is present), then JWT verification with cjose for HS256, ES256 and
 * RS256 and with OpenSSL for EdDSA (Ed25519): `alg: none` and algorithms outside the
 * configured list are refused (no algorithm confusion: the key type must fit the
 * algorithm), `iss`, `aud`, `exp`, `nbf`, `iat` are checked with the clock skew,
 * `sub` is the user id, roles come from `rolesClaim` (an array of strings, or one
 * space-separated string), `exp` plus the clock skew is the session's expiry. A
 * token whose key is not known makes shopd fetch a `jwksUrl` again, at most once per
 * `jwksRefreshMinMs` (default one minute). Tokens longer than
 * AUTH_MAX_TOKEN bytes are refused without parsing.
 *
 * Permission rules, checked in order; the first that matches allows:
 *   { "role": "customer", "allow": "store.get" | "store.*" | "*" | [ … ],
 *     "buckets": [ … ]?, "topics": [ … ]?,
 *     "match": { "<request field path>": "$session.userId" | <JSON value> }?,
 *     "owner": "<record field>"? }
 * A rule matches when the session has the role, the operation matches a pattern, the
 * resource is in `buckets` (store.*) or matches one of `topics` (rules.*, topic
 * patterns with '*') when those are given, and every `match` entry holds (the
 * request's value at that dotted path, e.g. "params.userId" or "data.userId", equals
 * the session's user id or the given value). `owner` makes the rule an ownership
 * rule: the caller then sees and writes only records whose `owner` field equals their
 * user id; auth_permit reports the field and the store enforces it. No matching rule:
 * the policy's `default`.
 *
 * Loop thread only, except where a function says otherwise. */
#ifndef SHOPD_AUTH_AUTH_H
#define SHOPD_AUTH_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/err.h"

#define AUTH_MAX_TOKEN 8192
#define AUTH_MAX_ROLES 32

typedef struct auth auth_t;

typedef struct {
    char *user_id;
    char **roles;
    size_t role_count;
    int64_t expires_at; /* ms epoch; 0 = does not expire */
} auth_identity_t;

/* Builds the auth layer from the config's `auth` object (NULL or absent: returns NULL
 * with no error — auth disabled). On a bad configuration returns NULL and writes one
 * line naming the JSON path ("config: $.auth.jwt.algorithms[1]: …") into errbuf
 * (errbuf is emptied first, so errbuf[0] tells the two NULL cases apart).
 * The loop is used for JWKS URL refreshes (a worker thread fetches). */
auth_t *auth_new(uv_loop_t *loop, const json_t *config, char *errbuf, size_t errlen);
void auth_free(auth_t *a); /* NULL is fine */
/* Closes the handles auth owns (before the loop ends). */
void auth_close(auth_t *a);
bool auth_required(const auth_t *a);
bool auth_has_policy(const auth_t *a);

void auth_identity_cleanup(auth_identity_t *id);
bool auth_identity_has_role(const auth_identity_t *id, const char *role);
/* Appends the identity as the protocol's login result {"userId","roles","expiresAt"}. */
void auth_identity_write(const auth_identity_t *id, buf_t *out);

/* Verifies a token. Calls done exactly once: at once for static tokens, HS256, JWKS
 * files and known keys; later when a JWKS URL had to be fetched for an unknown `kid`
 * (at most once a minute). On failure err is UNAUTHORIZED "Invalid token" or
 * "Token has expired"; on success `id` is filled (the callee owns it after the call;
 * move it out with a struct copy). `now_ms` is the wall clock.
 * Callback arguments: status 0 with `id` non-NULL and err->code ERR_NONE, or status -1
 * with `id` NULL; `err` is never NULL and is valid only during the call. The callback
 * must not free `a`. auth_close() fails verifications still waiting for a fetch at
 * once ("Invalid token"); run the loop after auth_close() so a fetch in flight ends
 * (it is aborted) before auth_free(). */
typedef void (*auth_verify_cb)(void *udata, int status, auth_identity_t *id, const err_t *err);
void auth_verify(auth_t *a, const char *token, int64_t now_ms, auth_verify_cb done, void *udata);

/* Decides whether `who` (NULL: no session) may run `op` on `resource` with `request`.
 * Returns true to allow; *owner_field_out (when given) is set to the ownership field
 * of the rule that allowed, or NULL. When no policy is configured everything is
 * allowed. */
bool auth_permit(const auth_t *a, const auth_identity_t *who, const char *op, const char *resource,
                 const json_t *request, const char **owner_field_out);
/* auth_permit, also saying whether the decision may be reused: *reusable is false
 * when a rule's `match` consulted the request. A reusable decision holds for the same
 * identity, operation and resource for as long as the server runs (the policy is fixed
 * at start). */
bool auth_permit_reusable(const auth_t *a, const auth_identity_t *who, const char *op, const char *resource,
                          const json_t *request, const char **owner_field_out, bool *reusable);

/* ---- rate limiting: a sliding window per key ---- */

typedef struct ratelimit ratelimit_t;

/* NULL when config (the `rateLimit` object) is absent; errbuf on a bad one. */
ratelimit_t *ratelimit_new(const json_t *config, char *errbuf, size_t errlen);
void ratelimit_free(ratelimit_t *rl);
/* Counts one request for key at now_ms. Returns 0 when allowed, else the number of
 * milliseconds until a request would be allowed (≥ 1). Memory stays bounded: keys
 * idle for a whole window are forgotten. */
uint64_t ratelimit_hit(ratelimit_t *rl, const char *key, uint64_t now_ms);
uint32_t ratelimit_max(const ratelimit_t *rl);
/* Number of keys currently tracked (for stats and tests). */
size_t ratelimit_key_count(const ratelimit_t *rl);

#endif
