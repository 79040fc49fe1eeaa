/* The auth.* operations of the realtime protocol (spec §6). */
#ifndef SHOPD_REALTIME_AUTH_API_H
#define SHOPD_REALTIME_AUTH_API_H

#include "auth/auth.h"
#include "realtime/realtime.h"

/* Registers auth.login, auth.logout and auth.whoami (only when auth is configured). */
void auth_api_register(realtime_t *rt, auth_t *auth);

#endif
