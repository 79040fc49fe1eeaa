/* Filter compilation (see filter.h). */
#include "store/filter.h"

#include <math.h>
#include <string.h>

#include "store/store.h"

static const char *const metadata_fields[] = {"_version", "_createdAt", "_updatedAt"};

int filter_field_ok(const schema_t *s, const char *name) {
    if (strcmp(name, s->key) == 0 || schema_field_get(s, name)) return 1;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(name, metadata_fields[i]) == 0) return 1;
    return 0;
}

/* The kind of scalar a field compares against: 's' string, 'n' number, 'b' boolean,
 * 'd' date (number or string), '*' anything scalar, 0 not comparable. */
static char field_kind(const schema_t *s, const char *name) {
    const schema_field_t *f = schema_field_get(s, name);
    if (!f) return name[0] == '_' ? 'n' : '*'; /* metadata, or an undeclared key */
    switch (f->type) {
    case FIELD_STRING: return 's';
    case FIELD_NUMBER:
    case FIELD_INTEGER: return 'n';
    case FIELD_BOOLEAN: return 'b';
    case FIELD_DATE: return 'd';
    default: return 0;
    }
}

static int value_fits(char kind, const json_t *v) {
    switch (kind) {
    case 's': return json_is_string(v);
    case 'n': return json_is_number(v);
    case 'b': return json_is_boolean(v);
    case 'd': return json_is_number(v) || json_is_string(v);
    case '*': return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
    default: return 0;
    }
}

static const char *kind_name(char kind) {
    switch (kind) {
    case 's': return "a string";
    case 'n': return "a number";
    case 'b': return "a boolean";
    case 'd': return "a number or an ISO date string";
    default: return "a string, number or boolean";
    }
}

static void column(buf_t *sql, const char *name) { db_quote_ident(sql, name); }

static void param(buf_t *sql, json_t *params, const json_t *v) {
    json_array_append(params, (json_t *)v);
    buf_append_char(sql, '?');
}

static int bad_value(err_t *err, const char *field, const char *op, char kind) {
    if (op)
        err_set(err, ERR_VALIDATION, "Invalid filter on \"%s\": %s expects %s", field, op, kind_name(kind));
    else
        err_set(err, ERR_VALIDATION, "Invalid filter on \"%s\": expected %s, null or an operator object",
                field, kind_name(kind));
    return -1;
}

static int compile_ops(const char *field, char kind, const json_t *ops, buf_t *sql, json_t *params,
                       err_t *err) {
    const char *op;
    json_t *v;
    int first = 1;
    if (json_object_size(ops) == 0) {
        err_set(err, ERR_VALIDATION, "Invalid filter on \"%s\": empty operator object", field);
        return -1;
    }
    json_object_foreach((json_t *)ops, op, v) {
        if (!first) buf_append_str(sql, " AND ");
        first = 0;
        const char *sqlop = NULL;
        if (strcmp(op, "$lt") == 0) sqlop = " < ";
        else if (strcmp(op, "$lte") == 0) sqlop = " <= ";
        else if (strcmp(op, "$gt") == 0) sqlop = " > ";
        else if (strcmp(op, "$gte") == 0) sqlop = " >= ";
        if (sqlop) {
            if (!value_fits(kind, v) || json_is_boolean(v)) return bad_value(err, field, op, kind == 'b' ? 'n' : kind);
            column(sql, field);
            buf_append_str(sql, sqlop);
            param(sql, params, v);
        } else if (strcmp(op, "$ne") == 0) {
            if (json_is_null(v)) {
                column(sql, field);
                buf_append_str(sql, " IS NOT NULL");
            } else {
                if (!value_fits(kind, v)) return bad_value(err, field, op, kind);
                /* A missing field is "not equal" too, as in JavaScript. */
                buf_append_char(sql, '(');
                column(sql, field);
                buf_append_str(sql, " IS NULL OR ");
                column(sql, field);
                buf_append_str(sql, " <> ");
                param(sql, params, v);
                buf_append_char(sql, ')');
            }
        } else if (strcmp(op, "$in") == 0) {
            size_t n = json_array_size(v);
            if (!json_is_array(v) || n == 0 || n > STORE_MAX_IN_VALUES) {
                err_set(err, ERR_VALIDATION,
                        "Invalid filter on \"%s\": $in expects a non-empty array of at most %d values",
                        field, STORE_MAX_IN_VALUES);
                return -1;
            }
            column(sql, field);
            buf_append_str(sql, " IN (");
            for (size_t i = 0; i < n; i++) {
                json_t *item = json_array_get(v, i);
                if (!value_fits(kind, item)) return bad_value(err, field, "$in", kind);
                if (i) buf_append_char(sql, ',');
                param(sql, params, item);
            }
            buf_append_char(sql, ')');
        } else {
            err_set(err, ERR_VALIDATION,
                    "Invalid filter on \"%s\": unknown operator \"%s\" (expected $lt, $lte, $gt, $gte, $ne or $in)",
                    field, op);
            return -1;
        }
    }
    return 0;
}

int filter_compile(const schema_t *s, const json_t *filter, buf_t *sql, json_t *params, err_t *err) {
    if (!filter || json_is_null(filter) || json_object_size(filter) == 0) {
        if (filter && !json_is_null(filter) && !json_is_object(filter)) goto not_object;
        buf_append_char(sql, '1');
        return 0;
    }
    if (!json_is_object(filter)) goto not_object;
    const char *field;
    json_t *cond;
    int first = 1;
    json_object_foreach((json_t *)filter, field, cond) {
        if (!filter_field_ok(s, field)) {
            err_set(err, ERR_VALIDATION, "Unknown field \"%s\" in filter for bucket \"%s\"", field, s->bucket);
            return -1;
        }
        char kind = field_kind(s, field);
        if (!first) buf_append_str(sql, " AND ");
        first = 0;
        if (json_is_null(cond)) {
            column(sql, field);
            buf_append_str(sql, " IS NULL");
        } else if (json_is_object(cond)) {
            if (!kind) return bad_value(err, field, NULL, kind);
            buf_append_char(sql, '(');
            if (compile_ops(field, kind, cond, sql, params, err) < 0) return -1;
            buf_append_char(sql, ')');
        } else {
            if (!value_fits(kind, cond)) {
                if (!kind) {
                    err_set(err, ERR_VALIDATION,
                            "Invalid filter on \"%s\": object and array fields can only be compared with null",
                            field);
                    return -1;
                }
                return bad_value(err, field, NULL, kind);
            }
            column(sql, field);
            buf_append_str(sql, " = ");
            param(sql, params, cond);
        }
    }
    return 0;
not_object:
    err_set(err, ERR_VALIDATION, "Missing or invalid \"filter\": expected object");
    return -1;
}

void filter_bind_value(db_stmt_t *st, int at, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_STRING: db_bind_text(st, at, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: db_bind_int(st, at, json_integer_value(v)); break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d == trunc(d) && fabs(d) < 9007199254740992.0) db_bind_int(st, at, (int64_t)d);
        else db_bind_double(st, at, d);
        break;
    }
    case JSON_TRUE: db_bind_int(st, at, 1); break;
    case JSON_FALSE: db_bind_int(st, at, 0); break;
    default: db_bind_null(st, at); break;
    }
}

void filter_bind(db_stmt_t *st, const json_t *params, int first) {
    size_t i;
    json_t *v;
    json_array_foreach(params, i, v) filter_bind_value(st, first + (int)i, v);
}
