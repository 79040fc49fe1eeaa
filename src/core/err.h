/* The one error model of shopd. A failing function returns -1 (or NULL) and fills an
 * err_t with a code and a message that is safe to show a client; details for the log
 * stay in the log. err_info() is the single table that maps each code to its
 * realtime-protocol name, its HTTP status and its GraphQL extensions.code, so
 * handlers never choose those numbers themselves. */
#ifndef SHOPD_CORE_ERR_H
#define SHOPD_CORE_ERR_H

#include <jansson.h>

typedef enum {
    ERR_NONE = 0,
    ERR_PARSE,
    ERR_INVALID_REQUEST,
    ERR_UNKNOWN_OPERATION,
    ERR_VALIDATION,
    ERR_NOT_FOUND,
    ERR_ALREADY_EXISTS,
    ERR_CONFLICT,
    ERR_UNAUTHORIZED,
    ERR_FORBIDDEN,
    ERR_RATE_LIMITED,
    ERR_BACKPRESSURE,
    ERR_INTERNAL,
    ERR_BUCKET_NOT_DEFINED,
    ERR_QUERY_NOT_DEFINED,
    ERR_RULES_NOT_AVAILABLE,
    ERR__COUNT
} err_code_t;

typedef struct {
    const char *name;    /* protocol code, e.g. "VALIDATION_ERROR" */
    int http_status;     /* REST status */
    const char *gql;     /* GraphQL extensions.code */
} err_info_t;

#define ERR_MSG_MAX 512

typedef struct {
    err_code_t code;
    char msg[ERR_MSG_MAX];
    json_t *details; /* owned; NULL when there are none */
} err_t;

#define ERR_INIT {ERR_NONE, {0}, NULL}

const err_info_t *err_info(err_code_t code);
const char *err_code_name(err_code_t code);

/* Sets code and message (printf-style), dropping any previous details. */
void err_set(err_t *err, err_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Puts a printf-style prefix in front of the message (truncating to fit). */
void err_prefix(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Attaches details; takes ownership of `details`. */
void err_details_take(err_t *err, json_t *details);
/* Frees details and resets the error to ERR_NONE. */
void err_clear(err_t *err);

#endif
