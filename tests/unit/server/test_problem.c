// The librelureg status -> problem map (server/problem.c): every code lands on its problem type
// and HTTP status, the choice depends on the code alone (never on the message's words), and
// the rendered body keeps the field and the library's message.
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "../../../server/problem.h"

typedef struct answer {
    int status;
    char type[64], detail[256], field[64];
} answer;

static answer render(rr_status st, const char *field, const char *msg)
{
    rr_error err = {0};
    rr_error_set(&err, st, field, "%s", msg);
    rrd_out out = {0};
    rrd_problem_from(&out, st, &err);
    answer a = {.status = out.status};
    json_t *doc = json_loadb(out.body, out.len, 0, NULL);
    cr_assert(doc != NULL, "not JSON: %.*s", (int)out.len, out.body);
    cr_expect_eq(json_integer_value(json_object_get(doc, "status")), out.status);
    snprintf(a.type, sizeof a.type, "%s", json_string_value(json_object_get(doc, "type")));
    snprintf(a.detail, sizeof a.detail, "%s", json_string_value(json_object_get(doc, "detail")));
    const char *f = json_string_value(json_object_get(doc, "field"));
    snprintf(a.field, sizeof a.field, "%s", f ? f : "");
    json_decref(doc);
    rrd_out_drop_body(&out);
    return a;
}

Test(problem, every_status_has_its_problem)
{
    static const struct {
        rr_status st;
        int http;
        const char *type;
    } want[] = {
        {RR_ENOMEM, 503, "/problems/unavailable"},
        {RR_EINVAL, 422, "/problems/invalid-request"},
        {RR_ESHAPE, 422, "/problems/shape-mismatch"},
        {RR_EFORMAT, 400, "/problems/malformed-body"},
        {RR_ENONFINITE, 422, "/problems/non-finite"},
        {RR_ENOTFOUND, 404, "/problems/not-found"},
        {RR_EUNSUPPORTED, 422, "/problems/invalid-request"},
        {RR_EIO, 500, "/problems/internal"},
        {RR_ECANCELLED, 503, "/problems/timeout"},
        {RR_EINTERNAL, 500, "/problems/internal"},
        {RR_EDTYPE, 422, "/problems/unsupported-dtype"},
    };
    // Every code but RR_OK is listed once: a new code must say where it goes.
    cr_assert_eq(sizeof want / sizeof want[0], RR_STATUS_COUNT - 1);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const answer a = render(want[i].st, "x", "something");
        cr_expect_eq(a.status, want[i].http, "%s", rr_status_str(want[i].st));
        cr_expect_str_eq(a.type, want[i].type, "%s", rr_status_str(want[i].st));
    }
}

Test(problem, the_code_decides_not_the_message)
{
    // An unsupported option whose message happens to say "dtype" stays invalid-request, and a
    // dtype error whose message does not say it is still unsupported-dtype.
    answer a = render(RR_EUNSUPPORTED, "dtype", "option dtype is not supported here");
    cr_expect_str_eq(a.type, "/problems/invalid-request");
    a = render(RR_EDTYPE, "labels", "labels must hold integers");
    cr_expect_str_eq(a.type, "/problems/unsupported-dtype");
    cr_expect_str_eq(a.field, "labels");
    cr_expect_str_eq(a.detail, "labels must hold integers");
}

Test(problem, detail_and_field)
{
    answer a = render(RR_ENOMEM, "inputs", "for the Jacobian");
    cr_expect_str_eq(a.detail, "out of memory: for the Jacobian");
    cr_expect_str_eq(a.field, "inputs");
    a = render(RR_ECANCELLED, "inputs", "stopped at step 3");
    cr_expect_str_eq(a.detail, "the computation was cancelled");
    cr_expect_str_eq(a.field, "");
    a = render(RR_EINTERNAL, "", "broken");
    cr_expect_str_eq(a.detail, "internal error: broken");
    a = render((rr_status)RR_STATUS_COUNT, "", "from the future");
    cr_expect_eq(a.status, 500);
    cr_expect_str_eq(a.detail, "internal error: from the future");
}
