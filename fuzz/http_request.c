/* libFuzzer target for the HTTP/1.1 reader. The input is fed in two chunks split at the
 * first byte's value, so requests also end and resume across feeds. Every request that
 * comes out is taken and answered as the server would, and a refusal with its bare
 * error: reading, taking, serialising and cleanup run under ASan/UBSan. */
#include <stdint.h>
#include <stdlib.h>

#include "core/buf.h"
#include "net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    size_t ends[2] = {size && data[0] < size ? data[0] : size, size}, at = 0, used;
    http_reader_t *r = http_reader_new(4096);
    buf_t out;
    buf_init(&out, 0);
    for (int i = 0; i < 2; i++) {
        while (at < ends[i]) {
            http_read_result_t rc = http_reader_feed(r, in + at, ends[i] - at, &used);
            if (used > ends[i] - at) abort();
            at += used;
            if (rc == HTTP_READ_MORE) continue;
            if (rc == HTTP_READ_ERROR) { /* a failed reader stays failed */
                http_error_serialize(http_reader_error_status(r), http_reader_error_reason(r),
                                     false, &out);
                goto out;
            }
            http_request_t req;
            http_response_t res;
            http_reader_take(r, &req);
            http_response_init(&res);
            http_response_set(&res, 200, "text/plain", req.body.data, req.body.len);
            http_response_header(&res, "X-Query", req.query);
            http_response_serialize(&res, req.method == HTTP_HEAD, req.keep_alive, &out);
            buf_consume(&out, out.len);
            http_response_cleanup(&res);
            bool upgraded = req.upgrade; /* what follows is WebSocket, not HTTP */
            http_request_cleanup(&req);
            if (upgraded) goto out;
        }
    }
out:
    buf_cleanup(&out);
    http_reader_free(r);
    return 0;
}
