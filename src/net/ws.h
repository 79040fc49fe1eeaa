/* WebSocket (RFC 6455) framing and handshake, as pure functions over bytes.
 *
 * Wire format of a frame:
 *   byte 0: FIN(1) RSV1-3(3) opcode(4)   byte 1: MASK(1) len(7)
 *   len 126 → 16-bit length follows, 127 → 64-bit length follows (top bit 0)
 *   then a 4-byte masking key when MASK is set, then the payload.
 *
 * The parser is incremental: it keeps about 200 bytes of state between calls, and
 * a message buffer only while a fragmented or partially received text message is in
 * flight, so an idle connection costs almost nothing (wslay's context costs about
 * 8.8 KiB per connection, which is why shopd frames by itself; docs/internals/ws.md).
 * As a server it requires masked client frames (1002), no RSV bits (1002), known
 * opcodes (1002), control frames of at most 125 bytes that are not fragmented (1002),
 * continuation frames only inside a message and no new data frame inside one (1002),
 * text that is valid UTF-8, checked as it arrives so the first bad fragment fails
 * (1007), no binary messages (1003), and messages of at most max_message bytes (1009,
 * decided from the frame header before any payload is buffered). */
#ifndef SHOPD_NET_WS_H
#define SHOPD_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

typedef struct {
    /* A complete text message (valid UTF-8). `data` is writable and valid only during
     * the call. */
    void (*on_text)(void *udata, char *data, size_t len);
    /* A control frame: WS_OP_PING, WS_OP_PONG or WS_OP_CLOSE with its payload
     * (already unmasked; for close, validated: empty or a legal code + UTF-8 reason). */
    void (*on_control)(void *udata, int opcode, const uint8_t *data, size_t len);
} ws_callbacks_t;

typedef struct {
    /* frame header in progress */
    uint8_t hdr[14];
    uint8_t hdr_len;
    uint8_t opcode;
    bool fin;
    uint8_t mask[4];
    uint64_t payload_len;
    uint64_t payload_done;
    /* message in progress (0 when none) */
    uint8_t msg_opcode;
    uint32_t utf8_state;
    uint8_t ctl[125]; /* control frame payload being collected */
    size_t max_message;
    buf_t msg; /* text payload collected so far; storage released between messages */
} ws_parser_t;

void ws_parser_init(ws_parser_t *p, size_t max_message);
void ws_parser_cleanup(ws_parser_t *p);

/* Parses len bytes (unmasking them in place) and calls back for each complete message
 * and control frame. Returns 0 when all bytes were consumed, or -1 on a protocol
 * violation with *close_code set to the code to close with (1002, 1003, 1007, 1009);
 * the parser must not be fed again after -1. A callback may ask to stop by returning
 * nothing special: the caller checks its own state after the call. */
int ws_parser_feed(ws_parser_t *p, uint8_t *data, size_t len, const ws_callbacks_t *cb,
                   void *udata, uint16_t *close_code);
/* Whether a frame or message is partially received. */
bool ws_parser_busy(const ws_parser_t *p);

/* Writes an unmasked server frame header (FIN set) for a payload of len bytes into out;
 * returns its length (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[10], int opcode, uint64_t len);
/* Appends a whole unmasked frame to out. Returns 0, or -1 when out's cap is reached. */
int ws_frame_append(buf_t *out, int opcode, const void *payload, size_t len);
/* Appends a close frame with code and reason (reason truncated to fit 125 bytes). */
int ws_close_frame_append(buf_t *out, uint16_t code, const char *reason);

/* Handshake: checks a client key (base64 of 16 bytes) and computes the
 * Sec-WebSocket-Accept value into out (28 chars + NUL). Returns 0 or -1 for a bad key. */
int ws_handshake_accept(const char *client_key, char out[29]);

#endif
