// Workspaces: budgets, chunking, misuse, and the identity the loss gradient rests on
// (math.md connection 1: grad_x l = J^T (p - e_y), computed through two different paths).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "naive.h"
#include "rr_test.h"

static const char *mlp =
    "{\"format\": \"relureg/1\", \"input_shape\": [6], \"num_classes\": 4, \"layers\": ["
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 6, \"out_features\": 8},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 8, \"out_features\": 4}]}";

Test(workspace, budget_below_one_sample_is_refused)
{
    rr_model *m = rr_test_model(mlp, 1, 1.0, RR_DTYPE_F32);
    rr_workspace *ws = NULL;
    rr_error err = {0};
    rr_workspace_params p = {.max_batch = 10, .rows_per_sample = 4, .budget_bytes = 16};
    cr_expect_eq(rr_workspace_new(m, &p, &ws, &err), RR_ENOMEM);
    cr_expect_null(ws);
    rr_workspace_params zero = {.max_batch = 0};
    cr_expect_eq(rr_workspace_new(m, &zero, &ws, NULL), RR_EINVAL);
    rr_model_release(m);
}

Test(workspace, sample_bytes_is_what_the_budget_is_checked_against)
{
    rr_model *m = rr_test_model(mlp, 1, 1.0, RR_DTYPE_F32);
    const size_t one = rr_workspace_sample_bytes(m, 1), four = rr_workspace_sample_bytes(m, 4);
    cr_expect(one > 0 && four > one, "one %zu, four %zu", one, four);
    cr_expect_eq(rr_workspace_sample_bytes(m, 0), one);
    rr_workspace *ws = NULL;
    // A budget of exactly one sample plans a chunk of one; a byte less is refused.
    rr_workspace_params fits = {.max_batch = 10, .rows_per_sample = 4, .budget_bytes = four};
    cr_assert_eq(rr_workspace_new(m, &fits, &ws, NULL), RR_OK);
    cr_expect_eq(rr_workspace_chunk(ws), 1);
    rr_workspace_free(ws);
    rr_workspace_params over = {.max_batch = 10, .rows_per_sample = 4, .budget_bytes = four - 1};
    cr_expect_eq(rr_workspace_new(m, &over, &ws, NULL), RR_ENOMEM);
    cr_expect_null(ws);
    rr_model_release(m);
}

Test(workspace, chunk_follows_budget_and_batch)
{
    rr_model *m = rr_test_model(mlp, 1, 1.0, RR_DTYPE_F32);
    rr_workspace *ws = NULL;
    rr_workspace_params p = {.max_batch = 1000, .rows_per_sample = 4, .budget_bytes = 4096};
    cr_assert_eq(rr_workspace_new(m, &p, &ws, NULL), RR_OK);
    size_t chunk = rr_workspace_chunk(ws);
    cr_expect(chunk >= 1 && chunk < 1000, "chunk %zu", chunk);
    rr_workspace_free(ws);
    rr_workspace_params q = {.max_batch = 7, .rows_per_sample = 4};
    cr_assert_eq(rr_workspace_new(m, &q, &ws, NULL), RR_OK);
    cr_expect_eq(rr_workspace_chunk(ws), 7);
    rr_workspace_free(ws);
    rr_model_release(m);
}

Test(workspace, refuses_another_models_workspace_and_non_finite_inputs)
{
    rr_model *a = rr_test_model(mlp, 1, 1.0, RR_DTYPE_F32),
             *b = rr_test_model(mlp, 2, 1, RR_DTYPE_F32);
    rr_workspace *ws = NULL;
    rr_workspace_params p = {.max_batch = 2, .rows_per_sample = 4};
    cr_assert_eq(rr_workspace_new(a, &p, &ws, NULL), RR_OK);
    float x[12] = {0}, z[8];
    rr_error err = {0};
    cr_expect_eq(rr_forward(b, ws, x, 2, z, NULL, NULL, &err), RR_EINVAL);
    x[5] = NAN;
    rr_error err2 = {0};
    cr_expect_eq(rr_forward(a, ws, x, 2, z, NULL, NULL, &err2), RR_ENONFINITE);
    cr_expect_str_eq(err2.field, "inputs");
    rr_workspace_free(ws);
    rr_model_release(a);
    rr_model_release(b);
}

Test(workspace, jacobian_needs_room_for_k_rows)
{
    rr_model *m = rr_test_model(mlp, 1, 1.0, RR_DTYPE_F32);
    rr_workspace *ws = NULL;
    // Planned for 1 row per sample and 1 sample: the Jacobian's 4 rows do not fit.
    rr_workspace_params p = {.max_batch = 1, .rows_per_sample = 1};
    cr_assert_eq(rr_workspace_new(m, &p, &ws, NULL), RR_OK);
    float x[6] = {0}, J[24];
    cr_expect_eq(rr_jacobian(m, ws, x, 1, RR_JACOBIAN_LOGITS, J, NULL, NULL), RR_EINVAL);
    rr_workspace_free(ws);
    // Planned for 1 row and 8 samples: the Jacobian runs 2 samples at a time.
    rr_workspace_params q = {.max_batch = 8, .rows_per_sample = 1};
    cr_assert_eq(rr_workspace_new(m, &q, &ws, NULL), RR_OK);
    float xs[48], Js[8 * 24];
    for (int i = 0; i < 48; i++)
        xs[i] = (float)sin(i);
    cr_expect_eq(rr_jacobian(m, ws, xs, 8, RR_JACOBIAN_LOGITS, Js, NULL, NULL), RR_OK);
    rr_workspace_free(ws);
    rr_model_release(m);
}

Test(identities, loss_gradient_is_jacobian_transpose_residual)
{
    static const char *cnn =
        "{\"format\": \"relureg/1\", \"input_shape\": [2, 6, 6], \"num_classes\": 5, \"layers\": ["
        "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 4, "
        "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
        "{\"type\": \"maxpool2d\", \"kernel_size\": 2}, {\"type\": \"flatten\"},"
        "{\"type\": \"linear\", \"name\": \"4\", \"in_features\": 36, \"out_features\": 5}]}";
    rr_model *m = rr_test_model(cnn, 3, 1.5, RR_DTYPE_F32);
    const size_t B = 6, D = 72, K = 5;
    rr_workspace *ws = NULL;
    rr_workspace_params p = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &p, &ws, NULL), RR_OK);
    float x[6 * 72], J[6 * 5 * 72], z[30], gx[6 * 72], gz[30];
    int64_t y[6] = {0, 1, 2, 3, 4, 0};
    uint64_t st = 5;
    for (size_t i = 0; i < B * D; i++)
        x[i] = (float)rr_test_uniform(&st);
    cr_assert_eq(rr_jacobian(m, ws, x, B, RR_JACOBIAN_LOGITS, J, z, NULL), RR_OK);
    cr_assert_eq(rr_cross_entropy(z, y, B, (int)K, NULL, NULL, gz, NULL, NULL), RR_OK);
    cr_assert_eq(rr_cross_entropy_backward(m, ws, x, y, B, NULL, NULL, gx, NULL, NULL), RR_OK);
    // The fused backward is of the mean loss: B * gx = J^T (p - e_y) per sample.
    double want[6 * 72] = {0};
    for (size_t b = 0; b < B; b++)
        for (size_t k = 0; k < K; k++)
            for (size_t i = 0; i < D; i++)
                want[b * D + i] += (double)gz[b * K + k] * J[(b * K + k) * D + i] / (double)B;
    rr_expect_allclose("grad_x l vs J^T (p - e_y)", gx, want, B * D, 1e-5, 1e-7);
    rr_workspace_free(ws);
    rr_model_release(m);
}
