/* Config → store definitions (see setup.h). */
#include "app/setup.h"

#include <stdio.h>

#include "core/log.h"

int app_store_setup(store_t *st, const json_t *doc, char *errbuf, size_t errlen) {
    err_t err = ERR_INIT;
    const char *name;
    json_t *def;
    json_t *buckets = json_object_get(doc, "buckets");
    json_t *queries = json_object_get(doc, "queries");
    json_t *seed = json_object_get(doc, "seed");
    if (buckets && !json_is_object(buckets)) {
        snprintf(errbuf, errlen, "config: $.buckets must be an object of bucket definitions");
        return -1;
    }
    if (queries && !json_is_object(queries)) {
        snprintf(errbuf, errlen, "config: $.queries must be an object of query definitions");
        return -1;
    }
    json_object_foreach(buckets, name, def) {
        if (store_define_bucket(st, name, def, true, &err) < 0) {
            json_t *first = json_array_get(err.details, 0);
            const char *why = first ? json_string_value(json_object_get(first, "message")) : NULL;
            snprintf(errbuf, errlen, "config: $.buckets.%s: %s", name, why ? why : err.msg);
            err_clear(&err);
            return -1;
        }
    }
    json_object_foreach(queries, name, def) {
        if (store_define_query(st, name, def, true, &err) < 0) {
            snprintf(errbuf, errlen, "config: $.queries.%s: %s", name, err.msg);
            err_clear(&err);
            return -1;
        }
    }
    int n = store_seed(st, seed, &err);
    if (n < 0) {
        snprintf(errbuf, errlen, "config: $.%s", err.msg);
        err_clear(&err);
        return -1;
    }
    if (n > 0) log_info("store.seeded", "records=%d", n);
    return 0;
}
