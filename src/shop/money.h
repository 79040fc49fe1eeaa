/* Money: ISO 4217 currencies, minor units and FX conversion. Pure functions, no I/O.
 *
 * An amount is an int64_t count of minor units of one currency (cents for USD, yen
 * for JPY, fils for KWD). Amounts stay within ±MONEY_MAX_MINOR (2^53 − 1) so that they
 * travel through JSON and JavaScript clients exactly.
 *
 * An FX rate is a fixed-point integer: the number of quote-currency major units per
 * base-currency major unit, times 10^9 (MONEY_RATE_SCALE). "1.0842" is 1 084 200 000.
 * Rates are strictly positive and at most MONEY_RATE_MAX_E9 (a rate of 10^9).
 *
 * Conversion is exact then rounded once:
 *
 *     to_minor = amount_minor × rate_e9 × 10^to_decimals / (10^9 × 10^from_decimals)
 *
 * computed in 128-bit integers (no floating point anywhere) and rounded half away
 * from zero: a remainder of exactly one half goes to the larger magnitude (0.5 → 1,
 * −0.5 → −1, 2.5 → 3). With |amount| ≤ 2^53, rate ≤ 10^18/10^9 and at most 3
 * decimals the product stays below 10^37, well inside __int128. */
#ifndef SHOPD_SHOP_MONEY_H
#define SHOPD_SHOP_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define MONEY_MAX_MINOR INT64_C(9007199254740991)      /* 2^53 − 1 */
#define MONEY_RATE_SCALE INT64_C(1000000000)           /* rates are stored × 10^9 */
#define MONEY_RATE_MAX_E9 INT64_C(1000000000000000000) /* a rate of at most 10^9 */
#define MONEY_RATE_TEXT_MAX 64                         /* bytes of a decimal rate string */

/* The number of minor-unit decimals of an ISO 4217 code in the table (0, 2 or 3), or
 * -1 when the code is not a supported currency. Currencies with 4 decimals (CLF, UYW)
 * and funds/metals codes (XAU, XDR, …) are deliberately absent. */
int money_decimals(const char *code);
/* Whether code is three uppercase ASCII letters naming a currency in the table. */
bool money_currency_ok(const char *code);
/* Whether code has the shape of a currency code (three uppercase ASCII letters),
 * supported or not: lets callers tell a malformed code from an unsupported one. */
bool money_currency_shaped(const char *code);

/* Parses a positive decimal rate ("1.0842", "0.0067", "150", "1.5e-3") into
 * rate × 10^9, rounding half away from zero at the ninth decimal. Refuses (-1 with
 * VALIDATION_ERROR naming `field`) signs, empty or malformed text, text longer than
 * MONEY_RATE_TEXT_MAX, zero after rounding and rates above 10^9. */
int money_rate_parse(const char *text, const char *field, int64_t *out, err_t *err);
/* The same for a double (as stored in a JSON number): the shortest decimal text that
 * reads back as the same double is parsed, so 1.0842 means exactly 1.0842. Refuses
 * NaN, infinities, zero and negatives. */
int money_rate_from_double(double rate, const char *field, int64_t *out, err_t *err);
/* Writes rate_e9 as a decimal without trailing zeros ("1.0842", "150") into out. */
void money_rate_format(int64_t rate_e9, char out[32]);

/* Converts amount_minor of currency `from` into currency `to` at rate_e9 (units of
 * `to` per unit of `from`, × 10^9), rounding half away from zero (see above). Same
 * currency: the rate must still be valid and is applied (callers skip FX for equal
 * currencies themselves). Errors (VALIDATION_ERROR): unknown currency, rate ≤ 0 or
 * above MONEY_RATE_MAX_E9, |amount| or |result| above MONEY_MAX_MINOR. *out is
 * written only on success. */
int money_convert(int64_t amount_minor, const char *from, const char *to, int64_t rate_e9,
                  int64_t *out, err_t *err);

/* Checked arithmetic within ±MONEY_MAX_MINOR: return 0 and write *out, or -1. */
int money_add(int64_t a, int64_t b, int64_t *out);
int money_mul(int64_t amount_minor, int64_t factor, int64_t *out);

/* Formats an amount for people: "79.99 USD", "-0.05 EUR", "1500 JPY", "1.250 KWD".
 * Unknown currencies print the minor units as they are. Returns out. */
const char *money_format(int64_t amount_minor, const char *code, char *out, size_t size);

#endif
