// Results do not depend on the thread count (api.md, "Determinism"): the same inputs give
// bit-identical logits, Jacobians, JVPs and gradients at 1, 3 and 16 threads, including the
// parameter gradients whose reductions span the batch, and on a workspace planned at one
// thread and then used at 16 (its per-thread conv buffers grow with the call).
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "naive.h"

static const char *cnn =
    "{\"format\": \"relureg/1\", \"input_shape\": [2, 12, 12], \"num_classes\": 10, \"layers\": ["
    "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 16, "
    "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
    "{\"type\": \"maxpool2d\", \"kernel_size\": 2},"
    "{\"type\": \"batchnorm\", \"name\": \"3\", \"num_features\": 16},"
    "{\"type\": \"residual\", \"layers\": [{\"type\": \"conv2d\", \"name\": \"4.body.0\", "
    "\"in_channels\": 16, \"out_channels\": 16, \"kernel_size\": 3, \"padding\": 1},"
    "{\"type\": \"leaky_relu\"}]},"
    "{\"type\": \"avgpool2d\", \"kernel_size\": 2},"
    "{\"type\": \"flatten\"},"
    "{\"type\": \"linear\", \"name\": \"7\", \"in_features\": 144, \"out_features\": 300},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"9\", \"in_features\": 300, \"out_features\": 10}]}";

typedef struct outputs {
    float *z, *J, *jv, *gx, *gp;
} outputs;

static void outputs_free(outputs *o)
{
    free(o->z);
    free(o->J);
    free(o->jv);
    free(o->gx);
    free(o->gp);
}

static void run(rr_model *m, const float *x, const float *v, const float *g, size_t B,
                int plan_threads, int threads, outputs *o)
{
    const size_t D = rr_model_input_size(m), K = 10, T = 3;
    rr_set_num_threads(plan_threads);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    rr_set_num_threads(threads);
    o->z = malloc(B * K * sizeof(float));
    o->J = malloc(B * K * D * sizeof(float));
    o->jv = malloc(B * T * K * sizeof(float));
    o->gx = malloc(B * D * sizeof(float));
    o->gp = malloc(rr_model_param_array_size(m) * sizeof(float));
    cr_assert_eq(rr_jacobian(m, ws, x, B, RR_JACOBIAN_LOGITS, o->J, o->z, NULL), RR_OK);
    cr_assert_eq(rr_jvp(m, ws, x, B, v, T, o->jv, NULL, NULL), RR_OK);
    cr_assert_eq(rr_vjp(m, ws, x, B, g, o->gx, o->gp, NULL), RR_OK);
    rr_workspace_free(ws);
    rr_set_num_threads(1);
}

Test(determinism, one_three_and_sixteen_threads_agree_bit_for_bit)
{
    rr_model *m = rr_test_model(cnn, 5, 1.5, RR_DTYPE_F32);
    cr_assert_not_null(m);
    const size_t B = 48, D = rr_model_input_size(m), K = 10, T = 3;
    uint64_t st = 99;
    float *x = malloc(B * D * sizeof(float)), *v = malloc(B * T * D * sizeof(float));
    float *g = malloc(B * K * sizeof(float));
    for (size_t i = 0; i < B * D; i++)
        x[i] = (float)rr_test_uniform(&st);
    for (size_t i = 0; i < B * T * D; i++)
        v[i] = (float)(rr_test_uniform(&st) - 0.5);
    for (size_t i = 0; i < B * K; i++)
        g[i] = (float)(rr_test_uniform(&st) - 0.5);
    outputs a;
    run(m, x, v, g, B, 1, 1, &a);
    static const int threads[][2] = {{3, 3}, {16, 16}, {1, 16}};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        outputs b;
        const int pt = threads[t][0], ct = threads[t][1];
        run(m, x, v, g, B, pt, ct, &b);
        cr_expect(memcmp(a.z, b.z, B * K * sizeof(float)) == 0, "logits differ (%d/%d)", pt, ct);
        cr_expect(memcmp(a.J, b.J, B * K * D * sizeof(float)) == 0, "jacobian differs (%d/%d)", pt,
                  ct);
        cr_expect(memcmp(a.jv, b.jv, B * T * K * sizeof(float)) == 0, "jvp differs (%d/%d)", pt,
                  ct);
        cr_expect(memcmp(a.gx, b.gx, B * D * sizeof(float)) == 0, "input gradient differs (%d/%d)",
                  pt, ct);
        cr_expect(memcmp(a.gp, b.gp, rr_model_param_array_size(m) * sizeof(float)) == 0,
                  "parameter gradient differs (%d/%d)", pt, ct);
        outputs_free(&b);
    }
    outputs_free(&a);
    free(x);
    free(v);
    free(g);
    rr_model_release(m);
}

// Every regularizer, with its per-sample values and gradients to the inputs and parameters:
// bit-identical at 1 and 16 threads (their per-sample loops run under OpenMP, their sums in
// sample order).
static void reg_run(rr_model *m, const float *x, const int64_t *y, size_t B,
                    const rr_reg_spec *spec, int threads, float *ps, float *gx, float *gp,
                    double *value)
{
    rr_set_num_threads(threads);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = 10};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    rr_reg_result res = {.per_sample = ps, .grad_inputs = gx, .grad_parameters = gp};
    rr_reg_params p = {.regs = spec, .nregs = 1};
    rr_error err = {0};
    cr_assert_eq(rr_reg_compute(m, ws, x, y, B, &p, &res, NULL, &err), RR_OK, "%s", err.msg);
    *value = res.value;
    rr_workspace_free(ws);
    rr_set_num_threads(1);
}

Test(determinism, regularizers_agree_bit_for_bit_at_1_and_16_threads)
{
    rr_model *m = rr_test_model(cnn, 5, 1.5, RR_DTYPE_F32);
    cr_assert_not_null(m);
    const size_t B = 256, D = rr_model_input_size(m), NP = rr_model_param_array_size(m);
    uint64_t st = 5;
    float *x = malloc(B * D * sizeof(float));
    int64_t y[256];
    for (size_t i = 0; i < B * D; i++)
        x[i] = (float)rr_test_uniform(&st);
    for (size_t b = 0; b < B; b++)
        y[b] = (int64_t)(b % 10);
    const rr_reg_spec specs[] = {
        {.name = RR_REG_INPUT_GRADIENT},
        {.name = RR_REG_JACOBIAN},
        {.name = RR_REG_JACOBIAN, .estimator = RR_REG_PROJECTION, .projections = 3, .seed = 4},
        {.name = RR_REG_CROSS_LIPSCHITZ},
        {.name = RR_REG_CURVATURE},
        {.name = RR_REG_CURVATURE, .method = RR_REG_HESSIAN},
        {.name = RR_REG_CURVATURE, .method = RR_REG_TRACE},
    };
    float *ps[2], *gx[2], *gp[2];
    for (int t = 0; t < 2; t++) {
        ps[t] = malloc(B * sizeof(float));
        gx[t] = malloc(B * D * sizeof(float));
        gp[t] = malloc(NP * sizeof(float));
    }
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
        double v[2];
        reg_run(m, x, y, B, &specs[s], 1, ps[0], gx[0], gp[0], &v[0]);
        reg_run(m, x, y, B, &specs[s], 16, ps[1], gx[1], gp[1], &v[1]);
        cr_expect(v[0] == v[1], "reg %zu: value %.17g vs %.17g", s, v[0], v[1]);
        cr_expect(memcmp(ps[0], ps[1], B * sizeof(float)) == 0, "reg %zu: per-sample values", s);
        cr_expect(memcmp(gx[0], gx[1], B * D * sizeof(float)) == 0, "reg %zu: grad_inputs", s);
        cr_expect(memcmp(gp[0], gp[1], NP * sizeof(float)) == 0, "reg %zu: grad_parameters", s);
    }
    for (int t = 0; t < 2; t++) {
        free(ps[t]);
        free(gx[t]);
        free(gp[t]);
    }
    free(x);
    rr_model_release(m);
}
