#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/config.h"

static char cfg_path[64];

static void write_config(const char *text) {
    strcpy(cfg_path, "/tmp/shopd-config-XXXXXX");
    int fd = mkstemp(cfg_path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void clear_env(void) {
    unsetenv("SHOPD_PORT");
    unsetenv("SHOPD_HOST");
    unsetenv("SHOPD_CONFIG");
    unsetenv("SHOPD_DATA_DIR");
    unsetenv("SHOPD_LOG_FORMAT");
}

static int load(config_t *c, char *err, int argc, char **argv) {
    return config_load(c, argc, argv, err, 256);
}

TestSuite(config, .init = clear_env, .fini = clear_env);

Test(config, defaults_match_the_spec) {
    config_t c;
    char err[256];
    char *argv[] = {"shopd", "serve", NULL};
    cr_assert_eq(load(&c, err, 2, argv), 0, "%s", err);
    cr_assert_eq(c.command, CONFIG_SERVE);
    cr_assert_eq(c.port, 8080);
    cr_assert_str_eq(c.host, "0.0.0.0");
    cr_assert_str_eq(c.path, "/");
    cr_assert_eq(c.max_payload_bytes, 1048576);
    cr_assert_eq(c.heartbeat_interval_ms, 30000);
    cr_assert_eq(c.heartbeat_timeout_ms, 10000);
    cr_assert_eq(c.shutdown_grace_ms, 5000);
    cr_assert_eq(c.max_subscriptions_per_connection, 100);
    config_cleanup(&c);
}

Test(config, flag_beats_environment_beats_file) {
    write_config("{\"port\": 1111, \"host\": \"127.0.0.2\", \"dataDir\": \"/tmp/file\"}");
    config_t c;
    char err[256];
    setenv("SHOPD_PORT", "2222", 1);
    setenv("SHOPD_DATA_DIR", "/tmp/env", 1);
    char *argv[] = {"shopd", "serve", "--config", cfg_path, "--port", "3333", NULL};
    cr_assert_eq(load(&c, err, 6, argv), 0, "%s", err);
    cr_assert_eq(c.port, 3333);
    cr_assert_str_eq(c.data_dir, "/tmp/env");
    cr_assert_str_eq(c.host, "127.0.0.2");
    config_cleanup(&c);
    unlink(cfg_path);
}

Test(config, config_file_can_come_from_the_environment) {
    write_config("{\"port\": 0, \"heartbeat\": {\"intervalMs\": 200, \"timeoutMs\": 100}}");
    setenv("SHOPD_CONFIG", cfg_path, 1);
    config_t c;
    char err[256];
    char *argv[] = {"shopd", "serve", NULL};
    cr_assert_eq(load(&c, err, 2, argv), 0, "%s", err);
    cr_assert_eq(c.port, 0);
    cr_assert_eq(c.heartbeat_interval_ms, 200);
    cr_assert_eq(c.heartbeat_timeout_ms, 100);
    cr_assert(json_is_object(c.doc));
    config_cleanup(&c);
    unlink(cfg_path);
}

static void expect_error(int argc, char **argv, const char *part) {
    config_t c;
    char err[256] = "";
    cr_assert_eq(load(&c, err, argc, argv), -1);
    cr_assert(strstr(err, part) != NULL, "error \"%s\" lacks \"%s\"", err, part);
    config_cleanup(&c);
}

Test(config, bad_flags_are_named) {
    char *a1[] = {"shopd", "serve", "--bogus"};
    expect_error(3, a1, "--bogus");
    char *a2[] = {"shopd", "serve", "--port"};
    expect_error(3, a2, "needs a value");
    char *a3[] = {"shopd", "serve", "--port", "70000"};
    expect_error(4, a3, "invalid port");
    char *a4[] = {"shopd", "serve", "--port", "12ab"};
    expect_error(4, a4, "invalid port");
    char *a5[] = {"shopd", "frobnicate"};
    expect_error(2, a5, "unknown command");
    char *a6[] = {"shopd", "serve", "--log-format", "xml"};
    expect_error(4, a6, "log format");
}

Test(config, bad_environment_is_named) {
    setenv("SHOPD_PORT", "eighty", 1);
    char *a[] = {"shopd", "serve"};
    expect_error(2, a, "SHOPD_PORT");
}

Test(config, bad_file_fields_name_their_json_path) {
    char *a[] = {"shopd", "serve", "--config", cfg_path};
    write_config("{\"port\": \"8080\"}");
    expect_error(4, a, "$.port");
    unlink(cfg_path);
    write_config("{\"heartbeat\": {\"intervalMs\": -5}}");
    expect_error(4, a, "$.heartbeat.intervalMs");
    unlink(cfg_path);
    write_config("{\"heartbeat\": 5}");
    expect_error(4, a, "$.heartbeat must be an object");
    unlink(cfg_path);
    write_config("{\"port\": 1,}");
    expect_error(4, a, "not valid JSON");
    unlink(cfg_path);
    write_config("[]");
    expect_error(4, a, "$ must be an object");
    unlink(cfg_path);
    write_config("{\"backpressure\": {\"highWaterMark\": 1.5}}");
    expect_error(4, a, "$.backpressure.highWaterMark");
    unlink(cfg_path);
}

Test(config, unreadable_file_is_reported) {
    char *a[] = {"shopd", "serve", "--config", "/nonexistent/shopd.json"};
    expect_error(4, a, "cannot read config file /nonexistent/shopd.json");
}

Test(config, version_and_help) {
    config_t c;
    char err[256];
    char *a[] = {"shopd", "--version"};
    cr_assert_eq(load(&c, err, 2, a), 0);
    cr_assert_eq(c.command, CONFIG_VERSION);
    config_cleanup(&c);
    char *b[] = {"shopd", "serve", "--help"};
    cr_assert_eq(load(&c, err, 3, b), 0);
    cr_assert_eq(c.command, CONFIG_HELP);
    config_cleanup(&c);
    cr_assert(strstr(config_usage(), "shopd serve") != NULL);
}
