#include <criterion/criterion.h>

#include "core/err.h"

Test(err, every_code_has_a_name_and_status) {
    for (int c = 1; c < ERR__COUNT; c++) {
        const err_info_t *i = err_info((err_code_t)c);
        cr_assert_not_null(i->name);
        cr_assert(i->http_status >= 400 && i->http_status < 600, "code %d", c);
        cr_assert_not_null(i->gql);
    }
    cr_assert_str_eq(err_code_name(ERR_VALIDATION), "VALIDATION_ERROR");
    cr_assert_str_eq(err_code_name(ERR_RULES_NOT_AVAILABLE), "RULES_NOT_AVAILABLE");
    cr_assert_str_eq(err_code_name((err_code_t)999), "INTERNAL_ERROR");
}

Test(err, set_formats_and_clear_frees_details) {
    err_t e = ERR_INIT;
    err_set(&e, ERR_NOT_FOUND, "no record %s", "x");
    err_details_take(&e, json_pack("{s:i}", "index", 2));
    cr_assert_eq(e.code, ERR_NOT_FOUND);
    cr_assert_str_eq(e.msg, "no record x");
    cr_assert_not_null(e.details);
    err_set(&e, ERR_CONFLICT, "again");
    cr_assert_null(e.details);
    err_clear(&e);
    cr_assert_eq(e.code, ERR_NONE);
}
