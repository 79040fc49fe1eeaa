#include <criterion/criterion.h>
#include <string.h>

#include "store/filter.h"

static schema_t *schema;

static void setup(void) {
    err_t err = ERR_INIT;
    json_t *def = json_loads("{\"key\":\"id\",\"schema\":{"
                             "\"id\":{\"type\":\"string\"},"
                             "\"title\":{\"type\":\"string\"},"
                             "\"stock\":{\"type\":\"integer\"},"
                             "\"price\":{\"type\":\"number\"},"
                             "\"active\":{\"type\":\"boolean\"},"
                             "\"tags\":{\"type\":\"array\"},"
                             "\"when\":{\"type\":\"date\"}}}",
                             0, NULL);
    schema = schema_compile("products", def, &err);
    json_decref(def);
    cr_assert_not_null(schema, "%s", err.msg);
}

static void teardown(void) { schema_free(schema); }

TestSuite(filter, .init = setup, .fini = teardown);

static char *compile_ok(const char *filter_json, json_t **params_out) {
    json_t *f = json_loads(filter_json, 0, NULL);
    cr_assert_not_null(f, "bad test JSON %s", filter_json);
    buf_t sql;
    buf_init(&sql, 0);
    json_t *params = json_array();
    err_t err = ERR_INIT;
    int rc = filter_compile(schema, f, &sql, params, &err);
    cr_assert_eq(rc, 0, "filter %s failed: %s", filter_json, err.msg);
    json_decref(f);
    *params_out = params;
    return buf_take(&sql, NULL);
}

static void compile_err(const char *filter_json, const char *msg_part) {
    json_t *f = json_loads(filter_json, JSON_DECODE_ANY, NULL);
    buf_t sql;
    buf_init(&sql, 0);
    json_t *params = json_array();
    err_t err = ERR_INIT;
    cr_assert_eq(filter_compile(schema, f, &sql, params, &err), -1, "filter %s compiled", filter_json);
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert(strstr(err.msg, msg_part) != NULL, "message \"%s\" lacks \"%s\"", err.msg, msg_part);
    err_clear(&err);
    json_decref(f);
    json_decref(params);
    buf_cleanup(&sql);
}

Test(filter, empty_filter_matches_everything) {
    json_t *p;
    char *sql = compile_ok("{}", &p);
    cr_assert_str_eq(sql, "1");
    cr_assert_eq(json_array_size(p), 0);
    free(sql);
    json_decref(p);
}

Test(filter, equality_binds_values_never_splices_them) {
    json_t *p;
    char *sql = compile_ok("{\"title\":\"x' OR '1'='1\",\"active\":true}", &p);
    cr_assert_str_eq(sql, "\"title\" = ? AND \"active\" = ?");
    cr_assert_str_eq(json_string_value(json_array_get(p, 0)), "x' OR '1'='1");
    cr_assert(json_is_true(json_array_get(p, 1)));
    cr_assert_null(strstr(sql, "OR '1'"));
    free(sql);
    json_decref(p);
}

Test(filter, null_means_missing) {
    json_t *p;
    char *sql = compile_ok("{\"title\":null}", &p);
    cr_assert_str_eq(sql, "\"title\" IS NULL");
    free(sql);
    json_decref(p);
}

Test(filter, comparison_operators) {
    json_t *p;
    char *sql = compile_ok("{\"stock\":{\"$gte\":1,\"$lt\":10},\"price\":{\"$ne\":5}}", &p);
    cr_assert_str_eq(sql, "(\"stock\" >= ? AND \"stock\" < ?) AND ((\"price\" IS NULL OR \"price\" <> ?))");
    cr_assert_eq(json_array_size(p), 3);
    free(sql);
    json_decref(p);
}

Test(filter, in_operator_expands_parameters) {
    json_t *p;
    char *sql = compile_ok("{\"id\":{\"$in\":[\"a\",\"b\",\"c\"]}}", &p);
    cr_assert_str_eq(sql, "(\"id\" IN (?,?,?))");
    cr_assert_eq(json_array_size(p), 3);
    free(sql);
    json_decref(p);
}

Test(filter, metadata_fields_can_be_filtered) {
    json_t *p;
    char *sql = compile_ok("{\"_version\":{\"$gt\":1}}", &p);
    cr_assert_str_eq(sql, "(\"_version\" > ?)");
    free(sql);
    json_decref(p);
}

Test(filter, rejects_unknown_fields) { compile_err("{\"bogus\":1}", "Unknown field \"bogus\""); }

Test(filter, rejects_values_of_the_wrong_type) {
    compile_err("{\"stock\":\"ten\"}", "expected a number");
    compile_err("{\"title\":5}", "expected a string");
    compile_err("{\"active\":1}", "expected a boolean");
    compile_err("{\"stock\":{\"$lt\":\"x\"}}", "$lt expects a number");
    compile_err("{\"tags\":[1]}", "compared with null");
}

Test(filter, rejects_unknown_and_empty_operators) {
    compile_err("{\"stock\":{\"$regex\":\"x\"}}", "unknown operator \"$regex\"");
    compile_err("{\"stock\":{}}", "empty operator object");
}

Test(filter, in_needs_a_bounded_non_empty_array) {
    compile_err("{\"stock\":{\"$in\":[]}}", "non-empty array");
    compile_err("{\"stock\":{\"$in\":5}}", "non-empty array");
    char big[8000] = "{\"stock\":{\"$in\":[";
    for (int i = 0; i < 1001; i++) strcat(big, i ? ",1" : "1");
    strcat(big, "]}}");
    compile_err(big, "at most 1000");
}

Test(filter, filter_must_be_an_object) { compile_err("[1]", "expected object"); }

Test(filter, dates_take_numbers_or_strings) {
    json_t *p;
    char *sql = compile_ok("{\"when\":{\"$gte\":\"2024-01-01\",\"$lt\":1800000000000}}", &p);
    cr_assert_str_eq(sql, "(\"when\" >= ? AND \"when\" < ?)");
    free(sql);
    json_decref(p);
}
