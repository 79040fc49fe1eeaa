/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF). The state survives between chunks so a WebSocket text message split
 * across fragments is checked as it arrives and refused at the first bad byte. */
#ifndef SHOPD_CORE_UTF8_H
#define SHOPD_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0u
#define UTF8_REJECT 1u

/* Feeds n bytes; returns the new state: UTF8_ACCEPT at a character boundary,
 * UTF8_REJECT once invalid (sticky), anything else in the middle of a character. */
uint32_t utf8_feed(uint32_t state, const uint8_t *p, size_t n);
/* Whether the whole buffer is valid UTF-8. */
int utf8_is_valid(const uint8_t *p, size_t n);

#endif
