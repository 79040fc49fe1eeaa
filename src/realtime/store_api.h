/* The store.* operations of the realtime protocol (spec §4): request decoding,
 * subscriptions held by sessions, and result encoding over the store engine. */
#ifndef SHOPD_REALTIME_STORE_API_H
#define SHOPD_REALTIME_STORE_API_H

#include "realtime/realtime.h"
#include "store/store.h"
#include "store/subs.h"

/* Registers every store.* handler. The store and registry must outlive the realtime
 * layer's sessions. With `auth` (NULL: none), each operation of a transaction passes
 * the permission policy on its own, and the policy's ownership field restricts reads,
 * writes and subscription results to the caller's records. */
void store_api_register(realtime_t *rt, store_t *st, subs_t *subs, auth_t *auth);

/* Frees the handlers' scratch memory (at exit). */
void store_api_cleanup(void);

/* The delivery function to give subs_new: pushes on the "subscription" channel. */
void store_api_deliver(void *owner, const char *sub_id, const char *data, size_t len);

#endif
