/* Operations endpoints: GET /healthz (the process answers), GET /readyz (it accepts
 * work; 503 while shutting down) and GET /metrics (Prometheus text format). */
#ifndef SHOPD_APP_OPS_H
#define SHOPD_APP_OPS_H

#include "net/router.h"
#include "net/server.h"

/* Registers the three routes; *server is read at request time (borrowed). */
void ops_register(router_t *router, server_t *const *server);

#endif
