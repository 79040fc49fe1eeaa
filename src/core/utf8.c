/* UTF-8 validation as a small state machine. The state packs the number of
 * continuation bytes still expected (bits 8..) and the allowed range of the next
 * continuation byte (low/high limits), which is how overlongs and surrogates are
 * refused without a table. State 0 = accept, 1 = reject. Runs of ASCII, which is most
 * of what shopd receives (JSON), are skipped eight bytes at a time. */
#include "core/utf8.h"

#include <string.h>

/* State layout: bits 0..7 unused except the reject flag (1), bits 8..9 remaining
 * continuation bytes, bits 16..23 low bound, bits 24..31 high bound for the next byte. */
#define ST(rem, lo, hi) (((uint32_t)(rem) << 8) | ((uint32_t)(lo) << 16) | ((uint32_t)(hi) << 24))

#define HIGH_BITS 0x8080808080808080u

/* Whether the eight bytes at p are all ASCII; memcpy keeps the load legal at any
 * alignment and compiles to a single unaligned load. */
static int utf8_is_ascii8(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return (w & HIGH_BITS) == 0;
}

uint32_t utf8_feed(uint32_t state, const uint8_t *p, size_t n) {
    if (state == UTF8_REJECT) return UTF8_REJECT;
    size_t i = 0;
    while (i < n) {
        if (state == UTF8_ACCEPT) {
            while (n - i >= 8 && utf8_is_ascii8(p + i)) i += 8;
            if (i == n) break;
            uint8_t c = p[i++];
            if (c < 0x80)
                continue;
            else if (c >= 0xC2 && c <= 0xDF)
                state = ST(1, 0x80, 0xBF);
            else if (c == 0xE0)
                state = ST(2, 0xA0, 0xBF);
            else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
                state = ST(2, 0x80, 0xBF);
            else if (c == 0xED)
                state = ST(2, 0x80, 0x9F);
            else if (c == 0xF0)
                state = ST(3, 0x90, 0xBF);
            else if (c >= 0xF1 && c <= 0xF3)
                state = ST(3, 0x80, 0xBF);
            else if (c == 0xF4)
                state = ST(3, 0x80, 0x8F);
            else
                return UTF8_REJECT;
            continue;
        }
        uint8_t c = p[i++];
        uint32_t rem = (state >> 8) & 0xFF, lo = (state >> 16) & 0xFF, hi = state >> 24;
        if (c < lo || c > hi) return UTF8_REJECT;
        rem--;
        state = rem ? ST(rem, 0x80, 0xBF) : UTF8_ACCEPT;
    }
    return state;
}

int utf8_is_valid(const uint8_t *p, size_t n) {
    return utf8_feed(UTF8_ACCEPT, p, n) == UTF8_ACCEPT;
}
