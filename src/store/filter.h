/* Filters (spec §4.2 and the §4.4 extension operators) compiled to SQL.
 *
 * A filter is an object {field: condition}; all conditions must hold. A condition is
 * a scalar (equality; null matches a missing or null field) or an operator object
 * with $lt, $lte, $gt, $gte, $ne, $in. Fields must be declared in the bucket's schema,
 * be its key, or be record metadata (_version, _createdAt, _updatedAt); values must
 * suit the field's type. Every value becomes a bound parameter: nothing from the
 * request is ever spliced into SQL. The SQL refers to the typed generated columns,
 * so SQLite uses the bucket's indexes where they exist. */
#ifndef SHOPD_STORE_FILTER_H
#define SHOPD_STORE_FILTER_H

#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"
#include "db/db.h"
#include "store/schema.h"

/* Appends the condition (no "WHERE"; "1" for an empty or absent filter) to sql and
 * the values to bind, in order, to params (a JSON array). Returns 0, or -1 with a
 * VALIDATION_ERROR naming the field. */
int filter_compile(const schema_t *s, const json_t *filter, buf_t *sql, json_t *params, err_t *err);

/* Binds params[i] to parameter first + i. */
void filter_bind(db_stmt_t *st, const json_t *params, int first);
/* Binds one value as filter_bind does (whole numbers as integers, booleans as 0/1). */
void filter_bind_value(db_stmt_t *st, int at, const json_t *v);

/* Whether `name` can be filtered or ordered on in this schema. */
int filter_field_ok(const schema_t *s, const char *name);

#endif
