/* How shopd is started: command line, SHOPD_* environment and the JSON config file,
 * merged with the precedence flag > environment > file > default
 * (spec/configuration.md). Every field is checked here, at start; a bad one stops
 * the process with one line naming the flag, variable or JSON path, so the server
 * never starts half-configured. */
#ifndef SHOPD_APP_CONFIG_H
#define SHOPD_APP_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

typedef enum { CONFIG_SERVE, CONFIG_MIGRATE, CONFIG_VERSION, CONFIG_HELP } config_command_t;

typedef struct {
    config_command_t command;
    char *config_path; /* NULL when no file */
    char *name;
    char *host;
    int port;
    char *path; /* realtime WebSocket path */
    char *data_dir;
    char *public_dir;
    char *database;
    char *redis_url;
    log_format_t log_format;
    log_level_t log_level;
    size_t max_payload_bytes;
    uint64_t heartbeat_interval_ms;
    uint64_t heartbeat_timeout_ms;
    size_t backpressure_max_buffered;
    double backpressure_high_water;
    size_t max_subscriptions_per_connection;
    size_t max_subscriptions_total;
    size_t event_log_max; /* events kept in the rules engine's log */
    uint64_t shutdown_grace_ms;
    size_t http_max_body;
    uint64_t http_header_timeout_ms;
    uint64_t http_idle_timeout_ms;
    size_t http_max_connections;
    json_t *doc; /* the whole config document (an empty object without a file); owned */
} config_t;

/* Fills cfg from argv, the environment (`getenv`) and the config file. Returns 0, or
 * -1 with a one-line message (without the "shopd: " prefix) in errbuf. cfg must be
 * released with config_cleanup in both cases. */
int config_load(config_t *cfg, int argc, char **argv, char *errbuf, size_t errlen);
void config_cleanup(config_t *cfg);

/* The --help text. */
const char *config_usage(void);

#endif
