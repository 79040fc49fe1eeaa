/* The error table (see err.h). */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const err_info_t err_table[ERR__COUNT] = {
    [ERR_NONE] = {"OK", 200, "OK"},
    [ERR_PARSE] = {"PARSE_ERROR", 400, "BAD_USER_INPUT"},
    [ERR_INVALID_REQUEST] = {"INVALID_REQUEST", 400, "BAD_USER_INPUT"},
    [ERR_UNKNOWN_OPERATION] = {"UNKNOWN_OPERATION", 404, "BAD_USER_INPUT"},
    [ERR_VALIDATION] = {"VALIDATION_ERROR", 422, "BAD_USER_INPUT"},
    [ERR_NOT_FOUND] = {"NOT_FOUND", 404, "NOT_FOUND"},
    [ERR_ALREADY_EXISTS] = {"ALREADY_EXISTS", 409, "ALREADY_EXISTS"},
    [ERR_CONFLICT] = {"CONFLICT", 409, "CONFLICT"},
    [ERR_UNAUTHORIZED] = {"UNAUTHORIZED", 401, "UNAUTHENTICATED"},
    [ERR_FORBIDDEN] = {"FORBIDDEN", 403, "FORBIDDEN"},
    [ERR_RATE_LIMITED] = {"RATE_LIMITED", 429, "RATE_LIMITED"},
    [ERR_BACKPRESSURE] = {"BACKPRESSURE", 503, "BACKPRESSURE"},
    [ERR_INTERNAL] = {"INTERNAL_ERROR", 500, "INTERNAL_SERVER_ERROR"},
    [ERR_BUCKET_NOT_DEFINED] = {"BUCKET_NOT_DEFINED", 404, "BUCKET_NOT_DEFINED"},
    [ERR_QUERY_NOT_DEFINED] = {"QUERY_NOT_DEFINED", 404, "QUERY_NOT_DEFINED"},
    [ERR_RULES_NOT_AVAILABLE] = {"RULES_NOT_AVAILABLE", 501, "RULES_NOT_AVAILABLE"},
};

const err_info_t *err_info(err_code_t code) {
    if ((unsigned)code >= ERR__COUNT) code = ERR_INTERNAL;
    return &err_table[code];
}

const char *err_code_name(err_code_t code) { return err_info(code)->name; }

void err_set(err_t *err, err_code_t code, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    json_decref(err->details);
    err->details = NULL;
}

void err_details_take(err_t *err, json_t *details) {
    if (!err) {
        json_decref(details);
        return;
    }
    json_decref(err->details);
    err->details = details;
}

void err_clear(err_t *err) {
    if (!err) return;
    json_decref(err->details);
    err->details = NULL;
    err->code = ERR_NONE;
    err->msg[0] = '\0';
}

void err_prefix(err_t *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    size_t plen = (size_t)n < sizeof prefix ? (size_t)n : sizeof prefix - 1;
    size_t mlen = strlen(err->msg);
    if (plen + mlen > ERR_MSG_MAX - 1) mlen = ERR_MSG_MAX - 1 - plen;
    memmove(err->msg + plen, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + mlen] = '\0';
}
