/* Time in the units the protocol speaks: milliseconds. */
#ifndef SHOPD_CORE_CLOCK_H
#define SHOPD_CORE_CLOCK_H

#include <stdint.h>

int64_t clock_now_ms(void);   /* wall clock, ms since the Unix epoch */
uint64_t clock_mono_ms(void); /* monotonic, for intervals and deadlines */

/* Writes an IMF-fixdate (RFC 9110 Date header) for `epoch_sec` into out (>= 30 bytes). */
void clock_http_date(int64_t epoch_sec, char out[30]);

#endif
