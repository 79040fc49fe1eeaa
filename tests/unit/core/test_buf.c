#include <criterion/criterion.h>
#include <string.h>

#include "core/buf.h"

Test(buf, appends_and_terminates) {
    buf_t b;
    buf_init(&b, 0);
    cr_assert_eq(buf_append_str(&b, "hello"), 0);
    cr_assert_eq(buf_printf(&b, " %d", 42), 0);
    cr_assert_str_eq(buf_cstr(&b), "hello 42");
    cr_assert_eq(b.len, 8);
    buf_cleanup(&b);
}

Test(buf, refuses_appends_past_the_cap_and_keeps_contents) {
    buf_t b;
    buf_init(&b, 8);
    cr_assert_eq(buf_append(&b, "12345678", 8), 0);
    cr_assert_eq(buf_append(&b, "9", 1), -1);
    cr_assert_eq(buf_printf(&b, "%s", "x"), -1);
    cr_assert_eq(b.len, 8);
    cr_assert_str_eq(buf_cstr(&b), "12345678");
    buf_cleanup(&b);
}

Test(buf, consume_moves_the_rest_forward) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "abcdef");
    buf_consume(&b, 2);
    cr_assert_str_eq(buf_cstr(&b), "cdef");
    buf_consume(&b, 100);
    cr_assert_eq(b.len, 0);
    buf_cleanup(&b);
}

Test(buf, cleanup_frees_storage_and_keeps_it_usable) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "abc");
    buf_cleanup(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.cap, 0);
    cr_assert_eq(buf_append_str(&b, "de"), 0);
    cr_assert_str_eq(buf_cstr(&b), "de");
    buf_cleanup(&b);
}

Test(buf, take_hands_over_a_terminated_string) {
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "xyz");
    size_t n;
    char *s = buf_take(&b, &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(s, "xyz");
    cr_assert_null(b.data);
    free(s);
}

Test(buf, reserve_and_commit) {
    buf_t b;
    buf_init(&b, 16);
    char *p = buf_reserve(&b, 4);
    cr_assert_not_null(p);
    memcpy(p, "abcd", 4);
    buf_commit(&b, 4);
    cr_assert_str_eq(buf_cstr(&b), "abcd");
    cr_assert_null(buf_reserve(&b, 13));
    buf_cleanup(&b);
}
