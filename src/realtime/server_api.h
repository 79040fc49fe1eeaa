/* server.* of the realtime protocol (spec §7): server.stats and server.connections. */
#ifndef SHOPD_REALTIME_SERVER_API_H
#define SHOPD_REALTIME_SERVER_API_H

#include <stdbool.h>

#include "realtime/realtime.h"
#include "rules/rules.h"
#include "store/store.h"

typedef struct {
    const char *name;
    bool auth_enabled;
    bool rate_limit_enabled;
    store_t *store;
    rules_t *rules; /* NULL when the rules engine is off */
} server_api_config_t;

/* The config is copied; its pointers are borrowed. */
void server_api_register(realtime_t *rt, const server_api_config_t *cfg);

#endif
