#include <criterion/criterion.h>
#include <stdio.h>

#include "core/strmap.h"

Test(strmap, puts_gets_and_replaces) {
    strmap_t m;
    strmap_init(&m);
    int a = 1, b = 2;
    cr_assert_null(strmap_put(&m, "store.get", &a));
    cr_assert_eq(strmap_get(&m, "store.get"), &a);
    cr_assert_eq(strmap_put(&m, "store.get", &b), &a);
    cr_assert_eq(strmap_get(&m, "store.get"), &b);
    cr_assert_null(strmap_get(&m, "store.ge"));
    cr_assert_eq(strmap_getn(&m, "store.getX", 9), &b);
    cr_assert_eq(m.count, 1);
    strmap_cleanup(&m);
}

Test(strmap, survives_growth_and_deletes) {
    strmap_t m;
    strmap_init(&m);
    static int vals[1000];
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        strmap_put(&m, key, &vals[i]);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(strmap_del(&m, key), &vals[i]);
    }
    cr_assert_eq(m.count, 500);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (i % 2) cr_assert_eq(strmap_get(&m, key), &vals[i]);
        else cr_assert_null(strmap_get(&m, key));
    }
    size_t it = 0, seen = 0;
    const char *k;
    void *v;
    while (strmap_next(&m, &it, &k, &v)) seen++;
    cr_assert_eq(seen, 500);
    /* Re-inserting after deletes reuses space instead of growing without bound. */
    for (int round = 0; round < 50; round++) {
        strmap_put(&m, "churn", &vals[0]);
        strmap_del(&m, "churn");
    }
    cr_assert_lt(m.cap, 4096);
    strmap_cleanup(&m);
}
