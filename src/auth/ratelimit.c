/* Per-key rate limiting over a sliding window (protocol §7): an exact sliding log.
 *
 * Each key keeps the timestamps of the requests it was allowed in the last windowMs,
 * in a ring buffer that grows on demand up to maxRequests entries. A request is
 * allowed when fewer than maxRequests timestamps are younger than the window; when
 * refused, the answer is exactly the time until the oldest of them leaves the window,
 * which is what clients read from "Retry after <n>ms". Refused requests are not
 * recorded, so a client that keeps knocking is not locked out forever.
 *
 * Memory is bounded three ways: maxRequests is capped (RL_MAX_REQUESTS), keys that
 * have been idle for a whole window are dropped (their log is empty by then, so
 * nothing is lost), and the number of keys is capped, evicting the least recently
 * used key when full. Keys sit on an LRU list ordered by last hit, so both the idle
 * sweep and the eviction take the list's head in O(1). */
#include "auth/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/strmap.h"

#define RL_MAX_REQUESTS 10000
#define RL_MAX_WINDOW_MS 86400000 /* a day */
/* Budget for timestamps when every key is full; sets the key cap for a given
 * maxRequests, within [RL_MIN_KEYS, RL_MAX_KEYS]. */
#define RL_BUDGET_BYTES (64u * 1024 * 1024)
#define RL_MIN_KEYS 1024
#define RL_MAX_KEYS 65536

typedef struct rl_entry {
    struct rl_entry *prev, *next; /* LRU list: head is the least recently hit */
    uint64_t last_ms;
    uint64_t *ts; /* ring of allowed request times, oldest at ts[head] */
    uint32_t head, count, cap;
    char key[];
} rl_entry_t;

struct ratelimit {
    uint32_t max;
    uint64_t window_ms;
    size_t max_keys;
    strmap_t keys; /* key -> rl_entry_t* */
    rl_entry_t *lru_head, *lru_tail;
};

static int rl_fail(char *errbuf, size_t errlen, const char *msg) {
    if (errbuf && errlen) snprintf(errbuf, errlen, "config: %s", msg);
    return -1;
}

static int rl_int_field(const json_t *cfg, const char *name, int64_t max, int64_t *out,
                        char *errbuf, size_t errlen) {
    const json_t *v = json_object_get(cfg, name);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
        char msg[200];
        snprintf(msg, sizeof msg, "$.rateLimit.%s: must be a positive integer (at most %lld)", name,
                 (long long)max);
        return rl_fail(errbuf, errlen, msg);
    }
    *out = json_integer_value(v);
    return 0;
}

ratelimit_t *ratelimit_new(const json_t *config, char *errbuf, size_t errlen) {
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!config || json_is_null(config)) return NULL;
    if (!json_is_object(config)) {
        rl_fail(errbuf, errlen, "$.rateLimit: must be an object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)config, key, v) {
        if (strcmp(key, "maxRequests") != 0 && strcmp(key, "windowMs") != 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "$.rateLimit.%.200s: unknown field", key);
            rl_fail(errbuf, errlen, msg);
            return NULL;
        }
    }
    int64_t max, window;
    if (rl_int_field(config, "maxRequests", RL_MAX_REQUESTS, &max, errbuf, errlen) < 0 ||
        rl_int_field(config, "windowMs", RL_MAX_WINDOW_MS, &window, errbuf, errlen) < 0)
        return NULL;
    ratelimit_t *rl = xcalloc(1, sizeof *rl);
    rl->max = (uint32_t)max;
    rl->window_ms = (uint64_t)window;
    size_t keys = RL_BUDGET_BYTES / ((size_t)max * sizeof(uint64_t));
    rl->max_keys = keys < RL_MIN_KEYS ? RL_MIN_KEYS : keys > RL_MAX_KEYS ? RL_MAX_KEYS : keys;
    strmap_init(&rl->keys);
    return rl;
}

static void lru_unlink(ratelimit_t *rl, rl_entry_t *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        rl->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        rl->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_append(ratelimit_t *rl, rl_entry_t *e) {
    e->prev = rl->lru_tail;
    e->next = NULL;
    if (rl->lru_tail)
        rl->lru_tail->next = e;
    else
        rl->lru_head = e;
    rl->lru_tail = e;
}

static void entry_drop(ratelimit_t *rl, rl_entry_t *e) {
    lru_unlink(rl, e);
    strmap_del(&rl->keys, e->key);
    free(e->ts);
    free(e);
}

void ratelimit_free(ratelimit_t *rl) {
    if (!rl) return;
    while (rl->lru_head) entry_drop(rl, rl->lru_head);
    strmap_cleanup(&rl->keys);
    free(rl);
}

uint32_t ratelimit_max(const ratelimit_t *rl) {
    return rl ? rl->max : 0;
}

size_t ratelimit_key_count(const ratelimit_t *rl) {
    return rl ? rl->keys.count : 0;
}

static void entry_grow(rl_entry_t *e, uint32_t max) {
    uint32_t ncap = e->cap ? e->cap * 2 : 4;
    if (ncap > max) ncap = max;
    uint64_t *ts = xmalloc((size_t)ncap * sizeof *ts);
    for (uint32_t i = 0; i < e->count; i++) ts[i] = e->ts[(e->head + i) % e->cap];
    free(e->ts);
    e->ts = ts;
    e->head = 0;
    e->cap = ncap;
}

uint64_t ratelimit_hit(ratelimit_t *rl, const char *key, uint64_t now_ms) {
    if (!rl || !key) return 0;
    /* Forget keys idle for a whole window: the LRU head is the longest idle. */
    while (rl->lru_head && now_ms >= rl->lru_head->last_ms &&
           now_ms - rl->lru_head->last_ms >= rl->window_ms)
        entry_drop(rl, rl->lru_head);

    rl_entry_t *e = strmap_get(&rl->keys, key);
    if (e) {
        lru_unlink(rl, e);
    } else {
        if (rl->keys.count >= rl->max_keys) entry_drop(rl, rl->lru_head);
        size_t klen = strlen(key);
        e = xcalloc(1, sizeof *e + klen + 1);
        memcpy(e->key, key, klen + 1);
        strmap_put(&rl->keys, e->key, e);
    }
    lru_append(rl, e);

    /* A clock that stepped back is treated as standing still, so the log stays sorted. */
    uint64_t newest = e->count ? e->ts[(e->head + e->count - 1) % e->cap] : 0;
    uint64_t now = now_ms < newest ? newest : now_ms;
    if (now > e->last_ms) e->last_ms = now;
    while (e->count && now - e->ts[e->head] >= rl->window_ms) {
        e->head = (e->head + 1) % e->cap;
        e->count--;
    }
    if (e->count < rl->max) {
        if (e->count == e->cap) entry_grow(e, rl->max);
        e->ts[(e->head + e->count) % e->cap] = now;
        e->count++;
        return 0;
    }
    uint64_t retry = e->ts[e->head] + rl->window_ms - now;
    return retry ? retry : 1;
}
