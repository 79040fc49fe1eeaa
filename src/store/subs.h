/* Reactive subscriptions to named queries (spec §4.4).
 *
 * Subscriptions with the same query, parameters and (for queries that read
 * "$session.userId") user form one group: one evaluation and one serialised result
 * serve them all. Groups are indexed by what their query reads: a bucket, or for a
 * `get` query one key of a bucket. After each committed change set every affected
 * group is evaluated exactly once, and its subscribers are told only when the result
 * text differs from the last one sent. Evaluation happens at subs_flush(), which the
 * realtime layer calls after each request has been answered (so a writer sees its
 * result before the pushes it caused) and the loop calls before it blocks. Loop
 * thread only. */
#ifndef SHOPD_STORE_SUBS_H
#define SHOPD_STORE_SUBS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "store/store.h"

typedef struct subs subs_t;
typedef struct sub sub_t;

/* Tells one subscriber its query's new result (JSON text). */
typedef void (*subs_deliver_fn)(void *owner, const char *sub_id, const char *data, size_t len);

typedef struct {
    uint64_t evaluations; /* query evaluations caused by changes */
    uint64_t pushes;      /* results handed to subscribers */
    uint64_t shared_hits; /* subscriptions that joined an existing group */
    uint64_t unchanged;   /* evaluations whose result had not changed */
    uint64_t groups;      /* live groups (gauge) */
    uint64_t subscriptions; /* live subscriptions (gauge) */
} subs_counters_t;

/* Creates the registry and listens to the store's change sets. */
subs_t *subs_new(store_t *st, subs_deliver_fn deliver);
void subs_free(subs_t *s); /* NULL is fine; every subscription must be removed first */

/* Subscribes `owner` under `sub_id` (copied) to a query and appends the initial
 * result to `initial`. `visibility` (NULL: none) restricts the results to the records
 * a user owns; it is part of the group key. Returns the subscription, or NULL with err set. */
sub_t *subs_add(subs_t *s, void *owner, const char *sub_id, const char *query, const json_t *params,
                const store_session_t *session, const store_owner_t *visibility, buf_t *initial,
                err_t *err);
void subs_remove(subs_t *s, sub_t *sub);
/* Re-evaluates the groups that committed changes affected and delivers new results. */
void subs_flush(subs_t *s);

const subs_counters_t *subs_counters(const subs_t *s);

#endif
