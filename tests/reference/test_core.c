// Reference tests against PyTorch float64 autograd (cases written at test time by
// gen_core.py into $RR_REF_DIR; nothing is committed). For each random architecture: the
// activation pattern must equal torch's before any value is compared; then logits, the
// Jacobian, JVPs, the mean cross-entropy and its gradients to the inputs and to every
// parameter.
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"
#include "rr_test.h"

// float32 computation against the float64 reference on the same float32 weights and inputs:
// a relative error of 1e-6..1e-5 per layer is expected, and sums over a few hundred terms
// can cancel, so entries are compared with rtol 1e-4 plus an absolute floor of 1e-5 times
// the largest magnitude of the tensor.
#define REF_RTOL     1e-4
#define REF_ATOL_REL 1e-5
#define MIN_CASES    20

typedef rr_ref_case ref_case;

ParameterizedTestParameters(reference, core)
{
    static ref_case cases[256];
    int n = rr_test_list_cases("core_", cases, 256);
    return cr_make_param_array(ref_case, cases, (size_t)(n < 256 ? n : 256));
}

Test(reference, enough_cases_were_generated)
{
    int n = rr_test_list_cases("core_", NULL, 0);
    cr_expect(n >= MIN_CASES, "%d reference cases in %s, expected at least %d", n,
              rr_test_ref_dir(), MIN_CASES);
}

static void compare(const char *what, const float *got, const rr_st_tensor *want, size_t n)
{
    rr_test_compare_ref(what, got, want, n, REF_RTOL, REF_ATOL_REL);
}

ParameterizedTest(ref_case *c, reference, core)
{
    char path[512];
    size_t len;
    rr_error err = {0};
    snprintf(path, sizeof path, "%s/%s.model.safetensors", rr_test_ref_dir(), c->name);
    rr_model *m = NULL;
    cr_assert_eq(rr_model_load_file(path, &m, &err), RR_OK, "%s: %s", c->name, err.msg);
    snprintf(path, sizeof path, "%s/%s.case.safetensors", rr_test_ref_dir(), c->name);
    uint8_t *buf = rr_test_read_file(path, &len);
    cr_assert_not_null(buf);
    rr_safetensors *st = NULL;
    cr_assert_eq(rr_safetensors_parse(buf, len, 0, &st, &err), RR_OK, "%s", err.msg);

    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const rr_st_tensor *tx = rr_test_need(st, "inputs");
    const size_t B = tx->numel / D;
    cr_assert_eq(B * D, tx->numel);
    float *x = malloc(B * D * sizeof(float));
    cr_assert_eq(rr_st_tensor_to_f32(tx, x, &err), RR_OK);
    int64_t *y = malloc(B * sizeof(int64_t));
    cr_assert_eq(rr_st_tensor_to_i64(rr_test_need(st, "labels"), y, &err), RR_OK);

    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, &err), RR_OK, "%s", err.msg);

    // ---- activation pattern first: values are only comparable in the same region ----
    const size_t PB = rr_model_pattern_bytes(m);
    uint8_t *pat = malloc(B * PB + 1);
    float *z = malloc(B * K * sizeof(float));
    cr_assert_eq(rr_forward(m, ws, x, B, z, pat, NULL, &err), RR_OK, "%s", err.msg);
    for (int j = 0; j < rr_model_pattern_layers(m); j++) {
        rr_pattern_layer pl;
        rr_model_pattern_layer(m, j, &pl);
        char name[32];
        snprintf(name, sizeof name, "pattern/%03d", j);
        const rr_st_tensor *t = rr_test_need(st, name);
        cr_assert_eq(t->numel, B * pl.units, "%s: %s has %zu units, C has %zu per sample", c->name,
                     name, t->numel, pl.units);
        size_t mismatches = 0, first = 0;
        for (size_t b = 0; b < B; b++)
            for (size_t u = 0; u < pl.units; u++) {
                const uint8_t *p = pat + b * PB + pl.offset;
                long mine, theirs;
                if (pl.is_maxpool) {
                    cr_assert_eq(t->dtype, RR_DTYPE_I64);
                    mine = (long)((uint32_t)p[4 * u] | (uint32_t)p[4 * u + 1] << 8 |
                                  (uint32_t)p[4 * u + 2] << 16 | (uint32_t)p[4 * u + 3] << 24);
                    int64_t v;
                    memcpy(&v, t->data + 8 * (b * pl.units + u), 8);
                    theirs = (long)v;
                } else {
                    cr_assert_eq(t->dtype, RR_DTYPE_U8);
                    mine = p[u];
                    theirs = t->data[b * pl.units + u];
                }
                if (mine != theirs && mismatches++ == 0)
                    first = b * pl.units + u;
            }
        cr_assert_eq(mismatches, 0,
                     "%s: pattern layer %d (%s) differs from torch in %zu units "
                     "(first at %zu)",
                     c->name, j, pl.is_maxpool ? "maxpool2d" : "relu", mismatches, first);
    }

    char what[320];
#define WHAT(s) (snprintf(what, sizeof what, "%s %s", c->name, s), what)
    compare(WHAT("logits"), z, rr_test_need(st, "logits"), B * K);

    float *J = malloc(B * K * D * sizeof(float));
    cr_assert_eq(rr_jacobian(m, ws, x, B, RR_JACOBIAN_LOGITS, J, NULL, &err), RR_OK);
    compare(WHAT("jacobian"), J, rr_test_need(st, "jacobian"), B * K * D);

    const rr_st_tensor *tv = rr_test_need(st, "jvp_tangents");
    const size_t T = tv->numel / (B * D);
    float *v = malloc(tv->numel * sizeof(float)), *jv = malloc(B * T * K * sizeof(float));
    cr_assert_eq(rr_st_tensor_to_f32(tv, v, &err), RR_OK);
    cr_assert_eq(rr_jvp(m, ws, x, B, v, T, jv, NULL, &err), RR_OK, "%s", err.msg);
    compare(WHAT("jvp"), jv, rr_test_need(st, "jvp"), B * T * K);

    // Mean cross-entropy: d/dz of the mean is (p - e_y) / B.
    float *loss = malloc(B * sizeof(float)), *g = malloc(B * K * sizeof(float));
    double mean;
    cr_assert_eq(rr_cross_entropy(z, y, B, (int)K, loss, NULL, g, &mean, &err), RR_OK);
    compare(WHAT("loss_per_sample"), loss, rr_test_need(st, "loss_per_sample"), B);
    float meanf = (float)mean;
    compare(WHAT("loss"), &meanf, rr_test_need(st, "loss"), 1);
    for (size_t i = 0; i < B * K; i++)
        g[i] /= (float)B;
    float *gx = malloc(B * D * sizeof(float));
    float *gp = malloc((rr_model_param_array_size(m) + 1) * sizeof(float));
    cr_assert_eq(rr_vjp(m, ws, x, B, g, gx, gp, &err), RR_OK, "%s", err.msg);
    compare(WHAT("grad_inputs"), gx, rr_test_need(st, "grad_inputs"), B * D);
    size_t ngrad = 0;
    for (size_t i = 0; i < rr_model_num_param_tensors(m); i++) {
        const rr_param *p = rr_model_param(m, i);
        char name[300];
        snprintf(name, sizeof name, "grad/%s", p->name);
        snprintf(what, sizeof what, "%s grad/%s", c->name, p->name);
        compare(what, gp + p->offset, rr_test_need(st, name), p->numel);
        ngrad++;
    }
    // The fused forward + loss + backward gives the same gradients.
    float *gx2 = malloc(B * D * sizeof(float));
    float *gp2 = malloc((rr_model_param_array_size(m) + 1) * sizeof(float));
    double mean2;
    cr_assert_eq(rr_cross_entropy_backward(m, ws, x, y, B, &mean2, NULL, gx2, gp2, &err), RR_OK,
                 "%s", err.msg);
    float mean2f = (float)mean2;
    compare(WHAT("fused loss"), &mean2f, rr_test_need(st, "loss"), 1);
    compare(WHAT("fused grad_inputs"), gx2, rr_test_need(st, "grad_inputs"), B * D);
    for (size_t i = 0; i < rr_model_num_param_tensors(m); i++) {
        const rr_param *p = rr_model_param(m, i);
        char name[300];
        snprintf(name, sizeof name, "grad/%s", p->name);
        snprintf(what, sizeof what, "%s fused grad/%s", c->name, p->name);
        compare(what, gp2 + p->offset, rr_test_need(st, name), p->numel);
    }
    free(gx2);
    free(gp2);

    // Every gradient the reference has is one the model has (nothing skipped).
    size_t nref = 0;
    for (size_t i = 0; i < rr_safetensors_count(st); i++)
        nref += strncmp(rr_safetensors_at(st, i)->name, "grad/", 5) == 0;
    cr_expect_eq(ngrad, nref, "%s: %zu parameter gradients computed, %zu in the reference", c->name,
                 ngrad, nref);

    free(gp);
    free(gx);
    free(g);
    free(loss);
    free(jv);
    free(v);
    free(J);
    free(z);
    free(pat);
    rr_workspace_free(ws);
    free(y);
    free(x);
    rr_safetensors_free(st);
    free(buf);
    rr_model_release(m);
}
