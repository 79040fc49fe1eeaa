/* ISO 4217 minor units, decimal rates and exact FX conversion (see money.h). */
#include "shop/money.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"

typedef struct {
    char code[4];
    signed char decimals;
} currency_t;

/* ISO 4217 (list one), active currencies; minor units as ISO publishes them. */
/* clang-format off */
static const currency_t currencies[] = {
    /* 0 decimals */
    {"BIF", 0}, {"CLP", 0}, {"DJF", 0}, {"GNF", 0}, {"ISK", 0}, {"JPY", 0}, {"KMF", 0},
    {"KRW", 0}, {"PYG", 0}, {"RWF", 0}, {"UGX", 0}, {"VND", 0}, {"VUV", 0}, {"XAF", 0},
    {"XOF", 0}, {"XPF", 0},
    /* 3 decimals */
    {"BHD", 3}, {"IQD", 3}, {"JOD", 3}, {"KWD", 3}, {"LYD", 3}, {"OMR", 3}, {"TND", 3},
    /* 2 decimals */
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2},
    {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BMD", 2},
    {"BND", 2}, {"BOB", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2}, {"BYN", 2},
    {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHF", 2}, {"CNY", 2}, {"COP", 2}, {"CRC", 2},
    {"CUP", 2}, {"CVE", 2}, {"CZK", 2}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2},
    {"ERN", 2}, {"ETB", 2}, {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2},
    {"GHS", 2}, {"GIP", 2}, {"GMD", 2}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2},
    {"HTG", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2}, {"IRR", 2}, {"JMD", 2},
    {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KPW", 2}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2},
    {"LBP", 2}, {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2},
    {"MKD", 2}, {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2},
    {"MWK", 2}, {"MXN", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2}, {"NIO", 2},
    {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2}, {"PHP", 2},
    {"PKR", 2}, {"PLN", 2}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"RUB", 2}, {"SAR", 2},
    {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2}, {"SHP", 2}, {"SLE", 2},
    {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2}, {"SZL", 2},
    {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2}, {"TWD", 2},
    {"TZS", 2}, {"UAH", 2}, {"USD", 2}, {"UYU", 2}, {"UZS", 2}, {"VES", 2}, {"WST", 2},
    {"XCD", 2}, {"XCG", 2}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
};
/* clang-format on */

static const int64_t pow10_table[] = {1, 10, 100, 1000};

bool money_currency_shaped(const char *code) {
    if (!code) return false;
    for (int i = 0; i < 3; i++)
        if (code[i] < 'A' || code[i] > 'Z') return false;
    return code[3] == '\0';
}

int money_decimals(const char *code) {
    if (!money_currency_shaped(code)) return -1;
    for (size_t i = 0; i < sizeof currencies / sizeof *currencies; i++)
        if (memcmp(currencies[i].code, code, 3) == 0) return currencies[i].decimals;
    return -1;
}

bool money_currency_ok(const char *code) {
    return money_decimals(code) >= 0;
}

/* ---- checked arithmetic ---- */

int money_add(int64_t a, int64_t b, int64_t *out) {
    if (a < -MONEY_MAX_MINOR || a > MONEY_MAX_MINOR || b < -MONEY_MAX_MINOR || b > MONEY_MAX_MINOR)
        return -1;
    int64_t s = a + b; /* cannot overflow: both are below 2^53 in magnitude */
    if (s < -MONEY_MAX_MINOR || s > MONEY_MAX_MINOR) return -1;
    *out = s;
    return 0;
}

int money_mul(int64_t amount_minor, int64_t factor, int64_t *out) {
    __int128 p = (__int128)amount_minor * factor;
    if (p < -MONEY_MAX_MINOR || p > MONEY_MAX_MINOR) return -1;
    *out = (int64_t)p;
    return 0;
}

/* ---- rates ---- */

static int bad_rate(err_t *err, const char *field, const char *why) {
    err_set(err, ERR_VALIDATION, "Invalid \"%s\": %s", field ? field : "rate", why);
    return -1;
}

int money_rate_parse(const char *text, const char *field, int64_t *out, err_t *err) {
    if (!text || !*text) return bad_rate(err, field, "expected a positive decimal number");
    size_t len = strlen(text);
    if (len > MONEY_RATE_TEXT_MAX) return bad_rate(err, field, "decimal text too long");

    /* Collect the digits (without the point) and where the point falls. */
    char digits[MONEY_RATE_TEXT_MAX + 1];
    size_t nd = 0, int_digits = 0, frac_digits = 0;
    const char *p = text;
    while (*p >= '0' && *p <= '9') {
        digits[nd++] = *p++;
        int_digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            digits[nd++] = *p++;
            frac_digits++;
        }
    }
    if (int_digits + frac_digits == 0)
        return bad_rate(err, field, "expected a positive decimal number");
    long exp10 = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        int neg = 0;
        if (*p == '+' || *p == '-') neg = *p++ == '-';
        if (*p < '0' || *p > '9') return bad_rate(err, field, "expected a positive decimal number");
        while (*p >= '0' && *p <= '9') {
            exp10 = exp10 * 10 + (*p++ - '0');
            if (exp10 > 999) return bad_rate(err, field, "exponent out of range");
        }
        if (neg) exp10 = -exp10;
    }
    if (*p != '\0') return bad_rate(err, field, "expected a positive decimal number");

    /* The scaled value keeps the digits up to the ninth after the point; the next
     * digit decides the rounding (half away from zero, and the value is positive). */
    long point = (long)int_digits + exp10;
    long keep = point + 9; /* digits[0 .. keep) form the integer rate × 10^9 */
    int64_t scaled = 0;
    for (long i = 0; i < keep; i++) {
        int d = i < (long)nd ? digits[i] - '0' : 0;
        if (scaled > (MONEY_RATE_MAX_E9 - d) / 10)
            return bad_rate(err, field, "rate above 1000000000");
        scaled = scaled * 10 + d;
    }
    if (keep >= 0 && keep < (long)nd && digits[keep] >= '5') scaled++;
    if (scaled > MONEY_RATE_MAX_E9) return bad_rate(err, field, "rate above 1000000000");
    if (scaled <= 0)
        return bad_rate(err, field, "expected a rate greater than 0 (at least 0.000000001)");
    *out = scaled;
    return 0;
}

int money_rate_from_double(double rate, const char *field, int64_t *out, err_t *err) {
    if (!isfinite(rate) || rate <= 0) return bad_rate(err, field, "expected a positive number");
    buf_t b;
    buf_init(&b, 0);
    json_write_double(&b, rate);
    int rc = money_rate_parse(buf_cstr(&b), field, out, err);
    buf_cleanup(&b);
    return rc;
}

void money_rate_format(int64_t rate_e9, char out[32]) {
    int64_t ip = rate_e9 / MONEY_RATE_SCALE, fp = rate_e9 % MONEY_RATE_SCALE;
    if (fp < 0) fp = -fp;
    if (fp == 0) {
        snprintf(out, 32, "%lld", (long long)ip);
        return;
    }
    char frac[16];
    snprintf(frac, sizeof frac, "%09lld", (long long)fp);
    size_t n = strlen(frac);
    while (n > 0 && frac[n - 1] == '0') frac[--n] = '\0';
    snprintf(out, 32, "%lld.%s", (long long)ip, frac);
}

/* ---- conversion ---- */

int money_convert(int64_t amount_minor, const char *from, const char *to, int64_t rate_e9,
                  int64_t *out, err_t *err) {
    int df = money_decimals(from), dt = money_decimals(to);
    if (df < 0 || dt < 0) {
        err_set(err, ERR_VALIDATION, "Unsupported currency \"%s\"",
                df < 0 ? (from ? from : "") : to);
        return -1;
    }
    if (rate_e9 <= 0 || rate_e9 > MONEY_RATE_MAX_E9)
        return bad_rate(err, "rate", "expected a rate in (0, 1000000000]");
    if (amount_minor < -MONEY_MAX_MINOR || amount_minor > MONEY_MAX_MINOR) {
        err_set(err, ERR_VALIDATION, "Amount out of range (at most %lld minor units)",
                (long long)MONEY_MAX_MINOR);
        return -1;
    }
    __int128 num = (__int128)amount_minor * rate_e9 * pow10_table[dt];
    __int128 den = (__int128)MONEY_RATE_SCALE * pow10_table[df];
    __int128 q = num / den; /* truncates toward zero */
    __int128 r = num % den; /* has the sign of num */
    if (r < 0) r = -r;
    if (2 * r >= den) q += num < 0 ? -1 : 1;
    if (q < -MONEY_MAX_MINOR || q > MONEY_MAX_MINOR) {
        err_set(err, ERR_VALIDATION, "Converted amount out of range (at most %lld minor units)",
                (long long)MONEY_MAX_MINOR);
        return -1;
    }
    *out = (int64_t)q;
    return 0;
}

const char *money_format(int64_t amount_minor, const char *code, char *out, size_t size) {
    int d = money_decimals(code);
    uint64_t mag = amount_minor < 0 ? (uint64_t)0 - (uint64_t)amount_minor : (uint64_t)amount_minor;
    const char *sign = amount_minor < 0 ? "-" : "";
    const char *cur = code ? code : "";
    if (d <= 0) {
        snprintf(out, size, "%s%llu %s", sign, (unsigned long long)mag, cur);
    } else {
        uint64_t p = (uint64_t)pow10_table[d];
        unsigned long long ip = mag / p, fp = mag % p;
        if (d == 2)
            snprintf(out, size, "%s%llu.%02llu %s", sign, ip, fp, cur);
        else
            snprintf(out, size, "%s%llu.%03llu %s", sign, ip, fp, cur);
    }
    return out;
}
