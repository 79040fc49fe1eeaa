/* The rules.* operations of the realtime protocol (spec §5): events, facts, topic
 * subscriptions held by sessions, and the rule admin operations. */
#ifndef SHOPD_REALTIME_RULES_API_H
#define SHOPD_REALTIME_RULES_API_H

#include "realtime/realtime.h"
#include "rules/rules.h"

void rules_api_register(realtime_t *rt, rules_t *rules);
/* The delivery function to give rules_new: pushes on the "event" channel. */
void rules_api_deliver(void *owner, const char *sub_id, const char *message, size_t len);
void rules_api_cleanup(void);

#endif
