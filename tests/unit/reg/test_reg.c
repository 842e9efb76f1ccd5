// Regularizer properties that the torch reference does not cover: the projection estimator
// is unbiased (math.md: the mean over N >= 1e5 projections lies within 4 s / sqrt(N) of the
// exact ||J||_F^2) and exact with onehot directions; parameter gradients against central
// differences of the values; option checks; and bit-identical results at 1 and 2 threads.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "naive.h"
#include "rr_test.h"

static const char *mlp =
    "{\"format\": \"relureg/1\", \"input_shape\": [10], \"num_classes\": 6, \"layers\": ["
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 10, \"out_features\": 12},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"batchnorm\", \"name\": \"2\", \"num_features\": 12},"
    "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 12, \"out_features\": 6}]}";

static const char *cnn =
    "{\"format\": \"relureg/1\", \"input_shape\": [2, 6, 6], \"num_classes\": 5, \"layers\": ["
    "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 4, "
    "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
    "{\"type\": \"maxpool2d\", \"kernel_size\": 2},"
    "{\"type\": \"residual\", \"layers\": [{\"type\": \"conv2d\", \"name\": \"3.body.0\", "
    "\"in_channels\": 4, \"out_channels\": 4, \"kernel_size\": 3, \"padding\": 1}, "
    "{\"type\": \"leaky_relu\"}]},"
    "{\"type\": \"flatten\"},"
    "{\"type\": \"linear\", \"name\": \"5\", \"in_features\": 36, \"out_features\": 5}]}";

static float *inputs(const rr_model *m, size_t B, uint64_t seed)
{
    const size_t D = rr_model_input_size(m);
    double *theta = rr_test_params(m), *xd = malloc(D * sizeof(double));
    float *x = malloc(B * D * sizeof(float));
    uint64_t st = seed;
    for (size_t b = 0; b < B; b++) {
        cr_assert(rr_test_draw_sample(m, theta, xd, -1, 1, 1e-3, &st));
        for (size_t i = 0; i < D; i++)
            x[b * D + i] = (float)xd[i];
    }
    free(xd);
    free(theta);
    return x;
}

Test(regularizers, projection_estimator_is_unbiased_and_onehot_exact)
{
    rr_model *m = rr_test_model(mlp, 2, 1.5, RR_DTYPE_F32);
    const size_t K = 6, N = 100000, B = 1;
    float *x = inputs(m, B, 3);
    int64_t y[1] = {2};
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    rr_reg_spec specs[2] = {
        {.name = RR_REG_JACOBIAN},
        {.name = RR_REG_JACOBIAN, .estimator = RR_REG_PROJECTION, .directions = RR_REG_ONEHOT}};
    float ps[2][1];
    rr_reg_result res[2] = {{.per_sample = ps[0]}, {.per_sample = ps[1]}};
    rr_reg_params p = {.regs = specs, .nregs = 2};
    cr_assert_eq(rr_reg_compute(m, ws, x, y, 1, &p, res, NULL, NULL), RR_OK);
    const double exact = res[0].value;
    cr_expect(fabs(res[1].value - exact) <= 1e-5 * exact, "onehot %g vs exact %g", res[1].value,
              exact);
    // N single-projection estimates: the same sample repeated N times, each with its own
    // stream (the stream is the sample index), as N independent draws.
    float *xs = malloc(N * 10 * sizeof(float));
    int64_t *ys = malloc(N * sizeof(int64_t));
    float *est = malloc(N * sizeof(float));
    for (size_t i = 0; i < N; i++) {
        memcpy(xs + i * 10, x, 10 * sizeof(float));
        ys[i] = 2;
    }
    rr_workspace *wsN = NULL;
    rr_workspace_params wpN = {.max_batch = 4096, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wpN, &wsN, NULL), RR_OK);
    rr_reg_spec proj = {.name = RR_REG_JACOBIAN, .estimator = RR_REG_PROJECTION, .seed = 11};
    rr_reg_result rp = {.per_sample = est};
    rr_reg_params pN = {.regs = &proj, .nregs = 1};
    cr_assert_eq(rr_reg_compute(m, wsN, xs, ys, N, &pN, &rp, NULL, NULL), RR_OK);
    double mean = 0, var = 0;
    for (size_t i = 0; i < N; i++)
        mean += est[i] / (double)N;
    for (size_t i = 0; i < N; i++)
        var += (est[i] - mean) * (est[i] - mean) / (double)(N - 1);
    const double s = sqrt(var);
    cr_expect(fabs(mean - exact) <= 4 * s / sqrt((double)N),
              "projection mean %g, exact %g, 4 s/sqrt(N) = %g", mean, exact,
              4 * s / sqrt((double)N));
    cr_expect(s > 0, "the projections must vary");
    free(est);
    free(ys);
    free(xs);
    rr_workspace_free(wsN);
    rr_workspace_free(ws);
    free(x);
    rr_model_release(m);
}

// Central differences of each regularizer's value over one entry per parameter tensor (its
// largest analytic gradient), the model rebuilt with theta +- h. Values are float32
// computations summed in double, so the difference quotient carries ~1e-7 |R| / h of
// rounding: h = 1e-3 relative and a 2e-2 relative tolerance on the largest entries.
static void fd_check(const char *arch, rr_reg_spec spec, uint64_t seed)
{
    rr_model *m = rr_test_model(arch, seed, 1.5, RR_DTYPE_F32);
    const size_t B = 3, K = (size_t)rr_model_num_classes(m), NP = rr_model_param_array_size(m);
    float *x = inputs(m, B, seed + 1);
    int64_t y[3] = {0, 1, 2};
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    float *gp = malloc(NP * sizeof(float));
    rr_reg_result res = {.grad_parameters = gp};
    rr_reg_params p = {.regs = &spec, .nregs = 1};
    cr_assert_eq(rr_reg_compute(m, ws, x, y, B, &p, &res, NULL, NULL), RR_OK);
    double *theta = rr_test_params(m), gmax = 0;
    for (size_t j = 0; j < NP; j++)
        gmax = fmax(gmax, fabs(gp[j]));
    int checked = 0;
    for (size_t pi = 0; pi < rr_model_num_param_tensors(m); pi++) {
        const rr_param *pr = rr_model_param(m, pi);
        size_t best = 0;
        for (size_t j = 1; j < pr->numel; j++)
            best = fabs(gp[pr->offset + j]) > fabs(gp[pr->offset + best]) ? j : best;
        const double g = gp[pr->offset + best];
        if (fabs(g) < 1e-2 * gmax)
            continue; // too small against the rounding of the difference quotient
        double *t = &theta[pr->offset + best], saved = *t, h = 1e-3 * fmax(fabs(saved), 0.1);
        double v[2];
        for (int s = 0; s < 2; s++) {
            *t = saved + (s ? -h : h);
            rr_model *mp = rr_test_model_like(m, theta);
            rr_workspace *wsp = NULL;
            cr_assert_eq(rr_workspace_new(mp, &wp, &wsp, NULL), RR_OK);
            rr_reg_result rv = {0};
            cr_assert_eq(rr_reg_compute(mp, wsp, x, y, B, &p, &rv, NULL, NULL), RR_OK);
            v[s] = rv.value;
            rr_workspace_free(wsp);
            rr_model_release(mp);
        }
        *t = saved;
        const double fd = (v[0] - v[1]) / (2 * h);
        cr_expect(fabs(fd - g) <= 2e-2 * fabs(g), "%s[%zu]: analytic %g, central difference %g",
                  pr->name, best, g, fd);
        checked++;
    }
    cr_expect(checked >= 2, "only %d parameter tensors had measurable gradients", checked);
    free(theta);
    free(gp);
    rr_workspace_free(ws);
    free(x);
    rr_model_release(m);
}

Test(regularizers, parameter_gradients_match_central_differences)
{
    fd_check(mlp, (rr_reg_spec){.name = RR_REG_INPUT_GRADIENT}, 10);
    fd_check(cnn, (rr_reg_spec){.name = RR_REG_JACOBIAN}, 11);
    fd_check(cnn, (rr_reg_spec){.name = RR_REG_CROSS_LIPSCHITZ}, 12);
    fd_check(mlp, (rr_reg_spec){.name = RR_REG_CURVATURE, .method = RR_REG_HESSIAN}, 13);
    fd_check(cnn, (rr_reg_spec){.name = RR_REG_CURVATURE, .method = RR_REG_TRACE}, 14);
    // Not the finite-difference curvature: its displaced point x + h u is not drawn away from
    // kinks here, so perturbing theta can move it across one; gen_reg.py covers it with
    // margins at x + h u.
}

Test(regularizers, options_out_of_range_are_refused)
{
    rr_error err = {0};
    rr_reg_spec bad_h = {.name = RR_REG_CURVATURE, .h = -1};
    cr_expect_eq(rr_reg_spec_check(&bad_h, 10, 0, &err), RR_EINVAL);
    cr_expect_str_eq(err.field, "h");
    rr_reg_spec onehot = {.name = RR_REG_JACOBIAN,
                          .estimator = RR_REG_PROJECTION,
                          .directions = RR_REG_ONEHOT,
                          .projections = 3};
    cr_expect_eq(rr_reg_spec_check(&onehot, 10, 0, NULL), RR_EINVAL);
    rr_reg_spec many = {
        .name = RR_REG_JACOBIAN, .estimator = RR_REG_PROJECTION, .projections = 20000};
    cr_expect_eq(rr_reg_spec_check(&many, 10, 0, NULL), RR_EINVAL);
    cr_expect_eq(rr_reg_spec_check(&many, 10, 30000, NULL), RR_OK);
}

Test(regularizers, one_and_two_threads_agree_bit_for_bit)
{
    rr_model *m = rr_test_model(cnn, 21, 1.5, RR_DTYPE_F32);
    const size_t B = 24, D = rr_model_input_size(m), K = 5, NP = rr_model_param_array_size(m);
    float *x = inputs(m, B, 22);
    int64_t y[24];
    for (size_t b = 0; b < B; b++)
        y[b] = (int64_t)(b % K);
    rr_reg_spec specs[] = {
        {.name = RR_REG_INPUT_GRADIENT},
        {.name = RR_REG_JACOBIAN},
        {.name = RR_REG_JACOBIAN, .estimator = RR_REG_PROJECTION, .projections = 2, .seed = 3},
        {.name = RR_REG_CROSS_LIPSCHITZ},
        {.name = RR_REG_CURVATURE},
        {.name = RR_REG_CURVATURE, .method = RR_REG_HESSIAN},
        {.name = RR_REG_CURVATURE, .method = RR_REG_TRACE},
    };
    const size_t ns = sizeof specs / sizeof specs[0];
    float *out[2][7][3];
    double val[2][7];
    for (int t = 0; t < 2; t++) {
        rr_set_num_threads(t + 1);
        rr_workspace *ws = NULL;
        rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
        cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
        rr_reg_result res[7];
        for (size_t i = 0; i < ns; i++) {
            out[t][i][0] = malloc(B * sizeof(float));
            out[t][i][1] = malloc(B * D * sizeof(float));
            out[t][i][2] = malloc(NP * sizeof(float));
            res[i] = (rr_reg_result){.per_sample = out[t][i][0],
                                     .grad_inputs = out[t][i][1],
                                     .grad_parameters = out[t][i][2]};
        }
        rr_reg_params p = {.regs = specs, .nregs = ns};
        cr_assert_eq(rr_reg_compute(m, ws, x, y, B, &p, res, NULL, NULL), RR_OK);
        for (size_t i = 0; i < ns; i++)
            val[t][i] = res[i].value;
        rr_workspace_free(ws);
    }
    for (size_t i = 0; i < ns; i++) {
        cr_expect(val[0][i] == val[1][i], "spec %zu: value differs", i);
        cr_expect(memcmp(out[0][i][0], out[1][i][0], B * sizeof(float)) == 0, "spec %zu per_sample",
                  i);
        cr_expect(memcmp(out[0][i][1], out[1][i][1], B * D * sizeof(float)) == 0,
                  "spec %zu grad_inputs", i);
        cr_expect(memcmp(out[0][i][2], out[1][i][2], NP * sizeof(float)) == 0,
                  "spec %zu grad_parameters", i);
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < 3; k++)
                free(out[t][i][k]);
    }
    free(x);
    rr_model_release(m);
}
