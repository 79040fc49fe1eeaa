/* Clocks (see clock.h). */
#include "core/clock.h"

#include <time.h>

int64_t clock_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t clock_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void clock_http_date(int64_t epoch_sec, char out[30]) {
    time_t t = (time_t)epoch_sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 30, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}
