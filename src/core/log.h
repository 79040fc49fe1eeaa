/* One log line per event, with key=value context. Callers write the context as a
 * printf format of space-separated `key=value` pairs (values that may hold spaces or
 * quotes go through log_quote). In text mode the line is printed as is after the
 * timestamp, level and event; in JSON mode the same pairs become one JSON object per
 * line, so both formats come from the same call. The level is checked before the
 * arguments are formatted. Logs go to stderr; stdout is kept for the `listening on`
 * line. */
#ifndef SHOPD_CORE_LOG_H
#define SHOPD_CORE_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level_t;
typedef enum { LOG_TEXT, LOG_JSON } log_format_t;

void log_setup(log_format_t format, log_level_t min_level);
int log_enabled(log_level_t level);
void log_write(log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes `s` as a double-quoted, escaped value into out (always NUL-terminated,
 * truncated to fit). Returns out. */
const char *log_quote(const char *s, char *out, size_t size);

/* Formats a whole line into out without writing it (for tests). */
size_t log_format_line(log_format_t format, log_level_t level, const char *event,
                       const char *pairs, char *out, size_t size);

#define log_debug(event, ...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, event, __VA_ARGS__); } while (0)
#define log_info(event, ...) do { if (log_enabled(LOG_INFO)) log_write(LOG_INFO, event, __VA_ARGS__); } while (0)
#define log_warn(event, ...) do { if (log_enabled(LOG_WARN)) log_write(LOG_WARN, event, __VA_ARGS__); } while (0)
#define log_error(event, ...) do { if (log_enabled(LOG_ERROR)) log_write(LOG_ERROR, event, __VA_ARGS__); } while (0)

#endif
