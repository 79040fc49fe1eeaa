/* Text and JSON log lines from one key=value format (see log.h). */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

static log_format_t log_fmt = LOG_TEXT;
static log_level_t log_min = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_setup(log_format_t format, log_level_t min_level) {
    log_fmt = format;
    log_min = min_level;
}

int log_enabled(log_level_t level) { return level >= log_min && level != LOG_OFF; }

const char *log_quote(const char *s, char *out, size_t size) {
    size_t o = 0;
    if (size < 3) {
        if (size) out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (; s && *s && o + 3 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* Appends to out[*o..size) keeping NUL termination; silently truncates. */
static void put(char *out, size_t size, size_t *o, const char *s, size_t n) {
    if (*o + 1 >= size) return;
    if (n > size - 1 - *o) n = size - 1 - *o;
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = '\0';
}

static void put_json_str(char *out, size_t size, size_t *o, const char *s, size_t n) {
    put(out, size, o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(out, size, o, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            put(out, size, o, e, 6);
        } else {
            put(out, size, o, (const char *)&s[i], 1);
        }
    }
    put(out, size, o, "\"", 1);
}

static int is_json_number(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i == n) return 0;
    if (s[i] == '0' && i + 1 < n) return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* Turns `k=v k="quoted v"` into JSON members appended after an opening brace. */
static void pairs_to_json(const char *p, char *out, size_t size, size_t *o) {
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ') p++;
        size_t klen = (size_t)(p - k);
        const char *v = p;
        size_t vlen = 0;
        int quoted = 0;
        char unq[1024];
        if (*p == '=') {
            p++;
            if (*p == '"') {
                quoted = 1;
                p++;
                size_t u = 0;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1]) p++;
                    if (u + 1 < sizeof unq) unq[u++] = *p;
                    p++;
                }
                if (*p == '"') p++;
                v = unq;
                vlen = u;
            } else {
                v = p;
                while (*p && *p != ' ') p++;
                vlen = (size_t)(p - v);
            }
        }
        put(out, size, o, ",", 1);
        put_json_str(out, size, o, k, klen);
        put(out, size, o, ":", 1);
        if (!quoted && is_json_number(v, vlen))
            put(out, size, o, v, vlen);
        else
            put_json_str(out, size, o, v, vlen);
    }
}

size_t log_format_line(log_format_t format, log_level_t level, const char *event,
                       const char *pairs, char *out, size_t size) {
    char ts[40];
    int64_t ms = clock_now_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(ms % 1000));

    size_t o = 0;
    if (size) out[0] = '\0';
    if (format == LOG_JSON) {
        put(out, size, &o, "{\"ts\":", 6);
        put_json_str(out, size, &o, ts, strlen(ts));
        put(out, size, &o, ",\"level\":", 9);
        put_json_str(out, size, &o, level_names[level], strlen(level_names[level]));
        put(out, size, &o, ",\"event\":", 9);
        put_json_str(out, size, &o, event, strlen(event));
        pairs_to_json(pairs, out, size, &o);
        put(out, size, &o, "}", 1);
    } else {
        put(out, size, &o, ts, strlen(ts));
        put(out, size, &o, " ", 1);
        put(out, size, &o, level_names[level], strlen(level_names[level]));
        put(out, size, &o, " ", 1);
        put(out, size, &o, event, strlen(event));
        if (*pairs) {
            put(out, size, &o, " ", 1);
            put(out, size, &o, pairs, strlen(pairs));
        }
    }
    put(out, size, &o, "\n", 1);
    return o;
}

void log_write(log_level_t level, const char *event, const char *fmt, ...) {
    char pairs[2048], line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pairs, sizeof pairs, fmt, ap);
    va_end(ap);
    size_t n = log_format_line(log_fmt, level, event, pairs, line, sizeof line);
    if (line[n - 1] != '\n') line[n - 1] = '\n';
    fwrite(line, 1, n, stderr);
}
