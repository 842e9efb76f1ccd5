// Results do not depend on the thread count (api.md, "Determinism"): the same inputs give
// bit-identical logits, Jacobians, JVPs and gradients at 1 and at 2 threads, including the
// parameter gradients whose reductions span the batch.
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

static void run(rr_model *m, const float *x, const float *v, const float *g, size_t B, int threads,
                outputs *o)
{
    const size_t D = rr_model_input_size(m), K = 10, T = 3;
    rr_set_num_threads(threads);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    o->z = malloc(B * K * sizeof(float));
    o->J = malloc(B * K * D * sizeof(float));
    o->jv = malloc(B * T * K * sizeof(float));
    o->gx = malloc(B * D * sizeof(float));
    o->gp = malloc(rr_model_param_array_size(m) * sizeof(float));
    cr_assert_eq(rr_jacobian(m, ws, x, B, RR_JACOBIAN_LOGITS, o->J, o->z, NULL), RR_OK);
    cr_assert_eq(rr_jvp(m, ws, x, B, v, T, o->jv, NULL, NULL), RR_OK);
    cr_assert_eq(rr_vjp(m, ws, x, B, g, o->gx, o->gp, NULL), RR_OK);
    rr_workspace_free(ws);
}

Test(determinism, one_and_two_threads_agree_bit_for_bit)
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
    outputs a, b;
    run(m, x, v, g, B, 1, &a);
    run(m, x, v, g, B, 2, &b);
    cr_expect(memcmp(a.z, b.z, B * K * sizeof(float)) == 0, "logits differ");
    cr_expect(memcmp(a.J, b.J, B * K * D * sizeof(float)) == 0, "jacobian differs");
    cr_expect(memcmp(a.jv, b.jv, B * T * K * sizeof(float)) == 0, "jvp differs");
    cr_expect(memcmp(a.gx, b.gx, B * D * sizeof(float)) == 0, "input gradient differs");
    cr_expect(memcmp(a.gp, b.gp, rr_model_param_array_size(m) * sizeof(float)) == 0,
              "parameter gradient differs");
    outputs_free(&a);
    outputs_free(&b);
    free(x);
    free(v);
    free(g);
    rr_model_release(m);
}
