/* shopd: wiring only. Configuration → modules → uv_run, and the graceful stop on
 * SIGTERM/SIGINT (a second signal cuts the grace period short). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "app/config.h"
#include "app/ops.h"
#include "app/setup.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "net/router.h"
#include "net/server.h"
#include "net/static_files.h"
#include "realtime/realtime.h"
#include "auth/auth.h"
#include "realtime/auth_api.h"
#include "realtime/procedures_api.h"
#include "realtime/rules_api.h"
#include "realtime/server_api.h"
#include "realtime/store_api.h"
#include "rules/rules.h"
#include "shop/shop.h"
#include "store/store.h"
#include "store/subs.h"

/* A group commit of fewer writes than this is committed by the loop itself (see
 * on_subs_prepare): its answers leave in the same turn. With 1 000 subscribers to an
 * event, handing every commit to the writer thread put the emitter's answer behind the
 * next turn's pushes (round trip p50 0.7 → 24 ms); with this, 0.7 ms as before. */
#define SMALL_BATCH 32

typedef struct {
    uv_loop_t *loop;
    config_t *cfg;
    server_t *server;
    realtime_t *rt;
    store_t *store;
    subs_t *subs;
    rules_t *rules;
    auth_t *auth;
    ratelimit_t *ratelimit;
    shop_t *shop;
    uv_signal_t sigterm, sigint;
    uv_prepare_t log_flush;
    uv_prepare_t subs_flush;
    uv_async_t commit_done; /* the database's writer thread has committed a batch */
    bool flush_answers;     /* commits are reported outside any request: send at once */
    int signals_seen;
} app_t;

static char log_buffer[64 * 1024];

/* Logs are buffered and written once per loop iteration, before the loop blocks. */
static void on_log_flush(uv_prepare_t *h) {
    (void)h;
    fflush(stderr);
}

static void flush_subscriptions(void *udata) { subs_flush(udata); }

/* Once per loop turn, before the loop blocks: subscription results for writes that
 * did not come from a realtime request, then the end of the shared read transaction. */
static void on_subs_prepare(uv_prepare_t *h) {
    app_t *app = h->data;
    /* The group commit of this turn's writes, then the pushes. A busy turn's batch is
     * committed by the database's writer thread while the loop goes on (on_commit_done
     * reports it, releasing its answers); a small one by the loop itself, so that its
     * answers leave in this turn instead of waiting for the next. Listeners of a commit
     * (rules) may write again: a commit here settles that, the next turn otherwise. */
    app->flush_answers = true;
    for (int round = 0; round < 8 && store_batch_open(app->store); round++) {
        err_t e = ERR_INIT; /* a failure is reported to on_batch_commit */
        if (store_batch_writes(app->store) >= SMALL_BATCH) {
            store_batch_commit_queued(app->store, &e);
            err_clear(&e);
            break;
        }
        store_batch_commit(app->store, &e);
        err_clear(&e);
    }
    app->flush_answers = false;
    subs_flush(app->subs);
    store_idle(app->store);
}

static uint64_t batch_pending(void *udata) { return store_batch_pending(udata); }

/* From the writer thread: wakes the loop (uv_async_send is the one libuv call that
 * may come from another thread). */
static void commit_notify(void *udata) { uv_async_send(udata); }

static void on_commit_done(uv_async_t *h) {
    app_t *app = h->data;
    app->flush_answers = true;
    store_batch_poll(app->store);
    app->flush_answers = false;
}

/* Every group commit releases the answers held for it, as errors when it failed, and
 * sends them at once, before the commit's listeners (rules, subscriptions) run: the
 * clients waiting for them go on meanwhile, and a writer's answer does not wait behind
 * the pushes its write causes (1 000 subscribers: 9–15 ms). Not for a commit made inside
 * a request handler (a bucket definition commits the batch first): the connection
 * being read is not written to from there; the server's flush sends those answers. */
static void on_batch_commit(void *udata, uint64_t batch, int rc, const err_t *err) {
    app_t *app = udata;
    if (rc == 0) {
        realtime_release_held(app->rt, batch, NULL);
        if (app->flush_answers) server_flush(app->server);
        return;
    }
    log_error("store.commit_failed", "error=\"%s\"", err->msg);
    if (app->rules) rules_facts_forget(app->rules); /* it took fact writes now undone */
    err_t e = ERR_INIT;
    err_set(&e, ERR_INTERNAL, "The write could not be saved; nothing was changed");
    realtime_release_held(app->rt, batch, &e);
    err_clear(&e);
    if (app->flush_answers) server_flush(app->server);
}

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Domain events of the shop go through the rules engine like any other event. */
static int shop_emit(void *udata, const char *topic, const json_t *data) {
    err_t err = ERR_INIT;
    int rc = rules_emit(udata, topic, data, NULL, NULL, NULL, &err);
    if (rc < 0) log_warn("shop.emit_failed", "topic=%s error=\"%s\"", topic, err.msg);
    err_clear(&err);
    return rc;
}

static void on_stopped(void *arg) {
    app_t *app = arg;
    log_info("server.stopped", "uptime_ms=%lld", (long long)(clock_now_ms() - metrics.started_ms));
    server_close_handles(app->server);
    realtime_close_handles(app->rt);
    auth_close(app->auth);
    close_handle((uv_handle_t *)&app->sigterm);
    close_handle((uv_handle_t *)&app->sigint);
    close_handle((uv_handle_t *)&app->log_flush);
    close_handle((uv_handle_t *)&app->subs_flush);
    store_on_commit_done(app->store, NULL, NULL); /* before its handle goes */
    close_handle((uv_handle_t *)&app->commit_done);
}

static void on_signal(uv_signal_t *h, int signum) {
    app_t *app = h->data;
    if (++app->signals_seen > 1) {
        log_warn("server.abort", "signal=%d", signum);
        server_abort(app->server);
        return;
    }
    uint64_t grace = app->cfg->shutdown_grace_ms;
    log_info("server.stopping", "signal=%d grace_ms=%llu", signum, (unsigned long long)grace);
    realtime_shutdown_notice(app->rt, grace);
    server_shutdown(app->server, grace, on_stopped, app);
}

static int ensure_dir(const char *path, char *err, size_t errlen) {
    if (mkdir(path, 0750) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    }
    snprintf(err, errlen, "cannot use data directory %s: %s", path,
             errno == EEXIST ? "not a directory" : strerror(errno));
    return -1;
}

static void db_path(const config_t *cfg, char *out, size_t len) {
    snprintf(out, len, "%s/shopd.db", cfg->data_dir);
}

static metrics_extra_t subs_metrics[] = {
    {"shopd_subscription_evaluations_total", "Query evaluations caused by committed changes.", "counter", NULL, NULL},
    {"shopd_subscription_pushes_total", "Subscription results pushed to subscribers.", "counter", NULL, NULL},
    {"shopd_subscription_shared_hits_total", "Subscriptions that joined an existing evaluation group.", "counter", NULL, NULL},
    {"shopd_subscription_unchanged_total", "Evaluations whose result had not changed (no push).", "counter", NULL, NULL},
    {"shopd_subscription_groups", "Live subscription groups.", "gauge", NULL, NULL},
    {"shopd_subscriptions", "Live store subscriptions.", "gauge", NULL, NULL},
    {"shopd_store_operations_total{kind=\"read\"}", "Store operations by kind.", "counter", NULL, NULL},
    {"shopd_store_operations_total{kind=\"write\"}", "Store operations by kind.", "counter", NULL, NULL},
    {"shopd_store_transactions_total", "Store transactions committed.", "counter", NULL, NULL},
    {"shopd_store_conflicts_total", "Writes refused because the record had moved on (expectedVersion).", "counter", NULL, NULL},
    {"shopd_store_cache_total{result=\"hit\"}", "Record reads (store.get, procedures) answered from the record cache, or not.", "counter", NULL, NULL},
    {"shopd_store_cache_total{result=\"miss\"}", "Record reads (store.get, procedures) answered from the record cache, or not.", "counter", NULL, NULL},
};

static void metrics_wire(const subs_t *subs, const store_t *st) {
    const subs_counters_t *c = subs_counters(subs);
    const store_counters_t *sc = store_counters(st);
    const uint64_t *values[] = {&c->evaluations, &c->pushes, &c->shared_hits, &c->unchanged, &c->groups,
                                &c->subscriptions, &sc->reads, &sc->writes, &sc->transactions, &sc->conflicts,
                                &sc->cache_hits, &sc->cache_misses};
    for (size_t i = 0; i < sizeof subs_metrics / sizeof *subs_metrics; i++) {
        subs_metrics[i].value = values[i];
        metrics_register(&subs_metrics[i]);
    }
}

static int serve(config_t *cfg) {
    char err[512];
    int rc = 2;
    app_t app;
    memset(&app, 0, sizeof app);
    app.cfg = cfg;
    app.loop = uv_default_loop();
    metrics.started_ms = clock_now_ms();
    static_files_t *files = NULL;

    if (ensure_dir(cfg->data_dir, err, sizeof err) < 0) {
        fprintf(stderr, "shopd: %s\n", err);
        return 2;
    }

    /* Everything the config file says is checked before the port is bound; the port
     * is bound before the database is opened, so that "address already in use" is the
     * one line a user sees when it happens. */
    app.auth = auth_new(app.loop, json_object_get(cfg->doc, "auth"), err, sizeof err);
    if (!app.auth && err[0]) {
        fprintf(stderr, "shopd: %s\n", err);
        return 2;
    }
    app.ratelimit = ratelimit_new(json_object_get(cfg->doc, "rateLimit"), err, sizeof err);
    if (!app.ratelimit && err[0]) {
        fprintf(stderr, "shopd: %s\n", err);
        auth_close(app.auth);
        uv_run(app.loop, UV_RUN_DEFAULT);
        auth_free(app.auth);
        return 2;
    }
    router_t *router = router_new();
    realtime_config_t rcfg = {
        .requires_auth = app.auth && auth_required(app.auth),
        .auth = app.auth,
        .ratelimit = app.ratelimit,
        .heartbeat_interval_ms = cfg->heartbeat_interval_ms,
        .heartbeat_timeout_ms = cfg->heartbeat_timeout_ms,
        .max_buffered_bytes = cfg->backpressure_max_buffered,
        .high_water_mark = cfg->backpressure_high_water,
        .max_subscriptions = cfg->max_subscriptions_per_connection,
        .max_subscriptions_total = cfg->max_subscriptions_total,
    };
    app.rt = realtime_new(app.loop, &rcfg);
    server_config_t scfg = {
        .host = cfg->host,
        .port = cfg->port,
        .ws_path = cfg->path,
        .max_body = cfg->http_max_body,
        .max_message = cfg->max_payload_bytes,
        .header_timeout_ms = cfg->http_header_timeout_ms,
        .idle_timeout_ms = cfg->http_idle_timeout_ms,
        .max_connections = cfg->http_max_connections,
        .max_output_bytes = cfg->backpressure_max_buffered * 4,
    };
    app.server = server_new(app.loop, &scfg, router, realtime_ws_handlers(), app.rt);
    int port = 0;
    if (server_listen(app.server, &port, err, sizeof err) < 0) goto fail;

    char path[4096];
    db_path(cfg, path, sizeof path);
    err_t e = ERR_INIT;
    app.store = store_open(path, &e);
    if (!app.store) {
        snprintf(err, sizeof err, "%s", e.msg);
        err_clear(&e);
        goto fail;
    }
    if (app_store_setup(app.store, cfg->doc, err, sizeof err) < 0) goto fail;
    store_set_group_commit(app.store, true);
    realtime_set_hold(app.rt, batch_pending, app.store);
    store_on_batch_commit(app.store, on_batch_commit, &app);
    uv_async_init(app.loop, &app.commit_done, on_commit_done);
    app.commit_done.data = &app;
    uv_unref((uv_handle_t *)&app.commit_done);
    store_on_commit_done(app.store, commit_notify, &app.commit_done);
    app.subs = subs_new(app.store, store_api_deliver);
    metrics_wire(app.subs, app.store);
    store_api_register(app.rt, app.store, app.subs, app.auth);
    realtime_after_request(app.rt, flush_subscriptions, app.subs);

    rules_config_t rules_cfg = {.event_log_max = cfg->event_log_max};
    app.rules = rules_new(app.store, &rules_cfg, rules_api_deliver, &e);
    if (!app.rules) {
        snprintf(err, sizeof err, "%s", e.msg);
        err_clear(&e);
        goto fail;
    }
    json_t *rules_doc = json_object_get(cfg->doc, "rules");
    if (rules_doc && !json_is_array(rules_doc)) {
        snprintf(err, sizeof err, "config: $.rules must be an array of rules");
        goto fail;
    }
    if (rules_doc && rules_load_config(app.rules, rules_doc, &e) < 0) {
        err_prefix(&e, "config: $.");
        snprintf(err, sizeof err, "%s", e.msg);
        err_clear(&e);
        goto fail;
    }
    rules_api_register(app.rt, app.rules);
    if (app.auth) auth_api_register(app.rt, app.auth);
    server_api_config_t server_cfg = {
        .name = cfg->name, .auth_enabled = app.auth != NULL, .rate_limit_enabled = app.ratelimit != NULL,
        .store = app.store, .rules = app.rules,
    };
    server_api_register(app.rt, &server_cfg);

    /* The commerce procedures run when the store has the e-commerce buckets. */
    shop_config_t shop_cfg = {0};
    app.shop = shop_new(app.store, &shop_cfg, shop_emit, app.rules, &e);
    if (app.shop) {
        procedures_api_register(app.rt, app.shop);
    } else {
        log_info("shop.disabled", "reason=\"%s\"", e.msg);
        err_clear(&e);
    }

    ops_register(router, &app.server);
    files = static_files_new(cfg->public_dir);
    if (files) router_add(router, "GET", "/*", static_files_handler, files);
    else log_warn("static.disabled", "dir=%s reason=not_found", cfg->public_dir);

    uv_signal_init(app.loop, &app.sigterm);
    uv_signal_init(app.loop, &app.sigint);
    app.sigterm.data = app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_prepare_init(app.loop, &app.log_flush);
    uv_prepare_start(&app.log_flush, on_log_flush);
    uv_unref((uv_handle_t *)&app.log_flush);
    /* Started after the server's own flusher, so it runs before it (libuv runs the
     * newest prepare handle first): pushes it makes go out in the same iteration. */
    uv_prepare_init(app.loop, &app.subs_flush);
    app.subs_flush.data = &app;
    uv_prepare_start(&app.subs_flush, on_subs_prepare);
    uv_unref((uv_handle_t *)&app.subs_flush);

    printf("listening on http://%s:%d\n", cfg->host, port);
    fflush(stdout);
    log_info("server.started", "version=%s host=%s port=%d ws_path=%s data_dir=%s", SHOPD_VERSION,
             cfg->host, port, cfg->path, cfg->data_dir);

    uv_run(app.loop, UV_RUN_DEFAULT);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "shopd: %s\n", err);
    server_close_handles(app.server);
    realtime_close_handles(app.rt);
    auth_close(app.auth);
    if (app.commit_done.data) {
        store_on_commit_done(app.store, NULL, NULL);
        close_handle((uv_handle_t *)&app.commit_done);
    }
    uv_run(app.loop, UV_RUN_DEFAULT);
out:
    if (app.store) store_on_batch_commit(app.store, NULL, NULL); /* the realtime layer goes first */
    fflush(stderr);
    if (uv_loop_close(app.loop) != 0) {
        fprintf(stderr, "shopd: handles still open at exit\n");
        uv_print_all_handles(app.loop, stderr);
    }
    server_free(app.server);
    realtime_free(app.rt);
    store_api_cleanup();
    rules_api_cleanup();
    shop_free(app.shop);
    subs_free(app.subs);
    rules_free(app.rules);
    store_close(app.store);
    auth_free(app.auth);
    ratelimit_free(app.ratelimit);
    static_files_free(files);
    router_free(router);
    return rc;
}

int main(int argc, char **argv) {
    config_t cfg;
    char err[512] = "";
    signal(SIGPIPE, SIG_IGN);
    if (config_load(&cfg, argc, argv, err, sizeof err) < 0) {
        fprintf(stderr, "shopd: %s\n", err);
        config_cleanup(&cfg);
        return 2;
    }
    int rc = 0;
    switch (cfg.command) {
    case CONFIG_VERSION: printf("shopd %s\n", SHOPD_VERSION); break;
    case CONFIG_HELP: fputs(config_usage(), stdout); break;
    case CONFIG_MIGRATE: {
        if (ensure_dir(cfg.data_dir, err, sizeof err) < 0) {
            fprintf(stderr, "shopd: %s\n", err);
            rc = 2;
            break;
        }
        char path[4096];
        db_path(&cfg, path, sizeof path);
        err_t e = ERR_INIT;
        int n = store_migrate_path(path, &e);
        if (n < 0) {
            fprintf(stderr, "shopd: %s\n", e.msg);
            err_clear(&e);
            rc = 2;
            break;
        }
        printf("migrations: %d applied\n", n);
        break;
    }
    case CONFIG_SERVE:
        setvbuf(stderr, log_buffer, _IOFBF, sizeof log_buffer);
        log_setup(cfg.log_format, cfg.log_level);
        rc = serve(&cfg);
        break;
    }
    config_cleanup(&cfg);
    return rc;
}
