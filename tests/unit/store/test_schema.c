/* Bucket schemas through store/schema.h: compiling definitions, building inserts and
 * updates, and every rule the validator enforces. Definitions and records are written
 * as JSON text so each test reads like the request that would carry it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/utf8.h"
#include "store/schema.h"

/* ---------------------------------------------------------------- helpers */

static json_t *J(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    cr_assert_not_null(v, "bad test JSON (%s): %s", e.text, text);
    return v;
}

static schema_t *compile_ok(const char *bucket, const char *def) {
    json_t *d = J(def);
    err_t err = ERR_INIT;
    schema_t *s = schema_compile(bucket, d, &err);
    json_decref(d);
    cr_assert_not_null(s, "compile failed: %s", err.msg);
    cr_assert_eq(err.code, ERR_NONE);
    err_clear(&err);
    return s;
}

/* Compiles a definition that must be refused; err is filled for the caller. */
static void compile_bad(const char *bucket, const char *def, err_t *err) {
    json_t *d = J(def);
    schema_t *s = schema_compile(bucket, d, err);
    json_decref(d);
    cr_assert_null(s, "definition was accepted: %s", def);
    schema_free(s);
    cr_assert_eq(err->code, ERR_VALIDATION);
    cr_assert(json_is_array(err->details) && json_array_size(err->details) > 0);
}

static const json_t *violation_find(const json_t *details, const char *field, const char *rule) {
    size_t i;
    json_t *v;
    json_array_foreach(details, i, v) {
        const char *f = json_string_value(json_object_get(v, "field"));
        const char *r = json_string_value(json_object_get(v, "rule"));
        cr_assert_not_null(f);
        cr_assert_not_null(r);
        cr_assert(json_is_string(json_object_get(v, "message")));
        if (strcmp(f, field) == 0 && strcmp(r, rule) == 0) return v;
    }
    return NULL;
}

static bool has_violation(const json_t *details, const char *field, const char *rule) {
    return violation_find(details, field, rule) != NULL;
}

static const char *violation_message(const json_t *details, const char *field, const char *rule) {
    const json_t *v = violation_find(details, field, rule);
    cr_assert_not_null(v, "no violation %s/%s", field, rule);
    return json_string_value(json_object_get(v, "message"));
}

/* Expects compile(def) to fail with a violation (field, rule). */
static void expect_compile_violation(const char *def, const char *field, const char *rule) {
    err_t err = ERR_INIT;
    compile_bad("things", def, &err);
    char *d = json_dumps(err.details, JSON_COMPACT);
    cr_assert(has_violation(err.details, field, rule), "want %s/%s in %s for %s", field, rule, d,
              def);
    free(d);
    err_clear(&err);
}

static json_t *insert(const schema_t *s, const char *data, err_t *err) {
    json_t *d = J(data);
    json_t *rec = schema_prepare_insert(s, d, NULL, NULL, err);
    json_decref(d);
    return rec;
}

static json_t *insert_ok(const schema_t *s, const char *data) {
    err_t err = ERR_INIT;
    json_t *rec = insert(s, data, &err);
    cr_assert_not_null(rec, "insert of %s failed: %s", data, err.msg);
    err_clear(&err);
    return rec;
}

/* Inserts data that must be refused; err is filled. */
static void insert_bad(const schema_t *s, const char *data, err_t *err) {
    json_t *rec = insert(s, data, err);
    cr_assert_null(rec, "insert of %s was accepted", data);
    cr_assert_eq(err->code, ERR_VALIDATION);
}

/* Whether one value passes a one-field schema {"v": <fielddef>}. */
static bool value_passes(const char *fielddef, const char *value) {
    char def[2048], data[2048];
    snprintf(def, sizeof def, "{\"key\":\"id\",\"schema\":{\"id\":{\"type\":\"string\"},\"v\":%s}}",
             fielddef);
    snprintf(data, sizeof data, "{\"id\":\"k\",\"v\":%s}", value);
    schema_t *s = compile_ok("things", def);
    err_t err = ERR_INIT;
    json_t *rec = insert(s, data, &err);
    bool ok = rec != NULL;
    if (!ok) cr_assert_eq(err.code, ERR_VALIDATION);
    json_decref(rec);
    err_clear(&err);
    schema_free(s);
    return ok;
}

static void expect_value(const char *fielddef, const char *value, bool ok) {
    cr_assert_eq(value_passes(fielddef, value), ok, "%s with %s: expected %s", fielddef, value,
                 ok ? "accepted" : "refused");
}

/* The single violation message a one-field schema gives for a value. */
static void expect_message(const char *fielddef, const char *value, const char *rule,
                           const char *message) {
    char def[2048], data[2048];
    snprintf(def, sizeof def, "{\"schema\":{\"id\":{\"type\":\"string\"},\"v\":%s}}", fielddef);
    snprintf(data, sizeof data, "{\"id\":\"k\",\"v\":%s}", value);
    schema_t *s = compile_ok("things", def);
    err_t err = ERR_INIT;
    insert_bad(s, data, &err);
    cr_assert_str_eq(violation_message(err.details, "v", rule), message);
    err_clear(&err);
    schema_free(s);
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static char *dump(const json_t *v) {
    return json_write_dup(v, NULL);
}

static void expect_json(const json_t *v, const char *want) {
    char *got = dump(v);
    cr_assert_str_eq(got, want);
    free(got);
}

static const char *SPEC_EXAMPLE =
    "{ \"key\": \"id\","
    "  \"schema\": {"
    "    \"id\":    { \"type\": \"string\", \"generated\": \"uuid\" },"
    "    \"email\": { \"type\": \"string\", \"required\": true, \"format\": \"email\", \"unique\": "
    "true },"
    "    \"role\":  { \"type\": \"string\", \"enum\": [\"customer\", \"admin\"], \"default\": "
    "\"customer\" },"
    "    \"stock\": { \"type\": \"number\", \"min\": 0, \"default\": 0 } },"
    "  \"indexes\": [\"role\"] }";

/* ---------------------------------------------------------------- names */

Test(schema_names, bucket_names_follow_the_pattern) {
    char longest[64], too_long[65];
    memset(longest, 'b', 63);
    longest[63] = '\0';
    memset(too_long, 'b', 64);
    too_long[64] = '\0';
    cr_assert(schema_bucket_name_ok("products"));
    cr_assert(schema_bucket_name_ok("audit-logs"));
    cr_assert(schema_bucket_name_ok("order_items2"));
    cr_assert(schema_bucket_name_ok("A"));
    cr_assert(schema_bucket_name_ok(longest));
    cr_assert(schema_bucket_name_ok("sqlite"));
    cr_assert(schema_bucket_name_ok("sqlitex"));
    cr_assert_not(schema_bucket_name_ok(too_long));
    cr_assert_not(schema_bucket_name_ok(""));
    cr_assert_not(schema_bucket_name_ok(NULL));
    cr_assert_not(schema_bucket_name_ok("1products"));
    cr_assert_not(schema_bucket_name_ok("_products"));
    cr_assert_not(schema_bucket_name_ok("-products"));
    cr_assert_not(schema_bucket_name_ok("my products"));
    cr_assert_not(schema_bucket_name_ok("my.products"));
    cr_assert_not(schema_bucket_name_ok("produits\xc3\xa9"));
    cr_assert_not(schema_bucket_name_ok("sqlite_master"));
    cr_assert_not(schema_bucket_name_ok("SQLite_things"));
}

Test(schema_names, field_names_follow_the_pattern) {
    char longest[64], too_long[65];
    memset(longest, 'f', 63);
    longest[63] = '\0';
    memset(too_long, 'f', 64);
    too_long[64] = '\0';
    cr_assert(schema_field_name_ok("id"));
    cr_assert(schema_field_name_ok("userId"));
    cr_assert(schema_field_name_ok("created_at2"));
    cr_assert(schema_field_name_ok(longest));
    cr_assert_not(schema_field_name_ok(too_long));
    cr_assert_not(schema_field_name_ok(""));
    cr_assert_not(schema_field_name_ok(NULL));
    cr_assert_not(schema_field_name_ok("_version"));
    cr_assert_not(schema_field_name_ok("_createdAt"));
    cr_assert_not(schema_field_name_ok("first-name"));
    cr_assert_not(schema_field_name_ok("2fa"));
    cr_assert_not(schema_field_name_ok("a b"));
    cr_assert_not(schema_field_name_ok("caf\xc3\xa9"));
}

/* ---------------------------------------------------------------- compiling */

Test(schema_compile, compiles_the_spec_example) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    cr_assert_str_eq(s->bucket, "users");
    cr_assert_str_eq(s->key, "id");
    cr_assert_eq(s->field_count, 4);
    const schema_field_t *id = schema_field_get(s, "id");
    cr_assert_eq(id->type, FIELD_STRING);
    cr_assert_eq(id->generated, GEN_UUID);
    const schema_field_t *email = schema_field_get(s, "email");
    cr_assert(email->required);
    cr_assert(email->unique);
    cr_assert_eq(email->format, FORMAT_EMAIL);
    const schema_field_t *role = schema_field_get(s, "role");
    expect_json(role->enum_values, "[\"customer\",\"admin\"]");
    expect_json(role->default_value, "\"customer\"");
    const schema_field_t *stock = schema_field_get(s, "stock");
    cr_assert_eq(stock->type, FIELD_NUMBER);
    cr_assert(stock->has_min);
    cr_assert_not(stock->has_max);
    cr_assert_float_eq(stock->min, 0.0, 1e-12);
    cr_assert_eq(s->index_count, 1);
    cr_assert_str_eq(s->indexes[0], "role");
    cr_assert_null(schema_field_get(s, "nope"));
    expect_json(
        s->definition,
        "{\"key\":\"id\",\"schema\":{"
        "\"id\":{\"type\":\"string\",\"generated\":\"uuid\"},"
        "\"email\":{\"type\":\"string\",\"required\":true,\"format\":\"email\",\"unique\":true},"
        "\"role\":{\"type\":\"string\",\"default\":\"customer\",\"enum\":[\"customer\",\"admin\"]},"
        "\"stock\":{\"type\":\"number\",\"default\":0,\"min\":0}},"
        "\"indexes\":[\"role\"]}");
    schema_free(s);
}

Test(schema_compile, compiles_the_seed_buckets) {
    schema_t *s =
        compile_ok("audit-logs", "{\"key\":\"id\",\"schema\":{"
                                 "\"id\":{\"type\":\"string\",\"generated\":\"uuid\"},"
                                 "\"action\":{\"type\":\"string\",\"required\":true},"
                                 "\"userId\":{\"type\":\"string\",\"required\":true},"
                                 "\"details\":{\"type\":\"string\",\"default\":\"\"},"
                                 "\"timestamp\":{\"type\":\"number\",\"required\":true}}}");
    cr_assert_eq(s->field_count, 5);
    cr_assert_eq(s->index_count, 0);
    expect_json(json_object_get(s->definition, "indexes"), "[]");
    schema_free(s);
}

Test(schema_compile, key_defaults_to_id) {
    schema_t *s = compile_ok("things", "{\"schema\":{\"name\":{\"type\":\"string\"}}}");
    cr_assert_str_eq(s->key, "id");
    expect_json(s->definition,
                "{\"key\":\"id\",\"schema\":{\"name\":{\"type\":\"string\"}},\"indexes\":[]}");
    schema_free(s);
}

Test(schema_compile, accepts_a_custom_key_field) {
    schema_t *s =
        compile_ok("products", "{\"key\":\"sku\",\"schema\":{\"sku\":{\"type\":\"string\"}}}");
    cr_assert_str_eq(s->key, "sku");
    err_t err = ERR_INIT;
    insert_bad(s, "{\"id\":\"x\"}", &err);
    cr_assert_str_eq(violation_message(err.details, "sku", "required"),
                     "Field \"sku\" is required");
    err_clear(&err);
    schema_free(s);
}

Test(schema_compile, an_empty_schema_is_allowed) {
    schema_t *s = compile_ok("things", "{\"schema\":{}}");
    cr_assert_eq(s->field_count, 0);
    json_t *rec = insert_ok(s, "{\"id\":7,\"anything\":[1,2]}");
    expect_json(rec, "{\"id\":7,\"anything\":[1,2]}");
    json_decref(rec);
    schema_free(s);
}

Test(schema_compile, definition_lists_constraints_in_a_stable_order) {
    schema_t *s =
        compile_ok("things", "{\"indexes\":[\"code\"],\"schema\":{\"code\":{"
                             "\"ref\":\"others\",\"unique\":false,\"format\":\"email\","
                             "\"pattern\":\"@\",\"maxLength\":80,\"minLength\":3.0,"
                             "\"enum\":[\"a@b.co\",\"c@d.co\"],\"default\":\"a@b.co\","
                             "\"required\":false,\"type\":\"string\"},"
                             "\"n\":{\"max\":10.5,\"min\":-1,\"generated\":\"autoincrement\","
                             "\"type\":\"integer\"}},\"key\":\"code\"}");
    expect_json(
        s->definition,
        "{\"key\":\"code\",\"schema\":{\"code\":{\"type\":\"string\",\"required\":false,"
        "\"default\":\"a@b.co\",\"enum\":[\"a@b.co\",\"c@d.co\"],\"minLength\":3,"
        "\"maxLength\":80,\"pattern\":\"@\",\"format\":\"email\",\"unique\":false,"
        "\"ref\":\"others\"},"
        "\"n\":{\"type\":\"integer\",\"generated\":\"autoincrement\",\"min\":-1,\"max\":10.5}},"
        "\"indexes\":[\"code\"]}");
    schema_free(s);
}

Test(schema_compile, definition_compiles_back_to_itself) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    schema_t *again = schema_compile("users", s->definition, &err);
    cr_assert_not_null(again, "%s", err.msg);
    cr_assert(json_equal(again->definition, s->definition));
    schema_free(again);
    schema_free(s);
}

Test(schema_compile, integer_defaults_and_enums_are_normalised) {
    schema_t *s = compile_ok("things", "{\"schema\":{\"n\":{\"type\":\"integer\",\"default\":3.0,"
                                       "\"enum\":[1.0,2,3]}}}");
    const schema_field_t *n = schema_field_get(s, "n");
    cr_assert(json_is_integer(n->default_value));
    cr_assert(json_is_integer(json_array_get(n->enum_values, 0)));
    expect_json(json_object_get(s->definition, "schema"),
                "{\"n\":{\"type\":\"integer\",\"default\":3,\"enum\":[1,2,3]}}");
    schema_free(s);
}

Test(schema_compile, accepts_every_type) {
    const char *types[] = {"string", "number", "integer", "boolean", "object", "array", "date"};
    const field_type_t want[] = {FIELD_STRING, FIELD_NUMBER, FIELD_INTEGER, FIELD_BOOLEAN,
                                 FIELD_OBJECT, FIELD_ARRAY,  FIELD_DATE};
    for (size_t i = 0; i < 7; i++) {
        char def[128];
        snprintf(def, sizeof def, "{\"schema\":{\"f\":{\"type\":\"%s\"}}}", types[i]);
        schema_t *s = compile_ok("things", def);
        cr_assert_eq(schema_field_get(s, "f")->type, want[i]);
        schema_free(s);
    }
}

Test(schema_compile, accepts_generated_kinds_on_matching_types) {
    const char *ok[] = {
        "{\"type\":\"string\",\"generated\":\"uuid\"}",
        "{\"type\":\"string\",\"generated\":\"cuid\"}",
        "{\"type\":\"number\",\"generated\":\"autoincrement\"}",
        "{\"type\":\"integer\",\"generated\":\"autoincrement\"}",
        "{\"type\":\"number\",\"generated\":\"timestamp\"}",
        "{\"type\":\"integer\",\"generated\":\"timestamp\"}",
        "{\"type\":\"date\",\"generated\":\"timestamp\"}",
    };
    const field_gen_t want[] = {GEN_UUID,      GEN_CUID,      GEN_AUTOINCREMENT, GEN_AUTOINCREMENT,
                                GEN_TIMESTAMP, GEN_TIMESTAMP, GEN_TIMESTAMP};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char def[256];
        snprintf(def, sizeof def, "{\"schema\":{\"g\":%s}}", ok[i]);
        schema_t *s = compile_ok("things", def);
        cr_assert_eq(schema_field_get(s, "g")->generated, want[i]);
        schema_free(s);
    }
}

Test(schema_compile, rejects_a_bad_bucket_name_and_still_reports_the_rest) {
    err_t err = ERR_INIT;
    compile_bad("sqlite_stat1", "{\"schema\":{\"x\":{\"type\":\"nope\"}}}", &err);
    cr_assert(has_violation(err.details, "name", "name"));
    cr_assert(has_violation(err.details, "x", "type"));
    cr_assert(starts_with(err.msg, "Invalid bucket definition: Bucket name must start"), "%s",
              err.msg);
    err_clear(&err);
    compile_bad("bad name", "{\"schema\":{}}", &err);
    cr_assert(has_violation(err.details, "name", "name"));
    err_clear(&err);
    compile_bad(NULL, "{\"schema\":{}}", &err);
    cr_assert(has_violation(err.details, "name", "name"));
    err_clear(&err);
}

Test(schema_compile, rejects_a_definition_that_is_not_an_object) {
    expect_compile_violation("[]", "definition", "definition");
    expect_compile_violation("\"users\"", "definition", "definition");
    err_t err = ERR_INIT;
    cr_assert_null(schema_compile("things", NULL, &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
}

Test(schema_compile, rejects_a_missing_or_non_object_schema) {
    expect_compile_violation("{\"key\":\"id\"}", "schema", "schema");
    expect_compile_violation("{\"schema\":[]}", "schema", "schema");
}

Test(schema_compile, rejects_unknown_top_level_options) {
    expect_compile_violation("{\"schema\":{},\"index\":[\"a\"]}", "definition", "unknownOption");
}

Test(schema_compile, rejects_bad_field_names) {
    expect_compile_violation("{\"schema\":{\"_version\":{\"type\":\"number\"}}}", "_version",
                             "name");
    expect_compile_violation("{\"schema\":{\"first-name\":{\"type\":\"string\"}}}", "first-name",
                             "name");
    expect_compile_violation("{\"schema\":{\"\":{\"type\":\"string\"}}}", "", "name");
    expect_compile_violation("{\"schema\":{\"9lives\":{\"type\":\"string\"}}}", "9lives", "name");
}

Test(schema_compile, rejects_a_bad_key) {
    expect_compile_violation("{\"key\":5,\"schema\":{}}", "key", "key");
    expect_compile_violation("{\"key\":\"_id\",\"schema\":{}}", "key", "key");
    expect_compile_violation("{\"key\":\"\",\"schema\":{}}", "key", "key");
    expect_compile_violation("{\"key\":\"flag\",\"schema\":{\"flag\":{\"type\":\"boolean\"}}}",
                             "flag", "key");
    expect_compile_violation("{\"key\":\"o\",\"schema\":{\"o\":{\"type\":\"object\"}}}", "o",
                             "key");
    expect_compile_violation("{\"key\":\"a\",\"schema\":{\"a\":{\"type\":\"array\"}}}", "a", "key");
}

Test(schema_compile, rejects_a_missing_or_unknown_type) {
    expect_compile_violation("{\"schema\":{\"x\":{\"required\":true}}}", "x", "type");
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":\"text\"}}}", "x", "type");
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":\"String\"}}}", "x", "type");
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":7}}}", "x", "type");
    expect_compile_violation("{\"schema\":{\"x\":\"string\"}}", "x", "definition");
}

Test(schema_compile, rejects_unknown_constraints) {
    err_t err = ERR_INIT;
    compile_bad("things", "{\"schema\":{\"x\":{\"type\":\"number\",\"minimum\":0}}}", &err);
    cr_assert_str_eq(violation_message(err.details, "x", "unknownConstraint"),
                     "Field \"x\" has unknown constraint \"minimum\"");
    err_clear(&err);
}

Test(schema_compile, rejects_bad_generated_kinds) {
    expect_compile_violation("{\"schema\":{\"g\":{\"type\":\"string\",\"generated\":\"uuid4\"}}}",
                             "g", "generated");
    expect_compile_violation("{\"schema\":{\"g\":{\"type\":\"string\",\"generated\":true}}}", "g",
                             "generated");
    expect_compile_violation("{\"schema\":{\"g\":{\"type\":\"number\",\"generated\":\"uuid\"}}}",
                             "g", "generated");
    expect_compile_violation("{\"schema\":{\"g\":{\"type\":\"integer\",\"generated\":\"cuid\"}}}",
                             "g", "generated");
    expect_compile_violation(
        "{\"schema\":{\"g\":{\"type\":\"string\",\"generated\":\"autoincrement\"}}}", "g",
        "generated");
    expect_compile_violation(
        "{\"schema\":{\"g\":{\"type\":\"date\",\"generated\":\"autoincrement\"}}}", "g",
        "generated");
    expect_compile_violation(
        "{\"schema\":{\"g\":{\"type\":\"string\",\"generated\":\"timestamp\"}}}", "g", "generated");
    expect_compile_violation(
        "{\"schema\":{\"g\":{\"type\":\"boolean\",\"generated\":\"timestamp\"}}}", "g",
        "generated");
}

Test(schema_compile, rejects_bad_min_and_max) {
    expect_compile_violation("{\"schema\":{\"n\":{\"type\":\"number\",\"min\":\"0\"}}}", "n",
                             "min");
    expect_compile_violation("{\"schema\":{\"n\":{\"type\":\"number\",\"max\":null}}}", "n", "max");
    expect_compile_violation("{\"schema\":{\"n\":{\"type\":\"number\",\"min\":5,\"max\":4}}}", "n",
                             "min");
    expect_compile_violation("{\"schema\":{\"n\":{\"type\":\"string\",\"min\":1}}}", "n", "min");
    expect_compile_violation("{\"schema\":{\"n\":{\"type\":\"date\",\"max\":1}}}", "n", "max");
    schema_t *s =
        compile_ok("things", "{\"schema\":{\"n\":{\"type\":\"number\",\"min\":4,\"max\":4}}}");
    schema_free(s);
}

Test(schema_compile, rejects_bad_lengths) {
    expect_compile_violation("{\"schema\":{\"s\":{\"type\":\"string\",\"minLength\":-1}}}", "s",
                             "minLength");
    expect_compile_violation("{\"schema\":{\"s\":{\"type\":\"string\",\"minLength\":1.5}}}", "s",
                             "minLength");
    expect_compile_violation("{\"schema\":{\"s\":{\"type\":\"string\",\"maxLength\":\"3\"}}}", "s",
                             "maxLength");
    expect_compile_violation(
        "{\"schema\":{\"s\":{\"type\":\"string\",\"minLength\":4,\"maxLength\":3}}}", "s",
        "minLength");
    expect_compile_violation("{\"schema\":{\"s\":{\"type\":\"number\",\"maxLength\":3}}}", "s",
                             "maxLength");
    expect_compile_violation("{\"schema\":{\"s\":{\"type\":\"object\",\"minLength\":3}}}", "s",
                             "minLength");
    schema_t *s = compile_ok("things", "{\"schema\":{\"s\":{\"type\":\"array\",\"minLength\":0,"
                                       "\"maxLength\":3.0}}}");
    cr_assert_eq(schema_field_get(s, "s")->max_length, 3);
    schema_free(s);
}

Test(schema_compile, rejects_bad_enums) {
    expect_compile_violation("{\"schema\":{\"e\":{\"type\":\"string\",\"enum\":\"a\"}}}", "e",
                             "enum");
    expect_compile_violation("{\"schema\":{\"e\":{\"type\":\"string\",\"enum\":[]}}}", "e", "enum");
    expect_compile_violation("{\"schema\":{\"e\":{\"type\":\"string\",\"enum\":[\"a\",1]}}}", "e",
                             "enum");
    expect_compile_violation("{\"schema\":{\"e\":{\"type\":\"integer\",\"enum\":[1,1.5]}}}", "e",
                             "enum");
    expect_compile_violation("{\"schema\":{\"e\":{\"type\":\"string\",\"enum\":[\"a\",null]}}}",
                             "e", "enum");
    /* A bounded list: 256 values are fine, 257 are not. */
    char def[4096];
    size_t o =
        (size_t)snprintf(def, sizeof def, "{\"schema\":{\"e\":{\"type\":\"integer\",\"enum\":[0");
    for (int i = 1; i < 256; i++) o += (size_t)snprintf(def + o, sizeof def - o, ",%d", i);
    snprintf(def + o, sizeof def - o, "]}}}");
    schema_t *s = compile_ok("things", def);
    schema_free(s);
    snprintf(def + o, sizeof def - o, ",256]}}}");
    expect_compile_violation(def, "e", "enum");
}

Test(schema_compile, rejects_defaults_that_break_the_fields_own_rules) {
    expect_compile_violation("{\"schema\":{\"d\":{\"type\":\"number\",\"default\":\"0\"}}}", "d",
                             "default");
    expect_compile_violation("{\"schema\":{\"d\":{\"type\":\"integer\",\"default\":0.5}}}", "d",
                             "default");
    expect_compile_violation(
        "{\"schema\":{\"d\":{\"type\":\"string\",\"enum\":[\"a\"],\"default\":\"b\"}}}", "d",
        "default");
    expect_compile_violation("{\"schema\":{\"d\":{\"type\":\"number\",\"min\":0,\"default\":-1}}}",
                             "d", "default");
    expect_compile_violation("{\"schema\":{\"d\":{\"type\":\"number\",\"max\":9,\"default\":10}}}",
                             "d", "default");
    expect_compile_violation(
        "{\"schema\":{\"d\":{\"type\":\"string\",\"maxLength\":2,\"default\":\"abc\"}}}", "d",
        "default");
    expect_compile_violation(
        "{\"schema\":{\"d\":{\"type\":\"string\",\"pattern\":\"^[0-9]+$\",\"default\":\"x\"}}}",
        "d", "default");
    expect_compile_violation(
        "{\"schema\":{\"d\":{\"type\":\"string\",\"format\":\"email\",\"default\":\"nobody\"}}}",
        "d", "default");
    expect_compile_violation("{\"schema\":{\"d\":{\"type\":\"date\",\"default\":\"2023-02-30\"}}}",
                             "d", "default");
    expect_compile_violation(
        "{\"schema\":{\"d\":{\"type\":\"string\",\"required\":true,\"default\":null}}}", "d",
        "default");
    err_t err = ERR_INIT;
    compile_bad("things", "{\"schema\":{\"stock\":{\"type\":\"number\",\"min\":0,\"default\":-1}}}",
                &err);
    cr_assert_str_eq(violation_message(err.details, "stock", "default"),
                     "Default of field \"stock\" must be >= 0");
    err_clear(&err);
}

Test(schema_compile, accepts_a_null_default_on_an_optional_field) {
    schema_t *s =
        compile_ok("things", "{\"schema\":{\"note\":{\"type\":\"string\",\"default\":null}}}");
    json_t *rec = insert_ok(s, "{\"id\":\"a\"}");
    expect_json(rec, "{\"note\":null,\"id\":\"a\"}");
    json_decref(rec);
    schema_free(s);
}

Test(schema_compile, rejects_patterns_that_do_not_compile) {
    err_t err = ERR_INIT;
    compile_bad("things", "{\"schema\":{\"p\":{\"type\":\"string\",\"pattern\":\"(ab\"}}}", &err);
    const char *m = violation_message(err.details, "p", "pattern");
    cr_assert(strstr(m, "does not compile") && strstr(m, "offset"), "%s", m);
    err_clear(&err);
    expect_compile_violation("{\"schema\":{\"p\":{\"type\":\"string\",\"pattern\":\"[a-\"}}}", "p",
                             "pattern");
    expect_compile_violation("{\"schema\":{\"p\":{\"type\":\"string\",\"pattern\":\"a{2,1}\"}}}",
                             "p", "pattern");
    expect_compile_violation("{\"schema\":{\"p\":{\"type\":\"string\",\"pattern\":42}}}", "p",
                             "pattern");
    expect_compile_violation("{\"schema\":{\"p\":{\"type\":\"number\",\"pattern\":\"^1\"}}}", "p",
                             "pattern");
    char def[2200];
    int o = snprintf(def, sizeof def, "{\"schema\":{\"p\":{\"type\":\"string\",\"pattern\":\"");
    memset(def + o, 'a', 1025);
    snprintf(def + o + 1025, sizeof def - (size_t)o - 1025, "\"}}}");
    expect_compile_violation(def, "p", "pattern");
}

Test(schema_compile, rejects_unknown_formats) {
    expect_compile_violation("{\"schema\":{\"f\":{\"type\":\"string\",\"format\":\"phone\"}}}", "f",
                             "format");
    expect_compile_violation("{\"schema\":{\"f\":{\"type\":\"string\",\"format\":\"EMAIL\"}}}", "f",
                             "format");
    expect_compile_violation("{\"schema\":{\"f\":{\"type\":\"number\",\"format\":\"email\"}}}", "f",
                             "format");
    schema_t *s =
        compile_ok("things", "{\"schema\":{\"a\":{\"type\":\"string\",\"format\":\"email\"},"
                             "\"b\":{\"type\":\"string\",\"format\":\"url\"},"
                             "\"c\":{\"type\":\"string\",\"format\":\"iso-date\"}}}");
    cr_assert_eq(schema_field_get(s, "b")->format, FORMAT_URL);
    cr_assert_eq(schema_field_get(s, "c")->format, FORMAT_ISO_DATE);
    schema_free(s);
}

Test(schema_compile, rejects_non_boolean_required_and_unique_and_bad_refs) {
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":\"string\",\"required\":\"yes\"}}}", "x",
                             "required");
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":\"string\",\"unique\":1}}}", "x",
                             "unique");
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":\"string\",\"ref\":5}}}", "x", "ref");
    expect_compile_violation("{\"schema\":{\"x\":{\"type\":\"string\",\"ref\":\"no such\"}}}", "x",
                             "ref");
    schema_t *s =
        compile_ok("orders", "{\"schema\":{\"userId\":{\"type\":\"string\",\"ref\":\"users\"}}}");
    cr_assert_str_eq(schema_field_get(s, "userId")->ref, "users");
    schema_free(s);
}

Test(schema_compile, rejects_bad_indexes) {
    expect_compile_violation("{\"schema\":{\"a\":{\"type\":\"string\"}},\"indexes\":[\"b\"]}", "b",
                             "index");
    expect_compile_violation("{\"schema\":{\"a\":{\"type\":\"string\"}},\"indexes\":[\"a\",\"a\"]}",
                             "a", "index");
    expect_compile_violation("{\"schema\":{\"a\":{\"type\":\"string\"}},\"indexes\":\"a\"}",
                             "indexes", "indexes");
    expect_compile_violation("{\"schema\":{\"a\":{\"type\":\"string\"}},\"indexes\":[1]}",
                             "indexes", "index");
    /* The key is a field even when the schema does not declare it. */
    schema_t *s = compile_ok(
        "things", "{\"schema\":{\"a\":{\"type\":\"string\"}},\"indexes\":[\"id\",\"a\"]}");
    cr_assert_eq(s->index_count, 2);
    schema_free(s);
}

static void make_wide_definition(char *out, size_t size, int fields, int indexes) {
    size_t o = (size_t)snprintf(out, size, "{\"schema\":{");
    for (int i = 0; i < fields; i++)
        o +=
            (size_t)snprintf(out + o, size - o, "%s\"f%d\":{\"type\":\"number\"}", i ? "," : "", i);
    o += (size_t)snprintf(out + o, size - o, "},\"indexes\":[");
    for (int i = 0; i < indexes; i++)
        o += (size_t)snprintf(out + o, size - o, "%s\"f%d\"", i ? "," : "", i);
    snprintf(out + o, size - o, "]}");
}

Test(schema_compile, allows_64_fields_and_32_indexes_and_no_more) {
    char def[8192];
    make_wide_definition(def, sizeof def, 64, 32);
    schema_t *s = compile_ok("wide", def);
    cr_assert_eq(s->field_count, 64);
    cr_assert_eq(s->index_count, 32);
    schema_free(s);
    make_wide_definition(def, sizeof def, 65, 1);
    expect_compile_violation(def, "schema", "maxFields");
    make_wide_definition(def, sizeof def, 40, 33);
    expect_compile_violation(def, "indexes", "maxIndexes");
}

Test(schema_compile, collects_every_problem_in_one_error) {
    err_t err = ERR_INIT;
    compile_bad("things",
                "{\"key\":\"id\",\"schema\":{"
                "\"a\":{\"type\":\"text\"},"
                "\"b\":{\"type\":\"number\",\"min\":3,\"max\":1},"
                "\"c\":{\"type\":\"string\",\"pattern\":\"(\"},"
                "\"d\":{\"type\":\"string\",\"colour\":\"red\"}},"
                "\"indexes\":[\"zz\"]}",
                &err);
    cr_assert_eq(json_array_size(err.details), 5);
    cr_assert(has_violation(err.details, "a", "type"));
    cr_assert(has_violation(err.details, "b", "min"));
    cr_assert(has_violation(err.details, "c", "pattern"));
    cr_assert(has_violation(err.details, "d", "unknownConstraint"));
    cr_assert(has_violation(err.details, "zz", "index"));
    cr_assert(
        starts_with(
            err.msg,
            "Invalid definition for bucket \"things\": Field \"a\" has unknown type \"text\";"),
        "%s", err.msg);
    cr_assert(strstr(err.msg, " (and 4 more)"), "%s", err.msg);
    err_clear(&err);
}

/* ---------------------------------------------------------------- types */

Test(schema_types, string_accepts_only_strings) {
    const char *f = "{\"type\":\"string\"}";
    expect_value(f, "\"\"", true);
    expect_value(f, "\"hello\"", true);
    expect_value(f, "5", false);
    expect_value(f, "true", false);
    expect_value(f, "[\"a\"]", false);
    expect_value(f, "{}", false);
}

Test(schema_types, number_accepts_any_json_number) {
    const char *f = "{\"type\":\"number\"}";
    expect_value(f, "0", true);
    expect_value(f, "-12", true);
    expect_value(f, "1.5", true);
    expect_value(f, "1e300", true);
    expect_value(f, "\"1\"", false);
    expect_value(f, "false", false);
    expect_message("{\"type\":\"number\"}", "\"12.50\"", "type",
                   "Field \"v\" must be of type number");
}

Test(schema_types, integer_accepts_whole_numbers_within_2_pow_53) {
    const char *f = "{\"type\":\"integer\"}";
    expect_value(f, "0", true);
    expect_value(f, "-7", true);
    expect_value(f, "5.0", true);
    expect_value(f, "9007199254740992", true);
    expect_value(f, "-9007199254740992", true);
    expect_value(f, "9007199254740992.0", true);
    expect_value(f, "9007199254740993", false);
    expect_value(f, "-9007199254740993", false);
    expect_value(f, "9007199254740994.0", false);
    expect_value(f, "1e300", false);
    expect_value(f, "5.5", false);
    expect_value(f, "\"5\"", false);
    expect_value(f, "true", false);
    expect_message(f, "0.5", "type", "Field \"v\" must be of type integer");
}

Test(schema_types, integral_reals_are_stored_as_integers) {
    schema_t *s = compile_ok(
        "things", "{\"schema\":{\"n\":{\"type\":\"integer\"},\"x\":{\"type\":\"number\"}}}");
    json_t *rec = insert_ok(s, "{\"id\":1,\"n\":42.0,\"x\":2.0}");
    cr_assert(json_is_integer(json_object_get(rec, "n")));
    cr_assert_eq(json_integer_value(json_object_get(rec, "n")), 42);
    cr_assert(json_is_real(json_object_get(rec, "x")), "number fields keep what was sent");
    json_decref(rec);
    schema_free(s);
}

Test(schema_types, boolean_accepts_true_and_false_only) {
    const char *f = "{\"type\":\"boolean\"}";
    expect_value(f, "true", true);
    expect_value(f, "false", true);
    expect_value(f, "0", false);
    expect_value(f, "\"true\"", false);
}

Test(schema_types, object_and_array_accept_their_own_kind) {
    expect_value("{\"type\":\"object\"}", "{}", true);
    expect_value("{\"type\":\"object\"}", "{\"a\":[1]}", true);
    expect_value("{\"type\":\"object\"}", "[]", false);
    expect_value("{\"type\":\"object\"}", "\"{}\"", false);
    expect_value("{\"type\":\"array\"}", "[]", true);
    expect_value("{\"type\":\"array\"}", "[1,\"a\",null]", true);
    expect_value("{\"type\":\"array\"}", "{}", false);
    expect_value("{\"type\":\"array\"}", "\"[]\"", false);
}

Test(schema_types, date_accepts_epoch_numbers_and_iso_strings) {
    const char *f = "{\"type\":\"date\"}";
    expect_value(f, "0", true);
    expect_value(f, "1718000000000", true);
    expect_value(f, "-86400000", true);
    expect_value(f, "\"2024-02-29\"", true);
    expect_value(f, "\"2024-06-10T12:30:00Z\"", true);
    expect_value(f, "\"2024-06-10T12:30:00.123+02:00\"", true);
    expect_value(f, "\"2023-02-29\"", false);
    expect_value(f, "\"yesterday\"", false);
    expect_value(f, "\"\"", false);
    expect_value(f, "true", false);
    expect_value(f, "{}", false);
    expect_message(f, "\"10/06/2024\"", "type", "Field \"v\" must be of type date");
}

/* ---------------------------------------------------------------- constraints */

Test(schema_constraints, required_rejects_missing_and_null_but_not_empty) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    insert_bad(s, "{}", &err);
    cr_assert_str_eq(violation_message(err.details, "email", "required"),
                     "Field \"email\" is required");
    err_clear(&err);
    insert_bad(s, "{\"email\":null}", &err);
    cr_assert(has_violation(err.details, "email", "required"));
    err_clear(&err);
    schema_free(s);
    expect_value("{\"type\":\"string\",\"required\":true}", "\"\"", true);
    expect_value("{\"type\":\"number\",\"required\":true}", "0", true);
    expect_value("{\"type\":\"boolean\",\"required\":true}", "false", true);
    expect_value("{\"type\":\"string\",\"required\":true}", "null", false);
}

Test(schema_constraints, null_in_an_optional_field_skips_every_other_check) {
    expect_value("{\"type\":\"number\",\"min\":0}", "null", true);
    expect_value("{\"type\":\"string\",\"format\":\"email\",\"minLength\":3}", "null", true);
    expect_value("{\"type\":\"string\",\"enum\":[\"a\"]}", "null", true);
    schema_t *s = compile_ok("things", "{\"schema\":{\"n\":{\"type\":\"number\",\"min\":1}}}");
    json_t *rec = insert_ok(s, "{\"id\":\"a\"}");
    expect_json(rec, "{\"id\":\"a\"}");
    json_decref(rec);
    schema_free(s);
}

Test(schema_constraints, enum_checks_membership) {
    const char *f = "{\"type\":\"string\",\"enum\":[\"customer\",\"admin\"]}";
    expect_value(f, "\"admin\"", true);
    expect_value(f, "\"Admin\"", false);
    expect_message(f, "\"root\"", "enum", "Field \"v\" must be one of: customer, admin");
    expect_value("{\"type\":\"number\",\"enum\":[1,2.5]}", "1.0", true);
    expect_value("{\"type\":\"number\",\"enum\":[1,2.5]}", "2.5", true);
    expect_value("{\"type\":\"number\",\"enum\":[1,2.5]}", "2", false);
    expect_message("{\"type\":\"number\",\"enum\":[1,2.5]}", "3", "enum",
                   "Field \"v\" must be one of: 1, 2.5");
    expect_value("{\"type\":\"object\",\"enum\":[{\"a\":1}]}", "{\"a\":1}", true);
    expect_value("{\"type\":\"object\",\"enum\":[{\"a\":1}]}", "{\"a\":2}", false);
}

Test(schema_constraints, min_and_max_are_inclusive) {
    const char *f = "{\"type\":\"number\",\"min\":0,\"max\":100}";
    expect_value(f, "0", true);
    expect_value(f, "100", true);
    expect_value(f, "50.5", true);
    expect_value(f, "-0.0001", false);
    expect_value(f, "100.0001", false);
    expect_message(f, "-1", "min", "Field \"v\" must be >= 0");
    expect_message(f, "101", "max", "Field \"v\" must be <= 100");
    expect_message("{\"type\":\"integer\",\"min\":0.5}", "0", "min", "Field \"v\" must be >= 0.5");
    expect_value("{\"type\":\"integer\",\"max\":-3}", "-3", true);
    expect_value("{\"type\":\"integer\",\"max\":-3}", "-2", false);
}

Test(schema_constraints, string_lengths_count_characters_not_bytes) {
    const char *f = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}";
    expect_value(f, "\"ab\"", true);
    expect_value(f, "\"h\\u00e9llo\"", true);                  /* 5 characters, 6 bytes */
    expect_value(f, "\"\\ud83d\\ude00\\ud83d\\ude00\"", true); /* 2 characters, 8 bytes */
    expect_value(f, "\"\\u00e9\"", false);                     /* 1 character, 2 bytes */
    expect_value(f, "\"abcdef\"", false);
    expect_message(f, "\"a\"", "minLength", "Field \"v\" must be at least 2 characters long");
    expect_message(f, "\"abcdef\"", "maxLength", "Field \"v\" must be at most 5 characters long");
    expect_message("{\"type\":\"string\",\"minLength\":1}", "\"\"", "minLength",
                   "Field \"v\" must be at least 1 character long");
}

Test(schema_constraints, array_lengths_count_items) {
    const char *f = "{\"type\":\"array\",\"minLength\":1,\"maxLength\":2}";
    expect_value(f, "[1]", true);
    expect_value(f, "[\"long string\",{}]", true);
    expect_message(f, "[]", "minLength", "Field \"v\" must have at least 1 item");
    expect_message(f, "[1,2,3]", "maxLength", "Field \"v\" must have at most 2 items");
}

Test(schema_constraints, pattern_is_unanchored_unless_it_anchors_itself) {
    expect_value("{\"type\":\"string\",\"pattern\":\"abc\"}", "\"xxabcxx\"", true);
    expect_value("{\"type\":\"string\",\"pattern\":\"abc\"}", "\"xxabxcx\"", false);
    expect_value("{\"type\":\"string\",\"pattern\":\"^abc\"}", "\"abcxx\"", true);
    expect_value("{\"type\":\"string\",\"pattern\":\"^abc\"}", "\"xabc\"", false);
    expect_value("{\"type\":\"string\",\"pattern\":\"abc$\"}", "\"xxabc\"", true);
    expect_value("{\"type\":\"string\",\"pattern\":\"abc$\"}", "\"abcx\"", false);
    expect_value("{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-[0-9]+$\"}", "\"SKU-123\"", true);
    expect_value("{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-[0-9]+$\"}", "\" SKU-123\"", false);
    expect_message("{\"type\":\"string\",\"pattern\":\"^[0-9]+$\"}", "\"12a\"", "pattern",
                   "Field \"v\" must match the pattern /^[0-9]+$/");
    /* Capture groups: a match is a match however many groups the pattern has. */
    expect_value("{\"type\":\"string\",\"pattern\":\"^(a)(b)((c)|(d))$\"}", "\"abd\"", true);
    expect_value("{\"type\":\"string\",\"pattern\":\"^(a)(b)((c)|(d))$\"}", "\"abe\"", false);
}

Test(schema_constraints, pattern_follows_javascript_where_pcre_differs) {
    /* '$' matches only at the very end, not before a final newline. */
    expect_value("{\"type\":\"string\",\"pattern\":\"^abc$\"}", "\"abc\\n\"", false);
    /* \uhhhh is a character escape. */
    expect_value("{\"type\":\"string\",\"pattern\":\"^caf\\\\u00e9$\"}", "\"caf\\u00e9\"", true);
    /* '.' is one character, not one byte. */
    expect_value("{\"type\":\"string\",\"pattern\":\"^.$\"}", "\"\\u00e9\"", true);
    expect_value("{\"type\":\"string\",\"pattern\":\"^.$\"}", "\"\\ud83d\\ude00\"", true);
}

Test(schema_constraints, pathological_patterns_fail_fast_instead_of_hanging) {
    char value[80];
    memset(value, 'a', 40);
    strcpy(value + 40, "!");
    char quoted[96];
    snprintf(quoted, sizeof quoted, "\"%s\"", value);
    uint64_t start = clock_mono_ms();
    expect_value("{\"type\":\"string\",\"pattern\":\"^(a+)+$\"}", quoted, false);
    cr_assert_lt(clock_mono_ms() - start, 5000);
}

Test(schema_constraints, email_format_is_pragmatic) {
    const char *f = "{\"type\":\"string\",\"format\":\"email\"}";
    const char *good[] = {"\"ana@example.com\"", "\"first.last+tag@mail.example.co.uk\"",
                          "\"x@a.io\"", "\"o'brien@example.ie\"", "\"ana@xn--bcher-kva.example\""};
    const char *bad[] = {"\"\"",
                         "\"ana\"",
                         "\"ana@\"",
                         "\"@example.com\"",
                         "\"ana@example\"",
                         "\"ana@@example.com\"",
                         "\"ana@b@example.com\"",
                         "\"ana @example.com\"",
                         "\"ana@exa mple.com\"",
                         "\"ana@example..com\"",
                         "\"ana@.example.com\"",
                         "\"ana@example.com.\"",
                         "\".ana@example.com\"",
                         "\"an..a@example.com\"",
                         "\"<ana>@example.com\"",
                         "\"ana@exa_mple!.com\"",
                         "\"ana\\t@example.com\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) expect_value(f, good[i], true);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_value(f, bad[i], false);
    expect_message(f, "\"nobody\"", "format", "Field \"v\" must be a valid email");
}

Test(schema_constraints, email_length_is_capped_at_254) {
    const char *f = "{\"type\":\"string\",\"format\":\"email\"}";
    char value[300];
    for (size_t total = 253; total <= 255; total++) {
        /* "a@" + x...x + ".com", quoted as JSON */
        size_t xs = total - 6;
        value[0] = '"';
        memcpy(value + 1, "a@", 2);
        memset(value + 3, 'x', xs);
        memcpy(value + 3 + xs, ".com\"", 6);
        cr_assert_eq(strlen(value) - 2, total);
        expect_value(f, value, total <= 254);
    }
}

Test(schema_constraints, url_format_needs_a_known_scheme_and_a_host) {
    const char *f = "{\"type\":\"string\",\"format\":\"url\"}";
    const char *good[] = {"\"http://example.com\"",
                          "\"https://example.com/\"",
                          "\"HTTPS://Example.com/a/b?c=d#e\"",
                          "\"ftp://files.example.com/pub/file.txt\"",
                          "\"http://localhost:8080/health\"",
                          "\"https://user:pass@example.com/\"",
                          "\"http://127.0.0.1\"",
                          "\"http://[::1]:3000/\"",
                          "\"https://example.com?q=1\""};
    const char *bad[] = {"\"\"",
                         "\"example.com\"",
                         "\"mailto:ana@example.com\"",
                         "\"javascript:alert(1)\"",
                         "\"file:///etc/passwd\"",
                         "\"http://\"",
                         "\"http:///path\"",
                         "\"http://exa mple.com\"",
                         "\"http://example.com/a b\"",
                         "\"http://example.com:99999/\"",
                         "\"http://example.com:80a/\"",
                         "\"http://example.com:/\"",
                         "\"http://[::1/\"",
                         "\"http://[]/\"",
                         "\"http://exa<mple.com\"",
                         "\"http://..com\"",
                         "\"https//example.com\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) expect_value(f, good[i], true);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_value(f, bad[i], false);
    expect_message(f, "\"www.example.com\"", "format", "Field \"v\" must be a valid URL");
}

Test(schema_constraints, iso_date_format_checks_the_calendar) {
    const char *f = "{\"type\":\"string\",\"format\":\"iso-date\"}";
    const char *good[] = {"\"2024-01-31\"",
                          "\"2024-02-29\"",
                          "\"2000-02-29\"",
                          "\"1999-12-31T23:59\"",
                          "\"1999-12-31T23:59:59\"",
                          "\"2024-06-10T08:00:00.5Z\"",
                          "\"2024-06-10T08:00:00.123Z\"",
                          "\"2024-06-10T08:00:00.123456789Z\"",
                          "\"2024-06-10T08:00Z\"",
                          "\"2024-06-10T08:00:00+02:00\"",
                          "\"2024-06-10T08:00:00-05:30\"",
                          "\"2024-04-30\""};
    const char *bad[] = {"\"2023-02-29\"",
                         "\"1900-02-29\"",
                         "\"2024-02-30\"",
                         "\"2024-04-31\"",
                         "\"2024-13-01\"",
                         "\"2024-00-10\"",
                         "\"2024-01-00\"",
                         "\"2024-1-05\"",
                         "\"24-01-05\"",
                         "\"2024/01/05\"",
                         "\"2024-01-05T\"",
                         "\"2024-01-05T24:00\"",
                         "\"2024-01-05T12:60\"",
                         "\"2024-01-05T12:00:60\"",
                         "\"2024-01-05T12\"",
                         "\"2024-01-05 12:00\"",
                         "\"2024-01-05T12:00:00.\"",
                         "\"2024-01-05T12:00:00.1234567890Z\"",
                         "\"2024-01-05T12:00:00+2:00\"",
                         "\"2024-01-05T12:00:00+0200\"",
                         "\"2024-01-05T12:00:00+24:00\"",
                         "\"2024-01-05T12:00:00ZZ\"",
                         "\"2024-01-05Z\"",
                         "\"2024-01-05x\"",
                         "\"\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) expect_value(f, good[i], true);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_value(f, bad[i], false);
    expect_message(f, "\"2024-02-30\"", "format", "Field \"v\" must be a valid ISO 8601 date");
}

Test(schema_constraints, a_value_can_break_several_rules_at_once) {
    char def[] =
        "{\"type\":\"string\",\"minLength\":5,\"pattern\":\"^[a-z]+$\",\"format\":\"email\"}";
    schema_t *s;
    char full[512];
    snprintf(full, sizeof full, "{\"schema\":{\"v\":%s}}", def);
    s = compile_ok("things", full);
    err_t err = ERR_INIT;
    insert_bad(s, "{\"id\":1,\"v\":\"A@\"}", &err);
    cr_assert_eq(json_array_size(err.details), 3);
    cr_assert(has_violation(err.details, "v", "minLength"));
    cr_assert(has_violation(err.details, "v", "pattern"));
    cr_assert(has_violation(err.details, "v", "format"));
    err_clear(&err);
    schema_free(s);
}

Test(schema_constraints, undeclared_fields_pass_through_unvalidated) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    json_t *rec =
        insert_ok(s, "{\"email\":\"a@b.co\",\"nickname\":12,\"tags\":[\"x\"],\"Weird\":null}");
    expect_json(json_object_get(rec, "nickname"), "12");
    expect_json(json_object_get(rec, "tags"), "[\"x\"]");
    cr_assert(json_is_null(json_object_get(rec, "Weird")));
    json_decref(rec);
    schema_free(s);
}

Test(schema_constraints, an_undeclared_key_must_be_a_string_or_number) {
    schema_t *s = compile_ok("things", "{\"schema\":{\"name\":{\"type\":\"string\"}}}");
    json_t *rec = insert_ok(s, "{\"id\":\"a\"}");
    json_decref(rec);
    rec = insert_ok(s, "{\"id\":12.5}");
    json_decref(rec);
    rec = insert_ok(s, "{\"id\":\"\"}");
    json_decref(rec);
    err_t err = ERR_INIT;
    insert_bad(s, "{\"name\":\"x\"}", &err);
    cr_assert_str_eq(violation_message(err.details, "id", "required"), "Field \"id\" is required");
    err_clear(&err);
    insert_bad(s, "{\"id\":null}", &err);
    cr_assert(has_violation(err.details, "id", "required"));
    err_clear(&err);
    insert_bad(s, "{\"id\":true}", &err);
    cr_assert_str_eq(violation_message(err.details, "id", "type"),
                     "Field \"id\" must be a string or number");
    err_clear(&err);
    insert_bad(s, "{\"id\":{\"a\":1}}", &err);
    cr_assert(has_violation(err.details, "id", "type"));
    err_clear(&err);
    schema_free(s);
}

Test(schema_constraints, a_declared_key_is_required_even_when_not_marked) {
    schema_t *s =
        compile_ok("things", "{\"key\":\"code\",\"schema\":{\"code\":{\"type\":\"string\"}}}");
    err_t err = ERR_INIT;
    insert_bad(s, "{}", &err);
    cr_assert(has_violation(err.details, "code", "required"));
    err_clear(&err);
    schema_free(s);
}

/* ---------------------------------------------------------------- violations and errors */

Test(schema_errors, collects_every_violation_of_a_record_in_one_error) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    insert_bad(s, "{\"role\":\"root\",\"stock\":-1,\"id\":5}", &err);
    cr_assert_eq(json_array_size(err.details), 4, "%zu", json_array_size(err.details));
    cr_assert_str_eq(violation_message(err.details, "id", "type"),
                     "Field \"id\" must be of type string");
    cr_assert_str_eq(violation_message(err.details, "email", "required"),
                     "Field \"email\" is required");
    cr_assert_str_eq(violation_message(err.details, "role", "enum"),
                     "Field \"role\" must be one of: customer, admin");
    cr_assert_str_eq(violation_message(err.details, "stock", "min"),
                     "Field \"stock\" must be >= 0");
    cr_assert_str_eq(err.msg,
                     "Validation failed for bucket \"users\": Field \"id\" must be of type "
                     "string (and 3 more)");
    cr_assert_str_eq(err_code_name(err.code), "VALIDATION_ERROR");
    err_clear(&err);
    insert_bad(s, "{\"email\":\"nope\"}", &err);
    cr_assert_eq(json_array_size(err.details), 1);
    cr_assert_str_eq(
        err.msg, "Validation failed for bucket \"users\": Field \"email\" must be a valid email");
    expect_json(err.details, "[{\"field\":\"email\",\"rule\":\"format\","
                             "\"message\":\"Field \\\"email\\\" must be a valid email\"}]");
    err_clear(&err);
    schema_free(s);
}

Test(schema_errors, long_messages_are_cut_on_a_character_boundary) {
    char def[8192];
    size_t o =
        (size_t)snprintf(def, sizeof def, "{\"schema\":{\"v\":{\"type\":\"string\",\"enum\":[");
    for (int i = 0; i < 200; i++)
        o +=
            (size_t)snprintf(def + o, sizeof def - o, "%s\"\xc3\xa9t\xc3\xa9%d\"", i ? "," : "", i);
    snprintf(def + o, sizeof def - o, "]}}}");
    schema_t *s = compile_ok("things", def);
    err_t err = ERR_INIT;
    insert_bad(s, "{\"id\":1,\"v\":\"x\",\"w\":1}", &err);
    const char *m = violation_message(err.details, "v", "enum");
    cr_assert_lt(strlen(m), 300);
    cr_assert(strstr(m, "..."), "%s", m);
    cr_assert(utf8_is_valid((const uint8_t *)m, strlen(m)));
    cr_assert_lt(strlen(err.msg), ERR_MSG_MAX);
    cr_assert(utf8_is_valid((const uint8_t *)err.msg, strlen(err.msg)));
    err_clear(&err);
    schema_free(s);
}

Test(schema_errors, validate_appends_and_counts) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    json_t *violations = J("[\"earlier\"]");
    json_t *rec = J("{\"id\":\"a\",\"stock\":-5,\"role\":\"x\"}");
    cr_assert_eq(schema_validate(s, rec, violations), 3);
    cr_assert_eq(json_array_size(violations), 4);
    cr_assert_str_eq(json_string_value(json_array_get(violations, 0)), "earlier");
    cr_assert_eq(schema_validate(s, rec, NULL), 3);
    json_decref(rec);
    rec = J("{\"id\":\"a\",\"email\":\"a@b.co\"}");
    cr_assert_eq(schema_validate(s, rec, violations), 0);
    json_decref(rec);
    rec = J("[1]");
    cr_assert_eq(schema_validate(s, rec, violations), 1);
    json_decref(rec);
    json_decref(violations);
    schema_free(s);
}

Test(schema_errors, validate_does_not_generate_or_default) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    json_t *rec = J("{\"email\":\"a@b.co\"}");
    json_t *violations = json_array();
    cr_assert_eq(schema_validate(s, rec, violations), 1);
    cr_assert(has_violation(violations, "id", "required"));
    json_decref(violations);
    json_decref(rec);
    schema_free(s);
}

/* ---------------------------------------------------------------- inserts */

typedef struct {
    int calls;
    json_int_t next;
    bool fail;
    const char *field_seen;
} counter_t;

static json_t *counter_gen(void *ctx, const schema_t *s, const schema_field_t *field, err_t *err) {
    counter_t *c = ctx;
    c->calls++;
    c->field_seen = field->name;
    cr_assert_str_eq(s->bucket, "orders");
    if (c->fail) {
        err_set(err, ERR_CONFLICT, "counter busy");
        return NULL;
    }
    return json_integer(c->next++);
}

static const char *ORDERS = "{\"key\":\"number\",\"schema\":{"
                            "\"number\":{\"type\":\"integer\",\"generated\":\"autoincrement\"},"
                            "\"status\":{\"type\":\"string\",\"default\":\"pending\"},"
                            "\"total\":{\"type\":\"number\",\"required\":true}}}";

Test(schema_insert, autoincrement_comes_from_the_generator) {
    schema_t *s = compile_ok("orders", ORDERS);
    counter_t c = {.next = 41};
    json_t *data = J("{\"total\":10}");
    err_t err = ERR_INIT;
    json_t *rec = schema_prepare_insert(s, data, counter_gen, &c, &err);
    cr_assert_not_null(rec, "%s", err.msg);
    expect_json(rec, "{\"number\":41,\"status\":\"pending\",\"total\":10}");
    cr_assert_eq(c.calls, 1);
    cr_assert_str_eq(c.field_seen, "number");
    json_decref(rec);
    rec = schema_prepare_insert(s, data, counter_gen, &c, &err);
    expect_json(json_object_get(rec, "number"), "42");
    json_decref(rec);
    json_decref(data);
    schema_free(s);
}

Test(schema_insert, a_generator_failure_is_passed_on) {
    schema_t *s = compile_ok("orders", ORDERS);
    counter_t c = {.fail = true};
    json_t *data = J("{\"total\":10}");
    err_t err = ERR_INIT;
    cr_assert_null(schema_prepare_insert(s, data, counter_gen, &c, &err));
    cr_assert_eq(err.code, ERR_CONFLICT);
    cr_assert_str_eq(err.msg, "counter busy");
    err_clear(&err);
    cr_assert_null(schema_prepare_insert(s, data, NULL, NULL, &err));
    cr_assert_eq(err.code, ERR_INTERNAL);
    err_clear(&err);
    json_decref(data);
    schema_free(s);
}

Test(schema_insert, an_explicit_value_wins_over_generated_and_generated_over_default) {
    schema_t *s = compile_ok(
        "orders", "{\"key\":\"number\",\"schema\":{"
                  "\"number\":{\"type\":\"integer\",\"generated\":\"autoincrement\",\"default\":7},"
                  "\"status\":{\"type\":\"string\",\"default\":\"pending\"}}}");
    counter_t c = {.next = 100};
    err_t err = ERR_INIT;
    json_t *data = J("{}");
    json_t *rec = schema_prepare_insert(s, data, counter_gen, &c, &err);
    expect_json(rec, "{\"number\":100,\"status\":\"pending\"}");
    json_decref(rec);
    json_decref(data);
    data = J("{\"number\":5,\"status\":\"paid\"}");
    rec = schema_prepare_insert(s, data, counter_gen, &c, &err);
    expect_json(rec, "{\"number\":5,\"status\":\"paid\"}");
    cr_assert_eq(c.calls, 1, "the generator is not asked when a value is given");
    json_decref(rec);
    json_decref(data);
    schema_free(s);
}

Test(schema_insert, an_explicit_null_is_kept_not_generated) {
    schema_t *s =
        compile_ok("things", "{\"schema\":{\"id\":{\"type\":\"string\",\"generated\":\"uuid\"},"
                             "\"note\":{\"type\":\"string\",\"default\":\"hi\"}}}");
    err_t err = ERR_INIT;
    insert_bad(s, "{\"id\":null}", &err);
    cr_assert(has_violation(err.details, "id", "required"));
    err_clear(&err);
    json_t *rec = insert_ok(s, "{\"note\":null}");
    cr_assert(json_is_null(json_object_get(rec, "note")));
    json_decref(rec);
    schema_free(s);
}

static bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void check_uuid(const char *u) {
    cr_assert_eq(strlen(u), 36, "%s", u);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq(u[i], '-', "%s", u);
        else
            cr_assert(is_hex(u[i]), "%s", u);
    }
    cr_assert_eq(u[14], '4', "version 4: %s", u);
    cr_assert(strchr("89ab", u[19]), "RFC 4122 variant: %s", u);
}

Test(schema_generated, uuids_are_random_version_4) {
    char prev[37] = "", u[37];
    for (int i = 0; i < 1000; i++) {
        schema_uuid(u);
        check_uuid(u);
        cr_assert_str_neq(u, prev);
        memcpy(prev, u, sizeof u);
    }
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    json_t *a = insert_ok(s, "{\"email\":\"a@b.co\"}");
    json_t *b = insert_ok(s, "{\"email\":\"a@b.co\"}");
    check_uuid(json_string_value(json_object_get(a, "id")));
    cr_assert_str_neq(json_string_value(json_object_get(a, "id")),
                      json_string_value(json_object_get(b, "id")));
    expect_json(json_object_get(a, "role"), "\"customer\"");
    expect_json(json_object_get(a, "stock"), "0");
    json_decref(a);
    json_decref(b);
    schema_free(s);
}

Test(schema_generated, uuid7s_carry_the_time_and_sort_by_it) {
    char a[37], b[37];
    int64_t before = clock_now_ms();
    schema_uuid7(a);
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[14], '7', "version 7: %s", a);
    cr_assert(strchr("89ab", a[19]), "RFC 9562 variant: %s", a);
    /* The first 48 bits are the Unix time in milliseconds. */
    char hexms[13];
    memcpy(hexms, a, 8);
    memcpy(hexms + 8, a + 9, 4);
    hexms[12] = '\0';
    int64_t ms = (int64_t)strtoll(hexms, NULL, 16);
    cr_assert(ms >= before && ms <= clock_now_ms(), "time %lld not in [%lld, now]", (long long)ms,
              (long long)before);
    struct timespec pause = {0, 2 * 1000 * 1000};
    nanosleep(&pause, NULL);
    schema_uuid7(b);
    cr_assert(strcmp(a, b) < 0, "%s made later sorts before %s", b, a);
    for (int i = 0; i < 1000; i++) {
        schema_uuid7(b);
        cr_assert_str_neq(a, b);
    }
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(a, b);
}

Test(schema_generated, cuids_have_the_cuid_shape_and_do_not_repeat) {
    enum { N = 2000 };
    static char ids[N][26];
    for (int i = 0; i < N; i++) {
        schema_cuid(ids[i]);
        cr_assert_eq(strlen(ids[i]), 25, "%s", ids[i]);
        cr_assert_eq(ids[i][0], 'c');
        for (int k = 1; k < 25; k++)
            cr_assert((ids[i][k] >= '0' && ids[i][k] <= '9') ||
                          (ids[i][k] >= 'a' && ids[i][k] <= 'z'),
                      "%s", ids[i]);
    }
    /* The time part leads, so later ids never sort before earlier ones by time. */
    cr_assert_leq(strncmp(ids[0], ids[N - 1], 9), 0);
    qsort(ids, N, sizeof ids[0], cmp_str);
    for (int i = 1; i < N; i++) cr_assert_str_neq(ids[i - 1], ids[i]);

    schema_t *s =
        compile_ok("things", "{\"schema\":{\"id\":{\"type\":\"string\",\"generated\":\"cuid\"}}}");
    json_t *rec = insert_ok(s, "{}");
    cr_assert_eq(json_string_length(json_object_get(rec, "id")), 25);
    json_decref(rec);
    schema_free(s);
}

Test(schema_generated, timestamps_are_the_current_ms_epoch) {
    schema_t *s =
        compile_ok("things", "{\"schema\":{"
                             "\"createdAt\":{\"type\":\"number\",\"generated\":\"timestamp\"},"
                             "\"seenAt\":{\"type\":\"date\",\"generated\":\"timestamp\"}}}");
    int64_t before = clock_now_ms();
    json_t *rec = insert_ok(s, "{\"id\":1}");
    int64_t after = clock_now_ms();
    json_t *t = json_object_get(rec, "createdAt");
    cr_assert(json_is_integer(t));
    cr_assert_geq(json_integer_value(t), before);
    cr_assert_leq(json_integer_value(t), after);
    cr_assert(json_is_integer(json_object_get(rec, "seenAt")));
    json_decref(rec);
    rec = insert_ok(s, "{\"id\":2,\"createdAt\":5}");
    expect_json(json_object_get(rec, "createdAt"), "5");
    json_decref(rec);
    schema_free(s);
}

Test(schema_insert, declared_fields_come_first_then_the_rest_in_data_order) {
    schema_t *s = compile_ok(
        "things", "{\"schema\":{\"b\":{\"type\":\"number\"},\"a\":{\"type\":\"number\"}}}");
    json_t *rec = insert_ok(s, "{\"z\":1,\"a\":2,\"id\":\"k\",\"b\":3,\"y\":4}");
    expect_json(rec, "{\"b\":3,\"a\":2,\"z\":1,\"id\":\"k\",\"y\":4}");
    json_decref(rec);
    schema_free(s);
}

Test(schema_insert, metadata_in_data_is_ignored) {
    schema_t *s = compile_ok("things", "{\"schema\":{\"a\":{\"type\":\"number\"}}}");
    json_t *rec = insert_ok(
        s, "{\"id\":\"k\",\"_version\":9,\"_createdAt\":1,\"_updatedAt\":2,\"_x\":3,\"a\":1}");
    expect_json(rec, "{\"a\":1,\"id\":\"k\"}");
    json_decref(rec);
    schema_free(s);
}

Test(schema_insert, defaults_are_copied_and_data_changes_stay_at_the_top_level) {
    schema_t *s = compile_ok(
        "things", "{\"schema\":{\"meta\":{\"type\":\"object\",\"default\":{\"tags\":[]}},"
                  "\"extra\":{\"type\":\"array\"}}}");
    json_t *data = J("{\"id\":\"k\",\"extra\":[1],\"free\":{\"a\":1}}");
    err_t err = ERR_INIT;
    json_t *rec = schema_prepare_insert(s, data, NULL, NULL, &err);
    cr_assert_not_null(rec, "%s", err.msg);
    /* A record never reaches into the schema's default… */
    json_array_append_new(json_object_get(json_object_get(rec, "meta"), "tags"), json_integer(1));
    expect_json(schema_field_get(s, "meta")->default_value, "{\"tags\":[]}");
    /* …and replacing its top-level values leaves the request as it was. */
    json_object_set_new(rec, "extra", json_integer(2));
    json_object_del(rec, "free");
    expect_json(data, "{\"id\":\"k\",\"extra\":[1],\"free\":{\"a\":1}}");
    json_decref(rec);
    json_decref(data);
    schema_free(s);
}

/* schema_prepare_insert_take gives the record schema_prepare_insert would, whether it
 * finishes the caller's data in place or copies it. */
static void expect_take(const schema_t *s, const char *data, bool in_place) {
    json_t *d = J(data);
    bool id_given = json_object_get(d, "id") != NULL;
    err_t err = ERR_INIT;
    json_t *copy = schema_prepare_insert(s, d, NULL, NULL, &err);
    cr_assert_not_null(copy, "%s", err.msg);
    if (!id_given) json_object_set_new(copy, "id", json_string("generated")); /* in place */
    char *want = dump(copy);
    json_decref(copy);
    json_t *rec = schema_prepare_insert_take(s, d, NULL, NULL, &err);
    cr_assert_not_null(rec, "%s", err.msg);
    cr_assert_eq(rec == d, in_place, "%s: %s", data, in_place ? "finished in place" : "copied");
    if (!id_given) json_object_set_new(rec, "id", json_string("generated"));
    expect_json(rec, want);
    free(want);
    json_decref(rec);
}

Test(schema_insert, taken_data_in_schema_order_becomes_the_record) {
    schema_t *s = compile_ok(
        "things", "{\"schema\":{\"id\":{\"type\":\"string\",\"generated\":\"uuid\"},"
                  "\"a\":{\"type\":\"number\"},\"b\":{\"type\":\"number\",\"default\":7},"
                  "\"c\":{\"type\":\"string\"},\"at\":{\"type\":\"integer\",\"default\":0}}}");
    expect_take(s, "{\"id\":\"k\",\"a\":1,\"b\":2,\"c\":\"x\",\"at\":5}", true);
    expect_take(s, "{\"id\":\"k\",\"a\":1}", true);           /* b and at appended */
    expect_take(s, "{\"id\":\"k\",\"b\":2,\"c\":\"x\"}", true); /* a absent, nothing due */
    expect_take(s, "{\"a\":1,\"b\":2}", false);               /* id is generated before a */
    expect_take(s, "{\"id\":\"k\",\"c\":\"x\"}", false);         /* b's default is due before c */
    expect_take(s, "{\"id\":\"k\",\"b\":2,\"a\":1}", false);     /* out of order */
    expect_take(s, "{\"id\":\"k\",\"a\":1,\"zz\":1}", false);    /* undeclared */
    expect_take(s, "{\"id\":\"k\",\"a\":1,\"_version\":3}", false); /* metadata dropped */
    schema_free(s);
}

Test(schema_insert, taken_data_that_is_shared_is_copied_and_left_alone) {
    schema_t *s = compile_ok("things", "{\"schema\":{\"id\":{\"type\":\"string\"},"
                                       "\"n\":{\"type\":\"integer\",\"default\":1}}}");
    json_t *d = J("{\"id\":\"k\"}");
    err_t err = ERR_INIT;
    json_t *rec = schema_prepare_insert_take(s, json_incref(d), NULL, NULL, &err);
    cr_assert_not_null(rec, "%s", err.msg);
    cr_assert_neq(rec, d);
    expect_json(rec, "{\"id\":\"k\",\"n\":1}");
    expect_json(d, "{\"id\":\"k\"}");
    cr_assert_eq(d->refcount, 1, "the taken reference was dropped");
    json_decref(rec);
    json_decref(d);
    /* A refused record releases what it took. */
    d = J("{\"id\":5}");
    cr_assert_null(schema_prepare_insert_take(s, d, NULL, NULL, &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
    schema_free(s);
}

Test(schema_insert, data_must_be_an_object) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    json_t *data = J("[1]");
    cr_assert_null(schema_prepare_insert(s, data, NULL, NULL, &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_str_eq(err.msg, "Missing or invalid \"data\": expected object");
    err_clear(&err);
    cr_assert_null(schema_prepare_insert(s, NULL, NULL, NULL, &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
    json_decref(data);
    schema_free(s);
}

/* ---------------------------------------------------------------- updates */

static const char *PRODUCTS = "{\"key\":\"id\",\"schema\":{"
                              "\"id\":{\"type\":\"string\",\"generated\":\"uuid\"},"
                              "\"title\":{\"type\":\"string\",\"required\":true},"
                              "\"stock\":{\"type\":\"integer\",\"min\":0,\"default\":0},"
                              "\"createdAt\":{\"type\":\"number\",\"generated\":\"timestamp\"}}}";

static const char *STORED = "{\"id\":\"p1\",\"title\":\"Mug\",\"stock\":5,\"createdAt\":1000,"
                            "\"_version\":3,\"_createdAt\":1000,\"_updatedAt\":2000}";

static json_t *update(const schema_t *s, const char *current, const char *patch, err_t *err) {
    json_t *c = J(current), *p = J(patch);
    json_t *rec = schema_prepare_update(s, c, p, err);
    json_decref(c);
    json_decref(p);
    return rec;
}

Test(schema_update, merges_the_patch_into_the_stored_record) {
    schema_t *s = compile_ok("products", PRODUCTS);
    err_t err = ERR_INIT;
    json_t *rec = update(s, STORED, "{\"stock\":4,\"colour\":\"blue\"}", &err);
    cr_assert_not_null(rec, "%s", err.msg);
    expect_json(rec, "{\"id\":\"p1\",\"title\":\"Mug\",\"stock\":4,\"createdAt\":1000,"
                     "\"_version\":3,\"_createdAt\":1000,\"_updatedAt\":2000,\"colour\":\"blue\"}");
    json_decref(rec);
    schema_free(s);
}

Test(schema_update, validates_the_merged_record) {
    schema_t *s = compile_ok("products", PRODUCTS);
    err_t err = ERR_INIT;
    /* The patch alone lacks the required title; the merged record has it. */
    json_t *rec = update(s, STORED, "{\"stock\":0}", &err);
    cr_assert_not_null(rec, "%s", err.msg);
    json_decref(rec);
    cr_assert_null(update(s, STORED, "{\"stock\":-1}", &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_str_eq(err.msg,
                     "Validation failed for bucket \"products\": Field \"stock\" must be >= 0");
    err_clear(&err);
    cr_assert_null(update(s, STORED, "{\"title\":null}", &err));
    cr_assert(has_violation(err.details, "title", "required"));
    err_clear(&err);
    /* A stored record that no longer satisfies the schema is caught too. */
    cr_assert_null(update(s, "{\"id\":\"p1\",\"stock\":1}", "{\"stock\":2}", &err));
    cr_assert(has_violation(err.details, "title", "required"));
    err_clear(&err);
    schema_free(s);
}

Test(schema_update, strips_generated_fields_and_metadata_from_the_patch) {
    schema_t *s = compile_ok("products", PRODUCTS);
    err_t err = ERR_INIT;
    json_t *rec =
        update(s, STORED,
               "{\"createdAt\":1,\"_version\":99,\"_createdAt\":5,\"_updatedAt\":6,\"_secret\":1,"
               "\"title\":\"Cup\"}",
               &err);
    cr_assert_not_null(rec, "%s", err.msg);
    expect_json(rec, "{\"id\":\"p1\",\"title\":\"Cup\",\"stock\":5,\"createdAt\":1000,"
                     "\"_version\":3,\"_createdAt\":1000,\"_updatedAt\":2000}");
    json_decref(rec);
    schema_free(s);
}

static const char *SKUS = "{\"key\":\"id\",\"schema\":{"
                          "\"id\":{\"type\":\"string\"},"
                          "\"title\":{\"type\":\"string\",\"required\":true},"
                          "\"stock\":{\"type\":\"integer\",\"min\":0,\"default\":0}}}";

Test(schema_update, strips_a_generated_key_like_other_generated_fields) {
    schema_t *s = compile_ok("products", PRODUCTS);
    err_t err = ERR_INIT;
    json_t *rec = update(s, STORED, "{\"id\":\"p2\",\"stock\":1}", &err);
    cr_assert_not_null(rec, "%s", err.msg);
    expect_json(json_object_get(rec, "id"), "\"p1\"");
    json_decref(rec);
    schema_free(s);
}

Test(schema_update, refuses_to_change_the_key) {
    schema_t *s = compile_ok("products", SKUS);
    err_t err = ERR_INIT;
    cr_assert_null(update(s, STORED, "{\"id\":\"p2\"}", &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_str_eq(violation_message(err.details, "id", "immutable"),
                     "Field \"id\" cannot be changed");
    err_clear(&err);
    cr_assert_null(update(s, STORED, "{\"id\":null}", &err));
    cr_assert(has_violation(err.details, "id", "immutable"));
    err_clear(&err);
    json_t *rec = update(s, STORED, "{\"id\":\"p1\",\"stock\":1}", &err);
    cr_assert_not_null(rec, "the same key again is fine: %s", err.msg);
    json_decref(rec);
    schema_free(s);

    s = compile_ok("things", "{\"schema\":{}}");
    rec = update(s, "{\"id\":3}", "{\"id\":3.0}", &err);
    cr_assert_not_null(rec, "3.0 is the key 3");
    expect_json(json_object_get(rec, "id"), "3");
    json_decref(rec);
    cr_assert_null(update(s, "{\"id\":3}", "{\"id\":\"3\"}", &err));
    err_clear(&err);
    schema_free(s);
}

Test(schema_update, a_key_change_is_reported_with_the_other_violations) {
    schema_t *s = compile_ok("products", SKUS);
    err_t err = ERR_INIT;
    cr_assert_null(update(s, STORED, "{\"id\":\"p2\",\"stock\":-3,\"title\":7}", &err));
    cr_assert_eq(json_array_size(err.details), 3);
    cr_assert(has_violation(err.details, "id", "immutable"));
    cr_assert(has_violation(err.details, "stock", "min"));
    cr_assert(has_violation(err.details, "title", "type"));
    cr_assert_str_eq(err.msg, "Validation failed for bucket \"products\": Field \"id\" cannot be "
                              "changed (and 2 more)");
    err_clear(&err);
    schema_free(s);
}

Test(schema_update, normalises_integers_and_leaves_current_untouched) {
    schema_t *s = compile_ok("products", PRODUCTS);
    json_t *current = J(STORED);
    json_t *patch = J("{\"stock\":7.0}");
    err_t err = ERR_INIT;
    json_t *rec = schema_prepare_update(s, current, patch, &err);
    cr_assert(json_is_integer(json_object_get(rec, "stock")));
    json_object_set_new(rec, "title", json_string("changed"));
    expect_json(json_object_get(current, "title"), "\"Mug\"");
    expect_json(json_object_get(current, "stock"), "5");
    json_decref(rec);
    json_decref(patch);
    json_decref(current);
    schema_free(s);
}

Test(schema_update, patch_and_current_must_be_objects) {
    schema_t *s = compile_ok("products", PRODUCTS);
    err_t err = ERR_INIT;
    cr_assert_null(update(s, STORED, "\"x\"", &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
    cr_assert_null(update(s, "[]", "{}", &err));
    cr_assert_eq(err.code, ERR_INTERNAL);
    err_clear(&err);
    schema_free(s);
}

/* ---------------------------------------------------------------- extending */

static schema_t *extend(const schema_t *s, const char *updates, err_t *err) {
    json_t *u = J(updates);
    schema_t *out = schema_extend(s, u, err);
    json_decref(u);
    return out;
}

Test(schema_extend, adds_fields_and_indexes) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    schema_t *x = extend(s,
                         "{\"fields\":{\"phone\":{\"type\":\"string\",\"pattern\":\"^\\\\+\"}},"
                         "\"indexes\":[\"phone\",\"email\"]}",
                         &err);
    cr_assert_not_null(x, "%s", err.msg);
    cr_assert_eq(x->field_count, 5);
    cr_assert_not_null(schema_field_get(x, "phone"));
    cr_assert_eq(x->index_count, 3);
    expect_json(json_object_get(x->definition, "indexes"), "[\"role\",\"phone\",\"email\"]");
    expect_json(json_object_get(json_object_get(x->definition, "schema"), "phone"),
                "{\"type\":\"string\",\"pattern\":\"^\\\\+\"}");
    /* The original is unchanged. */
    cr_assert_eq(s->field_count, 4);
    cr_assert_eq(s->index_count, 1);
    cr_assert_null(json_object_get(json_object_get(s->definition, "schema"), "phone"));
    schema_free(x);
    x = extend(s, "{}", &err);
    cr_assert_not_null(x);
    cr_assert(json_equal(x->definition, s->definition));
    schema_free(x);
    schema_free(s);
}

Test(schema_extend, refuses_existing_fields_and_indexes) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    cr_assert_null(
        extend(s, "{\"fields\":{\"email\":{\"type\":\"string\"}},\"indexes\":[\"role\"]}", &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    cr_assert_str_eq(violation_message(err.details, "email", "exists"),
                     "Field \"email\" already exists");
    cr_assert_str_eq(violation_message(err.details, "role", "exists"),
                     "Index \"role\" already exists");
    err_clear(&err);
    schema_free(s);
}

Test(schema_extend, checks_additions_like_a_new_definition) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    cr_assert_null(extend(
        s,
        "{\"fields\":{\"age\":{\"type\":\"integer\",\"min\":\"x\"},\"role\":{\"type\":\"string\"}},"
        "\"indexes\":[\"ghost\"],\"drop\":true}",
        &err));
    cr_assert(has_violation(err.details, "updates", "unknownOption"));
    cr_assert(has_violation(err.details, "role", "exists"));
    cr_assert(has_violation(err.details, "age", "min"));
    cr_assert(has_violation(err.details, "ghost", "index"));
    err_clear(&err);
    cr_assert_null(extend(s, "[]", &err));
    cr_assert_eq(err.code, ERR_VALIDATION);
    err_clear(&err);
    cr_assert_null(extend(s, "{\"fields\":[1]}", &err));
    cr_assert(has_violation(err.details, "fields", "fields"));
    err_clear(&err);
    cr_assert_null(extend(s, "{\"indexes\":{}}", &err));
    cr_assert(has_violation(err.details, "indexes", "indexes"));
    err_clear(&err);
    schema_free(s);
}

Test(schema_extend, cannot_grow_past_the_field_limit) {
    char def[8192];
    make_wide_definition(def, sizeof def, 64, 0);
    schema_t *s = compile_ok("wide", def);
    err_t err = ERR_INIT;
    cr_assert_null(extend(s, "{\"fields\":{\"one\":{\"type\":\"string\"}}}", &err));
    cr_assert(has_violation(err.details, "schema", "maxFields"));
    err_clear(&err);
    schema_free(s);
}

Test(schema_extend, a_new_field_is_validated_on_the_next_insert) {
    schema_t *s = compile_ok("users", SPEC_EXAMPLE);
    err_t err = ERR_INIT;
    schema_t *x = extend(s, "{\"fields\":{\"age\":{\"type\":\"integer\",\"min\":18}}}", &err);
    cr_assert_not_null(x);
    json_t *rec = insert_ok(s, "{\"email\":\"a@b.co\",\"age\":3}");
    json_decref(rec);
    insert_bad(x, "{\"email\":\"a@b.co\",\"age\":3}", &err);
    cr_assert_str_eq(violation_message(err.details, "age", "min"), "Field \"age\" must be >= 18");
    err_clear(&err);
    schema_free(x);
    schema_free(s);
}

Test(schema_free, accepts_null) {
    schema_free(NULL);
}
