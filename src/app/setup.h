/* Applies the application definition from the config file to the store: buckets and
 * queries are (re)defined at start, and the seed is inserted once into an empty store. */
#ifndef SHOPD_APP_SETUP_H
#define SHOPD_APP_SETUP_H

#include <jansson.h>
#include <stddef.h>

#include "store/store.h"

/* Returns 0, or -1 with a one-line message naming the JSON path of the bad part. */
int app_store_setup(store_t *st, const json_t *doc, char *errbuf, size_t errlen);

#endif
