/* rtload — load generator for shopd's realtime (WebSocket JSON) protocol.
 *
 *   rtload --port N --mode get    [--conns 64] [--inflight 16] [--seconds 10] [--bucket products] [--key prod-1]
 *   rtload --port N --mode tx     [--conns 64] [--inflight 16] [--seconds 10]
 *   rtload --port N --mode fanout [--subscribers 1000] [--rate 10] [--seconds 10] [--query bench-product]
 *   rtload --port N --mode events [--subscribers 1000] [--rate 100] [--pattern order.*] [--topic order.placed]
 *   rtload --port N --mode checkout --token 'bench-token-{i}' [--token-users 64] [--conns 64] [--inflight 4]
 *                  [--products prod-1,prod-2] [--wallet-currency USD] [--idempotency]
 *   common: [--host 127.0.0.1] [--path /] [--server-pid PID] [--warmup 2] [--token T] [--help]
 *
 * One thread, one epoll set, non-blocking sockets. Requests are framed straight into
 * a per-connection output buffer (masked with a fixed key, eight bytes at a time) and
 * every batch goes out in one write(2); responses are read into one shared buffer and
 * scanned for the few fields needed ("id", "type", "sentAt", "timestamp") without a
 * JSON parser. Latencies go into a log-linear histogram (exact to the microsecond
 * below 1 ms, 0.1 % above).
 *
 * get / tx: each connection keeps --inflight requests outstanding (store.get, or a
 * three-operation store.transaction: product stock update, insert into orders, insert
 * into audit-logs). After --warmup seconds the measured window of --seconds starts:
 * throughput, latency from send to result, the server's CPU time (utime+stime from
 * /proc/PID/stat) per operation, and this process's own CPU (getrusage).
 *
 * fanout: --subscribers connections each subscribe to --query; one writer connection
 * updates the watched record (--bucket/--key) --rate times per second with data
 * {"stock":n,"sentAt":<CLOCK_MONOTONIC ns since rtload started, + 1 s>} (kept well below
 * 2^53 so that it stays an exact JSON integer); every push's latency is its receive time
 * minus the sentAt it carries. GET /metrics is scraped before and after the window for
 * shopd_subscription_evaluations_total.
 *
 * events: --subscribers connections each send rules.subscribe {"pattern": --pattern};
 * one emitter connection sends rules.emit {"topic": --topic, "data": {"seq":n,
 * "sentAt":<as in fanout>}} --rate times per second. Every event push's latency is its
 * receive time minus that sentAt; pushes received vs expected (events x subscribers),
 * server CPU per push (the emits' own cost included).
 *
 * checkout: like get/tx, each connection keeps --inflight procedures.call {"name":
 * "checkout", "input": {"walletCurrency": W, "items": [{"productId": P, "quantity": 1}]}}
 * outstanding, P cycling through --products; --idempotency adds a unique
 * "idempotencyKey" to every call (the key-recording path). Needs --token.
 *
 * fanout, events with --rx-timestamps: subscriber sockets get SO_TIMESTAMPNS and are read
 * with recvmsg; each push's latency is then also taken to the kernel's receive time of
 * the read's (last) segment, converted from CLOCK_REALTIME to CLOCK_MONOTONIC: that
 * figure leaves out this process's own delay in getting to each socket of a burst, so
 * the two latencies together tell the server's delay from the generator's
 * (RESULT rx_p50_us, rx_p99_us, ...).
 *
 * --token T: every connection sends auth.login {"token": T} right after the welcome and
 * waits for its result before it sends anything else (load, subscription); "{i}" in T
 * is replaced by the connection's index modulo --token-users (default: all distinct),
 * e.g. 'bench-token-{i}'. A refused login counts as a failure (auth_failed=).
 *
 * Every connection answers JSON {"type":"ping"} with {"type":"pong"} and WebSocket
 * ping frames with pong frames. Output: one line "RESULT key=value ..." and one human
 * line on stdout; progress and problems on stderr. Exit status 0 when the run was
 * complete, 1 when something went wrong (failed connections, error answers, closed
 * connections, missing pushes), 2 on bad usage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("rtload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool g_quiet;
static void note(const char *fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("rtload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static uint64_t g_epoch_ns; /* sentAt values are CLOCK_MONOTONIC minus this */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writes v in decimal to out (at least 20 bytes); returns the length. */
static size_t u64_dec(char *out, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* Parses an unsigned decimal at p (up to end); *ok = 0 when there is no digit. */
static uint64_t parse_u64(const char *p, const char *end, const char **after, int *ok) {
    uint64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    *ok = p > s;
    if (after) *after = p;
    return v;
}

/* Finds "key": (key given with its quotes) in [p, p+n) and returns the first byte of
 * the value (whitespace skipped), or NULL. */
static const char *find_field(const char *p, size_t n, const char *qkey, size_t qlen) {
    const char *end = p + n;
    const char *s = p;
    while ((s = memmem(s, (size_t)(end - s), qkey, qlen)) != NULL) {
        const char *v = s + qlen;
        while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
        if (v < end && *v == ':') {
            v++;
            while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
            return v < end ? v : NULL;
        }
        s += qlen;
    }
    return NULL;
}

#define FIELD(p, n, lit) find_field((p), (n), (lit), sizeof(lit) - 1)

/* ---- latency histogram: values in microseconds, log-linear ------------------------- */

#define HIST_SUB 1024u
#define HIST_BUCKETS (HIST_SUB * 40u)
#define HIST_MAX_US ((1ull << 38) - 1) /* about 76 hours */

typedef struct {
    uint64_t *count;
    uint64_t n, sum, max;
} hist_t;

static void hist_init(hist_t *h) {
    h->count = calloc(HIST_BUCKETS, sizeof *h->count);
    if (!h->count) die("out of memory");
    h->n = h->sum = h->max = 0;
}

static inline unsigned hist_index(uint64_t v) {
    if (v < HIST_SUB) return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - 10u;
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

static uint64_t hist_bucket_value(unsigned i) {
    if (i < HIST_SUB) return i;
    unsigned shift = i / HIST_SUB - 1;
    uint64_t sub = i - shift * HIST_SUB;
    return (sub << shift) + ((1ull << shift) >> 1);
}

static inline void hist_add_ns(hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000u;
    if (us > HIST_MAX_US) us = HIST_MAX_US;
    h->count[hist_index(us)]++;
    h->n++;
    h->sum += us;
    if (us > h->max) h->max = us;
}

static uint64_t hist_pct(const hist_t *h, double q) {
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1) rank = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        acc += h->count[i];
        if (acc >= rank) {
            uint64_t v = hist_bucket_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- byte buffers ------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t off, len, cap; /* live bytes are p[off, len) */
} bbuf_t;

static void bb_reserve(bbuf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t nc = b->cap ? b->cap : 2048;
    while (nc < b->len + extra) nc *= 2;
    b->p = xrealloc(b->p, nc);
    b->cap = nc;
}

static void bb_append(bbuf_t *b, const void *d, size_t n) {
    bb_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void bb_free(bbuf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- WebSocket client frames ------------------------------------------------------- */

/* Client frames must be masked; any key will do for a benchmark, so one fixed key is
 * used and applied eight bytes at a time. */
static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};
static uint64_t g_mask64;

static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= g_mask64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ MASK[i & 3];
}

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

static void ws_append(bbuf_t *b, unsigned opcode, const void *payload, size_t n) {
    bb_reserve(b, n + 14);
    uint8_t *h = (uint8_t *)b->p + b->len;
    size_t hl;
    h[0] = (uint8_t)(0x80u | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80u | n);
        hl = 2;
    } else if (n < 65536) {
        h[1] = 0x80u | 126u;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80u | 127u;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(h + hl, MASK, 4);
    hl += 4;
    mask_copy(h + hl, (const uint8_t *)payload, n);
    b->len += hl + n;
}

/* ---- options ----------------------------------------------------------------------- */

typedef enum { MODE_GET, MODE_TX, MODE_FANOUT, MODE_EVENTS, MODE_CHECKOUT } mode_t_;

static struct {
    const char *host, *path;
    int port;
    mode_t_ mode;
    const char *mode_name;
    int conns, inflight, subscribers, connect_batch;
    double seconds, warmup, rate, drain;
    const char *bucket, *key, *orders_bucket, *audit_bucket, *query, *params;
    const char *token, *pattern, *topic, *products, *wallet_currency;
    int token_users;
    bool idempotency, rate_set, inflight_set, rx_timestamps;
    pid_t server_pid;
} opt = {
    .host = "127.0.0.1",
    .path = "/",
    .port = 0,
    .mode = MODE_GET,
    .mode_name = "get",
    .conns = 64,
    .inflight = 16,
    .subscribers = 1000,
    .connect_batch = 256,
    .seconds = 10,
    .warmup = 2,
    .rate = 10,
    .drain = 3,
    .bucket = "products",
    .key = "prod-1",
    .orders_bucket = "orders",
    .audit_bucket = "audit-logs",
    .query = "bench-product",
    .params = NULL,
    .token = NULL,
    .pattern = "order.*",
    .topic = "order.placed",
    .products = "prod-1",
    .wallet_currency = "USD",
    .token_users = 0,
    .idempotency = false,
    .server_pid = 0,
};

static void usage(FILE *f) {
    fputs("usage: rtload --port N [--host 127.0.0.1] [--path /] --mode get|tx|fanout|events|checkout\n"
          "              [--server-pid PID] [--seconds 10] [--warmup 2] [--token T [--token-users N]]\n"
          "  get, tx:    [--conns 64] [--inflight 16] [--bucket products] [--key prod-1]\n"
          "              [--orders-bucket orders] [--audit-bucket audit-logs]   (tx)\n"
          "  fanout:     [--subscribers 1000] [--rate 10] [--query bench-product] [--params JSON]\n"
          "              [--bucket products] [--key prod-1] [--drain 3]\n"
          "  events:     [--subscribers 1000] [--rate 100] [--pattern order.*] [--topic order.placed]\n"
          "              [--drain 3]\n"
          "  fanout, events: [--rx-timestamps] (also the latency to the kernel's socket receive time)\n"
          "  checkout:   --token T [--conns 64] [--inflight 4] [--products prod-1[,prod-2...]]\n"
          "              [--wallet-currency USD] [--idempotency]\n"
          "  --token T:  every connection logs in with auth.login first; \"{i}\" in T becomes the\n"
          "              connection index modulo --token-users (default: the connection count)\n"
          "  other:      [--connect-batch 256] [--quiet]\n"
          "Prints one line \"RESULT key=value ...\" and one human-readable line.\n",
          f);
}

static double arg_num(const char *name, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "rtload: --%s must be a number in [%g, %g], got '%s'\n", name, lo, hi, v);
        exit(2);
    }
    return d;
}

static void parse_args(int argc, char **argv) {
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},          {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},          {"mode", required_argument, 0, 'm'},
        {"conns", required_argument, 0, 'c'},         {"inflight", required_argument, 0, 'i'},
        {"seconds", required_argument, 0, 's'},       {"warmup", required_argument, 0, 'w'},
        {"bucket", required_argument, 0, 'b'},        {"key", required_argument, 0, 'k'},
        {"orders-bucket", required_argument, 0, 'O'}, {"audit-bucket", required_argument, 0, 'A'},
        {"server-pid", required_argument, 0, 'S'},    {"subscribers", required_argument, 0, 'n'},
        {"rate", required_argument, 0, 'r'},          {"query", required_argument, 0, 'q'},
        {"params", required_argument, 0, 'j'},        {"drain", required_argument, 0, 'd'},
        {"connect-batch", required_argument, 0, 'B'}, {"quiet", no_argument, 0, 'Q'},
        {"token", required_argument, 0, 'T'},         {"token-users", required_argument, 0, 'U'},
        {"pattern", required_argument, 0, 'R'},       {"topic", required_argument, 0, 't'},
        {"products", required_argument, 0, 'g'},      {"wallet-currency", required_argument, 0, 'W'},
        {"idempotency", no_argument, 0, 'I'},         {"rx-timestamps", no_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = (int)arg_num("port", optarg, 1, 65535); break;
        case 'P': opt.path = optarg; break;
        case 'm':
            opt.mode_name = optarg;
            if (strcmp(optarg, "get") == 0) opt.mode = MODE_GET;
            else if (strcmp(optarg, "tx") == 0) opt.mode = MODE_TX;
            else if (strcmp(optarg, "fanout") == 0) opt.mode = MODE_FANOUT;
            else if (strcmp(optarg, "events") == 0) opt.mode = MODE_EVENTS;
            else if (strcmp(optarg, "checkout") == 0) opt.mode = MODE_CHECKOUT;
            else {
                fprintf(stderr, "rtload: --mode must be get, tx, fanout, events or checkout\n");
                exit(2);
            }
            break;
        case 'c': opt.conns = (int)arg_num("conns", optarg, 1, 1000000); break;
        case 'i':
            opt.inflight = (int)arg_num("inflight", optarg, 1, 65536);
            opt.inflight_set = true;
            break;
        case 's': opt.seconds = arg_num("seconds", optarg, 0.1, 86400); break;
        case 'w': opt.warmup = arg_num("warmup", optarg, 0, 3600); break;
        case 'b': opt.bucket = optarg; break;
        case 'k': opt.key = optarg; break;
        case 'O': opt.orders_bucket = optarg; break;
        case 'A': opt.audit_bucket = optarg; break;
        case 'S': opt.server_pid = (pid_t)arg_num("server-pid", optarg, 1, 1 << 30); break;
        case 'n': opt.subscribers = (int)arg_num("subscribers", optarg, 1, 1000000); break;
        case 'r':
            opt.rate = arg_num("rate", optarg, 0.01, 100000);
            opt.rate_set = true;
            break;
        case 'q': opt.query = optarg; break;
        case 'j': opt.params = optarg; break;
        case 'd': opt.drain = arg_num("drain", optarg, 0, 600); break;
        case 'B': opt.connect_batch = (int)arg_num("connect-batch", optarg, 1, 100000); break;
        case 'Q': g_quiet = true; break;
        case 'T':
            if (!*optarg) {
                fprintf(stderr, "rtload: --token must not be empty\n");
                exit(2);
            }
            opt.token = optarg;
            break;
        case 'U': opt.token_users = (int)arg_num("token-users", optarg, 1, 1000000); break;
        case 'R': opt.pattern = optarg; break;
        case 't': opt.topic = optarg; break;
        case 'g': opt.products = optarg; break;
        case 'W': opt.wallet_currency = optarg; break;
        case 'I': opt.idempotency = true; break;
        case 'X': opt.rx_timestamps = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtload: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        exit(2);
    }
    if (!opt.port) {
        fprintf(stderr, "rtload: --port is required\n");
        usage(stderr);
        exit(2);
    }
    if (opt.mode == MODE_CHECKOUT && !opt.token) {
        fprintf(stderr, "rtload: --mode checkout needs --token (procedures need a session)\n");
        exit(2);
    }
    if (opt.mode == MODE_CHECKOUT && !opt.inflight_set) opt.inflight = 4;
    if (opt.mode == MODE_EVENTS && !opt.rate_set) opt.rate = 100;
    if (!*opt.products || strstr(opt.products, ",,") || opt.products[0] == ',' ||
        opt.products[strlen(opt.products) - 1] == ',') {
        fprintf(stderr, "rtload: --products must be a comma-separated list of product ids\n");
        exit(2);
    }
}

/* JSON string literal for a plain value (quotes and backslashes escaped). */
static char *json_quote(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(2 * n + 3), *o = out;
    if (!out) die("out of memory");
    *o++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') *o++ = '\\';
        *o++ = *s;
    }
    *o++ = '"';
    *o = 0;
    return out;
}

/* ---- connections ------------------------------------------------------------------- */

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DEAD };
enum { ROLE_LOAD, ROLE_SUB, ROLE_WRITER };

typedef struct conn {
    int fd;
    int idx;
    uint8_t state, role;
    bool epollout;   /* EPOLLOUT registered */
    bool welcomed;
    uint8_t frag_op; /* opcode of the fragmented message being assembled, 0 = none */
    bbuf_t in;       /* unparsed bytes carried between reads (usually empty) */
    bbuf_t out;      /* bytes not yet written */
    bbuf_t frag;     /* fragments of a message */
    uint32_t next_id;
    uint32_t outstanding;
    uint64_t *sent_ns; /* send time by id & ring_mask */
    char *tail;        /* ROLE_LOAD, tx: the per-connection request tail */
    size_t tail_len;
    int sub_state;     /* ROLE_SUB: 0 nothing, 1 requested, 2 confirmed */
    uint8_t auth_state; /* --token: 0 not yet, 1 login sent, 2 logged in, 3 refused */
    uint32_t setup_id;  /* id of the pending auth.login or subscribe request */
    uint64_t pushes;
} conn_t;

static int g_ep = -1;
static conn_t *g_conns;
static int g_nconns;
static int g_next_open;    /* next index to open */
static int g_pending_open; /* connecting or handshaking */
static int g_open_ok, g_open_failed, g_closed_after_open;
static uint32_t g_ring_mask;
static struct sockaddr_in g_addr;
static char g_handshake[512];
static size_t g_handshake_len;
static char *g_rbuf;
#define RBUF_SIZE (256 * 1024)

/* counters */
static bool g_measuring, g_stopping;
static uint64_t g_ops, g_errors, g_errors_printed, g_pings, g_ws_pings, g_other_msgs;
static uint64_t g_pushes, g_pushes_warm, g_pushes_nosent, g_sub_ready, g_sub_failed;
static uint64_t g_auth_ok, g_auth_failed;
static hist_t g_login_lat;
static hist_t g_rx_lat;      /* --rx-timestamps: push latency to the kernel receive time */
static uint64_t g_rx_cur_ns; /* receive time (monotonic) of the bytes being parsed, 0 = none */
static int64_t g_rt_minus_mono; /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns, refreshed per loop turn */
static uint64_t g_rx_missing;   /* reads that carried no timestamp */
static uint64_t g_window_start_ns;
static hist_t g_lat, g_upd_lat;
static int g_close_codes_printed;

/* request templates */
static char *g_req_suffix; /* get: after the id */
static size_t g_req_suffix_len;
static char *g_tx_mid; /* tx: between the id and the stock value */
static size_t g_tx_mid_len;
static uint64_t g_stock = 1000000000ull;
/* checkout: one request head per product (after the id, up to the items' end), and the
 * per-run nonce of idempotency keys */
static char **g_co_head;
static size_t *g_co_head_len;
static size_t g_co_nproducts;
static uint64_t g_idem_nonce;

static void conn_close(conn_t *c, const char *why);

static void ep_mod(conn_t *c, bool want_out) {
    if (c->epollout == want_out || c->fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    c->epollout = want_out;
}

/* Writes as much of c->out as the socket takes; keeps EPOLLOUT registered while
 * something is left. */
static void conn_flush(conn_t *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n > 0) {
            c->out.off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_mod(c, true);
            return;
        }
        conn_close(c, n < 0 ? strerror(errno) : "write returned 0");
        return;
    }
    c->out.off = c->out.len = 0;
    if (c->epollout && c->state != ST_CONNECTING) ep_mod(c, false);
}

static void send_text(conn_t *c, const char *s, size_t n) { ws_append(&c->out, OP_TEXT, s, n); }

static void open_more(void);

static void conn_close(conn_t *c, const char *why) {
    if (c->state == ST_DEAD || c->state == ST_IDLE) return;
    bool was_open = c->state == ST_OPEN && c->welcomed;
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE || (c->state == ST_OPEN && !c->welcomed)) {
        g_pending_open--;
        g_open_failed++;
        if (g_open_failed <= 5) note("connection %d failed while opening: %s", c->idx, why);
    } else if (was_open && !g_stopping) {
        g_closed_after_open++;
        if (g_closed_after_open <= 5) note("connection %d closed: %s", c->idx, why);
    }
    if (c->role == ROLE_SUB && c->sub_state == 1) g_sub_failed++;
    if (c->auth_state == 1) {
        c->auth_state = 3;
        g_auth_failed++;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = ST_DEAD;
    bb_free(&c->in);
    bb_free(&c->out);
    bb_free(&c->frag);
    if (!g_stopping) open_more();
}

static void conn_start(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise the file descriptor limit?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.rx_timestamps && c->role == ROLE_SUB && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
        die("setsockopt SO_TIMESTAMPNS: %s", strerror(errno));
    c->fd = fd;
    c->state = ST_CONNECTING;
    g_pending_open++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    c->epollout = true;
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0 && errno != EINPROGRESS)
        conn_close(c, strerror(errno));
}

static void open_more(void) {
    static bool busy; /* conn_start → conn_close → open_more must not recurse */
    if (busy) return;
    busy = true;
    while (g_next_open < g_nconns && g_pending_open < opt.connect_batch) conn_start(&g_conns[g_next_open++]);
    busy = false;
}

/* ---- requests ---------------------------------------------------------------------- */

/* Appends one request frame: {"id":<id> + rest. */
static void send_request(conn_t *c, uint64_t now, const char *rest, size_t rest_len) {
    char buf[2048];
    uint32_t id = ++c->next_id;
    memcpy(buf, "{\"id\":", 6);
    size_t n = 6 + u64_dec(buf + 6, id);
    if (n + rest_len > sizeof buf) die("request too large");
    memcpy(buf + n, rest, rest_len);
    n += rest_len;
    send_text(c, buf, n);
    if (c->sent_ns) c->sent_ns[id & g_ring_mask] = now;
    c->outstanding++;
}

static void send_tx(conn_t *c, uint64_t now) {
    char buf[4096];
    uint32_t id = ++c->next_id;
    memcpy(buf, "{\"id\":", 6);
    size_t n = 6 + u64_dec(buf + 6, id);
    if (n + g_tx_mid_len + 24 + c->tail_len > sizeof buf) die("request too large");
    memcpy(buf + n, g_tx_mid, g_tx_mid_len);
    n += g_tx_mid_len;
    n += u64_dec(buf + n, g_stock--);
    memcpy(buf + n, c->tail, c->tail_len);
    n += c->tail_len;
    send_text(c, buf, n);
    c->sent_ns[id & g_ring_mask] = now;
    c->outstanding++;
}

/* {"id":N,"type":"procedures.call","name":"checkout","input":{"walletCurrency":W,
 * "items":[{"productId":P,"quantity":1}][,"idempotencyKey":"rt-<nonce>-<conn>-<id>"]}} */
static void send_checkout(conn_t *c, uint64_t now) {
    char buf[2048];
    uint32_t id = ++c->next_id;
    memcpy(buf, "{\"id\":", 6);
    size_t n = 6 + u64_dec(buf + 6, id);
    size_t pi = ((size_t)c->idx + id) % g_co_nproducts;
    if (n + g_co_head_len[pi] + 100 > sizeof buf) die("request too large");
    memcpy(buf + n, g_co_head[pi], g_co_head_len[pi]);
    n += g_co_head_len[pi];
    if (opt.idempotency) {
        memcpy(buf + n, ",\"idempotencyKey\":\"rt-", 22);
        n += 22;
        n += u64_dec(buf + n, g_idem_nonce);
        buf[n++] = '-';
        n += u64_dec(buf + n, (uint64_t)c->idx);
        buf[n++] = '-';
        n += u64_dec(buf + n, id);
        buf[n++] = '"';
    }
    buf[n++] = '}';
    buf[n++] = '}';
    send_text(c, buf, n);
    c->sent_ns[id & g_ring_mask] = now;
    c->outstanding++;
}

/* Keeps --inflight requests outstanding on a load connection. */
static void refill(conn_t *c) {
    if (g_stopping || c->state != ST_OPEN || !c->welcomed) return;
    if (opt.token && c->auth_state != 2) return;
    if (c->outstanding >= (uint32_t)opt.inflight) return;
    uint64_t now = mono_ns();
    while (c->outstanding < (uint32_t)opt.inflight) {
        if (opt.mode == MODE_TX) send_tx(c, now);
        else if (opt.mode == MODE_CHECKOUT) send_checkout(c, now);
        else send_request(c, now, g_req_suffix, g_req_suffix_len);
    }
}

/* auth.login with --token, "{i}" replaced by the connection index (mod --token-users). */
static void send_login(conn_t *c) {
    char tok[1024], num[24];
    size_t tn = 0;
    unsigned users = opt.token_users > 0 ? (unsigned)opt.token_users : (unsigned)g_nconns;
    size_t nn = u64_dec(num, (uint64_t)((unsigned)c->idx % users));
    for (const char *t = opt.token; *t; t++) {
        if (t[0] == '{' && t[1] == 'i' && t[2] == '}') {
            if (tn + nn >= sizeof tok) die("--token too long");
            memcpy(tok + tn, num, nn);
            tn += nn;
            t += 2;
        } else {
            if (tn + 1 >= sizeof tok) die("--token too long");
            tok[tn++] = *t;
        }
    }
    tok[tn] = 0;
    char *q = json_quote(tok);
    char buf[2200];
    uint32_t id = ++c->next_id;
    int n = snprintf(buf, sizeof buf, "{\"id\":%u,\"type\":\"auth.login\",\"token\":%s}", id, q);
    free(q);
    if (n < 0 || (size_t)n >= sizeof buf) die("--token too long");
    c->setup_id = id;
    c->auth_state = 1;
    c->outstanding++;
    if (c->sent_ns) c->sent_ns[id & g_ring_mask] = mono_ns();
    send_text(c, buf, (size_t)n);
}

static void send_subscribe(conn_t *c) {
    char buf[1024];
    uint32_t id = ++c->next_id;
    int n;
    if (opt.mode == MODE_EVENTS) {
        char *q = json_quote(opt.pattern);
        n = snprintf(buf, sizeof buf, "{\"id\":%u,\"type\":\"rules.subscribe\",\"pattern\":%s}", id, q);
        free(q);
    } else {
        char *q = json_quote(opt.query);
        n = snprintf(buf, sizeof buf, "{\"id\":%u,\"type\":\"store.subscribe\",\"query\":%s%s%s}", id, q,
                     opt.params ? ",\"params\":" : "", opt.params ? opt.params : "");
        free(q);
    }
    if (n < 0 || (size_t)n >= sizeof buf) die("subscribe request too large");
    c->setup_id = id;
    c->outstanding++;
    c->sub_state = 1;
    send_text(c, buf, (size_t)n);
}

/* What a connection does once it may (after the welcome, and after the login when
 * there is a --token). */
static void conn_begin(conn_t *c) {
    if (opt.token && c->auth_state == 0) {
        send_login(c);
        return;
    }
    if (opt.token && c->auth_state != 2) return;
    if (c->role == ROLE_SUB) send_subscribe(c);
    else if (c->role == ROLE_LOAD) refill(c);
}

/* ---- incoming messages ------------------------------------------------------------- */

static void print_error_frame(conn_t *c, const char *p, size_t n) {
    if (g_errors_printed++ >= 5) return;
    note("connection %d: error answer: %.*s", c->idx, (int)(n > 400 ? 400 : n), p);
}

static void on_result(conn_t *c, uint32_t id, bool is_error, const char *p, size_t n, uint64_t now) {
    if (is_error) {
        g_errors++;
        print_error_frame(c, p, n);
    }
    if (c->outstanding) c->outstanding--;
    if (c->auth_state == 1 && id == c->setup_id) {
        if (c->sent_ns) hist_add_ns(&g_login_lat, now - c->sent_ns[id & g_ring_mask]);
        if (is_error) {
            c->auth_state = 3;
            g_auth_failed++;
        } else {
            c->auth_state = 2;
            g_auth_ok++;
            conn_begin(c);
        }
        return;
    }
    switch (c->role) {
    case ROLE_LOAD:
        if (g_measuring && !is_error) { /* error answers are counted in g_errors only */
            g_ops++;
            hist_add_ns(&g_lat, now - c->sent_ns[id & g_ring_mask]);
        }
        break;
    case ROLE_SUB:
        if (c->sub_state == 1 && id == c->setup_id) {
            if (is_error) {
                c->sub_state = 0;
                g_sub_failed++;
            } else {
                c->sub_state = 2;
                g_sub_ready++;
            }
        }
        break;
    case ROLE_WRITER:
        if (g_measuring && c->sent_ns) hist_add_ns(&g_upd_lat, now - c->sent_ns[id & g_ring_mask]);
        break;
    }
}

static void on_push(conn_t *c, const char *p, size_t n, uint64_t now) {
    const char *v = FIELD(p, n, "\"sentAt\"");
    int ok = 0;
    uint64_t sent = v ? parse_u64(v, p + n, NULL, &ok) + g_epoch_ns : 0;
    if (!ok) {
        g_pushes_nosent++;
        return;
    }
    if (!g_measuring || sent < g_window_start_ns) {
        g_pushes_warm++;
        return;
    }
    c->pushes++;
    g_pushes++;
    hist_add_ns(&g_lat, now > sent ? now - sent : 0);
    if (g_rx_cur_ns) hist_add_ns(&g_rx_lat, g_rx_cur_ns > sent ? g_rx_cur_ns - sent : 0);
}

static void on_text(conn_t *c, const char *p, size_t n, uint64_t now) {
    /* Results and errors: shopd writes {"id":<n>,"type":"result"|"error",...}. */
    const char *idv = NULL;
    if (n > 6 && memcmp(p, "{\"id\":", 6) == 0) idv = p + 6;
    else if (n > 0) {
        const char *t = FIELD(p, n < 96 ? n : 96, "\"type\"");
        if (!t || memcmp(t, "\"result\"", 8) == 0 || memcmp(t, "\"error\"", 7) == 0) idv = FIELD(p, n, "\"id\"");
    }
    if (idv) {
        int ok;
        const char *after;
        uint64_t id = parse_u64(idv, p + n, &after, &ok);
        if (ok) {
            const char *t = FIELD(after, (size_t)(p + n - after) < 64 ? (size_t)(p + n - after) : 64, "\"type\"");
            bool is_error = t && (size_t)(p + n - t) >= 7 && memcmp(t, "\"error\"", 7) == 0;
            on_result(c, (uint32_t)id, is_error, p, n, now);
            return;
        }
    }
    const char *t = FIELD(p, n < 128 ? n : 128, "\"type\"");
    if (!t) {
        g_other_msgs++;
        return;
    }
    size_t left = (size_t)(p + n - t);
    if (left >= 6 && memcmp(t, "\"push\"", 6) == 0) {
        on_push(c, p, n, now);
    } else if (left >= 6 && memcmp(t, "\"ping\"", 6) == 0) {
        /* {"type":"ping","timestamp":n} → {"type":"pong","timestamp":n} */
        const char *ts = FIELD(p, n, "\"timestamp\"");
        const char *e = ts;
        while (e && e < p + n && ((*e >= '0' && *e <= '9') || *e == '-' || *e == '.' || *e == 'e' || *e == 'E' || *e == '+'))
            e++;
        char buf[128];
        int len = snprintf(buf, sizeof buf, "{\"type\":\"pong\",\"timestamp\":%.*s}", ts && e > ts ? (int)(e - ts) : 1,
                           ts && e > ts ? ts : "0");
        if (len > 0 && (size_t)len < sizeof buf) send_text(c, buf, (size_t)len);
        g_pings++;
    } else if (left >= 9 && memcmp(t, "\"welcome\"", 9) == 0) {
        if (!c->welcomed) {
            c->welcomed = true;
            g_pending_open--;
            g_open_ok++;
            conn_begin(c);
            if (!g_stopping) open_more();
        }
    } else if (left >= 8 && memcmp(t, "\"system\"", 8) == 0) {
        note("connection %d: %.*s", c->idx, (int)(n > 200 ? 200 : n), p);
        g_other_msgs++;
    } else {
        g_other_msgs++;
    }
}

/* Parses frames in [base, base+have); returns the bytes consumed. The connection may
 * be closed on return (c->state == ST_DEAD). */
static size_t parse_frames(conn_t *c, char *base, size_t have, uint64_t now) {
    size_t pos = 0;
    if (c->state == ST_HANDSHAKE) {
        const char *e = memmem(base, have, "\r\n\r\n", 4);
        if (!e) {
            if (have > 16384) conn_close(c, "handshake response too large");
            return 0;
        }
        if (have < 12 || memcmp(base, "HTTP/1.1 101", 12) != 0) {
            const char *eol = memchr(base, '\r', have);
            char why[160];
            snprintf(why, sizeof why, "handshake refused: %.*s", (int)(eol ? eol - base : 60), base);
            conn_close(c, why);
            return 0;
        }
        pos = (size_t)(e + 4 - base);
        c->state = ST_OPEN;
    }
    while (have - pos >= 2) {
        const uint8_t *h = (const uint8_t *)base + pos;
        bool fin = h[0] & 0x80u;
        unsigned op = h[0] & 0x0Fu;
        bool masked = h[1] & 0x80u;
        uint64_t plen = h[1] & 0x7Fu;
        size_t hl = 2;
        if (plen == 126) {
            if (have - pos < 4) break;
            plen = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (plen == 127) {
            if (have - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | h[2 + i];
            hl = 10;
        }
        if (plen > (256u << 20)) {
            conn_close(c, "frame larger than 256 MiB");
            return pos;
        }
        size_t mask_at = hl;
        if (masked) hl += 4;
        if (have - pos < hl + plen) break;
        char *p = base + pos + hl;
        if (masked) {
            const uint8_t *k = h + mask_at;
            for (uint64_t i = 0; i < plen; i++) p[i] = (char)((uint8_t)p[i] ^ k[i & 3]);
        }
        pos += hl + (size_t)plen;
        switch (op) {
        case OP_TEXT:
        case OP_BINARY:
            if (fin) on_text(c, p, (size_t)plen, now);
            else {
                c->frag.off = c->frag.len = 0;
                bb_append(&c->frag, p, (size_t)plen);
                c->frag_op = (uint8_t)op;
            }
            break;
        case OP_CONT:
            if (!c->frag_op) {
                conn_close(c, "continuation frame without a message");
                return pos;
            }
            bb_append(&c->frag, p, (size_t)plen);
            if (fin) {
                c->frag_op = 0;
                on_text(c, c->frag.p, c->frag.len, now);
                c->frag.off = c->frag.len = 0;
            }
            break;
        case OP_PING:
            ws_append(&c->out, OP_PONG, p, (size_t)plen);
            g_ws_pings++;
            break;
        case OP_PONG: break;
        case OP_CLOSE: {
            unsigned code = plen >= 2 ? ((unsigned)(uint8_t)p[0] << 8) | (uint8_t)p[1] : 1005;
            char why[200];
            snprintf(why, sizeof why, "server closed the connection (code %u%s%.*s)", code, plen > 2 ? ", " : "",
                     plen > 2 ? (int)(plen - 2 > 120 ? 120 : plen - 2) : 0, plen > 2 ? p + 2 : "");
            if (g_close_codes_printed++ < 3 && !g_stopping) note("connection %d: %s", c->idx, why);
            ws_append(&c->out, OP_CLOSE, p, plen >= 2 ? 2 : 0);
            conn_flush(c);
            conn_close(c, why);
            return pos;
        }
        default: conn_close(c, "unknown opcode"); return pos;
        }
        if (c->state == ST_DEAD) return pos;
    }
    return pos;
}

/* read(2), or with --rx-timestamps on a subscriber recvmsg(2) that also sets
 * g_rx_cur_ns to the kernel's receive time of the data (monotonic clock). */
static ssize_t conn_read(conn_t *c, char *buf, size_t room) {
    g_rx_cur_ns = 0;
    if (!opt.rx_timestamps || c->role != ROLE_SUB) return read(c->fd, buf, room);
    struct iovec iov = {.iov_base = buf, .iov_len = room};
    union {
        char b[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t n = recvmsg(c->fd, &mh, 0);
    if (n <= 0) return n;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            int64_t rt = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
            if (rt - g_rt_minus_mono > 0) g_rx_cur_ns = (uint64_t)(rt - g_rt_minus_mono);
        }
    }
    if (!g_rx_cur_ns) g_rx_missing++;
    return n;
}

static void on_readable(conn_t *c) {
    for (;;) {
        char *base;
        size_t room;
        ssize_t n;
        if (c->in.len == c->in.off) {
            c->in.off = c->in.len = 0;
            room = RBUF_SIZE;
            n = conn_read(c, g_rbuf, room);
            base = g_rbuf;
        } else {
            bb_reserve(&c->in, 65536);
            room = c->in.cap - c->in.len;
            n = conn_read(c, c->in.p + c->in.len, room);
            if (n > 0) c->in.len += (size_t)n;
            base = c->in.p + c->in.off;
        }
        if (n == 0) {
            conn_close(c, "connection closed by the server");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            conn_close(c, strerror(errno));
            return;
        }
        uint64_t now = mono_ns();
        size_t have = base == g_rbuf ? (size_t)n : c->in.len - c->in.off;
        size_t used = parse_frames(c, base, have, now);
        if (c->state == ST_DEAD) return;
        if (base == g_rbuf) {
            if (used < have) bb_append(&c->in, base + used, have - used);
        } else {
            c->in.off += used;
            if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
        }
        if ((size_t)n < room) break;
    }
    if (c->role == ROLE_LOAD) refill(c);
    if (c->out.len > c->out.off) conn_flush(c);
}

static void on_writable(conn_t *c) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_close(c, strerror(err));
            return;
        }
        c->state = ST_HANDSHAKE;
        bb_append(&c->out, g_handshake, g_handshake_len);
    }
    conn_flush(c);
}

/* One round of the event loop, waiting at most timeout_ms. */
static void loop_once(int timeout_ms) {
    struct epoll_event evs[1024];
    int n = epoll_wait(g_ep, evs, 1024, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    if (opt.rx_timestamps && n > 0) {
        struct timespec rt;
        uint64_t m0 = mono_ns();
        clock_gettime(CLOCK_REALTIME, &rt);
        uint64_t m1 = mono_ns();
        g_rt_minus_mono = ((int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec) - (int64_t)(m0 + (m1 - m0) / 2);
    }
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->state == ST_DEAD) continue;
        uint32_t e = evs[i].events;
        if (e & (EPOLLOUT | EPOLLERR)) {
            if (c->state == ST_CONNECTING && (e & EPOLLERR) && !(e & EPOLLOUT)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                conn_close(c, err ? strerror(err) : "socket error");
                continue;
            }
            on_writable(c);
            if (c->state == ST_DEAD) continue;
        }
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (c->state == ST_CONNECTING) continue;
            on_readable(c);
        }
    }
}

static int ms_until(uint64_t deadline, uint64_t now) {
    if (deadline <= now) return 0;
    uint64_t ms = (deadline - now + 999999u) / 1000000u;
    return ms > 100 ? 100 : (int)ms;
}

/* Runs the loop until done() or the deadline (ns, monotonic); returns done(). */
static bool loop_until(uint64_t deadline, bool (*done)(void)) {
    for (;;) {
        if (done && done()) return true;
        uint64_t now = mono_ns();
        if (now >= deadline) return done ? done() : true;
        loop_once(ms_until(deadline, now));
    }
}

/* ---- server and own CPU ------------------------------------------------------------ */

typedef struct {
    bool ok;
    uint64_t ticks;    /* utime + stime, clock ticks */
    uint64_t sys_ticks; /* stime alone */
    uint64_t sched_ns; /* sum of the tasks' on-CPU time from schedstat, 0 if unavailable */
    uint64_t wait_ns;  /* sum of the tasks' time runnable but waiting for a CPU (schedstat) */
} srv_cpu_t;

static srv_cpu_t server_cpu(void) {
    srv_cpu_t r = {0};
    if (!opt.server_pid) return r;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)opt.server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return r;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p) return r;
    /* after ") ": state(3) ppid(4) ... utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return r;
    r.ok = true;
    r.ticks = ut + st;
    r.sys_ticks = st;
    snprintf(path, sizeof path, "/proc/%d/task", (int)opt.server_pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.') continue;
            char sp[300];
            snprintf(sp, sizeof sp, "/proc/%d/task/%s/schedstat", (int)opt.server_pid, de->d_name);
            FILE *sf = fopen(sp, "r");
            if (!sf) continue;
            unsigned long long ns = 0, wait = 0;
            if (fscanf(sf, "%llu %llu", &ns, &wait) == 2) {
                r.sched_ns += ns;
                r.wait_ns += wait;
            }
            fclose(sf);
        }
        closedir(d);
    }
    return r;
}

static uint64_t self_cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* Server CPU over the window in seconds (from clock ticks), or -1 when unknown. */
static double cpu_ticks_s(srv_cpu_t a, srv_cpu_t b) {
    if (!a.ok || !b.ok) return -1;
    return (double)(b.ticks - a.ticks) / (double)sysconf(_SC_CLK_TCK);
}

/* Share of the server CPU spent in the kernel (stime / (utime + stime)), or -1. */
static double cpu_sys_pct(srv_cpu_t a, srv_cpu_t b) {
    if (!a.ok || !b.ok || b.ticks == a.ticks) return -1;
    return (double)(b.sys_ticks - a.sys_ticks) * 100.0 / (double)(b.ticks - a.ticks);
}

/* Time the server was runnable but not running (other processes had the CPUs), as a
 * percentage of the window, or -1. */
static double runq_pct(srv_cpu_t a, srv_cpu_t b, double wall) {
    if (!a.ok || !b.ok || !a.sched_ns || b.wait_ns < a.wait_ns) return -1;
    return (double)(b.wait_ns - a.wait_ns) / 1e9 / wall * 100;
}

static double cpu_sched_s(srv_cpu_t a, srv_cpu_t b) {
    if (!a.ok || !b.ok || !a.sched_ns || !b.sched_ns || b.sched_ns < a.sched_ns) return -1;
    return (double)(b.sched_ns - a.sched_ns) / 1e9;
}

/* ---- /metrics ------------------------------------------------------------------------ */

/* GET /metrics with a blocking socket (outside the measured window); returns a malloc'd
 * body or NULL. */
static char *fetch_metrics(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    int rn = snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", opt.host,
                      opt.port);
    if (write(fd, req, (size_t)rn) != rn) {
        close(fd);
        return NULL;
    }
    bbuf_t b = {0};
    for (;;) {
        bb_reserve(&b, 65536);
        ssize_t n = read(fd, b.p + b.len, b.cap - b.len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        b.len += (size_t)n;
    }
    close(fd);
    if (!b.p) return NULL;
    b.p[b.len] = 0;
    if (strncmp(b.p, "HTTP/1.1 200", 12) != 0) {
        note("GET /metrics: %.60s", b.p);
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Value of an unlabelled metric line "<name> <value>", or NAN. */
static double metric(const char *body, const char *name) {
    if (!body) return NAN;
    size_t nl = strlen(name);
    for (const char *l = body; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, name, nl) == 0 && l[nl] == ' ') return strtod(l + nl + 1, NULL);
    }
    return NAN;
}

/* ---- setup -------------------------------------------------------------------------- */

static void raise_nofile(rlim_t need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    if (rl.rlim_cur >= need) return;
    if (rl.rlim_max < need) {
        struct rlimit r2 = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &r2) == 0) return;
        rl.rlim_cur = rl.rlim_max;
    } else {
        rl.rlim_cur = need;
    }
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        die("need %llu file descriptors but the limit is %llu (ulimit -n)", (unsigned long long)need,
            (unsigned long long)rl.rlim_cur);
}

static void setup(int nconns) {
    g_mask64 = 0;
    for (int i = 0; i < 8; i++) g_mask64 |= (uint64_t)MASK[i & 3] << (8 * i); /* little-endian bytes */
    {
        uint8_t probe[8];
        memcpy(probe, &g_mask64, 8);
        if (probe[0] != MASK[0] || probe[1] != MASK[1]) { /* big-endian host */
            g_mask64 = 0;
            for (int i = 0; i < 8; i++) g_mask64 = (g_mask64 << 8) | MASK[i & 3];
        }
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile((rlim_t)nconns + 64);
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &g_addr.sin_addr) != 1) die("--host must be an IPv4 address, got '%s'", opt.host);
    int n = snprintf(g_handshake, sizeof g_handshake,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host, opt.port);
    if (n < 0 || (size_t)n >= sizeof g_handshake) die("--path too long");
    g_handshake_len = (size_t)n;
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1: %s", strerror(errno));
    g_rbuf = malloc(RBUF_SIZE);
    if (!g_rbuf) die("out of memory");
    g_nconns = nconns;
    g_conns = calloc((size_t)nconns, sizeof *g_conns);
    if (!g_conns) die("out of memory");
    for (int i = 0; i < nconns; i++) {
        g_conns[i].fd = -1;
        g_conns[i].idx = i;
        g_conns[i].state = ST_IDLE;
    }
    hist_init(&g_lat);
    hist_init(&g_upd_lat);
    hist_init(&g_login_lat);
    hist_init(&g_rx_lat);
}

static bool all_opened(void) { return g_next_open >= g_nconns && g_pending_open == 0; }

static void open_all(void) {
    uint64_t t0 = mono_ns();
    open_more();
    uint64_t limit = t0 + (uint64_t)(30 + g_nconns / 200) * 1000000000ull;
    if (!loop_until(limit, all_opened)) die("opening %d connections timed out (%d open, %d failed)", g_nconns, g_open_ok, g_open_failed);
    note("%d connections open in %.0f ms (%d failed)", g_open_ok, (double)(mono_ns() - t0) / 1e6, g_open_failed);
    if (g_open_ok == 0) die("no connection could be opened");
}

static bool logins_done(void) {
    return g_auth_ok + g_auth_failed >= (uint64_t)g_open_ok || g_stopping;
}

/* With --token: waits until every open connection's login was answered. */
static void wait_logins(void) {
    if (!opt.token) return;
    uint64_t t0 = mono_ns();
    if (!loop_until(t0 + (uint64_t)(30 + g_nconns / 200) * 1000000000ull, logins_done))
        die("logging in timed out: %llu of %d logged in", (unsigned long long)g_auth_ok, g_open_ok);
    note("%llu logins accepted, %llu refused in %.0f ms (login p50 %llu us)", (unsigned long long)g_auth_ok,
         (unsigned long long)g_auth_failed, (double)(mono_ns() - t0) / 1e6,
         (unsigned long long)hist_pct(&g_login_lat, 0.5));
    if (g_auth_ok == 0) die("no login succeeded (is --token right?)");
}

/* Builds the checkout request heads, one per --products entry. */
static void checkout_templates(void) {
    char *list = strdup(opt.products);
    if (!list) die("out of memory");
    size_t cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    g_co_head = calloc(cap, sizeof *g_co_head);
    g_co_head_len = calloc(cap, sizeof *g_co_head_len);
    if (!g_co_head || !g_co_head_len) die("out of memory");
    char *qw = json_quote(opt.wallet_currency);
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *qp = json_quote(tok), tmp[1200];
        int n = snprintf(tmp, sizeof tmp,
                         ",\"type\":\"procedures.call\",\"name\":\"checkout\",\"input\":{\"walletCurrency\":%s,"
                         "\"items\":[{\"productId\":%s,\"quantity\":1}]",
                         qw, qp);
        free(qp);
        if (n < 0 || (size_t)n >= sizeof tmp) die("--products entry too long");
        g_co_head[g_co_nproducts] = strdup(tmp);
        g_co_head_len[g_co_nproducts++] = (size_t)n;
    }
    free(qw);
    free(list);
    g_idem_nonce = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (mono_ns() & 0xfffff);
}

static const char *load_title(void) {
    switch (opt.mode) {
    case MODE_TX: return "store.transaction (3 ops)";
    case MODE_CHECKOUT: return opt.idempotency ? "checkout (procedures.call, idempotency key)" : "checkout (procedures.call)";
    default: return "store.get";
    }
}

static void shut_all(void) {
    g_stopping = true;
    for (int i = 0; i < g_nconns; i++) {
        conn_t *c = &g_conns[i];
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
    }
}

static void fmt_cpu(char *out, size_t n, double s, double per, const char *unit, double wall, double sys_pct) {
    if (s < 0) snprintf(out, n, "n/a (no --server-pid)");
    else
        snprintf(out, n, "%.2f us/%s (%.2f s in %.1f s = %.0f%% of a core, %.0f%% of it in the kernel)", per, unit, s,
                 wall, s / wall * 100, sys_pct);
}

/* ---- modes -------------------------------------------------------------------------- */

static int run_load(void) {
    setup(opt.conns);
    uint32_t ring = 1;
    while (ring < (uint32_t)opt.inflight) ring <<= 1;
    g_ring_mask = ring - 1;
    char *qb = json_quote(opt.bucket), *qk = json_quote(opt.key);
    char tmp[2048];
    int n;
    if (opt.mode == MODE_CHECKOUT) {
        checkout_templates();
    } else if (opt.mode == MODE_GET) {
        n = snprintf(tmp, sizeof tmp, ",\"type\":\"store.get\",\"bucket\":%s,\"key\":%s}", qb, qk);
        if (n < 0 || (size_t)n >= sizeof tmp) die("--bucket/--key too long");
        g_req_suffix = strdup(tmp);
        g_req_suffix_len = (size_t)n;
    } else {
        n = snprintf(tmp, sizeof tmp,
                     ",\"type\":\"store.transaction\",\"operations\":[{\"op\":\"update\",\"bucket\":%s,"
                     "\"key\":%s,\"data\":{\"stock\":",
                     qb, qk);
        if (n < 0 || (size_t)n >= sizeof tmp) die("--bucket/--key too long");
        g_tx_mid = strdup(tmp);
        g_tx_mid_len = (size_t)n;
    }
    char *qo = json_quote(opt.orders_bucket), *qa = json_quote(opt.audit_bucket);
    for (int i = 0; i < g_nconns; i++) {
        conn_t *c = &g_conns[i];
        c->role = ROLE_LOAD;
        c->sent_ns = calloc(ring, sizeof *c->sent_ns);
        if (!c->sent_ns) die("out of memory");
        if (opt.mode == MODE_TX) {
            n = snprintf(tmp, sizeof tmp,
                         "}},{\"op\":\"insert\",\"bucket\":%s,\"data\":{\"userId\":\"bench-user-%d\","
                         "\"productId\":%s,\"quantity\":1,\"total\":79.99,\"status\":\"placed\"}},"
                         "{\"op\":\"insert\",\"bucket\":%s,\"data\":{\"action\":\"order.placed\","
                         "\"userId\":\"bench-user-%d\",\"productId\":%s}}]}",
                         qo, i, qk, qa, i, qk);
            if (n < 0 || (size_t)n >= sizeof tmp) die("bucket names too long");
            c->tail = strdup(tmp);
            c->tail_len = (size_t)n;
        }
    }
    free(qb);
    free(qk);
    free(qo);
    free(qa);

    open_all();
    wait_logins();
    note("%s: warm-up %.1f s", opt.mode_name, opt.warmup);
    loop_until(mono_ns() + (uint64_t)(opt.warmup * 1e9), NULL);
    uint64_t err0 = g_errors;

    srv_cpu_t s0 = server_cpu();
    uint64_t self0 = self_cpu_ns();
    uint64_t t0 = mono_ns();
    g_measuring = true;
    note("%s: measuring %.1f s", opt.mode_name, opt.seconds);
    loop_until(t0 + (uint64_t)(opt.seconds * 1e9), NULL);
    g_measuring = false;
    uint64_t t1 = mono_ns();
    srv_cpu_t s1 = server_cpu();
    uint64_t self1 = self_cpu_ns();
    shut_all();

    double wall = (double)(t1 - t0) / 1e9;
    double ops_s = (double)g_ops / wall;
    double scpu = cpu_ticks_s(s0, s1), ssched = cpu_sched_s(s0, s1);
    double per_op = scpu >= 0 && g_ops ? scpu * 1e6 / (double)g_ops : -1;
    double per_op_sched = ssched >= 0 && g_ops ? ssched * 1e6 / (double)g_ops : -1;
    double gcpu = (double)(self1 - self0) / 1e9;
    uint64_t errors = g_errors - err0;
    bool ok = g_open_failed == 0 && g_closed_after_open == 0 && g_errors == 0 && g_ops > 0 && g_auth_failed == 0;
    printf("RESULT mode=%s auth=%s auth_failed=%llu idempotency=%s conns=%d inflight=%d seconds=%.2f ops=%llu "
           "ops_per_s=%.0f lat_p50_us=%llu "
           "lat_p90_us=%llu lat_p99_us=%llu lat_p999_us=%llu lat_max_us=%llu lat_mean_us=%.1f errors=%llu "
           "server_cpu_s=%.2f server_cpu_us_per_op=%.3f server_cpu_sched_us_per_op=%.3f server_cpu_pct=%.1f "
           "server_sys_pct=%.0f server_runq_wait_pct=%.1f "
           "gen_cpu_s=%.2f gen_cpu_us_per_op=%.3f gen_cpu_pct=%.1f conn_failed=%d conn_closed=%d pings=%llu "
           "ws_pings=%llu status=%s\n",
           opt.mode_name, opt.token ? "token" : "none", (unsigned long long)g_auth_failed,
           opt.mode == MODE_CHECKOUT && opt.idempotency ? "key" : "none", opt.conns, opt.inflight, wall,
           (unsigned long long)g_ops, ops_s,
           (unsigned long long)hist_pct(&g_lat, 0.50), (unsigned long long)hist_pct(&g_lat, 0.90),
           (unsigned long long)hist_pct(&g_lat, 0.99), (unsigned long long)hist_pct(&g_lat, 0.999),
           (unsigned long long)g_lat.max, g_lat.n ? (double)g_lat.sum / (double)g_lat.n : 0.0,
           (unsigned long long)errors, scpu, per_op, per_op_sched, scpu >= 0 ? scpu / wall * 100 : -1,
           cpu_sys_pct(s0, s1), runq_pct(s0, s1, wall), gcpu,
           g_ops ? gcpu * 1e6 / (double)g_ops : 0.0, gcpu / wall * 100, g_open_failed, g_closed_after_open,
           (unsigned long long)g_pings, (unsigned long long)g_ws_pings, ok ? "ok" : "incomplete");
    char cpu[160];
    fmt_cpu(cpu, sizeof cpu, scpu, per_op, "op", wall, cpu_sys_pct(s0, s1));
    printf("%s: %.0f ops/s over %.1f s (%d conns x %d in flight), latency p50 %llu us p99 %llu us max %llu us; "
           "server CPU %s; generator CPU %.2f us/op = %.0f%% of a core; %llu errors\n",
           load_title(), ops_s, wall, opt.conns, opt.inflight,
           (unsigned long long)hist_pct(&g_lat, 0.50), (unsigned long long)hist_pct(&g_lat, 0.99),
           (unsigned long long)g_lat.max, cpu, g_ops ? gcpu * 1e6 / (double)g_ops : 0.0, gcpu / wall * 100, (unsigned long long)errors);
    if (gcpu / wall > 0.9) note("warning: the generator used %.0f%% of a core; it may be the bottleneck", gcpu / wall * 100);
    return ok ? 0 : 1;
}

static conn_t *g_writer;

static bool subs_ready(void) {
    uint64_t refused = 0; /* subscribers whose login was refused never subscribe */
    if (opt.token) refused = g_auth_failed;
    return g_sub_ready + g_sub_failed + refused + (uint64_t)g_open_failed >= (uint64_t)opt.subscribers || g_stopping;
}

static uint64_t g_expect_pushes;
static bool drained(void) { return g_pushes >= g_expect_pushes && g_writer->outstanding == 0; }

/* events: {"id":N,"type":"rules.emit","topic":T,"data":{"seq":n,"sentAt":ns}} */
static void send_emit(conn_t *w, uint64_t seq) {
    static char *head; /* ,"type":"rules.emit","topic":T,"data":{"seq": */
    static size_t head_len;
    if (!head) {
        char *qt = json_quote(opt.topic), tmp[1024];
        int n = snprintf(tmp, sizeof tmp, ",\"type\":\"rules.emit\",\"topic\":%s,\"data\":{\"seq\":", qt);
        free(qt);
        if (n < 0 || (size_t)n >= sizeof tmp) die("--topic too long");
        head = strdup(tmp);
        head_len = (size_t)n;
    }
    char rest[1200];
    size_t n = head_len;
    memcpy(rest, head, n);
    n += u64_dec(rest + n, seq);
    memcpy(rest + n, ",\"sentAt\":", 10);
    n += 10;
    uint64_t now = mono_ns();
    n += u64_dec(rest + n, now - g_epoch_ns);
    rest[n++] = '}';
    rest[n++] = '}';
    send_request(w, now, rest, n);
    conn_flush(w);
}

static void send_update(conn_t *w, uint64_t seq) {
    static char *rest_head; /* ,"type":"store.update","bucket":B,"key":K,"data":{"stock": */
    static size_t rest_head_len;
    if (!rest_head) {
        char *qb = json_quote(opt.bucket), *qk = json_quote(opt.key);
        char tmp[1024];
        int n = snprintf(tmp, sizeof tmp, ",\"type\":\"store.update\",\"bucket\":%s,\"key\":%s,\"data\":{\"stock\":", qb,
                         qk);
        free(qb);
        free(qk);
        if (n < 0 || (size_t)n >= sizeof tmp) die("--bucket/--key too long");
        rest_head = strdup(tmp);
        rest_head_len = (size_t)n;
    }
    char rest[1200];
    size_t n = rest_head_len;
    memcpy(rest, rest_head, n);
    n += u64_dec(rest + n, 1000000 + seq);
    memcpy(rest + n, ",\"sentAt\":", 10);
    n += 10;
    uint64_t now = mono_ns();
    n += u64_dec(rest + n, now - g_epoch_ns);
    rest[n++] = '}';
    rest[n++] = '}';
    send_request(w, now, rest, n);
    conn_flush(w);
}

/* Sends updates at --rate for `seconds`, serving the loop in between; returns the count. */
static uint64_t run_updates(double seconds, uint64_t *seq) {
    uint64_t t0 = mono_ns();
    uint64_t interval = (uint64_t)(1e9 / opt.rate);
    uint64_t count = (uint64_t)llround(seconds * opt.rate);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t at = t0 + i * interval;
        for (uint64_t now = mono_ns(); now < at; now = mono_ns()) loop_once(ms_until(at, now));
        if (g_writer->state != ST_OPEN) die("the writer connection is gone");
        if (opt.mode == MODE_EVENTS) send_emit(g_writer, ++*seq);
        else send_update(g_writer, ++*seq);
    }
    /* serve the last interval too, so that the window covers seconds */
    uint64_t end = t0 + count * interval;
    for (uint64_t now = mono_ns(); now < end; now = mono_ns()) loop_once(ms_until(end, now));
    return count;
}

static int run_fanout(void) {
    setup(opt.subscribers + 1);
    g_ring_mask = 1023;
    for (int i = 0; i < g_nconns; i++) g_conns[i].role = ROLE_SUB;
    g_writer = &g_conns[g_nconns - 1];
    g_writer->role = ROLE_WRITER;
    g_writer->sent_ns = calloc(g_ring_mask + 1, sizeof *g_writer->sent_ns);
    if (!g_writer->sent_ns) die("out of memory");

    const char *mn = opt.mode_name, *what = opt.mode == MODE_EVENTS ? "events" : "updates";
    open_all();
    if (g_writer->state != ST_OPEN) die("the writer connection could not be opened");
    uint64_t t0 = mono_ns();
    if (!loop_until(t0 + (uint64_t)(30 + opt.subscribers / 200) * 1000000000ull, subs_ready))
        die("subscribing timed out: %llu of %d subscribed", (unsigned long long)g_sub_ready, opt.subscribers);
    note("%llu subscriptions confirmed (%llu failed)", (unsigned long long)g_sub_ready,
         (unsigned long long)g_sub_failed);
    if (g_sub_ready == 0) die("no subscription succeeded");
    if (opt.token && !loop_until(mono_ns() + 30000000000ull, logins_done)) die("the writer's login timed out");
    if (opt.token && g_writer->auth_state != 2) die("the writer's login was refused");

    uint64_t seq = 0;
    if (opt.warmup > 0) {
        note("%s: warm-up %.1f s of %s", mn, opt.warmup, what);
        run_updates(opt.warmup, &seq);
    }
    /* let the warm-up's last pushes arrive */
    loop_until(mono_ns() + 300000000ull, NULL);

    char *m0 = fetch_metrics();
    if (!m0) note("could not read /metrics before the window");
    srv_cpu_t s0 = server_cpu();
    uint64_t self0 = self_cpu_ns();
    uint64_t err0 = g_errors;
    g_window_start_ns = mono_ns();
    g_measuring = true;
    note("%s: %llu subscribers, %.1f %s/s for %.1f s", mn, (unsigned long long)g_sub_ready, opt.rate, what, opt.seconds);
    uint64_t updates = run_updates(opt.seconds, &seq);
    g_expect_pushes = updates * g_sub_ready;
    bool complete = loop_until(mono_ns() + (uint64_t)(opt.drain * 1e9), drained);
    uint64_t t1 = mono_ns();
    g_measuring = false;
    srv_cpu_t s1 = server_cpu();
    uint64_t self1 = self_cpu_ns();
    char *m1 = fetch_metrics();
    if (!m1) note("could not read /metrics after the window");
    shut_all();

    double wall = (double)(t1 - g_window_start_ns) / 1e9;
    double ev = metric(m1, "shopd_subscription_evaluations_total") - metric(m0, "shopd_subscription_evaluations_total");
    double sp = metric(m1, "shopd_subscription_pushes_total") - metric(m0, "shopd_subscription_pushes_total");
    double unch = metric(m1, "shopd_subscription_unchanged_total") - metric(m0, "shopd_subscription_unchanged_total");
    free(m0);
    free(m1);
    uint64_t minp = UINT64_MAX, maxp = 0;
    for (int i = 0; i < g_nconns; i++) {
        conn_t *c = &g_conns[i];
        if (c->role != ROLE_SUB || c->sub_state != 2) continue;
        if (c->pushes < minp) minp = c->pushes;
        if (c->pushes > maxp) maxp = c->pushes;
    }
    if (minp == UINT64_MAX) minp = 0;
    double scpu = cpu_ticks_s(s0, s1), ssched = cpu_sched_s(s0, s1);
    double per_push = scpu >= 0 && g_pushes ? scpu * 1e6 / (double)g_pushes : -1;
    double per_push_sched = ssched >= 0 && g_pushes ? ssched * 1e6 / (double)g_pushes : -1;
    double gcpu = (double)(self1 - self0) / 1e9;
    double ev_per_update = updates ? ev / (double)updates : NAN;
    uint64_t errors = g_errors - err0;
    bool ok = complete && g_pushes == g_expect_pushes && errors == 0 && g_open_failed == 0 &&
              g_closed_after_open == 0 && g_sub_failed == 0 && g_auth_failed == 0;
    printf("RESULT mode=%s auth=%s auth_failed=%llu subscribers=%llu rate=%.2f seconds=%.2f window_s=%.2f updates=%llu pushes=%llu "
           "expected=%llu push_p50_us=%llu push_p90_us=%llu push_p99_us=%llu push_max_us=%llu push_mean_us=%.1f "
           "min_per_sub=%llu max_per_sub=%llu update_p50_us=%llu update_p99_us=%llu evaluations=%.0f "
           "evals_per_update=%.3f server_pushes=%.0f server_unchanged=%.0f server_cpu_s=%.3f "
           "server_cpu_us_per_push=%.3f server_cpu_sched_us_per_push=%.3f server_sys_pct=%.0f server_runq_wait_pct=%.1f "
           "gen_cpu_s=%.3f "
           "gen_cpu_us_per_push=%.3f rx_pushes=%llu rx_p50_us=%llu rx_p90_us=%llu rx_p99_us=%llu rx_max_us=%llu "
           "errors=%llu conn_failed=%d conn_closed=%d pings=%llu ws_pings=%llu status=%s\n",
           mn, opt.token ? "token" : "none", (unsigned long long)g_auth_failed, (unsigned long long)g_sub_ready,
           opt.rate, opt.seconds, wall, (unsigned long long)updates,
           (unsigned long long)g_pushes, (unsigned long long)g_expect_pushes, (unsigned long long)hist_pct(&g_lat, 0.50),
           (unsigned long long)hist_pct(&g_lat, 0.90), (unsigned long long)hist_pct(&g_lat, 0.99),
           (unsigned long long)g_lat.max, g_lat.n ? (double)g_lat.sum / (double)g_lat.n : 0.0, (unsigned long long)minp,
           (unsigned long long)maxp, (unsigned long long)hist_pct(&g_upd_lat, 0.50),
           (unsigned long long)hist_pct(&g_upd_lat, 0.99), ev, ev_per_update, sp, unch, scpu, per_push, per_push_sched,
           cpu_sys_pct(s0, s1), runq_pct(s0, s1, wall), gcpu, g_pushes ? gcpu * 1e6 / (double)g_pushes : 0.0,
           (unsigned long long)g_rx_lat.n, (unsigned long long)hist_pct(&g_rx_lat, 0.50),
           (unsigned long long)hist_pct(&g_rx_lat, 0.90), (unsigned long long)hist_pct(&g_rx_lat, 0.99),
           (unsigned long long)g_rx_lat.max, (unsigned long long)errors, g_open_failed,
           g_closed_after_open, (unsigned long long)g_pings, (unsigned long long)g_ws_pings, ok ? "ok" : "incomplete");
    char cpu[160];
    fmt_cpu(cpu, sizeof cpu, scpu, per_push, "push", wall, cpu_sys_pct(s0, s1));
    printf("%s: %llu subscribers, %llu %s -> %llu of %llu pushes, push latency p50 %llu us p99 %llu us "
           "max %llu us; %.3f evaluations/update; server CPU %s; generator CPU %.2f us/push\n",
           mn, (unsigned long long)g_sub_ready, (unsigned long long)updates, what, (unsigned long long)g_pushes,
           (unsigned long long)g_expect_pushes, (unsigned long long)hist_pct(&g_lat, 0.50),
           (unsigned long long)hist_pct(&g_lat, 0.99), (unsigned long long)g_lat.max, ev_per_update, cpu,
           g_pushes ? gcpu * 1e6 / (double)g_pushes : 0.0);
    if (opt.rx_timestamps)
        printf("%s: to the kernel's receive time (--rx-timestamps): push latency p50 %llu us p99 %llu us max %llu us "
               "(%llu pushes)\n",
               mn, (unsigned long long)hist_pct(&g_rx_lat, 0.50), (unsigned long long)hist_pct(&g_rx_lat, 0.99),
               (unsigned long long)g_rx_lat.max, (unsigned long long)g_rx_lat.n);
    if (opt.rx_timestamps && g_rx_missing) note("%llu reads carried no receive timestamp", (unsigned long long)g_rx_missing);
    if (g_pushes_nosent) note("%llu pushes carried no sentAt", (unsigned long long)g_pushes_nosent);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_epoch_ns = mono_ns();
    g_epoch_ns = g_epoch_ns > 1000000000u ? g_epoch_ns - 1000000000u : 0;
    if (opt.mode == MODE_FANOUT || opt.mode == MODE_EVENTS) return run_fanout();
    return run_load();
}
