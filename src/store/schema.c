/* Bucket schemas (see schema.h and spec/realtime-protocol.md §4.1). Compiling turns a
 * client's definition into a schema_t plus the normalised definition that is persisted
 * and answered by store.getBucketSchema; preparing an insert or update builds the
 * record the store engine writes. Every check appends {field, rule, message} to one
 * violations array, so a client learns about all problems of a request at once.
 * Nothing here touches the database or the loop; the only I/O is reading randomness
 * for generated ids. */
#include "store/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/regex.h"

#define SCHEMA_NAME_MAX 63
#define SCHEMA_MAX_FIELDS 64
#define SCHEMA_MAX_INDEXES 32
#define SCHEMA_MAX_ENUM 256        /* values in one enum */
#define SCHEMA_MAX_PATTERN 1024    /* bytes of one pattern's source */
#define SCHEMA_MATCH_LIMIT 1000000 /* backtracking budget of one pattern match */
#define SCHEMA_DEPTH_LIMIT 10000
#define SCHEMA_EMAIL_MAX 254
#define SCHEMA_EMAIL_LOCAL_MAX 64
/* 2^53: every integer up to it is exact in a double. */
#define SCHEMA_INT_LIMIT 9007199254740992LL
#define SCHEMA_SHOWN_MAX 200 /* bytes of an enum list or a pattern shown in a message */

static const char *const field_type_names[] = {
    [FIELD_STRING] = "string",   [FIELD_NUMBER] = "number", [FIELD_INTEGER] = "integer",
    [FIELD_BOOLEAN] = "boolean", [FIELD_OBJECT] = "object", [FIELD_ARRAY] = "array",
    [FIELD_DATE] = "date",
};
#define FIELD_TYPE_COUNT (sizeof field_type_names / sizeof field_type_names[0])

static const char *const field_gen_names[] = {
    [GEN_NONE] = "",
    [GEN_UUID] = "uuid",
    [GEN_CUID] = "cuid",
    [GEN_AUTOINCREMENT] = "autoincrement",
    [GEN_TIMESTAMP] = "timestamp",
};
#define FIELD_GEN_COUNT (sizeof field_gen_names / sizeof field_gen_names[0])

static const char *const field_format_names[] = {
    [FORMAT_NONE] = "",
    [FORMAT_EMAIL] = "email",
    [FORMAT_URL] = "url",
    [FORMAT_ISO_DATE] = "iso-date",
};
#define FIELD_FORMAT_COUNT (sizeof field_format_names / sizeof field_format_names[0])

/* The order in which constraints appear in a normalised field definition. */
static const char *const constraint_names[] = {
    "type",      "required",  "default", "generated", "enum",   "min", "max",
    "minLength", "maxLength", "pattern", "format",    "unique", "ref",
};
#define CONSTRAINT_COUNT (sizeof constraint_names / sizeof constraint_names[0])

/* ---------------------------------------------------------------- small helpers */

static bool is_alpha(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
static bool is_alnum(char c) {
    return is_alpha(c) || is_digit(c);
}

/* The length of the longest prefix of s (at most max bytes) that ends on a UTF-8
 * character boundary, so shortened text stays valid in a JSON string. */
static size_t utf8_cut(const char *s, size_t max) {
    size_t len = strlen(s);
    if (len <= max) return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

static size_t utf8_count(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) count++;
    return count;
}

/* A string object; text that is not valid UTF-8 (only possible for a bucket name a
 * caller passed in) becomes "" rather than a NULL that jansson would refuse. */
static json_t *string_or_empty(const char *s) {
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_string("");
}

/* Whether v is an integer in the sense of FIELD_INTEGER: a JSON integer, or a real with
 * no fraction, within ±2^53. */
static bool value_integral(const json_t *v, json_int_t *out) {
    json_int_t i;
    if (json_is_integer(v)) {
        i = json_integer_value(v);
        if (i < -SCHEMA_INT_LIMIT || i > SCHEMA_INT_LIMIT) return false;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != trunc(d) || fabs(d) > (double)SCHEMA_INT_LIMIT) return false;
        i = (json_int_t)d;
    } else {
        return false;
    }
    if (out) *out = i;
    return true;
}

/* Equality as JavaScript sees it for enum membership and key comparison: 1 and 1.0
 * are the same number; everything else compares structurally. */
static bool value_equal(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

static int name_index(const char *const *names, size_t count, const char *s) {
    for (size_t i = 0; i < count; i++)
        if (names[i][0] && strcmp(names[i], s) == 0) return (int)i;
    return -1;
}

/* Appends {field, rule, message} to violations. */
static void violation_add(json_t *violations, const char *field, const char *rule, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static void violation_add(json_t *violations, const char *field, const char *rule, const char *fmt,
                          ...) {
    buf_t msg;
    buf_init(&msg, 0);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    json_t *v = json_object();
    json_object_set_new(v, "field", string_or_empty(field));
    json_object_set_new(v, "rule", json_string(rule));
    json_object_set_new(v, "message", string_or_empty(buf_cstr(&msg)));
    json_array_append_new(violations, v);
    buf_cleanup(&msg);
}

/* Sets a VALIDATION_ERROR "<prefix>: <first message> (and N more)" and hands the
 * violations to err as its details. */
static void validation_fail(err_t *err, const char *prefix, json_t *violations) {
    size_t n = json_array_size(violations);
    const char *first =
        json_string_value(json_object_get(json_array_get(violations, 0), "message"));
    if (!first) first = "invalid value";
    char suffix[48] = "";
    if (n > 1) snprintf(suffix, sizeof suffix, " (and %zu more)", n - 1);
    size_t used = strlen(prefix) + 2 + strlen(suffix);
    size_t room = used < ERR_MSG_MAX - 1 ? ERR_MSG_MAX - 1 - used : 0;
    err_set(err, ERR_VALIDATION, "%s: %.*s%s", prefix, (int)utf8_cut(first, room), first, suffix);
    err_details_take(err, violations);
}

static void record_fail(err_t *err, const schema_t *s, json_t *violations) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "Validation failed for bucket \"%s\"", s->bucket);
    validation_fail(err, prefix, violations);
}

/* Appends `shown`, cut to SCHEMA_SHOWN_MAX bytes with "..." when longer. */
static void append_shown(buf_t *b, const char *shown) {
    size_t n = utf8_cut(shown, SCHEMA_SHOWN_MAX);
    buf_append(b, shown, n);
    if (shown[n]) buf_append_str(b, "...");
}

/* "customer, admin" for an enum, strings bare and anything else as JSON. */
static void enum_describe(buf_t *out, const json_t *values) {
    buf_t all;
    buf_init(&all, 0);
    size_t i;
    json_t *v;
    json_array_foreach(values, i, v) {
        if (i) buf_append_str(&all, ", ");
        if (json_is_string(v))
            buf_append(&all, json_string_value(v), json_string_length(v));
        else
            json_write(&all, v);
    }
    append_shown(out, buf_cstr(&all));
    buf_cleanup(&all);
}

/* ---------------------------------------------------------------- names */

static bool name_ok(const char *name, bool allow_dash) {
    if (!name || !is_alpha(name[0])) return false;
    for (size_t i = 1; name[i]; i++) {
        if (i >= SCHEMA_NAME_MAX) return false;
        char c = name[i];
        if (!is_alnum(c) && c != '_' && !(allow_dash && c == '-')) return false;
    }
    return true;
}

bool schema_bucket_name_ok(const char *name) {
    /* SQLite reserves every table name starting with "sqlite_", in any case. */
    return name_ok(name, true) && strncasecmp(name, "sqlite_", 7) != 0;
}

bool schema_field_name_ok(const char *name) {
    return name_ok(name, false);
}

/* ---------------------------------------------------------------- formats */

static bool digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* YYYY-MM-DD, optionally followed by THH:MM(:SS(.f{1,9})?)?(Z|±HH:MM)?, naming a day
 * and time that exist. */
static bool iso_date_ok(const char *s, size_t n) {
    int year, month, day, hour, minute, second;
    if (n < 10 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day))
        return false;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return false;
    size_t i = 10;
    if (i == n) return true;
    if (s[i++] != 'T') return false;
    if (n - i < 5 || !digits(s + i, 2, &hour) || s[i + 2] != ':' || !digits(s + i + 3, 2, &minute))
        return false;
    if (hour > 23 || minute > 59) return false;
    i += 5;
    if (i < n && s[i] == ':') {
        if (n - i < 3 || !digits(s + i + 1, 2, &second) || second > 59) return false;
        i += 3;
        if (i < n && s[i] == '.') {
            size_t start = ++i;
            while (i < n && is_digit(s[i])) i++;
            if (i == start || i - start > 9) return false;
        }
    }
    if (i == n) return true;
    if (s[i] == 'Z') return i + 1 == n;
    if (s[i] == '+' || s[i] == '-') {
        int off_hour, off_minute;
        if (n - i != 6 || !digits(s + i + 1, 2, &off_hour) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &off_minute))
            return false;
        return off_hour <= 23 && off_minute <= 59;
    }
    return false;
}

/* Spaces and control characters make an address or URL invalid everywhere. */
static bool has_space_or_control(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F) return true;
    }
    return false;
}

/* Dot-separated labels of letters, digits, '-', '_' or non-ASCII bytes, none empty. */
static bool host_ok(const char *s, size_t n, bool need_dot) {
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return false;
    bool dot = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.') return false;
            dot = true;
        } else if (!is_alnum((char)c) && c != '-' && c != '_' && c < 0x80) {
            return false;
        }
    }
    return dot || !need_dot;
}

/* Pragmatic, as forms check it: local@domain.tld, one '@', no spaces, at most 254
 * bytes; the local part is a dot-atom without quoting. */
static bool email_ok(const char *s, size_t n) {
    if (n == 0 || n > SCHEMA_EMAIL_MAX || has_space_or_control(s, n)) return false;
    const char *at = memchr(s, '@', n);
    if (!at || memchr(at + 1, '@', n - (size_t)(at - s) - 1)) return false;
    size_t local = (size_t)(at - s);
    if (local == 0 || local > SCHEMA_EMAIL_LOCAL_MAX || s[0] == '.' || s[local - 1] == '.')
        return false;
    for (size_t i = 0; i < local; i++) {
        if (strchr("()<>[]:;,\\\"", s[i])) return false;
        if (s[i] == '.' && s[i + 1] == '.') return false;
    }
    return host_ok(at + 1, n - local - 1, true);
}

/* http, https or ftp, "://", optional userinfo, a host (name or [IPv6]), optional port. */
static bool url_ok(const char *s, size_t n) {
    if (has_space_or_control(s, n)) return false;
    static const char *const schemes[] = {"http://", "https://", "ftp://"};
    size_t i = 0;
    for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
        size_t len = strlen(schemes[k]);
        if (n >= len && strncasecmp(s, schemes[k], len) == 0) {
            i = len;
            break;
        }
    }
    if (i == 0) return false;
    size_t end = i;
    while (end < n && s[end] != '/' && s[end] != '?' && s[end] != '#') end++;
    for (size_t k = end; k > i; k--) /* the host follows the last '@' of the authority */
        if (s[k - 1] == '@') {
            i = k;
            break;
        }
    size_t host_end;
    if (i < end && s[i] == '[') {
        host_end = i + 1;
        while (host_end < end && s[host_end] != ']') {
            char c = s[host_end];
            if (!is_digit(c) && !strchr("abcdefABCDEF:.", c)) return false;
            host_end++;
        }
        if (host_end == end || host_end == i + 1) return false;
        host_end++; /* past ']' */
    } else {
        host_end = i;
        while (host_end < end && s[host_end] != ':') host_end++;
        if (!host_ok(s + i, host_end - i, false)) return false;
    }
    if (host_end == end) return true;
    if (s[host_end] != ':') return false;
    size_t digits_len = end - host_end - 1;
    if (digits_len == 0 || digits_len > 5) return false;
    long port = 0;
    for (size_t k = host_end + 1; k < end; k++) {
        if (!is_digit(s[k])) return false;
        port = port * 10 + (s[k] - '0');
    }
    return port <= 65535;
}

/* ---------------------------------------------------------------- generated values */

/* Fills p with bytes from the kernel's CSPRNG. Ids that are guessable or repeat would
 * be worse than stopping, so a machine without any randomness source aborts. */
static void kernel_random(void *p, size_t n) {
    unsigned char *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        b += r;
        n -= (size_t)r;
    }
    if (!n) return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        b += r;
        n -= (size_t)r;
    }
    if (fd >= 0) close(fd);
    if (n) {
        log_error("random_unavailable", "errno=%d", errno);
        abort();
    }
}

/* Random bytes for ids, served from a per-thread pool of kernel randomness refilled
 * 512 bytes at a time: one getrandom call per id was 2 % of a transaction. Every byte
 * is handed out once and wiped from the pool as it goes. */
static void random_fill(void *p, size_t n) {
    static _Thread_local unsigned char pool[512];
    static _Thread_local size_t left;
    unsigned char *out = p;
    while (n) {
        if (!left) {
            kernel_random(pool, sizeof pool);
            left = sizeof pool;
        }
        size_t take = n < left ? n : left;
        unsigned char *src = pool + sizeof pool - left;
        memcpy(out, src, take);
        memset(src, 0, take);
        out += take;
        n -= take;
        left -= take;
    }
}

static void uuid_text(const unsigned char b[16], char out[37]) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0F];
    }
    out[o] = '\0';
}

void schema_uuid(char out[37]) {
    unsigned char b[16];
    random_fill(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    uuid_text(b, out);
}

void schema_uuid7(char out[37]) {
    unsigned char b[16];
    random_fill(b + 6, sizeof b - 6);
    uint64_t ms = (uint64_t)clock_now_ms();
    for (int i = 5; i >= 0; i--, ms >>= 8) b[i] = (unsigned char)(ms & 0xFF);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x70); /* version 7 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 9562 variant */
    uuid_text(b, out);
}

/* Writes the low `width` base-36 digits of v, zero-padded. */
static void base36(char *out, size_t width, uint64_t v) {
    static const char digits36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    for (size_t i = width; i > 0; i--) {
        out[i - 1] = digits36[v % 36];
        v /= 36;
    }
}

static atomic_uint_fast32_t cuid_counter;

/* 'c', 8 digits of the ms clock, 4 of a process-wide counter and 12 random ones: ids
 * made in the same millisecond differ by the counter, ids of different processes by
 * the random part, and ids sort roughly by creation time. */
void schema_cuid(char out[26]) {
    const uint64_t range = 4738381338321616896ull; /* 36^12 */
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t r;
    do random_fill(&r, sizeof r);
    while (r >= limit); /* reject the uneven top so every suffix is equally likely */
    out[0] = 'c';
    base36(out + 1, 8, (uint64_t)clock_now_ms());
    base36(out + 9, 4, (uint64_t)atomic_fetch_add(&cuid_counter, 1));
    base36(out + 13, 12, r % range);
    out[25] = '\0';
}

static json_t *field_generate(const schema_t *s, const schema_field_t *f, schema_gen_fn gen,
                              void *gen_ctx, err_t *err) {
    char id[37];
    switch (f->generated) {
    case GEN_UUID:
        schema_uuid(id);
        return json_string(id);
    case GEN_CUID:
        schema_cuid(id);
        return json_string(id);
    case GEN_TIMESTAMP:
        return json_integer(clock_now_ms());
    case GEN_AUTOINCREMENT:
        break;
    case GEN_NONE:
        return NULL;
    }
    if (!gen) {
        err_set(err, ERR_INTERNAL, "No generator for autoincrement field \"%s\"", f->name);
        return NULL;
    }
    json_t *v = gen(gen_ctx, s, f, err);
    if (!v && err && err->code == ERR_NONE)
        err_set(err, ERR_INTERNAL, "Could not generate a value for field \"%s\"", f->name);
    return v;
}

/* ---------------------------------------------------------------- value checks */

static bool type_ok(field_type_t type, const json_t *v) {
    switch (type) {
    case FIELD_STRING:
        return json_is_string(v);
    case FIELD_NUMBER:
        return json_is_number(v);
    case FIELD_INTEGER:
        return value_integral(v, NULL);
    case FIELD_BOOLEAN:
        return json_is_boolean(v);
    case FIELD_OBJECT:
        return json_is_object(v);
    case FIELD_ARRAY:
        return json_is_array(v);
    case FIELD_DATE:
        return json_is_number(v) ||
               (json_is_string(v) && iso_date_ok(json_string_value(v), json_string_length(v)));
    }
    return false;
}

static bool enum_has(const json_t *values, const json_t *v) {
    size_t i;
    json_t *e;
    json_array_foreach(values, i, e) {
        if (value_equal(e, v)) return true;
    }
    return false;
}

/* Whether the pattern matches somewhere in s. A match that runs out of its
 * backtracking budget counts as no match: the write is refused, the server is not
 * stalled by a pathological pattern. */
static bool pattern_matches(void *code, const char *s, size_t n) {
    /* Made once per thread (a checkout matches about 15 patterns): only whether it
     * matched is read, so one pair of offsets is enough for every pattern. */
    static _Thread_local pcre2_match_data *md;
    static _Thread_local pcre2_match_context *mc;
    if (!mc) {
        md = pcre2_match_data_create(1, NULL);
        mc = pcre2_match_context_create(NULL);
        if (!md || !mc) abort();
        pcre2_set_match_limit(mc, SCHEMA_MATCH_LIMIT);
        pcre2_set_depth_limit(mc, SCHEMA_DEPTH_LIMIT);
    }
    return regex_match(code, s, n, md, mc);
}

/* Checks a present, non-null value against field f. `subject` starts each message
 * ("Field \"x\"", or "Default of field \"x\"" when compiling). */
static void field_check(const schema_field_t *f, const json_t *v, const char *subject,
                        json_t *violations) {
    if (!type_ok(f->type, v)) {
        violation_add(violations, f->name, "type", "%s must be of type %s", subject,
                      field_type_names[f->type]);
        return;
    }
    buf_t b;
    buf_init(&b, 0);
    if (f->enum_values && !enum_has(f->enum_values, v)) {
        enum_describe(&b, f->enum_values);
        violation_add(violations, f->name, "enum", "%s must be one of: %s", subject, buf_cstr(&b));
        buf_consume(&b, b.len);
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (f->has_min && d < f->min) {
            json_write_double(&b, f->min);
            violation_add(violations, f->name, "min", "%s must be >= %s", subject, buf_cstr(&b));
            buf_consume(&b, b.len);
        }
        if (f->has_max && d > f->max) {
            json_write_double(&b, f->max);
            violation_add(violations, f->name, "max", "%s must be <= %s", subject, buf_cstr(&b));
            buf_consume(&b, b.len);
        }
    }
    if (json_is_string(v) || json_is_array(v)) {
        bool str = json_is_string(v);
        size_t len =
            str ? utf8_count(json_string_value(v), json_string_length(v)) : json_array_size(v);
        const char *unit = str ? "character" : "item";
        const char *verb = str ? "be" : "have", *tail = str ? " long" : "";
        if (f->has_min_length && len < f->min_length)
            violation_add(violations, f->name, "minLength", "%s must %s at least %zu %s%s%s",
                          subject, verb, f->min_length, unit, f->min_length == 1 ? "" : "s", tail);
        if (f->has_max_length && len > f->max_length)
            violation_add(violations, f->name, "maxLength", "%s must %s at most %zu %s%s%s",
                          subject, verb, f->max_length, unit, f->max_length == 1 ? "" : "s", tail);
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (f->pattern_code && !pattern_matches(f->pattern_code, s, n)) {
            append_shown(&b, f->pattern);
            violation_add(violations, f->name, "pattern", "%s must match the pattern /%s/", subject,
                          buf_cstr(&b));
            buf_consume(&b, b.len);
        }
        bool format_ok = true;
        const char *what = "";
        switch (f->format) {
        case FORMAT_NONE:
            break;
        case FORMAT_EMAIL:
            format_ok = email_ok(s, n);
            what = "email";
            break;
        case FORMAT_URL:
            format_ok = url_ok(s, n);
            what = "URL";
            break;
        case FORMAT_ISO_DATE:
            format_ok = iso_date_ok(s, n);
            what = "ISO 8601 date";
            break;
        }
        if (!format_ok)
            violation_add(violations, f->name, "format", "%s must be a valid %s", subject, what);
    }
    buf_cleanup(&b);
}

/* Replaces integral reals in integer fields by JSON integers, so 5.0 is stored as 5. */
static void record_normalise(const schema_t *s, json_t *rec) {
    for (size_t i = 0; i < s->field_count; i++) {
        const schema_field_t *f = &s->fields[i];
        if (f->type != FIELD_INTEGER) continue;
        json_t *v = json_object_get(rec, f->name);
        json_int_t n;
        if (json_is_real(v) && value_integral(v, &n))
            json_object_set_new_nocheck(rec, f->name, json_integer(n));
    }
}

size_t schema_validate(const schema_t *s, const json_t *record, json_t *violations) {
    json_t *own = violations ? NULL : json_array();
    json_t *out = violations ? violations : own;
    size_t before = json_array_size(out);
    if (!json_is_object(record)) {
        violation_add(out, "", "type", "Record must be an object");
        goto done;
    }
    const schema_field_t *key_field = schema_field_get(s, s->key);
    if (!key_field) {
        /* An undeclared key is still the record's identity: present, string or number. */
        const json_t *v = json_object_get(record, s->key);
        if (!v || json_is_null(v))
            violation_add(out, s->key, "required", "Field \"%s\" is required", s->key);
        else if (!json_is_string(v) && !json_is_number(v))
            violation_add(out, s->key, "type", "Field \"%s\" must be a string or number", s->key);
    }
    json_walk_t w;
    json_walk_init(&w, record);
    for (size_t i = 0; i < s->field_count; i++) {
        const schema_field_t *f = &s->fields[i];
        const json_t *v = json_walk_get(&w, f->name);
        if (!v || json_is_null(v)) {
            if (f->required || f == key_field)
                violation_add(out, f->name, "required", "Field \"%s\" is required", f->name);
            continue;
        }
        field_check(f, v, f->subject, out);
    }
done:;
    size_t added = json_array_size(out) - before;
    json_decref(own);
    return added;
}

/* ---------------------------------------------------------------- compiling */

static void field_cleanup(schema_field_t *f) {
    free(f->name);
    free(f->subject);
    json_decref(f->default_value);
    json_decref(f->enum_values);
    free(f->pattern);
    pcre2_code_free(f->pattern_code);
    free(f->ref);
}

void schema_free(schema_t *s) {
    if (!s) return;
    for (size_t i = 0; i < s->field_count; i++) field_cleanup(&s->fields[i]);
    free(s->fields);
    for (size_t i = 0; i < s->index_count; i++) free(s->indexes[i]);
    free(s->indexes);
    free(s->bucket);
    free(s->key);
    json_decref(s->definition);
    free(s);
}

const schema_field_t *schema_field_get(const schema_t *s, const char *name) {
    if (!s || !name) return NULL;
    for (size_t i = 0; i < s->field_count; i++)
        if (strcmp(s->fields[i].name, name) == 0) return &s->fields[i];
    return NULL;
}

/* A non-negative integer constraint value (minLength, maxLength). */
static bool value_size(const json_t *v, size_t *out) {
    json_int_t n;
    if (!value_integral(v, &n) || n < 0) return false;
    *out = (size_t)n;
    return true;
}

static bool type_is_numeric(field_type_t t) {
    return t == FIELD_NUMBER || t == FIELD_INTEGER;
}

/* Reports a constraint given on a field whose type it cannot apply to. */
static void applies_check(json_t *violations, const schema_field_t *f, const char *constraint,
                          bool ok, const char *types) {
    if (!ok)
        violation_add(violations, f->name, constraint,
                      "Constraint \"%s\" of field \"%s\" applies only to %s fields", constraint,
                      f->name, types);
}

static void field_parse_generated(schema_field_t *f, const json_t *v, bool type_known,
                                  json_t *violations) {
    int g =
        json_is_string(v) ? name_index(field_gen_names, FIELD_GEN_COUNT, json_string_value(v)) : -1;
    if (g < 0) {
        violation_add(
            violations, f->name, "generated",
            "Field \"%s\": generated must be one of: uuid, cuid, autoincrement, timestamp",
            f->name);
        return;
    }
    f->generated = (field_gen_t)g;
    if (!type_known) return;
    switch (f->generated) {
    case GEN_UUID:
    case GEN_CUID:
        if (f->type != FIELD_STRING)
            violation_add(violations, f->name, "generated",
                          "Field \"%s\": generated %s needs type string", f->name,
                          field_gen_names[g]);
        break;
    case GEN_AUTOINCREMENT:
        if (!type_is_numeric(f->type))
            violation_add(violations, f->name, "generated",
                          "Field \"%s\": generated autoincrement needs type number or integer",
                          f->name);
        break;
    case GEN_TIMESTAMP:
        if (!type_is_numeric(f->type) && f->type != FIELD_DATE)
            violation_add(violations, f->name, "generated",
                          "Field \"%s\": generated timestamp needs type number, integer or date",
                          f->name);
        break;
    case GEN_NONE:
        break;
    }
}

static void field_parse_enum(schema_field_t *f, const json_t *v, bool type_known,
                             json_t *violations) {
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > SCHEMA_MAX_ENUM) {
        violation_add(violations, f->name, "enum",
                      "Field \"%s\": enum must be a non-empty array of at most %d values", f->name,
                      SCHEMA_MAX_ENUM);
        return;
    }
    json_t *values = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        json_int_t n;
        if (type_known && !type_ok(f->type, e)) {
            buf_t raw, shown;
            buf_init(&raw, 0);
            buf_init(&shown, 0);
            json_write(&raw, e);
            append_shown(&shown, buf_cstr(&raw));
            violation_add(violations, f->name, "enum",
                          "Field \"%s\": enum value %s is not of type %s", f->name,
                          buf_cstr(&shown), field_type_names[f->type]);
            buf_cleanup(&shown);
            buf_cleanup(&raw);
        }
        if (f->type == FIELD_INTEGER && json_is_real(e) && value_integral(e, &n))
            json_array_append_new(values, json_integer(n));
        else
            json_array_append_new(values, json_deep_copy(e));
    }
    f->enum_values = values;
}

static void field_parse_pattern(schema_field_t *f, const json_t *v, json_t *violations) {
    if (!json_is_string(v) || json_string_length(v) > SCHEMA_MAX_PATTERN ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        violation_add(violations, f->name, "pattern",
                      "Field \"%s\": pattern must be a string of at most %d bytes", f->name,
                      SCHEMA_MAX_PATTERN);
        return;
    }
    char why[160];
    size_t offset;
    pcre2_code *re = regex_compile(json_string_value(v), json_string_length(v), why, sizeof why, &offset);
    if (!re) {
        violation_add(violations, f->name, "pattern",
                      "Field \"%s\": pattern does not compile (%s at offset %zu)", f->name, why,
                      offset);
        return;
    }
    f->pattern = xstrdup(json_string_value(v));
    f->pattern_code = re;
}

/* Parses one field definition into f (whose name is set). Constraints that cannot be
 * read leave f unchanged for that constraint and add a violation. */
static void field_parse(schema_field_t *f, const json_t *def, json_t *violations) {
    size_t before = json_array_size(violations);
    if (!json_is_object(def)) {
        violation_add(violations, f->name, "definition",
                      "Field \"%s\" must be defined by an object", f->name);
        return;
    }
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)def, k, klen, v) {
        if (strlen(k) != klen || name_index(constraint_names, CONSTRAINT_COUNT, k) < 0)
            violation_add(violations, f->name, "unknownConstraint",
                          "Field \"%s\" has unknown constraint \"%.*s\"", f->name,
                          (int)utf8_cut(k, SCHEMA_NAME_MAX), k);
    }

    bool type_known = false;
    v = json_object_get(def, "type");
    if (!v) {
        violation_add(violations, f->name, "type", "Field \"%s\" must declare a type", f->name);
    } else {
        int t = json_is_string(v)
                    ? name_index(field_type_names, FIELD_TYPE_COUNT, json_string_value(v))
                    : -1;
        if (t < 0) {
            buf_t shown;
            buf_init(&shown, 0);
            json_write(&shown, v);
            violation_add(violations, f->name, "type",
                          "Field \"%s\" has unknown type %.*s; expected one of: string, number, "
                          "integer, boolean, object, array, date",
                          f->name, (int)utf8_cut(buf_cstr(&shown), SCHEMA_NAME_MAX),
                          buf_cstr(&shown));
            buf_cleanup(&shown);
        } else {
            f->type = (field_type_t)t;
            type_known = true;
        }
    }

    if ((v = json_object_get(def, "required"))) {
        if (json_is_boolean(v))
            f->required = json_is_true(v);
        else
            violation_add(violations, f->name, "required",
                          "Field \"%s\": required must be true or false", f->name);
    }
    if ((v = json_object_get(def, "unique"))) {
        if (json_is_boolean(v))
            f->unique = json_is_true(v);
        else
            violation_add(violations, f->name, "unique",
                          "Field \"%s\": unique must be true or false", f->name);
    }
    if ((v = json_object_get(def, "ref"))) {
        if (json_is_string(v) && schema_bucket_name_ok(json_string_value(v)))
            f->ref = xstrdup(json_string_value(v));
        else
            violation_add(violations, f->name, "ref", "Field \"%s\": ref must name a bucket",
                          f->name);
    }
    if ((v = json_object_get(def, "generated")))
        field_parse_generated(f, v, type_known, violations);
    if ((v = json_object_get(def, "enum"))) field_parse_enum(f, v, type_known, violations);

    if ((v = json_object_get(def, "min"))) {
        if (json_is_number(v)) {
            f->has_min = true;
            f->min = json_number_value(v);
        } else
            violation_add(violations, f->name, "min", "Field \"%s\": min must be a number",
                          f->name);
        if (type_known)
            applies_check(violations, f, "min", type_is_numeric(f->type), "number and integer");
    }
    if ((v = json_object_get(def, "max"))) {
        if (json_is_number(v)) {
            f->has_max = true;
            f->max = json_number_value(v);
        } else
            violation_add(violations, f->name, "max", "Field \"%s\": max must be a number",
                          f->name);
        if (type_known)
            applies_check(violations, f, "max", type_is_numeric(f->type), "number and integer");
    }
    if (f->has_min && f->has_max && f->min > f->max)
        violation_add(violations, f->name, "min", "Field \"%s\": min must not be greater than max",
                      f->name);

    bool sized = f->type == FIELD_STRING || f->type == FIELD_ARRAY;
    if ((v = json_object_get(def, "minLength"))) {
        if (value_size(v, &f->min_length))
            f->has_min_length = true;
        else
            violation_add(violations, f->name, "minLength",
                          "Field \"%s\": minLength must be a non-negative integer", f->name);
        if (type_known) applies_check(violations, f, "minLength", sized, "string and array");
    }
    if ((v = json_object_get(def, "maxLength"))) {
        if (value_size(v, &f->max_length))
            f->has_max_length = true;
        else
            violation_add(violations, f->name, "maxLength",
                          "Field \"%s\": maxLength must be a non-negative integer", f->name);
        if (type_known) applies_check(violations, f, "maxLength", sized, "string and array");
    }
    if (f->has_min_length && f->has_max_length && f->min_length > f->max_length)
        violation_add(violations, f->name, "minLength",
                      "Field \"%s\": minLength must not be greater than maxLength", f->name);

    if ((v = json_object_get(def, "pattern"))) {
        field_parse_pattern(f, v, violations);
        if (type_known) applies_check(violations, f, "pattern", f->type == FIELD_STRING, "string");
    }
    if ((v = json_object_get(def, "format"))) {
        int fm = json_is_string(v)
                     ? name_index(field_format_names, FIELD_FORMAT_COUNT, json_string_value(v))
                     : -1;
        if (fm < 0)
            violation_add(violations, f->name, "format",
                          "Field \"%s\": format must be one of: email, url, iso-date", f->name);
        else
            f->format = (field_format_t)fm;
        if (type_known) applies_check(violations, f, "format", f->type == FIELD_STRING, "string");
    }

    /* The default is checked last, against the field's own constraints, and only when
     * those could all be read: otherwise its verdict would mean nothing. */
    if (!(v = json_object_get(def, "default"))) return;
    if (json_array_size(violations) != before) return;
    if (json_is_null(v)) {
        if (f->required)
            violation_add(violations, f->name, "default",
                          "Default of field \"%s\" must not be null: the field is required",
                          f->name);
        else
            f->default_value = json_null();
        return;
    }
    json_t *found = json_array();
    char subject[96];
    snprintf(subject, sizeof subject, "Default of field \"%s\"", f->name);
    field_check(f, v, subject, found);
    size_t i;
    json_t *e;
    json_array_foreach(found, i, e) violation_add(violations, f->name, "default", "%s",
                                                  json_string_value(json_object_get(e, "message")));
    json_decref(found);
    json_int_t n;
    if (f->type == FIELD_INTEGER && json_is_real(v) && value_integral(v, &n))
        f->default_value = json_integer(n);
    else
        f->default_value = json_deep_copy(v);
}

/* The normalised definition of one field: the constraints it was given, in the order
 * of constraint_names, with their parsed values. */
static json_t *field_definition(const schema_field_t *f, const json_t *def) {
    json_t *out = json_object();
    for (size_t i = 0; i < CONSTRAINT_COUNT; i++) {
        const char *c = constraint_names[i];
        const json_t *given = json_object_get(def, c);
        if (!given) continue;
        json_t *v;
        switch (i) {
        case 0:
            v = json_string(field_type_names[f->type]);
            break;
        case 1:
            v = json_boolean(f->required);
            break;
        case 2:
            v = json_deep_copy(f->default_value);
            break;
        case 3:
            v = json_string(field_gen_names[f->generated]);
            break;
        case 4:
            v = json_deep_copy(f->enum_values);
            break;
        case 5: /* fall through: min and max keep the number as given */
        case 6:
            v = json_deep_copy(given);
            break;
        case 7:
            v = json_integer((json_int_t)f->min_length);
            break;
        case 8:
            v = json_integer((json_int_t)f->max_length);
            break;
        case 9:
            v = json_string(f->pattern);
            break;
        case 10:
            v = json_string(field_format_names[f->format]);
            break;
        case 11:
            v = json_boolean(f->unique);
            break;
        default:
            v = json_string(f->ref);
            break;
        }
        json_object_set_new(out, c, v);
    }
    return out;
}

static bool schema_has_field_or_key(const schema_t *s, const char *name) {
    return strcmp(name, s->key) == 0 || schema_field_get(s, name) != NULL;
}

/* `fields_known` is false when the schema itself was unusable; then an index cannot
 * be judged against it and only its shape is checked. */
static void compile_indexes(schema_t *s, const json_t *indexes, bool fields_known,
                            json_t *violations) {
    if (!indexes) return;
    if (!json_is_array(indexes)) {
        violation_add(violations, "indexes", "indexes", "Indexes must be an array of field names");
        return;
    }
    if (json_array_size(indexes) > SCHEMA_MAX_INDEXES) {
        violation_add(violations, "indexes", "maxIndexes", "A bucket may have at most %d indexes",
                      SCHEMA_MAX_INDEXES);
        return;
    }
    s->indexes = xcalloc(json_array_size(indexes) + 1, sizeof *s->indexes);
    size_t i;
    json_t *v;
    json_array_foreach(indexes, i, v) {
        const char *name = json_string_value(v);
        if (!name || strlen(name) != json_string_length(v)) {
            violation_add(violations, "indexes", "index", "Index %zu must be a field name", i);
            continue;
        }
        if (fields_known && !schema_has_field_or_key(s, name)) {
            violation_add(violations, name, "index", "Index \"%.*s\" names an unknown field",
                          (int)utf8_cut(name, SCHEMA_NAME_MAX), name);
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < s->index_count; k++) dup = dup || strcmp(s->indexes[k], name) == 0;
        if (dup) {
            violation_add(violations, name, "index", "Index \"%s\" is listed twice", name);
            continue;
        }
        s->indexes[s->index_count++] = xstrdup(name);
    }
}

static json_t *schema_definition_build(const schema_t *s, const json_t *fields) {
    json_t *def = json_object();
    json_object_set_new(def, "key", json_string(s->key));
    json_t *out = json_object();
    for (size_t i = 0; i < s->field_count; i++)
        json_object_set_new(
            out, s->fields[i].name,
            field_definition(&s->fields[i], json_object_get(fields, s->fields[i].name)));
    json_object_set_new(def, "schema", out);
    json_t *idx = json_array();
    for (size_t i = 0; i < s->index_count; i++)
        json_array_append_new(idx, json_string(s->indexes[i]));
    json_object_set_new(def, "indexes", idx);
    return def;
}

static void compile_fail(err_t *err, const char *bucket, json_t *violations) {
    char prefix[128];
    if (schema_bucket_name_ok(bucket))
        snprintf(prefix, sizeof prefix, "Invalid definition for bucket \"%s\"", bucket);
    else
        snprintf(prefix, sizeof prefix, "Invalid bucket definition");
    validation_fail(err, prefix, violations);
}

schema_t *schema_compile(const char *bucket, const json_t *definition, err_t *err) {
    json_t *violations = json_array();
    schema_t *s = xcalloc(1, sizeof *s);
    s->bucket = xstrdup(bucket ? bucket : "");
    if (!schema_bucket_name_ok(bucket))
        violation_add(violations, "name", "name",
                      "Bucket name must start with a letter, contain only letters, digits, \"_\" "
                      "and \"-\", be at most %d characters long and not start with \"sqlite_\"",
                      SCHEMA_NAME_MAX);
    if (!json_is_object(definition)) {
        violation_add(violations, "definition", "definition",
                      "Bucket definition must be an object");
        s->key = xstrdup("id");
        goto fail;
    }

    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)definition, k, klen, v) {
        if (strlen(k) != klen || (strcmp(k, "key") && strcmp(k, "schema") && strcmp(k, "indexes")))
            violation_add(
                violations, "definition", "unknownOption",
                "Bucket definition has unknown option \"%.*s\"; expected key, schema, indexes",
                (int)utf8_cut(k, SCHEMA_NAME_MAX), k);
    }

    const json_t *key = json_object_get(definition, "key");
    if (key && !(json_is_string(key) && schema_field_name_ok(json_string_value(key)))) {
        violation_add(violations, "key", "key",
                      "Key must be a field name: a letter followed by letters, digits or \"_\"");
        key = NULL;
    }
    s->key = xstrdup(key ? json_string_value(key) : "id");

    const json_t *fields = json_object_get(definition, "schema");
    if (!json_is_object(fields)) {
        violation_add(violations, "schema", "schema",
                      "Bucket definition must have a \"schema\" object of field definitions");
        fields = NULL;
    } else if (json_object_size(fields) > SCHEMA_MAX_FIELDS) {
        violation_add(violations, "schema", "maxFields", "A bucket may have at most %d fields",
                      SCHEMA_MAX_FIELDS);
        fields = NULL;
    }
    if (fields) {
        s->fields = xcalloc(json_object_size(fields) + 1, sizeof *s->fields);
        json_object_keylen_foreach((json_t *)fields, k, klen, v) {
            if (strlen(k) != klen || !schema_field_name_ok(k)) {
                violation_add(
                    violations, k, "name",
                    "Field name \"%.*s\" is invalid: it must start with a letter, contain "
                    "only letters, digits and \"_\" and be at most %d characters long",
                    (int)utf8_cut(k, SCHEMA_NAME_MAX), k, SCHEMA_NAME_MAX);
                continue;
            }
            schema_field_t *f = &s->fields[s->field_count++];
            f->name = xstrdup(k);
            size_t n = strlen("Field \"\"") + klen + 1;
            f->subject = xmalloc(n);
            snprintf(f->subject, n, "Field \"%s\"", k);
            field_parse(f, v, violations);
        }
    }

    const schema_field_t *key_field = schema_field_get(s, s->key);
    if (key_field && (key_field->type == FIELD_BOOLEAN || key_field->type == FIELD_OBJECT ||
                      key_field->type == FIELD_ARRAY))
        violation_add(violations, s->key, "key",
                      "Key field \"%s\" must be of type string, number, "
                      "integer or date",
                      s->key);

    compile_indexes(s, json_object_get(definition, "indexes"), fields != NULL, violations);

    if (json_array_size(violations)) goto fail;
    s->definition = schema_definition_build(s, fields);
    json_decref(violations);
    return s;

fail:
    compile_fail(err, bucket, violations);
    schema_free(s);
    return NULL;
}

schema_t *schema_extend(const schema_t *s, const json_t *updates, err_t *err) {
    json_t *violations = json_array();
    json_t *def = NULL;
    schema_t *out = NULL;
    if (!json_is_object(updates)) {
        violation_add(violations, "updates", "updates", "Bucket updates must be an object");
        goto done;
    }
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)updates, k, klen, v) {
        if (strlen(k) != klen || (strcmp(k, "fields") && strcmp(k, "indexes")))
            violation_add(violations, "updates", "unknownOption",
                          "Bucket updates have unknown option \"%.*s\"; expected fields, indexes",
                          (int)utf8_cut(k, SCHEMA_NAME_MAX), k);
    }

    /* Additions go into a copy of the current definition, which is compiled afresh:
     * the extended schema obeys exactly the rules of a new one. */
    def = json_deep_copy(s->definition);
    json_t *fields = json_object_get(def, "schema");
    json_t *indexes = json_object_get(def, "indexes");
    const json_t *add = json_object_get(updates, "fields");
    if (add && !json_is_object(add)) {
        violation_add(violations, "fields", "fields",
                      "Fields to add must be an object of field definitions");
    } else if (add) {
        json_object_keylen_foreach((json_t *)add, k, klen, v) {
            if (strlen(k) == klen && json_object_get(fields, k))
                violation_add(violations, k, "exists", "Field \"%s\" already exists", k);
            else
                json_object_setn(fields, k, klen, v);
        }
    }
    add = json_object_get(updates, "indexes");
    if (add && !json_is_array(add)) {
        violation_add(violations, "indexes", "indexes",
                      "Indexes to add must be an array of field names");
    } else if (add) {
        size_t i;
        json_array_foreach(add, i, v) {
            bool exists = false;
            size_t j;
            json_t *cur;
            json_array_foreach(indexes, j, cur) exists = exists || json_equal(cur, v);
            if (exists)
                violation_add(violations, json_string_value(v), "exists",
                              "Index \"%s\" already exists", json_string_value(v));
            else
                json_array_append(indexes, v);
        }
    }

    err_t compiled = ERR_INIT;
    out = schema_compile(s->bucket, def, &compiled);
    if (!out) {
        json_array_extend(violations, compiled.details);
        err_clear(&compiled);
    }
done:
    json_decref(def);
    if (json_array_size(violations)) {
        schema_free(out);
        compile_fail(err, s->bucket, violations);
        return NULL;
    }
    json_decref(violations);
    return out;
}

/* ---------------------------------------------------------------- records */

static json_t *record_finish(const schema_t *s, json_t *rec, json_t *violations, err_t *err) {
    record_normalise(s, rec);
    schema_validate(s, rec, violations);
    if (json_array_size(violations)) {
        json_decref(rec);
        record_fail(err, s, violations);
        return NULL;
    }
    json_decref(violations);
    return rec;
}

/* The value a field absent from an insert's data gets: generated, its default, or none.
 * Returns -1 (err set) when generating fails. */
static int absent_value(const schema_t *s, const schema_field_t *f, schema_gen_fn gen, void *gen_ctx,
                        json_t **out, err_t *err) {
    *out = NULL;
    if (f->generated != GEN_NONE) {
        *out = field_generate(s, f, gen, gen_ctx, err);
        return *out ? 0 : -1;
    }
    if (f->default_value) {
        /* Containers are copied so no record can ever reach into the schema. */
        bool container = json_is_object(f->default_value) || json_is_array(f->default_value);
        *out = container ? json_deep_copy(f->default_value) : json_incref(f->default_value);
    }
    return 0;
}

json_t *schema_prepare_insert(const schema_t *s, const json_t *data, schema_gen_fn gen,
                              void *gen_ctx, err_t *err) {
    if (!json_is_object(data)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"data\": expected object");
        return NULL;
    }
    json_t *rec = json_object();
    json_walk_t w;
    json_walk_init(&w, data);
    for (size_t i = 0; i < s->field_count; i++) {
        const schema_field_t *f = &s->fields[i];
        /* Values are shared, not copied: records and requests are never changed below
         * the top level (normalisation replaces a top-level value), and copying was a
         * measurable share of every write. */
        json_t *v = json_walk_get(&w, f->name);
        if (v) {
            v = json_incref(v);
        } else if (absent_value(s, f, gen, gen_ctx, &v, err) < 0) {
            json_decref(rec);
            return NULL;
        }
        if (v) json_object_set_new_nocheck(rec, f->name, v); /* names were checked at compile */
    }
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)data, k, klen, v) {
        if (k[0] == '_' || strlen(k) != klen || schema_field_get(s, k)) continue;
        json_object_set_nocheck(rec, k, v); /* a key of a parsed object: valid UTF-8 */
    }
    return record_finish(s, rec, json_array(), err);
}

/* Whether an insert's data is laid out as its record would be: only declared fields,
 * in schema order, with no generated or default value due before the last of them.
 * Sets *next to the index of the first field after that last one. */
static bool data_in_record_order(const schema_t *s, const json_t *data, size_t *next) {
    size_t i = 0;
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)data, k, klen, v) {
        (void)v;
        if (k[0] == '_' || strlen(k) != klen) return false;
        for (;; i++) {
            if (i == s->field_count) return false; /* undeclared, or out of order */
            const schema_field_t *f = &s->fields[i];
            if (strcmp(f->name, k) == 0) break;
            if (f->generated != GEN_NONE || f->default_value) return false;
        }
        i++;
    }
    *next = i;
    return true;
}

json_t *schema_prepare_insert_take(const schema_t *s, json_t *data, schema_gen_fn gen,
                                   void *gen_ctx, err_t *err) {
    size_t next;
    if (!json_is_object(data) || data->refcount != 1 || !data_in_record_order(s, data, &next)) {
        json_t *rec = schema_prepare_insert(s, data, gen, gen_ctx, err);
        json_decref(data);
        return rec;
    }
    /* The caller's only reference: the data becomes the record, member for member
     * what schema_prepare_insert would build, without copying a member. */
    for (size_t i = next; i < s->field_count; i++) {
        json_t *v;
        if (absent_value(s, &s->fields[i], gen, gen_ctx, &v, err) < 0) {
            json_decref(data);
            return NULL;
        }
        if (v) json_object_set_new_nocheck(data, s->fields[i].name, v);
    }
    return record_finish(s, data, json_array(), err);
}

json_t *schema_prepare_update(const schema_t *s, const json_t *current, const json_t *patch,
                              err_t *err) {
    if (!json_is_object(current)) {
        err_set(err, ERR_INTERNAL, "Stored record is not an object");
        return NULL;
    }
    if (!json_is_object(patch)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"data\": expected object");
        return NULL;
    }
    json_t *violations = json_array();
    json_t *rec = json_copy((json_t *)current); /* top level only; values are shared */
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)patch, k, klen, v) {
        if (k[0] == '_' || strlen(k) != klen) continue;
        const schema_field_t *f = schema_field_get(s, k);
        /* Generated fields, a generated key included, are stripped from updates. */
        if (f && f->generated != GEN_NONE) continue;
        if (strcmp(k, s->key) == 0) {
            /* Giving the same key again is harmless; changing it would move the record. */
            const json_t *cur = json_object_get(current, s->key);
            if (!cur || !value_equal(cur, v))
                violation_add(violations, s->key, "immutable", "Field \"%s\" cannot be changed",
                              s->key);
            continue;
        }
        json_object_set(rec, k, v);
    }
    return record_finish(s, rec, violations, err);
}
