/* Subscription groups and change routing (see subs.h).
 *
 * Index: "<bucket>" → groups whose query reads the whole bucket, and
 * "<bucket>\x1f<key JSON>" → groups of `get` queries on that key. A change set is
 * routed by looking up both for each change; a group reached several times in one
 * change set is evaluated once (its `epoch` marks it). */
#include "store/subs.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/strmap.h"

typedef struct group group_t;

struct sub {
    group_t *group;
    void *owner;
    char *id;
    sub_t *prev, *next;
};

typedef struct {
    group_t **items;
    size_t count, cap;
} group_list_t;

struct group {
    char *gkey; /* query \x1f params \x1f user */
    char *query;
    json_t *params;
    char *user_id;
    char *owner_field; /* visibility: records whose owner_field is owner_user */
    char *owner_user;
    char *index_key; /* where the group is indexed */
    char *result;
    size_t result_len;
    sub_t *subs;
    size_t sub_count;
    bool queued; /* in `pending`, waiting for subs_flush */
    uint64_t def_version; /* store definitions the result was computed with */
};

struct subs {
    store_t *store;
    subs_deliver_fn deliver;
    strmap_t groups; /* gkey → group */
    strmap_t index;  /* index key → group_list_t */
    group_list_t pending; /* groups to re-evaluate at the next flush */
    subs_counters_t counters;
};

const subs_counters_t *subs_counters(const subs_t *s) { return &s->counters; }

/* ---- index ---- */

static void index_add(subs_t *s, group_t *g) {
    group_list_t *l = strmap_get(&s->index, g->index_key);
    if (!l) {
        l = xcalloc(1, sizeof *l);
        strmap_put(&s->index, g->index_key, l);
    }
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->items = xrealloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->count++] = g;
}

static void index_remove(subs_t *s, group_t *g) {
    group_list_t *l = strmap_get(&s->index, g->index_key);
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) {
        if (l->items[i] == g) {
            l->items[i] = l->items[--l->count];
            break;
        }
    }
    if (l->count == 0) {
        strmap_del(&s->index, g->index_key);
        free(l->items);
        free(l);
    }
}

static char *index_key_make(const store_deps_t *deps) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, deps->bucket);
    if (deps->key) {
        buf_append_char(&b, '\x1f');
        json_write(&b, deps->key);
    }
    return buf_take(&b, NULL);
}

/* ---- groups ---- */

static void group_free(group_t *g) {
    free(g->gkey);
    free(g->query);
    json_decref(g->params);
    free(g->user_id);
    free(g->owner_field);
    free(g->owner_user);
    free(g->index_key);
    free(g->result);
    free(g);
}

static char *group_key_make(const char *query, const json_t *params, const char *user_id,
                            const store_owner_t *vis) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, query);
    buf_append_char(&b, '\x1f');
    if (params && json_object_size(params)) {
        char *p = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
        buf_append_str(&b, p);
        free(p);
    }
    buf_append_char(&b, '\x1f');
    if (user_id) buf_append_str(&b, user_id);
    if (vis && vis->field) buf_printf(&b, "\x1f%s=%s", vis->field, vis->user_id ? vis->user_id : "");
    return buf_take(&b, NULL);
}

static int group_eval(subs_t *s, group_t *g, buf_t *out, store_deps_t *deps, err_t *err) {
    g->def_version = store_definitions_version(s->store);
    store_session_t session = {g->user_id};
    store_owner_t vis = {g->owner_field, g->owner_user};
    return store_query_eval_as(s->store, g->query, g->params, &session, g->owner_field ? &vis : NULL, out, deps,
                               err);
}

/* Re-evaluates a group and tells its subscribers if the result moved. Returns -1
 * with err set when the query no longer runs (its bucket was dropped, say); the
 * subscribers then keep their last result. */
static int group_reeval(subs_t *s, group_t *g, err_t *err) {
    buf_t out;
    buf_init(&out, 0);
    s->counters.evaluations++;
    if (group_eval(s, g, &out, NULL, err) < 0) {
        buf_cleanup(&out);
        return -1;
    }
    if (out.len == g->result_len && memcmp(out.data, g->result, out.len) == 0) {
        s->counters.unchanged++;
        buf_cleanup(&out);
        return 0;
    }
    free(g->result);
    g->result = buf_take(&out, &g->result_len);
    for (sub_t *sub = g->subs; sub; sub = sub->next) {
        s->counters.pushes++;
        s->deliver(sub->owner, sub->id, g->result, g->result_len);
    }
    return 0;
}

static void group_refresh(subs_t *s, group_t *g) {
    err_t err = ERR_INIT;
    if (group_reeval(s, g, &err) < 0) log_warn("subs.eval_failed", "query=%s error=\"%s\"", g->query, err.msg);
    err_clear(&err);
}

/* Queues the groups a change can affect, once each. */
static void route_change(subs_t *s, const store_change_t *ch) {
    group_list_t *todo = &s->pending;
    group_list_t *lists[2] = {strmap_get(&s->index, ch->bucket), NULL};
    buf_t k;
    buf_init(&k, 0);
    buf_append_str(&k, ch->bucket);
    buf_append_char(&k, '\x1f');
    json_write(&k, ch->key);
    lists[1] = strmap_get(&s->index, k.data);
    buf_cleanup(&k);
    for (int i = 0; i < 2; i++) {
        group_list_t *l = lists[i];
        for (size_t j = 0; l && j < l->count; j++) {
            group_t *g = l->items[j];
            if (g->queued) continue;
            g->queued = true;
            if (todo->count == todo->cap) {
                todo->cap = todo->cap ? todo->cap * 2 : 8;
                todo->items = xrealloc(todo->items, todo->cap * sizeof *todo->items);
            }
            todo->items[todo->count++] = g;
        }
    }
}

/* A subscription re-reads its query after any change to a bucket it reads; without
 * subscriptions no change is needed. */
static bool wants_changes(void *udata, const char *bucket, change_kind_t kind) {
    (void)bucket;
    (void)kind;
    return ((subs_t *)udata)->groups.count > 0;
}

static void on_changes(void *udata, const store_changeset_t *cs) {
    subs_t *s = udata;
    if (s->groups.count == 0) return;
    for (size_t i = 0; i < cs->count; i++) route_change(s, &cs->changes[i]);
}

void subs_flush(subs_t *s) {
    /* A refresh only appends to output buffers, so no group goes away meanwhile. */
    for (size_t i = 0; i < s->pending.count; i++) {
        group_t *g = s->pending.items[i];
        g->queued = false;
        group_refresh(s, g);
    }
    s->pending.count = 0;
}

/* ---- public ---- */

subs_t *subs_new(store_t *st, subs_deliver_fn deliver) {
    subs_t *s = xcalloc(1, sizeof *s);
    s->store = st;
    s->deliver = deliver;
    strmap_init(&s->groups);
    strmap_init(&s->index);
    store_listen(st, on_changes, wants_changes, s);
    return s;
}

void subs_free(subs_t *s) {
    if (!s) return;
    store_unlisten(s->store, on_changes, s);
    size_t it = 0;
    void *v;
    while (strmap_next(&s->groups, &it, NULL, &v)) {
        group_t *g = v;
        while (g->subs) {
            sub_t *n = g->subs->next;
            free(g->subs->id);
            free(g->subs);
            g->subs = n;
        }
        group_free(g);
    }
    it = 0;
    while (strmap_next(&s->index, &it, NULL, &v)) {
        group_list_t *l = v;
        free(l->items);
        free(l);
    }
    strmap_cleanup(&s->groups);
    strmap_cleanup(&s->index);
    free(s->pending.items);
    free(s);
}

sub_t *subs_add(subs_t *s, void *owner, const char *sub_id, const char *query, const json_t *params,
                const store_session_t *session, const store_owner_t *vis, buf_t *initial, err_t *err) {
    if (!query) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"query\": expected non-empty string");
        return NULL;
    }
    if (!store_query_exists(s->store, query)) {
        err_set(err, ERR_QUERY_NOT_DEFINED, "Query \"%s\" is not defined", query);
        return NULL;
    }
    if (params && !json_is_null(params) && !json_is_object(params)) {
        err_set(err, ERR_VALIDATION, "Missing or invalid \"params\": expected object");
        return NULL;
    }
    const char *user = store_query_uses_session(s->store, query) && session ? session->user_id : NULL;
    if (vis && !vis->field) vis = NULL;
    char *gkey = group_key_make(query, params, user, vis);
    group_t *g = strmap_get(&s->groups, gkey);
    if (g) {
        free(gkey);
        /* A definition changed since the group's last evaluation: the newcomer must
         * get what the query answers now, or its error. */
        if (g->def_version != store_definitions_version(s->store) && group_reeval(s, g, err) < 0) return NULL;
        s->counters.shared_hits++;
    } else {
        g = xcalloc(1, sizeof *g);
        g->gkey = gkey;
        g->query = xstrdup(query);
        g->params = json_is_object(params) ? json_deep_copy(params) : NULL;
        g->user_id = user ? xstrdup(user) : NULL;
        g->owner_field = vis ? xstrdup(vis->field) : NULL;
        g->owner_user = vis ? xstrdup(vis->user_id ? vis->user_id : "") : NULL;
        buf_t out;
        buf_init(&out, 0);
        store_deps_t deps = {0};
        if (group_eval(s, g, &out, &deps, err) < 0) {
            buf_cleanup(&out);
            group_free(g);
            return NULL;
        }
        g->result = buf_take(&out, &g->result_len);
        g->index_key = index_key_make(&deps);
        store_deps_free(&deps);
        strmap_put(&s->groups, g->gkey, g);
        index_add(s, g);
        s->counters.groups++;
    }
    sub_t *sub = xcalloc(1, sizeof *sub);
    sub->group = g;
    sub->owner = owner;
    sub->id = xstrdup(sub_id);
    sub->next = g->subs;
    if (g->subs) g->subs->prev = sub;
    g->subs = sub;
    g->sub_count++;
    s->counters.subscriptions++;
    buf_append(initial, g->result, g->result_len);
    return sub;
}

void subs_remove(subs_t *s, sub_t *sub) {
    if (!sub) return;
    group_t *g = sub->group;
    if (sub->prev) sub->prev->next = sub->next;
    else g->subs = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    free(sub->id);
    free(sub);
    s->counters.subscriptions--;
    if (--g->sub_count == 0) {
        if (g->queued) {
            for (size_t i = 0; i < s->pending.count; i++)
                if (s->pending.items[i] == g) s->pending.items[i] = s->pending.items[--s->pending.count];
        }
        index_remove(s, g);
        strmap_del(&s->groups, g->gkey);
        group_free(g);
        s->counters.groups--;
    }
}
