/* libFuzzer target for the WebSocket frame parser (net/ws.h). Input: one byte that
 * sets the chunking, then the bytes a client sends. The stream is parsed whole and in
 * chunks, and both runs must report the same events and verdict: how reads split the
 * bytes never changes what the parser decides. Text must be UTF-8, control <= 125. */
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "net/ws.h"

/* FNV-1a over everything the parser reports, so that two runs can be compared. */
static void trace(uint64_t *h, int kind, const uint8_t *p, size_t n) {
    *h = (*h ^ (uint64_t)kind << 32 ^ n) * 0x100000001B3u;
    for (size_t i = 0; i < n; i++) *h = (*h ^ p[i]) * 0x100000001B3u;
}
static void on_text(void *h, char *data, size_t n) {
    if (!utf8_is_valid((const uint8_t *)data, n)) abort();
    trace(h, 0, (const uint8_t *)data, n);
}
static void on_control(void *h, int opcode, const uint8_t *data, size_t n) {
    if (n > 125) abort();
    trace(h, opcode, data, n);
}

/* Feeds chunks of 1 + (the chunk's first byte % step) bytes, or everything when step is 0. */
static uint64_t run(const uint8_t *in, size_t n, unsigned step) {
    static const ws_callbacks_t cb = {on_text, on_control};
    uint8_t *buf = malloc(n + 1); /* the parser unmasks in place */
    memcpy(buf, in, n);
    ws_parser_t p;
    ws_parser_init(&p, 4096);
    uint64_t h = 14695981039346656037u;
    uint16_t code = 0;
    int rc = 0;
    for (size_t at = 0, len; at < n && rc == 0; at += len) {
        len = step ? 1u + buf[at] % step : n - at;
        if (len > n - at) len = n - at;
        rc = ws_parser_feed(&p, buf + at, len, &cb, &h, &code);
    }
    trace(&h, rc < 0 ? code : -1, NULL, 0);
    ws_parser_cleanup(&p);
    free(buf);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 0 && run(data + 1, size - 1, 0) != run(data + 1, size - 1, data[0])) abort();
    return 0;
}
