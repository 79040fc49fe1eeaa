/* Named declarative queries (spec §4.4): definitions, persistence and evaluation.
 *
 * A definition is {bucket, op, …the op's fields…, orderBy?, limit?}. Strings that are
 * exactly "$params.<name>" or "$session.userId" are placeholders, replaced at
 * evaluation time by the subscription's parameter or the caller's user id. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "store/store_int.h"

static const char *const query_ops[] = {"all", "where", "findOne", "count", "first", "last",
                                        "sum", "avg", "min", "max", "get", "paginate"};
static const char *const query_fields[] = {"bucket", "op", "filter", "key", "n", "field",
                                           "limit", "after", "orderBy", "description"};

static bool one_of(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

static bool uses_session(const json_t *v) {
    if (json_is_string(v)) return strncmp(json_string_value(v), "$session.", 9) == 0;
    const char *k;
    json_t *m;
    size_t i;
    if (json_is_object(v)) json_object_foreach((json_t *)v, k, m) if (uses_session(m)) return true;
    if (json_is_array(v)) json_array_foreach(v, i, m) if (uses_session(m)) return true;
    return false;
}

static void query_free(query_t *q) {
    if (!q) return;
    free(q->name);
    json_decref(q->definition);
    free(q);
}

void store_queries_free(store_t *st) {
    size_t it = 0;
    void *v;
    while (strmap_next(&st->queries, &it, NULL, &v)) query_free(v);
    strmap_cleanup(&st->queries);
}

bool store_query_exists(const store_t *st, const char *name) { return strmap_get(&st->queries, name) != NULL; }

bool store_query_uses_session(const store_t *st, const char *name) {
    query_t *q = strmap_get(&st->queries, name);
    return q && q->uses_session;
}

/* Checks a definition's shape; the bucket must exist. */
static int query_check(const store_t *st, const char *name, const json_t *def, err_t *err) {
    if (!schema_bucket_name_ok(name)) {
        err_set(err, ERR_VALIDATION,
                "Invalid query name \"%s\": use a letter followed by up to 62 letters, digits, '_' or '-'", name);
        return -1;
    }
    if (!json_is_object(def)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"config\": expected object");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)def, k, v) {
        if (!one_of(k, query_fields, sizeof query_fields / sizeof *query_fields)) {
            err_set(err, ERR_VALIDATION, "Query \"%s\": unknown field \"%s\"", name, k);
            return -1;
        }
    }
    const char *bucket = json_string_value(json_object_get(def, "bucket"));
    const char *op = json_string_value(json_object_get(def, "op"));
    if (!bucket) {
        err_set(err, ERR_VALIDATION, "Query \"%s\": missing or invalid \"bucket\": expected non-empty string", name);
        return -1;
    }
    if (!strmap_get(&st->buckets, bucket)) {
        err_set(err, ERR_BUCKET_NOT_DEFINED, "Query \"%s\" reads bucket \"%s\", which is not defined", name, bucket);
        return -1;
    }
    if (!op || !one_of(op, query_ops, sizeof query_ops / sizeof *query_ops)) {
        err_set(err, ERR_VALIDATION,
                "Query \"%s\": invalid \"op\" — expected one of: all, where, findOne, count, first, last, sum, "
                "avg, min, max, get, paginate",
                name);
        return -1;
    }
    return 0;
}

static int query_persist(store_t *st, const char *name, const json_t *def, err_t *err) {
    db_stmt_t *q = db_prepare(st->db,
                              "INSERT INTO _shopd_queries(name, definition, created_at) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(name) DO UPDATE SET definition = ?2",
                              err);
    if (!q) return -1;
    size_t n;
    char *text = json_write_dup(def, &n);
    db_bind_text(q, 1, name, strlen(name));
    db_bind_text(q, 2, text, n);
    db_bind_int(q, 3, clock_now_ms());
    db_step_t r = db_step(q, err);
    db_done(q);
    free(text);
    return r == DB_ERROR ? -1 : 0;
}

static void query_put(store_t *st, const char *name, const json_t *def) {
    query_t *q = xcalloc(1, sizeof *q);
    q->name = xstrdup(name);
    q->definition = json_deep_copy(def);
    q->uses_session = uses_session(def);
    query_free(strmap_put(&st->queries, name, q));
}

int store_define_query(store_t *st, const char *name, const json_t *def, bool replace, err_t *err) {
    if (!name) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"name\": expected non-empty string");
        return -1;
    }
    query_t *old = strmap_get(&st->queries, name);
    if (old && !replace) {
        err_set(err, ERR_ALREADY_EXISTS, "Query \"%s\" already exists", name);
        return -1;
    }
    if (!old && st->queries.count >= STORE_MAX_QUERIES) {
        err_set(err, ERR_VALIDATION, "Too many queries (at most %d)", STORE_MAX_QUERIES);
        return -1;
    }
    if (query_check(st, name, def, err) < 0) return -1;
    if (old && json_equal(old->definition, def)) return 0;
    if (query_persist(st, name, def, err) < 0) return -1;
    query_put(st, name, def);
    st->def_version++;
    return 0;
}

int store_undefine_query(store_t *st, const char *name, err_t *err) {
    query_t *q = name ? strmap_get(&st->queries, name) : NULL;
    if (!q) {
        err_set(err, ERR_QUERY_NOT_DEFINED, "Query \"%s\" is not defined", name ? name : "");
        return -1;
    }
    db_stmt_t *s = db_prepare(st->db, "DELETE FROM _shopd_queries WHERE name = ?1", err);
    if (!s) return -1;
    db_bind_text(s, 1, name, strlen(name));
    db_step_t r = db_step(s, err);
    db_done(s);
    if (r == DB_ERROR) return -1;
    query_free(strmap_del(&st->queries, name));
    st->def_version++;
    return 0;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void store_list_queries(store_t *st, buf_t *out) {
    const char **names = xmalloc((st->queries.count + 1) * sizeof *names);
    size_t it = 0, n = 0;
    const char *k;
    while (strmap_next(&st->queries, &it, &k, NULL)) names[n++] = k;
    qsort(names, n, sizeof *names, str_cmp);
    buf_append_str(out, "{\"queries\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append_char(out, ',');
        json_write_string(out, names[i], strlen(names[i]));
    }
    buf_append_str(out, "]}");
    free(names);
}

int store_queries_load(store_t *st, err_t *err) {
    db_stmt_t *q = db_prepare(st->db, "SELECT name, definition FROM _shopd_queries ORDER BY name", err);
    if (!q) return -1;
    db_step_t r;
    while ((r = db_step(q, err)) == DB_ROW) {
        size_t n;
        const char *name = db_column_text(q, 0, NULL);
        const char *text = db_column_text(q, 1, &n);
        json_t *def = json_loadb(text, n, 0, NULL);
        if (def) query_put(st, name, def);
        else log_warn("store.query_unreadable", "query=%s", name);
        json_decref(def);
    }
    db_done(q);
    return r == DB_ERROR ? -1 : 0;
}

/* Replaces placeholders in a copy of v. Returns a new reference or NULL with err. */
static json_t *bind_placeholders(const char *qname, const json_t *v, const json_t *params,
                                 const store_session_t *session, err_t *err) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strncmp(s, "$params.", 8) == 0) {
            json_t *p = json_is_object(params) ? json_object_get(params, s + 8) : NULL;
            if (!p || json_is_null(p)) {
                err_set(err, ERR_VALIDATION, "Missing parameter \"%s\" for query \"%s\"", s + 8, qname);
                return NULL;
            }
            return json_incref(p);
        }
        if (strcmp(s, "$session.userId") == 0) {
            if (!session || !session->user_id) {
                err_set(err, ERR_UNAUTHORIZED, "Authentication required");
                return NULL;
            }
            return json_string(session->user_id);
        }
        return json_incref((json_t *)v);
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) {
            json_t *b = bind_placeholders(qname, m, params, session, err);
            if (!b) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, k, b);
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) {
            json_t *b = bind_placeholders(qname, m, params, session, err);
            if (!b) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, b);
        }
        return a;
    }
    return json_incref((json_t *)v);
}

int store_query_eval(store_t *st, const char *name, const json_t *params, const store_session_t *session,
                     buf_t *out, store_deps_t *deps_out, err_t *err) {
    return store_query_eval_as(st, name, params, session, NULL, out, deps_out, err);
}

int store_query_eval_as(store_t *st, const char *name, const json_t *params, const store_session_t *session,
                        const store_owner_t *owner, buf_t *out, store_deps_t *deps_out, err_t *err) {
    query_t *q = name ? strmap_get(&st->queries, name) : NULL;
    if (!q) {
        err_set(err, ERR_QUERY_NOT_DEFINED, "Query \"%s\" is not defined", name ? name : "");
        return -1;
    }
    if (params && !json_is_null(params) && !json_is_object(params)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"params\": expected object");
        return -1;
    }
    json_t *bound = bind_placeholders(name, q->definition, params, session, err);
    if (!bound) return -1;
    const char *op = json_string_value(json_object_get(bound, "op"));
    bucket_t *b = store_bucket_find(st, json_string_value(json_object_get(bound, "bucket")), err);
    int rc = b ? store_read_op(st, b, op, bound, owner, out, err) : -1;
    if (rc == 0 && deps_out) {
        deps_out->bucket = xstrdup(b->name);
        deps_out->key = strcmp(op, "get") == 0 ? json_incref(json_object_get(bound, "key")) : NULL;
    }
    json_decref(bound);
    return rc;
}

void store_deps_free(store_deps_t *deps) {
    if (!deps) return;
    free(deps->bucket);
    json_decref(deps->key);
    deps->bucket = NULL;
    deps->key = NULL;
}
