/* libFuzzer target for the WebSocket frame parser (net/ws.h). Input: one byte that
 * sets the chunking, then the bytes a client sends. The stream is parsed whole and in
 * chunks (each chunk's size taken from the byte it starts at) and both runs must see
 * the same events and the same verdict: how reads split the bytes never changes what
 * the parser decides. Delivered text must be valid UTF-8, control payloads <= 125. */
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "net/ws.h"

typedef struct { uint64_t hash, events; } trace_t;

static void trace_add(trace_t *t, int kind, const uint8_t *p, size_t n) {
    uint64_t h = (t->hash ^ (uint64_t)kind << 56 ^ n) * 0x100000001B3u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3u;
    t->hash = h, t->events++;
}
static void on_text(void *t, char *data, size_t n) {
    if (!utf8_is_valid((const uint8_t *)data, n)) abort();
    trace_add(t, 0, (const uint8_t *)data, n);
}
static void on_control(void *t, int opcode, const uint8_t *data, size_t n) {
    if (n > 125) abort();
    trace_add(t, opcode, data, n);
}

static int run(const uint8_t *in, size_t n, unsigned step, trace_t *t, uint16_t *code) {
    static const ws_callbacks_t cb = {on_text, on_control};
    uint8_t *buf = malloc(n ? n : 1); /* the parser unmasks in place */
    memcpy(buf, in, n);
    ws_parser_t p;
    ws_parser_init(&p, 4096);
    int rc = 0;
    for (size_t at = 0, len; at < n && rc == 0; at += len) {
        len = step ? 1u + buf[at] % step : n - at;
        if (len > n - at) len = n - at;
        rc = ws_parser_feed(&p, buf + at, len, &cb, t, code);
    }
    ws_parser_cleanup(&p);
    free(buf);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    trace_t whole = {0, 0}, split = {0, 0};
    uint16_t code_whole = 0, code_split = 0;
    int rc_whole = run(data + 1, size - 1, 0, &whole, &code_whole);
    int rc_split = run(data + 1, size - 1, data[0], &split, &code_split);
    if (rc_whole != rc_split || code_whole != code_split || whole.hash != split.hash ||
        whole.events != split.events)
        abort();
    return 0;
}
