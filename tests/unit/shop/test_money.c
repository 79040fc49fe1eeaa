/* Money: ISO 4217 minor units, decimal rates, exact FX conversion and its rounding. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "shop/money.h"

/* ---- currencies ---- */

Test(money, knows_the_minor_units_of_two_decimal_currencies) {
    const char *two[] = {"USD", "EUR", "GBP", "CHF", "CZK", "PLN", "SEK", "NOK", "DKK", "CAD",
                         "AUD", "NZD", "CNY", "INR", "BRL", "MXN", "ZAR", "TRY", "HUF"};
    for (size_t i = 0; i < sizeof two / sizeof *two; i++)
        cr_expect_eq(money_decimals(two[i]), 2, "%s", two[i]);
}

Test(money, knows_zero_decimal_currencies) {
    const char *zero[] = {"JPY", "KRW", "ISK", "CLP", "VND", "XOF", "XAF"};
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++)
        cr_expect_eq(money_decimals(zero[i]), 0, "%s", zero[i]);
}

Test(money, knows_three_decimal_currencies) {
    const char *three[] = {"BHD", "KWD", "OMR", "JOD", "TND", "IQD", "LYD"};
    for (size_t i = 0; i < sizeof three / sizeof *three; i++)
        cr_expect_eq(money_decimals(three[i]), 3, "%s", three[i]);
}

Test(money, refuses_codes_that_are_not_supported_currencies) {
    const char *bad[] = {"usd", "Usd", "US", "USDD", "", "XYZ", "XAU", "CLF", "U1D", "US "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(money_decimals(bad[i]), -1, "%s", bad[i]);
        cr_expect_not(money_currency_ok(bad[i]), "%s", bad[i]);
    }
    cr_expect_eq(money_decimals(NULL), -1);
    cr_expect_not(money_currency_ok(NULL));
    cr_expect(money_currency_ok("USD"));
}

Test(money, tells_a_malformed_code_from_an_unsupported_one) {
    cr_expect(money_currency_shaped("XYZ"));
    cr_expect_not(money_currency_ok("XYZ"));
    cr_expect_not(money_currency_shaped("usd"));
    cr_expect_not(money_currency_shaped("USDX"));
    cr_expect_not(money_currency_shaped(NULL));
}

/* ---- rates ---- */

static int64_t rate_ok(const char *text) {
    int64_t r = 0;
    err_t err = ERR_INIT;
    cr_assert_eq(money_rate_parse(text, "rate", &r, &err), 0, "%s: %s", text, err.msg);
    return r;
}

static void rate_bad(const char *text) {
    int64_t r = 42;
    err_t err = ERR_INIT;
    cr_expect_eq(money_rate_parse(text, "rate", &r, &err), -1, "%s was accepted",
                 text ? text : "(null)");
    cr_expect_eq(err.code, ERR_VALIDATION, "%s", text ? text : "(null)");
    cr_expect_eq(r, 42, "out written on failure for %s", text ? text : "(null)");
    cr_expect(strstr(err.msg, "\"rate\"") != NULL, "%s", err.msg);
    err_clear(&err);
}

Test(money, parses_decimal_rates_to_nano_units) {
    cr_expect_eq(rate_ok("1.0842"), INT64_C(1084200000));
    cr_expect_eq(rate_ok("150"), INT64_C(150000000000));
    cr_expect_eq(rate_ok("0.000000001"), 1);
    cr_expect_eq(rate_ok("0.0067"), INT64_C(6700000));
    cr_expect_eq(rate_ok(".5"), INT64_C(500000000));
    cr_expect_eq(rate_ok("5."), INT64_C(5000000000));
    cr_expect_eq(rate_ok("1.5e-3"), INT64_C(1500000));
    cr_expect_eq(rate_ok("2E+2"), INT64_C(200000000000));
    cr_expect_eq(rate_ok("1e9"), MONEY_RATE_MAX_E9);
    cr_expect_eq(rate_ok("000148.500"), INT64_C(148500000000));
}

Test(money, rounds_rates_half_away_from_zero_at_the_ninth_decimal) {
    cr_expect_eq(rate_ok("1.23456789049"), INT64_C(1234567890));
    cr_expect_eq(rate_ok("1.2345678905"), INT64_C(1234567891));
    cr_expect_eq(rate_ok("0.0000000005"), 1);
    cr_expect_eq(rate_ok("9e-10"), 1);
    cr_expect_eq(rate_ok("0.3333333333333333333333"), INT64_C(333333333));
    cr_expect_eq(rate_ok("0.6666666666666666666666"), INT64_C(666666667));
}

Test(money, refuses_bad_rates) {
    rate_bad(NULL);
    rate_bad("");
    rate_bad("0");
    rate_bad("0.0000000004");
    rate_bad("-1");
    rate_bad("+1");
    rate_bad("abc");
    rate_bad("1.2.3");
    rate_bad(".");
    rate_bad("1e");
    rate_bad("1e5000");
    rate_bad("1 ");
    rate_bad("1000000001");
    rate_bad("1e10");
    rate_bad("0x10");
    rate_bad("1.00000000000000000000000000000000000000000000000000000000000000000"); /* too long */
}

Test(money, converts_double_rates_exactly_as_written) {
    int64_t r;
    err_t err = ERR_INIT;
    cr_assert_eq(money_rate_from_double(0.92, "rate", &r, &err), 0);
    cr_expect_eq(r, INT64_C(920000000));
    cr_assert_eq(money_rate_from_double(1.087, "rate", &r, &err), 0);
    cr_expect_eq(r, INT64_C(1087000000));
    cr_assert_eq(money_rate_from_double(148.5, "rate", &r, &err), 0);
    cr_expect_eq(r, INT64_C(148500000000));
    cr_assert_eq(money_rate_from_double(0.006734, "rate", &r, &err), 0);
    cr_expect_eq(r, INT64_C(6734000));
    cr_assert_eq(money_rate_from_double(1e-7, "rate", &r, &err), 0);
    cr_expect_eq(r, 100);
    cr_assert_eq(money_rate_from_double(0.1, "rate", &r, &err), 0);
    cr_expect_eq(r, INT64_C(100000000));
}

Test(money, refuses_double_rates_that_are_not_positive_and_finite) {
    double bad[] = {0.0, -1.0, NAN, INFINITY, -INFINITY, 1e-12, 2e9};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t r;
        err_t err = ERR_INIT;
        cr_expect_eq(money_rate_from_double(bad[i], "rate", &r, &err), -1, "%g", bad[i]);
        cr_expect_eq(err.code, ERR_VALIDATION);
        err_clear(&err);
    }
}

Test(money, formats_rates_without_trailing_zeros) {
    char out[32];
    money_rate_format(INT64_C(1084200000), out);
    cr_expect_str_eq(out, "1.0842");
    money_rate_format(INT64_C(150000000000), out);
    cr_expect_str_eq(out, "150");
    money_rate_format(1, out);
    cr_expect_str_eq(out, "0.000000001");
    money_rate_format(MONEY_RATE_MAX_E9, out);
    cr_expect_str_eq(out, "1000000000");
}

/* ---- conversion ---- */

static int64_t conv(int64_t amount, const char *from, const char *to, const char *rate) {
    int64_t out = 0;
    err_t err = ERR_INIT;
    cr_assert_eq(money_convert(amount, from, to, rate_ok(rate), &out, &err), 0,
                 "%lld %s→%s @%s: %s", (long long)amount, from, to, rate, err.msg);
    return out;
}

Test(money, converts_between_two_decimal_currencies) {
    cr_expect_eq(conv(10000, "USD", "EUR", "0.92"), 9200);
    cr_expect_eq(conv(24900, "EUR", "USD", "1.087"), 27066); /* 270.663 → 270.66 */
    cr_expect_eq(conv(7999, "USD", "GBP", "1"), 7999);
    cr_expect_eq(conv(0, "USD", "EUR", "0.92"), 0);
}

Test(money, converts_across_different_minor_units) {
    cr_expect_eq(conv(7999, "USD", "JPY", "148.5"), 11879);     /* 79.99 × 148.5 = 11878.515 */
    cr_expect_eq(conv(16800, "JPY", "USD", "0.006734"), 11313); /* 113.1312 USD */
    cr_expect_eq(conv(16800, "JPY", "EUR", "0.006196"), 10409); /* 104.0928 EUR */
    cr_expect_eq(conv(1, "JPY", "KWD", "0.002"), 2);            /* 0.002 KWD = 2 fils */
    cr_expect_eq(conv(1250, "KWD", "USD", "3.25"), 406);        /* 1.250 × 3.25 = 4.0625 */
    cr_expect_eq(conv(1000, "BHD", "JPY", "400"), 400);
    cr_expect_eq(conv(100, "USD", "BHD", "0.376"), 376); /* 1 USD = 0.376 BHD = 376 fils */
}

Test(money, rounds_half_away_from_zero) {
    cr_expect_eq(conv(1, "USD", "EUR", "0.5"), 1);   /* 0.5 → 1 */
    cr_expect_eq(conv(-1, "USD", "EUR", "0.5"), -1); /* −0.5 → −1 */
    cr_expect_eq(conv(3, "USD", "EUR", "0.5"), 2);   /* 1.5 → 2 */
    cr_expect_eq(conv(5, "USD", "EUR", "0.5"), 3);   /* 2.5 → 3, not 2 (no banker's rounding) */
    cr_expect_eq(conv(-5, "USD", "EUR", "0.5"), -3);
    cr_expect_eq(conv(1, "USD", "EUR", "0.499999999"), 0);
    cr_expect_eq(conv(-1, "USD", "EUR", "0.499999999"), 0);
    cr_expect_eq(conv(1, "USD", "EUR", "0.500000001"), 1);
    cr_expect_eq(conv(150, "USD", "JPY", "1"), 2); /* 1.50 USD → 1.5 JPY → 2 */
    cr_expect_eq(conv(149, "USD", "JPY", "1"), 1);
    cr_expect_eq(conv(-150, "USD", "JPY", "1"), -2);
    cr_expect_eq(conv(1005, "KWD", "USD", "1"), 101); /* 1.005 → 100.5 cents → 101 */
    cr_expect_eq(conv(1004, "KWD", "USD", "1"), 100);
    cr_expect_eq(conv(500, "KWD", "JPY", "1"), 1); /* 0.5 yen → 1 */
    cr_expect_eq(conv(499, "KWD", "JPY", "1"), 0);
}

Test(money, converts_large_amounts_exactly) {
    cr_expect_eq(conv(MONEY_MAX_MINOR, "USD", "EUR", "1"), MONEY_MAX_MINOR);
    cr_expect_eq(conv(MONEY_MAX_MINOR, "USD", "EUR", "0.5"),
                 INT64_C(4503599627370496)); /* .5 rounds up */
    /* 4503599627370495 × 1.000000001 = 4503599631874094.627370495: a double cannot hold
     * this product exactly; the 128-bit computation can. */
    cr_expect_eq(conv(INT64_C(4503599627370495), "USD", "EUR", "1.000000001"),
                 INT64_C(4503599631874095));
    cr_expect_eq(conv(-MONEY_MAX_MINOR, "USD", "EUR", "0.5"), INT64_C(-4503599627370496));
    cr_expect_eq(conv(INT64_C(9000000000), "JPY", "KWD", "1000"),
                 INT64_C(9000000000000000));                    /* 9·10^12 KWD */
    cr_expect_eq(conv(1, "KWD", "JPY", "1000000000"), 1000000); /* 0.001 KWD × 10^9 */
}

Test(money, refuses_conversions_out_of_range_or_with_bad_input) {
    int64_t out = 7;
    err_t err = ERR_INIT;
    cr_expect_eq(money_convert(MONEY_MAX_MINOR, "USD", "EUR", rate_ok("2"), &out, &err), -1);
    cr_expect_eq(err.code, ERR_VALIDATION);
    cr_expect_eq(out, 7);
    err_clear(&err);
    cr_expect_eq(money_convert(MONEY_MAX_MINOR, "JPY", "KWD", MONEY_RATE_MAX_E9, &out, &err), -1);
    err_clear(&err);
    cr_expect_eq(money_convert(MONEY_MAX_MINOR + 1, "USD", "EUR", rate_ok("1"), &out, &err), -1);
    err_clear(&err);
    cr_expect_eq(money_convert(100, "USD", "XYZ", rate_ok("1"), &out, &err), -1);
    cr_expect(strstr(err.msg, "XYZ") != NULL, "%s", err.msg);
    err_clear(&err);
    cr_expect_eq(money_convert(100, "usd", "EUR", rate_ok("1"), &out, &err), -1);
    err_clear(&err);
    cr_expect_eq(money_convert(100, "USD", "EUR", 0, &out, &err), -1);
    err_clear(&err);
    cr_expect_eq(money_convert(100, "USD", "EUR", -5, &out, &err), -1);
    err_clear(&err);
    cr_expect_eq(money_convert(100, "USD", "EUR", MONEY_RATE_MAX_E9 + 1, &out, &err), -1);
    err_clear(&err);
    cr_expect_eq(out, 7);
}

/* ---- arithmetic and formatting ---- */

Test(money, checked_arithmetic_stays_within_two_to_the_53) {
    int64_t out = 0;
    cr_expect_eq(money_add(MONEY_MAX_MINOR - 1, 1, &out), 0);
    cr_expect_eq(out, MONEY_MAX_MINOR);
    cr_expect_eq(money_add(MONEY_MAX_MINOR, 1, &out), -1);
    cr_expect_eq(money_add(-MONEY_MAX_MINOR, -1, &out), -1);
    cr_expect_eq(money_add(INT64_MAX, -INT64_MAX, &out), -1);
    cr_expect_eq(money_mul(7999, 999, &out), 0);
    cr_expect_eq(out, 7991001);
    cr_expect_eq(money_mul(MONEY_MAX_MINOR, 2, &out), -1);
    cr_expect_eq(money_mul(INT64_MAX, INT64_MAX, &out), -1);
}

Test(money, formats_amounts_for_people) {
    char out[64];
    cr_expect_str_eq(money_format(7999, "USD", out, sizeof out), "79.99 USD");
    cr_expect_str_eq(money_format(-5, "EUR", out, sizeof out), "-0.05 EUR");
    cr_expect_str_eq(money_format(1500, "JPY", out, sizeof out), "1500 JPY");
    cr_expect_str_eq(money_format(1250, "KWD", out, sizeof out), "1.250 KWD");
    cr_expect_str_eq(money_format(INT64_MIN, "USD", out, sizeof out), "-92233720368547758.08 USD");
    cr_expect_str_eq(money_format(42, "XYZ", out, sizeof out), "42 XYZ");
}
