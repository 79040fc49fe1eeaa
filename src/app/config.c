/* Configuration loading (see config.h). The order of work is: parse the flags into
 * overrides, find the config file (flag, then SHOPD_CONFIG), read and type-check it,
 * then apply the environment and finally the flags, each checked the same way. */
#include "app/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static const char usage_text[] =
    "Usage:\n"
    "  shopd serve   [--config FILE] [--host H] [--port N] [--data-dir DIR]\n"
    "                [--log-format text|json] [--log-level debug|info|warn|error]\n"
    "                [--public-dir DIR]\n"
    "  shopd migrate [--config FILE] [--data-dir DIR]\n"
    "  shopd --version\n"
    "  shopd --help\n"
    "\n"
    "Options override SHOPD_* environment variables, which override the config file.\n"
    "Environment: SHOPD_CONFIG, SHOPD_HOST, SHOPD_PORT, SHOPD_DATA_DIR, SHOPD_PUBLIC_DIR,\n"
    "  SHOPD_LOG_FORMAT, SHOPD_LOG_LEVEL, SHOPD_DATABASE_URL, SHOPD_REDIS_URL.\n"
    "--port 0 binds a free port and prints \"listening on http://HOST:PORT\".\n";

const char *config_usage(void) { return usage_text; }

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void set_str(char **dst, const char *v) {
    free(*dst);
    *dst = v ? xstrdup(v) : NULL;
}

static void config_defaults(config_t *c) {
    memset(c, 0, sizeof *c);
    c->command = CONFIG_SERVE;
    c->name = xstrdup("shopd");
    c->host = xstrdup("0.0.0.0");
    c->port = 8080;
    c->path = xstrdup("/");
    c->data_dir = xstrdup("./data");
    c->public_dir = xstrdup("./public");
    c->database = xstrdup("sqlite");
    c->log_format = LOG_TEXT;
    c->log_level = LOG_INFO;
    c->max_payload_bytes = 1048576;
    c->heartbeat_interval_ms = 30000;
    c->heartbeat_timeout_ms = 10000;
    c->backpressure_max_buffered = 1048576;
    c->backpressure_high_water = 0.8;
    c->max_subscriptions_per_connection = 100;
    c->max_subscriptions_total = 1000000;
    c->event_log_max = 10000;
    c->shutdown_grace_ms = 5000;
    c->http_max_body = 1048576;
    c->http_header_timeout_ms = 10000;
    c->http_idle_timeout_ms = 60000;
    c->http_max_connections = 20000;
}

void config_cleanup(config_t *c) {
    free(c->config_path);
    free(c->name);
    free(c->host);
    free(c->path);
    free(c->data_dir);
    free(c->public_dir);
    free(c->database);
    free(c->redis_url);
    json_decref(c->doc);
    memset(c, 0, sizeof *c);
}

/* ---- value parsers shared by flags, environment and file ---- */

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    if (!s || !*s) return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_log_format(const char *s, log_format_t *out) {
    if (strcmp(s, "text") == 0) *out = LOG_TEXT;
    else if (strcmp(s, "json") == 0) *out = LOG_JSON;
    else return -1;
    return 0;
}

static int parse_log_level(const char *s, log_level_t *out) {
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    return -1;
}

/* ---- the overridable settings, by name, for flags and environment ---- */

typedef enum { OPT_STR, OPT_PORT, OPT_LOG_FORMAT, OPT_LOG_LEVEL } opt_kind_t;

typedef struct {
    const char *flag; /* "--port" */
    const char *env;  /* "SHOPD_PORT" */
    opt_kind_t kind;
    size_t offset; /* into config_t */
    int serve_only;
} opt_t;

#define OFF(f) offsetof(config_t, f)
static const opt_t opts[] = {
    {"--host", "SHOPD_HOST", OPT_STR, OFF(host), 1},
    {"--port", "SHOPD_PORT", OPT_PORT, OFF(port), 1},
    {"--data-dir", "SHOPD_DATA_DIR", OPT_STR, OFF(data_dir), 0},
    {"--public-dir", "SHOPD_PUBLIC_DIR", OPT_STR, OFF(public_dir), 1},
    {"--log-format", "SHOPD_LOG_FORMAT", OPT_LOG_FORMAT, OFF(log_format), 1},
    {"--log-level", "SHOPD_LOG_LEVEL", OPT_LOG_LEVEL, OFF(log_level), 1},
    {NULL, "SHOPD_DATABASE_URL", OPT_STR, OFF(database), 0},
    {NULL, "SHOPD_REDIS_URL", OPT_STR, OFF(redis_url), 0},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static int opt_apply(config_t *c, const opt_t *o, const char *value, const char *source,
                     char *errbuf, size_t errlen) {
    char *base = (char *)c + o->offset;
    switch (o->kind) {
    case OPT_STR:
        if (!*value) return fail(errbuf, errlen, "%s must not be empty", source);
        set_str((char **)(void *)base, value);
        return 0;
    case OPT_PORT: {
        uint64_t v;
        if (parse_u64(value, 0, 65535, &v) < 0)
            return fail(errbuf, errlen, "%s: invalid port \"%s\" (expected 0-65535)", source, value);
        *(int *)(void *)base = (int)v;
        return 0;
    }
    case OPT_LOG_FORMAT:
        if (parse_log_format(value, (log_format_t *)(void *)base) < 0)
            return fail(errbuf, errlen, "%s: invalid log format \"%s\" (expected text or json)",
                        source, value);
        return 0;
    case OPT_LOG_LEVEL:
        if (parse_log_level(value, (log_level_t *)(void *)base) < 0)
            return fail(errbuf, errlen,
                        "%s: invalid log level \"%s\" (expected debug, info, warn, error or off)",
                        source, value);
        return 0;
    }
    return 0;
}

/* ---- the config file ---- */

typedef enum { F_STR, F_PORT, F_U64, F_SIZE, F_RATIO, F_LOG_FORMAT } field_kind_t;

typedef struct {
    const char *path; /* dotted path inside the document, e.g. "heartbeat.intervalMs" */
    field_kind_t kind;
    size_t offset;
    uint64_t min, max;
} field_t;

static const field_t fields[] = {
    {"name", F_STR, OFF(name), 0, 0},
    {"host", F_STR, OFF(host), 0, 0},
    {"port", F_PORT, OFF(port), 0, 65535},
    {"path", F_STR, OFF(path), 0, 0},
    {"dataDir", F_STR, OFF(data_dir), 0, 0},
    {"database", F_STR, OFF(database), 0, 0},
    {"redisUrl", F_STR, OFF(redis_url), 0, 0},
    {"logFormat", F_LOG_FORMAT, OFF(log_format), 0, 0},
    {"maxPayloadBytes", F_SIZE, OFF(max_payload_bytes), 128, 64u << 20},
    {"heartbeat.intervalMs", F_U64, OFF(heartbeat_interval_ms), 10, 86400000},
    {"heartbeat.timeoutMs", F_U64, OFF(heartbeat_timeout_ms), 10, 86400000},
    {"backpressure.maxBufferedBytes", F_SIZE, OFF(backpressure_max_buffered), 1024, 1u << 30},
    {"backpressure.highWaterMark", F_RATIO, OFF(backpressure_high_water), 0, 1},
    {"connectionLimits.maxSubscriptionsPerConnection", F_SIZE,
     OFF(max_subscriptions_per_connection), 0, 1000000},
    {"connectionLimits.maxSubscriptionsTotal", F_SIZE, OFF(max_subscriptions_total), 0, 100000000},
    {"eventLog.maxEvents", F_SIZE, OFF(event_log_max), 1, 100000000},
    {"shutdown.gracePeriodMs", F_U64, OFF(shutdown_grace_ms), 0, 600000},
    {"http.maxBodyBytes", F_SIZE, OFF(http_max_body), 0, 1u << 30},
    {"http.headerTimeoutMs", F_U64, OFF(http_header_timeout_ms), 10, 3600000},
    {"http.idleTimeoutMs", F_U64, OFF(http_idle_timeout_ms), 10, 86400000},
    {"http.maxConnections", F_SIZE, OFF(http_max_connections), 1, 1000000},
    {"http.publicDir", F_STR, OFF(public_dir), 0, 0},
};

/* Finds a dotted path in doc; returns NULL when absent. Fails (with message) when an
 * intermediate value exists but is not an object. */
static int doc_lookup(json_t *doc, const char *path, json_t **out, char *errbuf, size_t errlen) {
    char part[64];
    const char *p = path;
    json_t *cur = doc;
    *out = NULL;
    while (*p) {
        size_t n = strcspn(p, ".");
        snprintf(part, sizeof part, "%.*s", (int)n, p);
        if (!json_is_object(cur))
            return fail(errbuf, errlen, "config: $.%.*s must be an object", (int)(p - path - 1), path);
        cur = json_object_get(cur, part);
        if (!cur) return 0;
        p += n;
        if (*p == '.') p++;
    }
    *out = cur;
    return 0;
}

static int field_apply(config_t *c, const field_t *f, json_t *v, char *errbuf, size_t errlen) {
    char *base = (char *)c + f->offset;
    switch (f->kind) {
    case F_STR:
        if (!json_is_string(v) || json_string_length(v) == 0)
            return fail(errbuf, errlen, "config: $.%s must be a non-empty string", f->path);
        set_str((char **)(void *)base, json_string_value(v));
        return 0;
    case F_LOG_FORMAT:
        if (!json_is_string(v) || parse_log_format(json_string_value(v), (log_format_t *)(void *)base) < 0)
            return fail(errbuf, errlen, "config: $.%s must be \"text\" or \"json\"", f->path);
        return 0;
    case F_PORT:
    case F_U64:
    case F_SIZE: {
        if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)f->min ||
            (uint64_t)json_integer_value(v) > f->max)
            return fail(errbuf, errlen, "config: $.%s must be an integer from %llu to %llu", f->path,
                        (unsigned long long)f->min, (unsigned long long)f->max);
        uint64_t x = (uint64_t)json_integer_value(v);
        if (f->kind == F_PORT) *(int *)(void *)base = (int)x;
        else if (f->kind == F_U64) *(uint64_t *)(void *)base = x;
        else *(size_t *)(void *)base = (size_t)x;
        return 0;
    }
    case F_RATIO: {
        if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 1)
            return fail(errbuf, errlen, "config: $.%s must be a number in (0, 1]", f->path);
        *(double *)(void *)base = json_number_value(v);
        return 0;
    }
    }
    return 0;
}

static int config_read_file(config_t *c, char *errbuf, size_t errlen) {
    json_error_t jerr;
    FILE *fp = fopen(c->config_path, "rb");
    if (!fp)
        return fail(errbuf, errlen, "cannot read config file %s: %s", c->config_path, strerror(errno));
    json_t *doc = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    fclose(fp);
    if (!doc)
        return fail(errbuf, errlen, "config file %s is not valid JSON: %s (line %d, column %d)",
                    c->config_path, jerr.text, jerr.line, jerr.column);
    json_decref(c->doc);
    c->doc = doc;
    if (!json_is_object(doc)) return fail(errbuf, errlen, "config: $ must be an object");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v;
        if (doc_lookup(doc, fields[i].path, &v, errbuf, errlen) < 0) return -1;
        if (v && field_apply(c, &fields[i], v, errbuf, errlen) < 0) return -1;
    }
    return 0;
}

static const opt_t *opt_by_flag(const char *flag) {
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].flag && strcmp(opts[i].flag, flag) == 0) return &opts[i];
    return NULL;
}

int config_load(config_t *c, int argc, char **argv, char *errbuf, size_t errlen) {
    config_defaults(c);
    c->doc = json_object();

    /* 1. Flags: the command, then options recorded for later application. */
    const char *flag_values[NOPTS] = {0};
    const char *config_flag = NULL;
    int i = 1;
    if (argc < 2) {
        c->command = CONFIG_HELP;
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        c->command = CONFIG_VERSION;
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        c->command = CONFIG_HELP;
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) c->command = CONFIG_SERVE;
    else if (strcmp(argv[1], "migrate") == 0) c->command = CONFIG_MIGRATE;
    else return fail(errbuf, errlen, "unknown command \"%s\" (try shopd --help)", argv[1]);

    for (i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            c->command = CONFIG_HELP;
            return 0;
        }
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) == 0 && eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
        }
        const opt_t *o = opt_by_flag(name);
        int is_config = strcmp(name, "--config") == 0;
        if (!o && !is_config) return fail(errbuf, errlen, "unknown option \"%s\" (try shopd --help)", arg);
        if (o && o->serve_only && c->command != CONFIG_SERVE)
            return fail(errbuf, errlen, "option %s is not valid for \"%s\"", name, argv[1]);
        if (!value) {
            if (i + 1 >= argc) return fail(errbuf, errlen, "option %s needs a value", name);
            value = argv[++i];
        }
        if (is_config) config_flag = value;
        else flag_values[o - opts] = value;
    }

    /* 2. The config file: flag, then environment. */
    const char *path = config_flag ? config_flag : getenv("SHOPD_CONFIG");
    if (path && *path) {
        set_str(&c->config_path, path);
        if (config_read_file(c, errbuf, errlen) < 0) return -1;
    }

    /* 3. Environment, then 4. flags. */
    for (size_t k = 0; k < NOPTS; k++) {
        const char *v = getenv(opts[k].env);
        if (v && opt_apply(c, &opts[k], v, opts[k].env, errbuf, errlen) < 0) return -1;
    }
    for (size_t k = 0; k < NOPTS; k++)
        if (flag_values[k] && opt_apply(c, &opts[k], flag_values[k], opts[k].flag, errbuf, errlen) < 0)
            return -1;

    if (c->path[0] != '/') return fail(errbuf, errlen, "config: $.path must start with \"/\"");
    return 0;
}
