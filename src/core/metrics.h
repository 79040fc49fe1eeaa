/* Process-wide counters for /metrics. Updated only on the loop thread, so plain
 * integers suffice; modules add their own named counters with metrics_register. */
#ifndef SHOPD_CORE_METRICS_H
#define SHOPD_CORE_METRICS_H

#include <stdint.h>

#include "core/buf.h"

typedef struct {
    uint64_t connections_total;
    uint64_t http_active;
    uint64_t ws_active;
    uint64_t connections_refused;
    uint64_t http_status[600]; /* requests answered, by status code */
    uint64_t ws_messages_in;
    uint64_t ws_messages_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    int64_t started_ms;
} metrics_t;

extern metrics_t metrics;

/* An extra counter or gauge that a module exposes; `value` is read at scrape time. */
typedef struct metrics_extra {
    const char *name; /* full series name, labels included */
    const char *help;
    const char *type; /* "counter" or "gauge" */
    const uint64_t *value;
    struct metrics_extra *next;
} metrics_extra_t;

/* Registers an extra series; `m` must outlive the process's metrics use. */
void metrics_register(metrics_extra_t *m);
/* Renders the Prometheus text exposition format (version 0.0.4). */
void metrics_render(buf_t *out);

#endif
