// rr_robustness in shards (report.h): rows [a, b) of a batch, run with sample_offset = a (a and
// b on block boundaries), give the per-sample outcomes of rows [a, b) of the whole run, bit for
// bit; and rr_robustness_summarize of the concatenated outcomes gives the whole run's report,
// bit for bit, for PGD and AutoAttack (suite fast).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "naive.h"

static const char *mlp =
    "{\"format\": \"relureg/1\", \"input_shape\": [1, 8, 8], \"num_classes\": 10, "
    "\"input_range\": [0.0, 1.0], \"layers\": [{\"type\": \"flatten\"},"
    "{\"type\": \"linear\", \"name\": \"1\", \"in_features\": 64, \"out_features\": 32},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 32, \"out_features\": 10}]}";

#define B 200
#define E 3

static bool same(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

static bool same_sample(const rr_robustness_sample *a, const rr_robustness_sample *b)
{
    return a->correct == b->correct && a->zero_gradient == b->zero_gradient &&
           a->nonfinite_gradient == b->nonfinite_gradient && a->broken == b->broken &&
           same(&a->deepfool_rho, &b->deepfool_rho, sizeof(double)) &&
           same(&a->certified_radius, &b->certified_radius, sizeof(double)) &&
           a->broken_by == b->broken_by;
}

typedef struct report {
    double ra[E], mine[B];
    int bb[B];
    rr_robustness_sample s[B];
    rr_robustness_result r;
} report;

static void report_init(report *o)
{
    memset(o, 0, sizeof *o);
    o->r = (rr_robustness_result){.robust_accuracy = o->ra,
                                  .per_sample_min_epsilon = o->mine,
                                  .broken_by = o->bb,
                                  .samples = o->s};
}

static void expect_same_summary(const report *a, const report *b, size_t n)
{
    cr_expect(same(&a->r.clean_accuracy, &b->r.clean_accuracy, sizeof(double)), "clean accuracy");
    cr_expect(same(a->ra, b->ra, sizeof a->ra), "robust accuracy");
    cr_expect(same(&a->r.deepfool_rho, &b->r.deepfool_rho, sizeof(double)), "deepfool rho");
    cr_expect(same(&a->r.mean_certified_radius, &b->r.mean_certified_radius, sizeof(double)),
              "mean certified radius");
    cr_expect(same(a->mine, b->mine, n * sizeof(double)), "per-sample minimal epsilon");
    cr_expect(same(a->bb, b->bb, n * sizeof(int)), "broken_by");
    const rr_robustness_flags *f = &a->r.flags, *g = &b->r.flags;
    cr_expect(f->zero_gradient_fraction == g->zero_gradient_fraction &&
                  f->nonfinite_gradient_fraction == g->nonfinite_gradient_fraction &&
                  f->black_box_only == g->black_box_only && f->non_monotone == g->non_monotone &&
                  f->certified_broken == g->certified_broken && f->flagged == g->flagged,
              "flags");
}

static void check_shards(rr_attack_name name)
{
    rr_model *m = rr_test_model(mlp, 11, 1.5, RR_DTYPE_F32);
    cr_assert_not_null(m);
    const size_t D = rr_model_input_size(m), K = 10;
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = 64, .rows_per_sample = 64};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    float *x = malloc(B * D * sizeof(float)), *z = malloc(B * K * sizeof(float));
    int64_t y[B];
    uint64_t st = 7;
    for (size_t i = 0; i < B * D; i++)
        x[i] = (float)rr_test_uniform(&st);
    // Labels: the prediction (something to attack), every 7th sample another class.
    cr_assert_eq(rr_forward(m, ws, x, B, z, NULL, NULL, NULL), RR_OK);
    for (size_t i = 0; i < B; i++) {
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            best = z[i * K + k] > z[i * K + best] ? k : best;
        y[i] = (int64_t)(i % 7 == 0 ? (best + 1) % K : best);
    }
    const double eps[E] = {0.01, 0.05, 0.2};
    rr_robustness_params p = {.norm = RR_NORM_LINF, .epsilons = eps, .n_eps = E, .block = 16};
    rr_attack_params_init(&p.attack, name);
    p.attack.steps = 10;
    p.attack.seed = 5;
    p.attack.suite = RR_SUITE_FAST; // autoattack: apgd_ce -> apgd_t (the unit suite stays quick)
    report *full = malloc(sizeof *full), *part = malloc(sizeof *part),
           *merged = malloc(sizeof *merged);
    report_init(full);
    cr_assert_eq(rr_robustness(m, ws, x, y, B, &p, &full->r, NULL), RR_OK);
    cr_expect(full->ra[E - 1] < full->ra[0] && full->ra[0] < full->r.clean_accuracy,
              "the attack breaks some samples (robust %g %g, clean %g)", full->ra[0],
              full->ra[E - 1], full->r.clean_accuracy);
    // Shards on block boundaries (multiples of 16, and the end), in reverse order.
    static const size_t cut[] = {0, 48, 112, 160, B};
    report_init(merged);
    for (int k = 3; k >= 0; k--) {
        const size_t a = cut[k], b = cut[k + 1];
        report_init(part);
        rr_robustness_params q = p;
        q.sample_offset = a;
        cr_assert_eq(rr_robustness(m, ws, x + a * D, y + a, b - a, &q, &part->r, NULL), RR_OK);
        for (size_t i = a; i < b; i++)
            cr_expect(same_sample(&part->s[i - a], &full->s[i]),
                      "sample %zu: the shard [%zu, %zu) differs from the whole run", i, a, b);
        memcpy(merged->s + a, part->s, (b - a) * sizeof(rr_robustness_sample));
        merged->r.gradient_calls += part->r.gradient_calls;
        merged->r.forward_calls += part->r.forward_calls;
    }
    cr_assert_eq(rr_robustness_summarize(merged->s, B, eps, E, &merged->r, NULL), RR_OK);
    expect_same_summary(merged, full, B);
    cr_expect(merged->r.gradient_calls == full->r.gradient_calls &&
                  merged->r.forward_calls == full->r.forward_calls,
              "call counts are per block: the shards' sums are the whole run's");
    // The comparison can fail: one outcome changed changes the summary.
    size_t j = 0;
    while (!merged->s[j].correct || merged->s[j].broken == 7)
        j++;
    merged->s[j].broken = 7;
    cr_assert_eq(rr_robustness_summarize(merged->s, B, eps, E, &merged->r, NULL), RR_OK);
    cr_expect(!same(merged->mine, full->mine, B * sizeof(double)) &&
                  !same(merged->ra, full->ra, sizeof full->ra),
              "a changed outcome must change the summary");
    free(full);
    free(part);
    free(merged);
    free(x);
    free(z);
    rr_workspace_free(ws);
    rr_model_release(m);
}

Test(robustness_shards, pgd_shards_equal_the_whole_run)
{
    check_shards(RR_ATTACK_PGD);
}

Test(robustness_shards, autoattack_shards_equal_the_whole_run)
{
    check_shards(RR_ATTACK_AUTOATTACK);
}

Test(robustness_shards, summarize_checks_epsilons)
{
    rr_robustness_sample s = {.correct = true, .broken = 1, .broken_by = -1};
    double ra[1], mine[1], eps = -1.0;
    rr_robustness_result r = {.robust_accuracy = ra, .per_sample_min_epsilon = mine};
    rr_error err = {0};
    cr_expect_eq(rr_robustness_summarize(&s, 1, &eps, 1, &r, &err), RR_EINVAL);
    cr_expect_str_eq(err.field, "epsilons");
    eps = 0.1;
    cr_assert_eq(rr_robustness_summarize(&s, 1, &eps, 1, &r, NULL), RR_OK);
    cr_expect(ra[0] == 0.0 && mine[0] == 0.1 && r.clean_accuracy == 1.0);
}
