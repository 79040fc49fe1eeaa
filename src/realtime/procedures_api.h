/* procedures.* (extension): server-side commerce procedures over the shop layer.
 * procedures.call {name, input} answers the procedure's result; procedures.list lists
 * them with their input description. */
#ifndef SHOPD_REALTIME_PROCEDURES_API_H
#define SHOPD_REALTIME_PROCEDURES_API_H

#include "realtime/realtime.h"
#include "shop/shop.h"

void procedures_api_register(realtime_t *rt, shop_t *shop);

#endif
