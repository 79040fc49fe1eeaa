/* Unit tests for core/utf8.h: RFC 3629 validity, incremental feeding across chunk
 * boundaries, and an exhaustive comparison against a plain code-point decoder. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/utf8.h"

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static bool valid(const uint8_t *p, size_t n) {
    return utf8_is_valid(p, n) != 0;
}

/* A reference validator written the obvious way: decode each code point and check it
 * against the RFC 3629 rules. Slow, but independent of the state machine. */
static bool ref_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80)
            len = 1, cp = c, min = 0;
        else if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

Test(utf8, accepts_empty_input) {
    cr_assert(valid((const uint8_t *)"", 0));
}

Test(utf8, accepts_ascii) {
    const char *s = "{\"id\":1,\"type\":\"store.get\",\"bucket\":\"products\"}";
    cr_assert(valid((const uint8_t *)s, strlen(s)));
}

Test(utf8, accepts_two_byte_characters) {
    cr_assert(valid(BYTES(0xC2, 0x80))); /* U+0080 */
    cr_assert(valid(BYTES(0xC3, 0xA9))); /* é */
    cr_assert(valid(BYTES(0xDF, 0xBF))); /* U+07FF */
}

Test(utf8, accepts_three_byte_characters) {
    cr_assert(valid(BYTES(0xE0, 0xA0, 0x80))); /* U+0800 */
    cr_assert(valid(BYTES(0xE2, 0x82, 0xAC))); /* € */
    cr_assert(valid(BYTES(0xED, 0x9F, 0xBF))); /* U+D7FF, just below the surrogates */
    cr_assert(valid(BYTES(0xEE, 0x80, 0x80))); /* U+E000, just above them */
    cr_assert(valid(BYTES(0xEF, 0xBF, 0xBF))); /* U+FFFF */
}

Test(utf8, accepts_four_byte_characters) {
    cr_assert(valid(BYTES(0xF0, 0x90, 0x80, 0x80))); /* U+10000 */
    cr_assert(valid(BYTES(0xF0, 0x9F, 0x98, 0x80))); /* 😀 */
    cr_assert(valid(BYTES(0xF3, 0xBF, 0xBF, 0xBF)));
    cr_assert(valid(BYTES(0xF4, 0x8F, 0xBF, 0xBF))); /* U+10FFFF */
}

Test(utf8, rejects_overlong_encodings) {
    cr_assert_not(valid(BYTES(0xC0, 0x80)));
    cr_assert_not(valid(BYTES(0xC1, 0xBF)));
    cr_assert_not(valid(BYTES(0xE0, 0x80, 0x80)));
    cr_assert_not(valid(BYTES(0xE0, 0x9F, 0xBF)));
    cr_assert_not(valid(BYTES(0xF0, 0x80, 0x80, 0x80)));
    cr_assert_not(valid(BYTES(0xF0, 0x8F, 0xBF, 0xBF)));
}

Test(utf8, rejects_surrogates) {
    cr_assert_not(valid(BYTES(0xED, 0xA0, 0x80))); /* U+D800 */
    cr_assert_not(valid(BYTES(0xED, 0xBF, 0xBF))); /* U+DFFF */
}

Test(utf8, rejects_code_points_above_10ffff) {
    cr_assert_not(valid(BYTES(0xF4, 0x90, 0x80, 0x80)));
    cr_assert_not(valid(BYTES(0xF5, 0x80, 0x80, 0x80)));
    cr_assert_not(valid(BYTES(0xF7, 0xBF, 0xBF, 0xBF)));
    cr_assert_not(valid(BYTES(0xF8, 0x88, 0x80, 0x80, 0x80)));
    cr_assert_not(valid(BYTES(0xFF)));
}

Test(utf8, rejects_stray_continuation_bytes) {
    cr_assert_not(valid(BYTES(0x80)));
    cr_assert_not(valid(BYTES(0x41, 0xBF)));
    cr_assert_not(valid(BYTES(0xC3, 0xA9, 0xA9)));
}

Test(utf8, rejects_lead_byte_followed_by_non_continuation) {
    cr_assert_not(valid(BYTES(0xC3, 0x41)));
    cr_assert_not(valid(BYTES(0xE2, 0x82, 0x41)));
    cr_assert_not(valid(BYTES(0xF0, 0x9F, 0x98, 0xC3)));
}

Test(utf8, reports_truncated_sequence_as_mid_character) {
    const uint8_t euro[] = {0xE2, 0x82, 0xAC};
    for (size_t n = 1; n < sizeof euro; n++) {
        uint32_t st = utf8_feed(UTF8_ACCEPT, euro, n);
        cr_assert_neq(st, UTF8_ACCEPT, "prefix of %zu bytes", n);
        cr_assert_neq(st, UTF8_REJECT, "prefix of %zu bytes", n);
        cr_assert_not(valid(euro, n));
    }
    cr_assert_not(valid(BYTES(0x61, 0x62, 0xF0, 0x9F, 0x98)));
}

Test(utf8, accepts_characters_split_across_feeds) {
    const char *s = "a\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF z";
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t st = utf8_feed(UTF8_ACCEPT, p, cut);
        st = utf8_feed(st, p + cut, n - cut);
        cr_assert_eq(st, UTF8_ACCEPT, "cut at %zu", cut);
    }
    uint32_t st = UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++) st = utf8_feed(st, p + i, 1);
    cr_assert_eq(st, UTF8_ACCEPT);
}

Test(utf8, rejects_bad_sequence_split_across_feeds) {
    const uint8_t surrogate[] = {0xED, 0xA0, 0x80};
    uint32_t st = utf8_feed(UTF8_ACCEPT, surrogate, 1);
    cr_assert_neq(st, UTF8_REJECT);
    cr_assert_eq(utf8_feed(st, surrogate + 1, 2), UTF8_REJECT);
}

Test(utf8, keeps_rejecting_once_rejected) {
    uint32_t st = utf8_feed(UTF8_ACCEPT, BYTES(0xFF));
    cr_assert_eq(st, UTF8_REJECT);
    cr_assert_eq(utf8_feed(st, (const uint8_t *)"abc", 3), UTF8_REJECT);
    cr_assert_eq(utf8_feed(st, NULL, 0), UTF8_REJECT);
}

/* Exercises the eight-bytes-at-a-time ASCII path: one bad or multi-byte character at
 * every position and alignment of a long ASCII run. */
Test(utf8, finds_bad_byte_at_any_position_in_long_ascii) {
    uint8_t buf[80];
    for (size_t at = 0; at + 3 <= sizeof buf; at++) {
        memset(buf, 'x', sizeof buf);
        buf[at] = 0xFF;
        cr_assert_not(valid(buf, sizeof buf), "0xFF at %zu", at);
        buf[at] = 0xE2, buf[at + 1] = 0x82, buf[at + 2] = 0xAC;
        cr_assert(valid(buf, sizeof buf), "euro at %zu", at);
        buf[at + 2] = 'x';
        cr_assert_not(valid(buf, sizeof buf), "cut euro at %zu", at);
    }
}

Test(utf8, matches_reference_for_all_one_to_three_byte_inputs) {
    uint8_t b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        cr_assert_eq(valid(b, 1), ref_valid(b, 1), "%02x", x);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            cr_assert_eq(valid(b, 2), ref_valid(b, 2), "%02x %02x", x, y);
            if (x < 0xE0 || x > 0xF4) continue; /* other leads were settled by two bytes */
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                if (valid(b, 3) != ref_valid(b, 3)) cr_assert_fail("%02x %02x %02x", x, y, z);
            }
        }
    }
}

Test(utf8, matches_reference_for_four_byte_inputs) {
    static const uint8_t edges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    uint8_t b[4];
    for (unsigned x = 0xF0; x <= 0xF8; x++)
        for (unsigned y = 0; y < 256; y++)
            for (size_t i = 0; i < sizeof edges; i++)
                for (size_t j = 0; j < sizeof edges; j++) {
                    b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = edges[i], b[3] = edges[j];
                    if (valid(b, 4) != ref_valid(b, 4))
                        cr_assert_fail("%02x %02x %02x %02x", x, y, b[2], b[3]);
                }
}
