/* WebSocket (RFC 6455) server-side framing and handshake; the wire format and the
 * rules the parser enforces are in ws.h.
 *
 * The parser is a loop over two phases. Between frames it collects a header (straight
 * from the input when the whole header is there, else byte by byte into p->hdr) and
 * checks every rule that the header alone decides, so a refused frame costs no payload
 * buffering. Inside a frame (payload_done < payload_len) it unmasks the bytes in place
 * and either delivers them directly (a whole unfragmented text frame in one feed),
 * appends them to p->msg (text that spans feeds or fragments; UTF-8 checked as it
 * arrives) or copies them to p->ctl (control frames, at most 125 bytes). p->msg owns
 * storage only while a message is incomplete; it is released after each delivery. */
#include "net/ws.h"

#include <assert.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/utf8.h"

#define WS_CONTROL_MAX 125
#define WS_CLOSE_REASON_MAX (WS_CONTROL_MAX - 2)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_B64_LEN 24 /* base64 of the 16-byte handshake nonce, with "==" */

/* ---------------------------------------------------------------- parser ---- */

void ws_parser_init(ws_parser_t *p, size_t max_message) {
    memset(p, 0, sizeof *p);
    p->max_message = max_message;
    buf_init(&p->msg, max_message);
}

void ws_parser_cleanup(ws_parser_t *p) {
    buf_cleanup(&p->msg);
}

bool ws_parser_busy(const ws_parser_t *p) {
    return p->hdr_len > 0 || p->payload_len > 0 || p->msg_opcode != 0;
}

static bool ws_is_control(unsigned opcode) {
    return (opcode & 0x8) != 0;
}

/* Header size announced by its first two bytes: 2, plus 2 or 8 length bytes, plus the
 * 4-byte masking key when MASK is set. */
static size_t ws_header_size(const uint8_t *h) {
    size_t n = 2;
    unsigned len7 = h[1] & 0x7Fu;
    if (len7 == 126)
        n += 2;
    else if (len7 == 127)
        n += 8;
    if (h[1] & 0x80u) n += 4;
    return n;
}

/* XORs n payload bytes with the masking key; off is the offset of data[0] within the
 * frame payload. Long runs go eight bytes at a time with the key rotated to the
 * starting phase; since the index advances by multiples of 4 the phase never shifts. */
static void ws_unmask(uint8_t *data, size_t n, const uint8_t key[4], uint64_t off) {
    size_t i = 0;
    if (n >= 16) {
        uint8_t k8[8];
        for (size_t j = 0; j < 8; j++) k8[j] = key[(off + j) & 3];
        uint64_t k;
        memcpy(&k, k8, sizeof k);
        for (; n - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, data + i, sizeof w);
            w ^= k;
            memcpy(data + i, &w, sizeof w);
        }
    }
    for (; i < n; i++) data[i] ^= key[(off + i) & 3];
}

/* Decodes a complete header and applies every rule the header decides. Returns 0, or
 * the close code. The order is fixed, so the verdict does not depend on how the bytes
 * were split across feeds. */
static uint16_t ws_header_take(ws_parser_t *p, const uint8_t *h) {
    unsigned opcode = h[0] & 0x0Fu;
    bool fin = (h[0] & 0x80u) != 0;
    unsigned len7 = h[1] & 0x7Fu;

    if (h[0] & 0x70u) return WS_CLOSE_PROTOCOL; /* RSV1-3: no extension is negotiated */
    if (opcode != WS_OP_CONT && opcode != WS_OP_TEXT && opcode != WS_OP_BINARY &&
        opcode != WS_OP_CLOSE && opcode != WS_OP_PING && opcode != WS_OP_PONG)
        return WS_CLOSE_PROTOCOL;
    if (!(h[1] & 0x80u)) return WS_CLOSE_PROTOCOL; /* clients must mask */
    if (ws_is_control(opcode) && (!fin || len7 > WS_CONTROL_MAX)) return WS_CLOSE_PROTOCOL;
    if (opcode == WS_OP_CONT && p->msg_opcode == 0) return WS_CLOSE_PROTOCOL;
    if ((opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) && p->msg_opcode != 0)
        return WS_CLOSE_PROTOCOL;

    uint64_t len = len7;
    const uint8_t *key = h + 2;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        key = h + 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        if (len >> 63) return WS_CLOSE_PROTOCOL;
        key = h + 10;
    }

    if (opcode == WS_OP_BINARY) return WS_CLOSE_UNSUPPORTED; /* shopd speaks JSON text */
    if (!ws_is_control(opcode)) {
        /* msg.len holds every earlier fragment of the message, so this bounds the sum. */
        size_t max = p->max_message;
        if (len > max || p->msg.len > max - (size_t)len) return WS_CLOSE_TOO_BIG;
    }

    p->opcode = (uint8_t)opcode;
    p->fin = fin;
    memcpy(p->mask, key, 4);
    p->payload_len = len;
    p->payload_done = 0;
    if (opcode == WS_OP_TEXT) p->msg_opcode = WS_OP_TEXT;
    return 0;
}

/* Close payload: empty, or a code that may appear on the wire plus a UTF-8 reason.
 * 1004-1006 and 1015 are reserved for local use, 0-999 and 1016-2999 are unassigned
 * protocol codes, and nothing above 4999 is defined (RFC 6455 section 7.4). */
static uint16_t ws_close_check(const uint8_t *data, size_t len) {
    if (len == 0) return 0;
    if (len == 1) return WS_CLOSE_PROTOCOL;
    unsigned code = (unsigned)data[0] << 8 | data[1];
    bool allowed = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
    if (!allowed) return WS_CLOSE_PROTOCOL;
    if (!utf8_is_valid(data + 2, len - 2)) return WS_CLOSE_INVALID_DATA;
    return 0;
}

/* Ends the current message after its final fragment: hands it over and drops the
 * storage, so an idle connection holds no message buffer. */
static uint16_t ws_message_deliver(ws_parser_t *p, char *data, size_t len, const ws_callbacks_t *cb,
                                   void *udata) {
    if (p->utf8_state != UTF8_ACCEPT) return WS_CLOSE_INVALID_DATA; /* ends mid-character */
    p->msg_opcode = 0;
    p->utf8_state = UTF8_ACCEPT;
    if (cb->on_text) cb->on_text(udata, data, len);
    buf_cleanup(&p->msg);
    return 0;
}

/* Called when the current frame's payload is complete; `here` is a valid pointer into
 * the input, used as the data of an empty message that never allocated storage. */
static uint16_t ws_frame_end(ws_parser_t *p, uint8_t *here, const ws_callbacks_t *cb, void *udata) {
    size_t len = (size_t)p->payload_len;
    p->payload_len = p->payload_done = 0;
    if (ws_is_control(p->opcode)) {
        if (p->opcode == WS_OP_CLOSE) {
            uint16_t code = ws_close_check(p->ctl, len);
            if (code) return code;
        }
        if (cb->on_control) cb->on_control(udata, p->opcode, p->ctl, len);
        return 0;
    }
    if (!p->fin) return 0;
    char *data = p->msg.data ? p->msg.data : (char *)here;
    return ws_message_deliver(p, data, p->msg.len, cb, udata);
}

/* Consumes header bytes from data[*pos..len). Returns 1 when a header was taken, 0 when
 * more bytes are needed (all input consumed), or -1 with *code set. */
static int ws_header_feed(ws_parser_t *p, const uint8_t *data, size_t len, size_t *pos,
                          uint16_t *code) {
    const uint8_t *h;
    size_t avail = len - *pos;
    if (p->hdr_len == 0 && avail >= 2 && avail >= ws_header_size(data + *pos)) {
        h = data + *pos;
        *pos += ws_header_size(h);
    } else {
        size_t need = p->hdr_len < 2 ? 2 : ws_header_size(p->hdr);
        while (p->hdr_len < need) {
            if (*pos == len) return 0;
            size_t n = need - p->hdr_len;
            if (n > len - *pos) n = len - *pos;
            memcpy(p->hdr + p->hdr_len, data + *pos, n);
            p->hdr_len = (uint8_t)(p->hdr_len + n);
            *pos += n;
            if (p->hdr_len == 2) need = ws_header_size(p->hdr);
        }
        h = p->hdr;
        p->hdr_len = 0;
    }
    *code = ws_header_take(p, h);
    return *code ? -1 : 1;
}

/* Consumes payload bytes of the current frame from data[*pos..len). */
static uint16_t ws_payload_feed(ws_parser_t *p, uint8_t *data, size_t len, size_t *pos,
                                const ws_callbacks_t *cb, void *udata) {
    uint64_t left = p->payload_len - p->payload_done;
    size_t n = len - *pos;
    if (n > left) n = (size_t)left;
    uint8_t *chunk = data + *pos;
    ws_unmask(chunk, n, p->mask, p->payload_done);
    *pos += n;

    if (ws_is_control(p->opcode)) {
        memcpy(p->ctl + p->payload_done, chunk, n);
    } else if (p->payload_done == 0 && n == p->payload_len && p->fin && p->opcode == WS_OP_TEXT) {
        /* The whole message is in this feed: deliver it where it lies. */
        p->payload_len = 0;
        p->utf8_state = utf8_feed(UTF8_ACCEPT, chunk, n);
        if (p->utf8_state != UTF8_ACCEPT) return WS_CLOSE_INVALID_DATA;
        return ws_message_deliver(p, (char *)chunk, n, cb, udata);
    } else {
        p->utf8_state = utf8_feed(p->utf8_state, chunk, n);
        if (p->utf8_state == UTF8_REJECT) return WS_CLOSE_INVALID_DATA;
        /* Cannot fail: the header check bounded the message by max_message. */
        if (buf_append(&p->msg, chunk, n) < 0) return WS_CLOSE_TOO_BIG;
    }
    p->payload_done += n;
    if (p->payload_done < p->payload_len) return 0;
    return ws_frame_end(p, data + *pos, cb, udata);
}

int ws_parser_feed(ws_parser_t *p, uint8_t *data, size_t len, const ws_callbacks_t *cb, void *udata,
                   uint16_t *close_code) {
    size_t pos = 0;
    uint16_t code = 0;
    while (pos < len) {
        if (p->payload_done < p->payload_len) {
            code = ws_payload_feed(p, data, len, &pos, cb, udata);
            if (code) goto fail;
            continue;
        }
        int rc = ws_header_feed(p, data, len, &pos, &code);
        if (rc < 0) goto fail;
        if (rc == 0) break;
        if (p->payload_len == 0) {
            code = ws_frame_end(p, data + pos, cb, udata);
            if (code) goto fail;
        }
    }
    return 0;
fail:
    /* The connection is closing; nothing of the message will be used. */
    buf_cleanup(&p->msg);
    *close_code = code;
    return -1;
}

/* ---------------------------------------------------------------- writer ---- */

/* strlen(s), but reads at most max + 1 bytes (strnlen is POSIX, not C11). */
static size_t ws_strlen_capped(const char *s, size_t max) {
    size_t n = 0;
    while (n <= max && s[n]) n++;
    return n;
}

size_t ws_frame_header(uint8_t out[10], int opcode, uint64_t len) {
    out[0] = (uint8_t)(0x80u | ((unsigned)opcode & 0x0Fu));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

int ws_frame_append(buf_t *out, int opcode, const void *payload, size_t len) {
    uint8_t hdr[10];
    size_t hlen = ws_frame_header(hdr, opcode, len);
    if (len > SIZE_MAX - hlen) return -1;
    char *dst = buf_reserve(out, hlen + len);
    if (!dst) return -1;
    memcpy(dst, hdr, hlen);
    if (len) memcpy(dst + hlen, payload, len);
    buf_commit(out, hlen + len);
    return 0;
}

/* 1005 means "no status code present", so it is written as an empty close payload;
 * a reason longer than 123 bytes is cut at the last whole UTF-8 character that fits. */
int ws_close_frame_append(buf_t *out, uint16_t code, const char *reason) {
    if (code == WS_CLOSE_NO_STATUS) return ws_frame_append(out, WS_OP_CLOSE, NULL, 0);
    uint8_t payload[WS_CONTROL_MAX];
    size_t n = reason ? ws_strlen_capped(reason, WS_CLOSE_REASON_MAX) : 0;
    if (n > WS_CLOSE_REASON_MAX) {
        n = WS_CLOSE_REASON_MAX;
        while (n > 0 && ((uint8_t)reason[n] & 0xC0u) == 0x80u) n--;
    }
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (n) memcpy(payload + 2, reason, n);
    return ws_frame_append(out, WS_OP_CLOSE, payload, n + 2);
}

/* ------------------------------------------------------------- handshake ---- */

static bool ws_is_b64(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int ws_handshake_accept(const char *client_key, char out[29]) {
    /* 16 bytes are 22 base64 digits and "==". Checking the shape here also keeps
     * EVP_DecodeBlock away from what it tolerates (surrounding whitespace). */
    if (!client_key || ws_strlen_capped(client_key, WS_KEY_B64_LEN) != WS_KEY_B64_LEN) return -1;
    for (size_t i = 0; i < WS_KEY_B64_LEN - 2; i++)
        if (!ws_is_b64(client_key[i])) return -1;
    if (client_key[22] != '=' || client_key[23] != '=') return -1;
    /* DecodeBlock counts the padding as decoded zero bytes: 24 digits give 18. */
    unsigned char raw[18];
    if (EVP_DecodeBlock(raw, (const unsigned char *)client_key, WS_KEY_B64_LEN) != 18) return -1;

    unsigned char text[WS_KEY_B64_LEN + sizeof WS_GUID - 1];
    memcpy(text, client_key, WS_KEY_B64_LEN);
    memcpy(text + WS_KEY_B64_LEN, WS_GUID, sizeof WS_GUID - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(text, sizeof text, md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20)
        return -1;
    int n = EVP_EncodeBlock((unsigned char *)out, md, (int)md_len); /* writes the NUL */
    assert(n == 28);
    (void)n;
    return 0;
}
