/* Bucket schemas (spec/realtime-protocol.md §4.1): compiling a bucket definition,
 * building the record for an insert (explicit value > generated > default), merging
 * an update and validating the result. All violations of one record are collected
 * into a single VALIDATION_ERROR whose details list each {field, rule, message}.
 *
 * Names: a bucket name matches ^[A-Za-z][A-Za-z0-9_-]{0,62}$ and may not start with
 * "sqlite_"; a field name matches ^[A-Za-z][A-Za-z0-9_]{0,62}$ (fields starting with
 * "_" are reserved for record metadata: _version, _createdAt, _updatedAt).
 *
 * Types: string, number, integer (extension: a JSON number with no fraction within
 * ±2^53), boolean, object, array, date (a number of ms since the epoch or an ISO 8601
 * string). Pure functions over jansson values; no I/O except what `gen` does. */
#ifndef SHOPD_STORE_SCHEMA_H
#define SHOPD_STORE_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef enum {
    FIELD_STRING,
    FIELD_NUMBER,
    FIELD_INTEGER,
    FIELD_BOOLEAN,
    FIELD_OBJECT,
    FIELD_ARRAY,
    FIELD_DATE,
} field_type_t;

typedef enum { GEN_NONE, GEN_UUID, GEN_CUID, GEN_AUTOINCREMENT, GEN_TIMESTAMP } field_gen_t;
typedef enum { FORMAT_NONE, FORMAT_EMAIL, FORMAT_URL, FORMAT_ISO_DATE } field_format_t;

typedef struct schema_field {
    char *name;
    char *subject; /* "Field \"<name>\"", the start of its violation messages */
    field_type_t type;
    bool required;
    json_t *default_value; /* NULL when none */
    field_gen_t generated;
    json_t *enum_values; /* array, or NULL */
    bool has_min, has_max;
    double min, max;
    bool has_min_length, has_max_length;
    size_t min_length, max_length; /* in characters (UTF-8 code points) */
    char *pattern;                 /* source, or NULL */
    void *pattern_code;            /* compiled (pcre2_code *), private */
    field_format_t format;
    bool unique;
    char *ref; /* another bucket's name, a hint only */
} schema_field_t;

typedef struct {
    char *bucket;
    char *key; /* the key field's name */
    schema_field_t *fields;
    size_t field_count;
    char **indexes; /* field names */
    size_t index_count;
    json_t *definition; /* the normalised definition, as store.getBucketSchema answers it */
} schema_t;

/* A generator for generated values. For GEN_AUTOINCREMENT it returns the next
 * counter value of (bucket, field); uuid, cuid and timestamp are made by the schema
 * module itself. Returns a new reference or NULL with err set. */
typedef json_t *(*schema_gen_fn)(void *ctx, const schema_t *schema, const schema_field_t *field,
                                 err_t *err);

bool schema_bucket_name_ok(const char *name);
bool schema_field_name_ok(const char *name);

/* Compiles a bucket definition {key, schema, indexes}. Errors (VALIDATION_ERROR with
 * details) name each problem: unknown type, bad constraint values, a pattern that does
 * not compile, an index or key on an unknown field, bad names. Returns an owned schema. */
schema_t *schema_compile(const char *bucket, const json_t *definition, err_t *err);
void schema_free(schema_t *s); /* NULL is fine */
const schema_field_t *schema_field_get(const schema_t *s, const char *name);

/* Builds the record to insert from `data` (an object): explicit value > generated >
 * default, declared fields in schema order first, then undeclared fields in `data`'s
 * order; metadata fields in `data` are ignored. Validates the result. Returns a new
 * object or NULL with err set (VALIDATION_ERROR, or what `gen` set). The record's
 * values are shared with `data` (not copied): change the record at its top level only.
 * The same holds for schema_prepare_update and `current`/`patch`. */
json_t *schema_prepare_insert(const schema_t *s, const json_t *data, schema_gen_fn gen, void *gen_ctx,
                              err_t *err);
/* The same, taking the caller's reference to `data`. When it is the only reference and
 * `data` holds declared fields only, in schema order, the record is finished in `data`
 * itself instead of a copy (the result is the same, member for member). */
json_t *schema_prepare_insert_take(const schema_t *s, json_t *data, schema_gen_fn gen, void *gen_ctx,
                                   err_t *err);

/* Merges `patch` into `current` (a stored record): generated fields and metadata are
 * stripped from the patch, the key field may not change (VALIDATION_ERROR when the
 * patch gives a different key), then the merged record is validated. Returns a new
 * object (metadata copied from current, unchanged) or NULL with err set. */
json_t *schema_prepare_update(const schema_t *s, const json_t *current, const json_t *patch,
                              err_t *err);

/* Validates a whole record; appends {field, rule, message} objects to `violations`.
 * Returns the number appended. */
size_t schema_validate(const schema_t *s, const json_t *record, json_t *violations);

/* Adds fields and indexes to a compiled schema ({fields?, indexes?}, add only: an
 * existing field or index → VALIDATION_ERROR). Returns a new schema; `s` is unchanged. */
schema_t *schema_extend(const schema_t *s, const json_t *updates, err_t *err);

/* Makes a random RFC 4122 version 4 UUID (36 chars + NUL). */
void schema_uuid(char out[37]);
/* A time-ordered UUID (version 7, RFC 9562): 48 bits of Unix milliseconds, then 74
 * random bits. Ids made later sort later, so rows keyed or indexed by them are
 * appended to the B-tree instead of scattered over it. */
void schema_uuid7(char out[37]);
/* Makes a collision-resistant id in the cuid form (starts with 'c', 25 chars + NUL). */
void schema_cuid(char out[26]);

#endif
