/* Prometheus text rendering of the process counters (see metrics.h). */
#include "core/metrics.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"

metrics_t metrics;
static metrics_extra_t *metrics_extras;

void metrics_register(metrics_extra_t *m) {
    m->next = metrics_extras;
    metrics_extras = m;
}

static void family(buf_t *out, const char *name, const char *type, const char *help) {
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render(buf_t *out) {
    family(out, "shopd_connections_active", "gauge", "Open connections by kind.");
    buf_printf(out, "shopd_connections_active{kind=\"http\"} %llu\n",
               (unsigned long long)metrics.http_active);
    buf_printf(out, "shopd_connections_active{kind=\"websocket\"} %llu\n",
               (unsigned long long)metrics.ws_active);
    family(out, "shopd_connections_total", "counter", "Connections accepted since start.");
    buf_printf(out, "shopd_connections_total %llu\n", (unsigned long long)metrics.connections_total);
    family(out, "shopd_connections_refused_total", "counter",
           "Connections refused because the connection limit was reached.");
    buf_printf(out, "shopd_connections_refused_total %llu\n",
               (unsigned long long)metrics.connections_refused);
    family(out, "shopd_http_requests_total", "counter", "HTTP requests answered, by status.");
    for (int s = 100; s < 600; s++)
        if (metrics.http_status[s])
            buf_printf(out, "shopd_http_requests_total{status=\"%d\"} %llu\n", s,
                       (unsigned long long)metrics.http_status[s]);
    family(out, "shopd_ws_messages_total", "counter", "WebSocket messages by direction.");
    buf_printf(out, "shopd_ws_messages_total{direction=\"in\"} %llu\n",
               (unsigned long long)metrics.ws_messages_in);
    buf_printf(out, "shopd_ws_messages_total{direction=\"out\"} %llu\n",
               (unsigned long long)metrics.ws_messages_out);
    family(out, "shopd_bytes_total", "counter", "Bytes read from and written to sockets.");
    buf_printf(out, "shopd_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)metrics.bytes_in);
    buf_printf(out, "shopd_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)metrics.bytes_out);
    family(out, "shopd_uptime_seconds", "gauge", "Seconds since the server started.");
    buf_printf(out, "shopd_uptime_seconds %.3f\n", (double)(clock_now_ms() - metrics.started_ms) / 1000.0);

    const char *last = "";
    for (metrics_extra_t *m = metrics_extras; m; m = m->next) {
        size_t base = strcspn(m->name, "{");
        if (strncmp(last, m->name, base) != 0 || (last[base] != '{' && last[base] != '\0')) {
            char fam[128];
            snprintf(fam, sizeof fam, "%.*s", (int)base, m->name);
            family(out, fam, m->type, m->help);
        }
        buf_printf(out, "%s %llu\n", m->name, (unsigned long long)*m->value);
        last = m->name;
    }
}
