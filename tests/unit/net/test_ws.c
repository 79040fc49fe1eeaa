/* Unit tests for net/ws.h: the frame parser against frames built the way a client
 * builds them (masked), fed whole, in pieces and byte by byte; the frame writer's
 * exact bytes; the handshake accept value. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "net/ws.h"

#define FIN 0x80u
#define RSV1 0x40u
#define MAX_MESSAGE 1024

/* ------------------------------------------------------------ client side ---- */

static const uint8_t KEY[4] = {0x37, 0xFA, 0x21, 0x3D};

/* Appends a frame as a client sends it: b0 is the first header byte (FIN, RSV bits,
 * opcode), the length uses the shortest encoding and the payload is masked with KEY. */
static void client_frame(buf_t *b, unsigned b0, const void *payload, size_t len) {
    uint8_t h[14];
    size_t n;
    h[0] = (uint8_t)b0;
    if (len < 126) {
        h[1] = (uint8_t)(0x80 | len);
        n = 2;
    } else if (len <= 0xFFFF) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    memcpy(h + n, KEY, 4);
    cr_assert_eq(buf_append(b, h, n + 4), 0);
    char *dst = buf_reserve(b, len);
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++) dst[i] = (char)(src[i] ^ KEY[i % 4]);
    buf_commit(b, len);
}

/* A string literal and its length, without the terminating NUL. */
#define LIT(s) (s), sizeof(s) - 1

static void client_text(buf_t *b, const char *s) {
    client_frame(b, FIN | WS_OP_TEXT, s, strlen(s));
}

/* Appends raw header bytes (for frames a well-behaved client cannot produce). */
static void raw(buf_t *b, const uint8_t *bytes, size_t n) {
    cr_assert_eq(buf_append(b, bytes, n), 0);
}

#define RAW(b, ...) raw((b), (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* --------------------------------------------------------------- recorder ---- */

typedef struct {
    int opcode; /* WS_OP_TEXT for messages */
    char *data;
    size_t len;
    const char *where; /* the pointer the parser passed */
} event_t;

static ws_parser_t parser;
static event_t events[64];
static size_t n_events;
static buf_t wire; /* the bytes a test sends */

static void record(int opcode, const void *data, size_t len) {
    cr_assert_lt(n_events, sizeof events / sizeof events[0]);
    event_t *e = &events[n_events++];
    e->opcode = opcode;
    e->data = xmemdup(data, len);
    e->len = len;
    e->where = data;
}

static void on_text(void *udata, char *data, size_t len) {
    cr_assert_eq(udata, &parser);
    record(WS_OP_TEXT, data, len);
}

static void on_control(void *udata, int opcode, const uint8_t *data, size_t len) {
    cr_assert_eq(udata, &parser);
    record(opcode, data, len);
}

static const ws_callbacks_t callbacks = {on_text, on_control};

static void events_clear(void) {
    for (size_t i = 0; i < n_events; i++) free(events[i].data);
    n_events = 0;
}

static void setup(void) {
    ws_parser_init(&parser, MAX_MESSAGE);
    buf_init(&wire, 0);
}

static void teardown(void) {
    ws_parser_cleanup(&parser);
    /* Forget the parser so LeakSanitizer sees any storage cleanup failed to free. */
    memset(&parser, 0, sizeof parser);
    buf_cleanup(&wire);
    events_clear();
}

static void parser_reset(size_t max_message) {
    ws_parser_cleanup(&parser);
    memset(&parser, 0, sizeof parser);
    ws_parser_init(&parser, max_message);
    events_clear();
}

/* Feeds bytes in chunks of `chunk` (0 = all at once); returns the first failure. */
static int feed_chunked(uint8_t *data, size_t len, size_t chunk, uint16_t *code) {
    if (chunk == 0) chunk = len ? len : 1;
    for (size_t at = 0; at < len; at += chunk) {
        size_t n = len - at < chunk ? len - at : chunk;
        if (ws_parser_feed(&parser, data + at, n, &callbacks, &parser, code) < 0) return -1;
    }
    return 0;
}

static int feed_wire(size_t chunk, uint16_t *code) {
    return feed_chunked((uint8_t *)wire.data, wire.len, chunk, code);
}

static void assert_event(size_t i, int opcode, const void *data, size_t len) {
    cr_assert_lt(i, n_events, "event %zu missing", i);
    cr_assert_eq(events[i].opcode, opcode, "event %zu opcode", i);
    cr_assert_eq(events[i].len, len, "event %zu length %zu, want %zu", i, events[i].len, len);
    cr_assert(len == 0 || memcmp(events[i].data, data, len) == 0, "event %zu payload", i);
}

static void assert_text(size_t i, const char *s) {
    assert_event(i, WS_OP_TEXT, s, strlen(s));
}

/* Sends the wire and expects a failure with `want`, having delivered `events_before`. */
static void assert_refused(size_t chunk, uint16_t want, size_t events_before) {
    uint16_t code = 0;
    cr_assert_eq(feed_wire(chunk, &code), -1);
    cr_assert_eq(code, want, "close code %u, want %u", code, want);
    cr_assert_eq(n_events, events_before);
}

static void assert_idle(void) {
    cr_assert_not(ws_parser_busy(&parser));
    cr_assert_null(parser.msg.data, "message storage held while idle");
    cr_assert_eq(parser.msg.cap, 0);
}

TestSuite(ws_parser, .init = setup, .fini = teardown);
TestSuite(ws_writer, .init = setup, .fini = teardown);

/* ------------------------------------------------------ parser: delivery ---- */

Test(ws_parser, delivers_masked_text_frame) {
    client_text(&wire, "{\"id\":1,\"type\":\"store.buckets\"}");
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 1);
    assert_text(0, "{\"id\":1,\"type\":\"store.buckets\"}");
    assert_idle();
}

Test(ws_parser, delivers_rfc_sample_masked_hello) {
    /* RFC 6455 section 5.7: a single-frame masked text message "Hello". */
    RAW(&wire, 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    assert_text(0, "Hello");
}

Test(ws_parser, delivers_empty_text_frame) {
    client_text(&wire, "");
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 1);
    assert_text(0, "");
    cr_assert_not_null(events[0].where);
    assert_idle();
}

Test(ws_parser, delivers_whole_frame_in_place_without_copying) {
    client_text(&wire, "a message that sits entirely inside one read");
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 1);
    cr_assert(events[0].where >= wire.data && events[0].where < wire.data + wire.len,
              "message was copied instead of delivered from the input");
    cr_assert_null(parser.msg.data);
}

Test(ws_parser, delivers_frame_fed_byte_by_byte) {
    client_text(&wire, "byte by byte, \xE2\x82\xAC included");
    uint16_t code = 0;
    cr_assert_eq(feed_wire(1, &code), 0);
    cr_assert_eq(n_events, 1);
    assert_text(0, "byte by byte, \xE2\x82\xAC included");
    assert_idle();
}

Test(ws_parser, delivers_frame_split_at_every_position) {
    const char *msg = "{\"type\":\"pong\",\"timestamp\":1700000000000}";
    buf_t pristine;
    buf_init(&pristine, 0);
    client_text(&pristine, msg);
    client_frame(&pristine, FIN | WS_OP_PING, "hb", 2);
    for (size_t cut = 0; cut <= pristine.len; cut++) {
        parser_reset(MAX_MESSAGE);
        uint8_t copy[128];
        cr_assert_leq(pristine.len, sizeof copy);
        memcpy(copy, pristine.data, pristine.len);
        uint16_t code = 0;
        cr_assert_eq(ws_parser_feed(&parser, copy, cut, &callbacks, &parser, &code), 0);
        cr_assert_eq(
            ws_parser_feed(&parser, copy + cut, pristine.len - cut, &callbacks, &parser, &code), 0);
        cr_assert_eq(n_events, 2, "cut at %zu", cut);
        assert_text(0, msg);
        assert_event(1, WS_OP_PING, "hb", 2);
        assert_idle();
    }
    buf_cleanup(&pristine);
}

Test(ws_parser, delivers_several_frames_in_one_feed) {
    client_text(&wire, "one");
    client_frame(&wire, FIN | WS_OP_PING, "p", 1);
    client_text(&wire, "two");
    client_frame(&wire, FIN | WS_OP_PONG, NULL, 0);
    client_text(&wire, "three");
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 5);
    assert_text(0, "one");
    assert_event(1, WS_OP_PING, "p", 1);
    assert_text(2, "two");
    assert_event(3, WS_OP_PONG, NULL, 0);
    assert_text(4, "three");
    assert_idle();
}

/* Every length around the word-at-a-time boundary, fed at every chunk size, so the
 * unmasking starts at each phase of the key. */
Test(ws_parser, unmasks_payload_at_every_key_phase) {
    char text[64];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('A' + i % 26);
    for (size_t len = 0; len <= sizeof text; len++) {
        for (size_t chunk = 1; chunk <= 19; chunk++) {
            parser_reset(MAX_MESSAGE);
            buf_cleanup(&wire);
            client_frame(&wire, FIN | WS_OP_TEXT, text, len);
            uint16_t code = 0;
            cr_assert_eq(feed_wire(chunk, &code), 0);
            cr_assert_eq(n_events, 1);
            assert_event(0, WS_OP_TEXT, text, len);
        }
    }
}

Test(ws_parser, parses_16_bit_length) {
    parser_reset(70000);
    char *text = xmalloc(65535);
    memset(text, 'm', 65535);
    client_frame(&wire, FIN | WS_OP_TEXT, text, 126);
    client_frame(&wire, FIN | WS_OP_TEXT, text, 65535);
    cr_assert_eq((uint8_t)wire.data[1], 0x80 | 126);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 2);
    assert_event(0, WS_OP_TEXT, text, 126);
    assert_event(1, WS_OP_TEXT, text, 65535);
    free(text);
}

Test(ws_parser, parses_64_bit_length) {
    parser_reset(70000);
    char *text = xmalloc(65536);
    for (size_t i = 0; i < 65536; i++) text[i] = (char)('a' + i % 26);
    client_frame(&wire, FIN | WS_OP_TEXT, text, 65536);
    cr_assert_eq((uint8_t)wire.data[1], 0x80 | 127);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(1000, &code), 0);
    cr_assert_eq(n_events, 1);
    assert_event(0, WS_OP_TEXT, text, 65536);
    assert_idle();
    free(text);
}

Test(ws_parser, accepts_64_bit_length_for_short_payload) {
    /* A non-minimal length encoding is tolerated; only the value matters. */
    RAW(&wire, FIN | WS_OP_TEXT, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 'o', 'k');
    uint16_t code = 0;
    cr_assert_eq(feed_wire(1, &code), 0);
    assert_text(0, "ok");
}

Test(ws_parser, reassembles_fragmented_message) {
    client_frame(&wire, WS_OP_TEXT, "{\"id\":", 6);
    client_frame(&wire, WS_OP_CONT, "", 0);
    client_frame(&wire, WS_OP_CONT, "7,\"type\":", 9);
    client_frame(&wire, FIN | WS_OP_CONT, "\"x\"}", 4);
    for (size_t chunk = 0; chunk <= 5; chunk++) {
        parser_reset(MAX_MESSAGE);
        buf_t copy;
        buf_init(&copy, 0);
        buf_append(&copy, wire.data, wire.len);
        uint16_t code = 0;
        cr_assert_eq(feed_chunked((uint8_t *)copy.data, copy.len, chunk, &code), 0);
        cr_assert_eq(n_events, 1, "chunk %zu", chunk);
        assert_text(0, "{\"id\":7,\"type\":\"x\"}");
        assert_idle();
        buf_cleanup(&copy);
    }
}

Test(ws_parser, delivers_ping_interleaved_in_fragmented_message) {
    client_frame(&wire, WS_OP_TEXT, "frag", 4);
    client_frame(&wire, FIN | WS_OP_PING, "ping!", 5);
    client_frame(&wire, WS_OP_CONT, "men", 3);
    client_frame(&wire, FIN | WS_OP_PONG, "", 0);
    client_frame(&wire, FIN | WS_OP_CONT, "ted", 3);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 3);
    assert_event(0, WS_OP_PING, "ping!", 5);
    assert_event(1, WS_OP_PONG, NULL, 0);
    assert_text(2, "fragmented");
    assert_idle();
}

Test(ws_parser, delivers_close_interleaved_in_fragmented_message) {
    client_frame(&wire, WS_OP_TEXT, "a", 1);
    client_frame(&wire, FIN | WS_OP_CLOSE, "\x03\xe8", 2);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 1);
    assert_event(0, WS_OP_CLOSE, "\x03\xe8", 2);
    cr_assert(ws_parser_busy(&parser));
}

Test(ws_parser, collects_control_payload_split_across_feeds) {
    const char payload[] = "a ping payload of some length that arrives in pieces";
    client_frame(&wire, FIN | WS_OP_PING, payload, sizeof payload - 1);
    for (size_t chunk = 1; chunk <= 7; chunk++) {
        parser_reset(MAX_MESSAGE);
        buf_t copy;
        buf_init(&copy, 0);
        buf_append(&copy, wire.data, wire.len);
        uint16_t code = 0;
        cr_assert_eq(feed_chunked((uint8_t *)copy.data, copy.len, chunk, &code), 0);
        cr_assert_eq(n_events, 1);
        assert_event(0, WS_OP_PING, payload, sizeof payload - 1);
        buf_cleanup(&copy);
    }
}

Test(ws_parser, delivers_control_frame_of_125_bytes) {
    char payload[125];
    memset(payload, 'c', sizeof payload);
    client_frame(&wire, FIN | WS_OP_PING, payload, sizeof payload);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(3, &code), 0);
    assert_event(0, WS_OP_PING, payload, sizeof payload);
}

Test(ws_parser, continues_with_remaining_bytes_after_close) {
    client_frame(&wire, FIN | WS_OP_CLOSE,
                 "\x03\xe8"
                 "bye",
                 5);
    client_text(&wire, "after");
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_eq(n_events, 2);
    assert_event(0, WS_OP_CLOSE,
                 "\x03\xe8"
                 "bye",
                 5);
    assert_text(1, "after");
}

Test(ws_parser, tolerates_null_callbacks) {
    const ws_callbacks_t none = {NULL, NULL};
    client_text(&wire, "ignored");
    client_frame(&wire, FIN | WS_OP_PING, NULL, 0);
    uint16_t code = 0;
    cr_assert_eq(ws_parser_feed(&parser, (uint8_t *)wire.data, wire.len, &none, NULL, &code), 0);
    assert_idle();
}

/* ------------------------------------------------ parser: state and memory ---- */

Test(ws_parser, reports_busy_while_header_is_partial) {
    client_text(&wire, "hi");
    uint16_t code = 0;
    cr_assert_not(ws_parser_busy(&parser));
    cr_assert_eq(ws_parser_feed(&parser, (uint8_t *)wire.data, 1, &callbacks, &parser, &code), 0);
    cr_assert(ws_parser_busy(&parser));
    cr_assert_eq(
        ws_parser_feed(&parser, (uint8_t *)wire.data + 1, wire.len - 1, &callbacks, &parser, &code),
        0);
    assert_idle();
}

Test(ws_parser, buffers_partial_frame_then_releases_storage) {
    client_text(&wire, "a text frame that arrives in two reads");
    uint16_t code = 0;
    cr_assert_eq(ws_parser_feed(&parser, (uint8_t *)wire.data, 20, &callbacks, &parser, &code), 0);
    cr_assert(ws_parser_busy(&parser));
    cr_assert_eq(n_events, 0);
    cr_assert_not_null(parser.msg.data);
    cr_assert_eq(ws_parser_feed(&parser, (uint8_t *)wire.data + 20, wire.len - 20, &callbacks,
                                &parser, &code),
                 0);
    assert_text(0, "a text frame that arrives in two reads");
    assert_idle();
}

Test(ws_parser, holds_storage_only_while_fragmented_message_is_open) {
    client_frame(&wire, WS_OP_TEXT, "open", 4);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert(ws_parser_busy(&parser));
    cr_assert_not_null(parser.msg.data);
    buf_cleanup(&wire);
    client_frame(&wire, FIN | WS_OP_CONT, "ed", 2);
    cr_assert_eq(feed_wire(0, &code), 0);
    assert_text(0, "opened");
    assert_idle();
}

Test(ws_parser, keeps_state_small) {
    /* The per-connection budget is 2 KiB in total; the parser is a small part of it. */
    cr_assert_leq(sizeof(ws_parser_t), 256);
}

Test(ws_parser, frees_partial_message_on_cleanup) {
    /* Run under ASan: a message left half-received must not leak. */
    client_frame(&wire, WS_OP_TEXT, "left open", 9);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    cr_assert_not_null(parser.msg.data);
    ws_parser_cleanup(&parser);
    cr_assert_null(parser.msg.data);
}

/* -------------------------------------------------- parser: protocol rules ---- */

Test(ws_parser, rejects_unmasked_frame) {
    RAW(&wire, FIN | WS_OP_TEXT, 0x02, 'h', 'i');
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_unmasked_control_frame) {
    RAW(&wire, FIN | WS_OP_PING, 0x00);
    assert_refused(1, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_rsv_bits) {
    for (unsigned rsv = 1; rsv <= 7; rsv++) {
        parser_reset(MAX_MESSAGE);
        buf_cleanup(&wire);
        client_frame(&wire, FIN | rsv << 4 | WS_OP_TEXT, "x", 1);
        assert_refused(0, WS_CLOSE_PROTOCOL, 0);
    }
    parser_reset(MAX_MESSAGE);
    buf_cleanup(&wire);
    client_frame(&wire, FIN | RSV1 | WS_OP_PING, NULL, 0);
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_reserved_opcodes) {
    static const unsigned reserved[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        parser_reset(MAX_MESSAGE);
        buf_cleanup(&wire);
        client_frame(&wire, FIN | reserved[i], NULL, 0);
        uint16_t code = 0;
        cr_assert_eq(feed_wire(0, &code), -1, "opcode %x", reserved[i]);
        cr_assert_eq(code, WS_CLOSE_PROTOCOL, "opcode %x", reserved[i]);
    }
}

Test(ws_parser, rejects_control_frame_longer_than_125) {
    char payload[126];
    memset(payload, 'p', sizeof payload);
    client_frame(&wire, FIN | WS_OP_PING, payload, sizeof payload);
    /* decided by the header: the payload is never needed */
    wire.len = 8;
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_fragmented_control_frame) {
    client_frame(&wire, WS_OP_PING, "p", 1);
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_continuation_without_message) {
    client_frame(&wire, FIN | WS_OP_CONT, "orphan", 6);
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_continuation_after_completed_message) {
    client_text(&wire, "done");
    client_frame(&wire, FIN | WS_OP_CONT, "more", 4);
    assert_refused(0, WS_CLOSE_PROTOCOL, 1);
}

Test(ws_parser, rejects_new_text_frame_inside_fragmented_message) {
    client_frame(&wire, WS_OP_TEXT, "first", 5);
    client_text(&wire, "second");
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_64_bit_length_with_top_bit_set) {
    RAW(&wire, FIN | WS_OP_TEXT, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4);
    assert_refused(1, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, rejects_binary_frame_at_header) {
    RAW(&wire, FIN | WS_OP_BINARY, 0x80 | 100, 1, 2, 3, 4); /* no payload sent */
    assert_refused(0, WS_CLOSE_UNSUPPORTED, 0);
}

Test(ws_parser, rejects_fragmented_binary_frame) {
    client_frame(&wire, WS_OP_BINARY, "\x00\x01", 2);
    assert_refused(1, WS_CLOSE_UNSUPPORTED, 0);
}

Test(ws_parser, rejects_oversized_frame_from_header) {
    RAW(&wire, FIN | WS_OP_TEXT, 0x80 | 126, (MAX_MESSAGE + 1) >> 8, (MAX_MESSAGE + 1) & 0xFF, 1, 2,
        3, 4);
    assert_refused(0, WS_CLOSE_TOO_BIG, 0);
    cr_assert_null(parser.msg.data, "buffered before refusing");
}

Test(ws_parser, rejects_huge_64_bit_length_from_header) {
    RAW(&wire, FIN | WS_OP_TEXT, 0x80 | 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2,
        3, 4);
    assert_refused(1, WS_CLOSE_TOO_BIG, 0);
}

Test(ws_parser, accepts_message_of_exactly_max_size) {
    char *text = xmalloc(MAX_MESSAGE);
    memset(text, 'z', MAX_MESSAGE);
    client_frame(&wire, WS_OP_TEXT, text, MAX_MESSAGE / 2);
    client_frame(&wire, FIN | WS_OP_CONT, text, MAX_MESSAGE / 2);
    client_frame(&wire, FIN | WS_OP_TEXT, text, MAX_MESSAGE);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(100, &code), 0);
    cr_assert_eq(n_events, 2);
    assert_event(0, WS_OP_TEXT, text, MAX_MESSAGE);
    assert_event(1, WS_OP_TEXT, text, MAX_MESSAGE);
    free(text);
}

Test(ws_parser, rejects_fragmented_message_over_max_from_header) {
    char *text = xmalloc(MAX_MESSAGE);
    memset(text, 'z', MAX_MESSAGE);
    client_frame(&wire, WS_OP_TEXT, text, 600);
    client_frame(&wire, WS_OP_CONT, text, 400);
    size_t before = wire.len;
    client_frame(&wire, FIN | WS_OP_CONT, text, 25); /* 1025 in total */
    wire.len = before + 6;                           /* only the header of the last fragment */
    assert_refused(0, WS_CLOSE_TOO_BIG, 0);
    free(text);
}

Test(ws_parser, rejects_invalid_utf8_text) {
    client_frame(&wire, FIN | WS_OP_TEXT, "ok\xC0\x80", 4);
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

Test(ws_parser, rejects_invalid_utf8_split_text) {
    client_frame(&wire, FIN | WS_OP_TEXT, LIT("bad \xED\xA0\x80 surrogate"));
    assert_refused(1, WS_CLOSE_INVALID_DATA, 0);
}

Test(ws_parser, rejects_bad_utf8_in_first_fragment_before_message_ends) {
    client_frame(&wire, WS_OP_TEXT, "\xF4\x90\x80\x80", 4); /* only this fragment is sent */
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

Test(ws_parser, rejects_bad_utf8_as_soon_as_bytes_arrive) {
    char text[200];
    memset(text, 'a', sizeof text);
    text[10] = (char)0xFF;
    client_frame(&wire, FIN | WS_OP_TEXT, text, sizeof text);
    wire.len = 8 + 20; /* header, key and the first 20 payload bytes */
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

Test(ws_parser, accepts_character_split_across_fragments) {
    client_frame(&wire, WS_OP_TEXT, "caf\xC3", 4);
    client_frame(&wire, WS_OP_CONT, "\xA9 \xF0\x9F", 4);
    client_frame(&wire, FIN | WS_OP_CONT, "\x98\x80", 2);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    assert_text(0, "caf\xC3\xA9 \xF0\x9F\x98\x80");
}

Test(ws_parser, rejects_message_ending_mid_character) {
    client_frame(&wire, WS_OP_TEXT, "caf", 3);
    client_frame(&wire, FIN | WS_OP_CONT, "\xC3", 1);
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

Test(ws_parser, rejects_single_frame_ending_mid_character) {
    client_frame(&wire, FIN | WS_OP_TEXT, "\xE2\x82", 2);
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

/* ------------------------------------------------------- parser: close frame ---- */

Test(ws_parser, delivers_empty_close) {
    client_frame(&wire, FIN | WS_OP_CLOSE, NULL, 0);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    assert_event(0, WS_OP_CLOSE, NULL, 0);
}

Test(ws_parser, delivers_close_with_code_and_reason) {
    client_frame(&wire, FIN | WS_OP_CLOSE, LIT("\x03\xe9going \xC3\xA0 bient\xC3\xB4t"));
    uint16_t code = 0;
    cr_assert_eq(feed_wire(1, &code), 0);
    assert_event(0, WS_OP_CLOSE, LIT("\x03\xe9going \xC3\xA0 bient\xC3\xB4t"));
}

Test(ws_parser, rejects_close_with_one_byte_payload) {
    client_frame(&wire, FIN | WS_OP_CLOSE, "\x03", 1);
    assert_refused(0, WS_CLOSE_PROTOCOL, 0);
}

Test(ws_parser, accepts_close_codes_allowed_on_the_wire) {
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        parser_reset(MAX_MESSAGE);
        buf_cleanup(&wire);
        uint8_t payload[2] = {(uint8_t)(ok[i] >> 8), (uint8_t)ok[i]};
        client_frame(&wire, FIN | WS_OP_CLOSE, payload, 2);
        uint16_t code = 0;
        cr_assert_eq(feed_wire(0, &code), 0, "code %u", ok[i]);
        assert_event(0, WS_OP_CLOSE, payload, 2);
    }
}

Test(ws_parser, rejects_close_codes_not_allowed_on_the_wire) {
    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parser_reset(MAX_MESSAGE);
        buf_cleanup(&wire);
        uint8_t payload[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        client_frame(&wire, FIN | WS_OP_CLOSE, payload, 2);
        uint16_t code = 0;
        cr_assert_eq(feed_wire(0, &code), -1, "code %u", bad[i]);
        cr_assert_eq(code, WS_CLOSE_PROTOCOL, "code %u", bad[i]);
        cr_assert_eq(n_events, 0);
    }
}

Test(ws_parser, rejects_close_reason_that_is_not_utf8) {
    client_frame(&wire, FIN | WS_OP_CLOSE,
                 "\x03\xe8"
                 "bad \xFF",
                 7);
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

Test(ws_parser, rejects_close_reason_ending_mid_character) {
    client_frame(&wire, FIN | WS_OP_CLOSE, "\x03\xe8\xE2\x82", 4);
    assert_refused(0, WS_CLOSE_INVALID_DATA, 0);
}

/* --------------------------------------------------------------- writer ---- */

static void assert_bytes(const void *got, size_t got_len, const uint8_t *want, size_t want_len) {
    cr_assert_eq(got_len, want_len, "length %zu, want %zu", got_len, want_len);
    const uint8_t *g = got;
    for (size_t i = 0; i < want_len; i++)
        cr_assert_eq(g[i], want[i], "byte %zu is %02x, want %02x", i, g[i], want[i]);
}

#define ASSERT_BYTES(got, len, ...)                                                                \
    assert_bytes((got), (len), (const uint8_t[]){__VA_ARGS__},                                     \
                 sizeof((const uint8_t[]){__VA_ARGS__}))

Test(ws_writer, writes_7_bit_length_header) {
    uint8_t h[10];
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_TEXT, 0), 0x81, 0x00);
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_TEXT, 125), 0x81, 125);
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_PONG, 3), 0x8A, 3);
}

Test(ws_writer, writes_16_bit_length_header) {
    uint8_t h[10];
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_TEXT, 126), 0x81, 126, 0x00, 0x7E);
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_TEXT, 65535), 0x81, 126, 0xFF, 0xFF);
}

Test(ws_writer, writes_64_bit_length_header) {
    uint8_t h[10];
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_TEXT, 65536), 0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0);
    ASSERT_BYTES(h, ws_frame_header(h, WS_OP_TEXT, 0x0102030405060708u), 0x81, 127, 1, 2, 3, 4, 5,
                 6, 7, 8);
}

Test(ws_writer, appends_unmasked_text_frame) {
    /* RFC 6455 section 5.7: a single-frame unmasked text message "Hello". */
    cr_assert_eq(ws_frame_append(&wire, WS_OP_TEXT, "Hello", 5), 0);
    ASSERT_BYTES(wire.data, wire.len, 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f);
}

Test(ws_writer, appends_empty_frame) {
    cr_assert_eq(ws_frame_append(&wire, WS_OP_PING, NULL, 0), 0);
    ASSERT_BYTES(wire.data, wire.len, 0x89, 0x00);
}

Test(ws_writer, appends_long_frame_after_existing_bytes) {
    char payload[300];
    memset(payload, 'q', sizeof payload);
    buf_append(&wire, "xy", 2);
    cr_assert_eq(ws_frame_append(&wire, WS_OP_TEXT, payload, sizeof payload), 0);
    cr_assert_eq(wire.len, 2 + 4 + 300);
    ASSERT_BYTES(wire.data, 6, 'x', 'y', 0x81, 126, 0x01, 0x2C);
    cr_assert(memcmp(wire.data + 6, payload, sizeof payload) == 0);
}

Test(ws_writer, appends_nothing_past_buffer_cap) {
    buf_t out;
    buf_init(&out, 8);
    cr_assert_eq(ws_frame_append(&out, WS_OP_TEXT, "abcdef", 6), 0);
    cr_assert_eq(ws_frame_append(&out, WS_OP_TEXT, "a", 1), -1);
    cr_assert_eq(out.len, 8);
    buf_cleanup(&out);
}

Test(ws_writer, appends_close_with_code_and_reason) {
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_TOO_BIG, "too big"), 0);
    ASSERT_BYTES(wire.data, wire.len, 0x88, 9, 0x03, 0xF1, 't', 'o', 'o', ' ', 'b', 'i', 'g');
}

Test(ws_writer, appends_close_without_reason) {
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_NORMAL, NULL), 0);
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_GOING_AWAY, ""), 0);
    ASSERT_BYTES(wire.data, wire.len, 0x88, 2, 0x03, 0xE8, 0x88, 2, 0x03, 0xE9);
}

Test(ws_writer, appends_empty_close_for_no_status) {
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_NO_STATUS, "ignored"), 0);
    ASSERT_BYTES(wire.data, wire.len, 0x88, 0x00);
}

Test(ws_writer, truncates_close_reason_to_123_bytes) {
    char reason[200];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_INTERNAL, reason), 0);
    cr_assert_eq(wire.len, 2 + 125);
    ASSERT_BYTES(wire.data, 4, 0x88, 125, 0x03, 0xF3);
    cr_assert(memcmp(wire.data + 4, reason, 123) == 0);
}

Test(ws_writer, keeps_close_reason_of_exactly_123_bytes) {
    char reason[124];
    memset(reason, 'r', 123);
    reason[123] = '\0';
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_NORMAL, reason), 0);
    cr_assert_eq(wire.len, 2 + 125);
}

Test(ws_writer, truncates_close_reason_at_character_boundary) {
    /* 40 euro signs (3 bytes each): 123 bytes fit exactly 41 of them, so shift by one
     * ASCII byte to force a cut inside a character. */
    char reason[1 + 3 * 60 + 1];
    reason[0] = '!';
    for (size_t i = 0; i < 60; i++) memcpy(reason + 1 + 3 * i, "\xE2\x82\xAC", 3);
    reason[sizeof reason - 1] = '\0';
    cr_assert_eq(ws_close_frame_append(&wire, WS_CLOSE_NORMAL, reason), 0);
    size_t reason_len = wire.len - 4;
    cr_assert_eq(reason_len, 1 + 3 * 40); /* 122: the 41st euro would need 124 */
    cr_assert(memcmp(wire.data + 4, reason, reason_len) == 0);
}

Test(ws_writer, writes_frames_the_parser_reads_back) {
    /* The close frame a server writes is one the parser accepts once masked. */
    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(ws_close_frame_append(&out, WS_CLOSE_GOING_AWAY, "server restart \xE2\x9C\x93"),
                 0);
    uint8_t *p = (uint8_t *)out.data;
    size_t payload_len = p[1];
    client_frame(&wire, p[0], p + 2, payload_len);
    uint16_t code = 0;
    cr_assert_eq(feed_wire(0, &code), 0);
    assert_event(0, WS_OP_CLOSE, p + 2, payload_len);
    buf_cleanup(&out);
}

/* ------------------------------------------------------------- handshake ---- */

Test(ws_handshake, computes_rfc_sample_accept) {
    char out[29];
    cr_assert_eq(ws_handshake_accept("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws_handshake, computes_accept_for_another_key) {
    char out[29];
    cr_assert_eq(ws_handshake_accept("x3JJHMbDL1EzLkh9GBhXDw==", out), 0);
    cr_assert_str_eq(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

Test(ws_handshake, rejects_keys_that_are_not_16_bytes_of_base64) {
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",       /* padding missing */
        "dGhlIHNhbXBsZSBub25jZQ=",      /* half the padding */
        "dGhlIHNhbXBsZSBub25j",         /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZQ==AAAA", /* 19 bytes */
        "dGhlIHNhbXBsZSBub25jZSE=",     /* 17 bytes */
        "dGhlIHNhbXBsZSBub25jZQZZ",     /* 18 bytes, no padding */
        "dGhlIHNhbXBsZSBub25jZ!==",     /* not base64 */
        "dGhlIHNhbXBsZSBub25j ZQ==",    /* inner space */
        " dGhlIHNhbXBsZSBub25jZQ==",    /* surrounding whitespace is the caller's job */
        "dGhlIHNhbXBsZSBub25jZQ==\n",
        "dGhlIHNhbXBsZSBub25jZ===",
        "the sample nonce",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[29] = "untouched";
        cr_assert_eq(ws_handshake_accept(bad[i], out), -1, "key \"%s\"", bad[i]);
        cr_assert_str_eq(out, "untouched", "out written for \"%s\"", bad[i]);
    }
    char out[29];
    cr_assert_eq(ws_handshake_accept(NULL, out), -1);
}
