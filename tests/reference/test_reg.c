// Regularizers against torch float64 double backprop (cases from gen_reg.py, written at test
// time into $RR_REF_DIR): for every architecture the activation patterns at x (and at the
// displaced points of the finite-difference specs) must equal torch's, then every
// regularizer's value, per-sample values, gradient to the inputs and gradient to every
// parameter are compared. All specs run in one rr_reg_compute call, so they share the forward
// pass and the Jacobian as in production.
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"
#include "rr_test.h"

// float32 computation against float64 on the same float32 weights and inputs. These are
// second-order quantities (a backward pass through a tangent or a second backward pass), so
// each carries roughly twice the rounding of a first-order one: still ~1e-6..1e-5 relative.
// rtol 1e-4 with an absolute floor of 1e-5 of the tensor's largest magnitude, as the core.
#define REF_RTOL     1e-4
#define REF_ATOL_REL 1e-5
#define MIN_CASES    20

typedef rr_ref_case ref_case;

ParameterizedTestParameters(reference, regularizers)
{
    static ref_case cases[256];
    int n = rr_test_list_cases("reg_", cases, 256);
    return cr_make_param_array(ref_case, cases, (size_t)(n < 256 ? n : 256));
}

Test(reference, enough_regularizer_cases)
{
    int n = rr_test_list_cases("reg_", NULL, 0);
    cr_expect(n >= MIN_CASES, "%d regularizer cases in %s, expected at least %d", n,
              rr_test_ref_dir(), MIN_CASES);
}

static void compare(const char *what, const float *got, const rr_st_tensor *want, size_t n)
{
    rr_test_compare_ref(what, got, want, n, REF_RTOL, REF_ATOL_REL);
}

// The spec of the case metadata, in the API's terms.
static rr_reg_spec parse_spec(json_t *o)
{
    rr_reg_spec s = {0};
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *v;
    if (strcmp(name, "cross_entropy") == 0)
        s.name = RR_REG_CROSS_ENTROPY;
    else if (strcmp(name, "input_gradient") == 0)
        s.name = RR_REG_INPUT_GRADIENT;
    else if (strcmp(name, "jacobian") == 0)
        s.name = RR_REG_JACOBIAN;
    else if (strcmp(name, "cross_lipschitz") == 0)
        s.name = RR_REG_CROSS_LIPSCHITZ;
    else if (strcmp(name, "curvature") == 0)
        s.name = RR_REG_CURVATURE;
    else if (strcmp(name, "weight_decay") == 0)
        s.name = RR_REG_WEIGHT_DECAY;
    else
        cr_assert_fail("unknown regularizer %s", name);
    if ((v = json_string_value(json_object_get(o, "norm"))) && strcmp(v, "l1") == 0)
        s.norm = RR_REG_NORM_L1;
    if ((v = json_string_value(json_object_get(o, "estimator"))) && strcmp(v, "projection") == 0)
        s.estimator = RR_REG_PROJECTION;
    if ((v = json_string_value(json_object_get(o, "directions"))) && strcmp(v, "onehot") == 0)
        s.directions = RR_REG_ONEHOT;
    if ((v = json_string_value(json_object_get(o, "method")))) {
        s.method = strcmp(v, "hessian") == 0 ? RR_REG_HESSIAN
                   : strcmp(v, "trace") == 0 ? RR_REG_TRACE
                                             : RR_REG_FINITE_DIFFERENCE;
    }
    s.projections = (int)json_integer_value(json_object_get(o, "projections"));
    s.seed = (uint64_t)json_integer_value(json_object_get(o, "seed"));
    if (json_object_get(o, "h"))
        s.h = json_number_value(json_object_get(o, "h"));
    s.unsquared = json_is_false(json_object_get(o, "squared"));
    return s;
}

// Compares the activation pattern of the model at x [B, D] with the case's tensors
// prefix/000, prefix/001, ...
static void check_pattern(const char *what, rr_model *m, rr_workspace *ws, const float *x, size_t B,
                          const rr_safetensors *st, const char *prefix)
{
    const size_t PB = rr_model_pattern_bytes(m);
    uint8_t *pat = malloc(B * PB + 1);
    cr_assert_eq(rr_forward(m, ws, x, B, NULL, pat, NULL, NULL), RR_OK);
    for (int j = 0; j < rr_model_pattern_layers(m); j++) {
        rr_pattern_layer pl;
        rr_model_pattern_layer(m, j, &pl);
        char name[96];
        snprintf(name, sizeof name, "%s/%03d", prefix, j);
        const rr_st_tensor *t = rr_test_need(st, name);
        cr_assert_eq(t->numel, B * pl.units);
        size_t bad = 0;
        for (size_t b = 0; b < B; b++)
            for (size_t u = 0; u < pl.units; u++) {
                const uint8_t *p = pat + b * PB + pl.offset;
                long mine, theirs;
                if (pl.is_maxpool) {
                    mine = (long)((uint32_t)p[4 * u] | (uint32_t)p[4 * u + 1] << 8 |
                                  (uint32_t)p[4 * u + 2] << 16 | (uint32_t)p[4 * u + 3] << 24);
                    int64_t v;
                    memcpy(&v, t->data + 8 * (b * pl.units + u), 8);
                    theirs = (long)v;
                } else {
                    mine = p[u];
                    theirs = t->data[b * pl.units + u];
                }
                bad += mine != theirs;
            }
        cr_assert_eq(bad, 0, "%s: pattern layer %d differs from torch in %zu units", what, j, bad);
    }
    free(pat);
}

ParameterizedTest(ref_case *c, reference, regularizers)
{
    char path[512];
    size_t len;
    rr_error err = {0};
    snprintf(path, sizeof path, "%s/%s.model.safetensors", rr_test_ref_dir(), c->name);
    rr_model *m = NULL;
    cr_assert_eq(rr_model_load_file(path, &m, &err), RR_OK, "%s: %s", c->name, err.msg);
    snprintf(path, sizeof path, "%s/%s.case.safetensors", rr_test_ref_dir(), c->name);
    uint8_t *buf = rr_test_read_file(path, &len);
    rr_safetensors *st = NULL;
    cr_assert_eq(rr_safetensors_parse(buf, len, 0, &st, &err), RR_OK, "%s", err.msg);
    json_t *meta = json_loads(rr_safetensors_metadata(st, "relureg.case"), 0, NULL);
    json_t *specs = json_object_get(meta, "specs");
    const size_t ns = json_array_size(specs);
    cr_assert(ns > 0);

    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const size_t NP = rr_model_param_array_size(m);
    const rr_st_tensor *tx = rr_test_need(st, "inputs");
    const size_t B = tx->numel / D;
    float *x = malloc(B * D * sizeof(float));
    int64_t *y = malloc(B * sizeof(int64_t));
    cr_assert_eq(rr_st_tensor_to_f32(tx, x, &err), RR_OK);
    cr_assert_eq(rr_st_tensor_to_i64(rr_test_need(st, "labels"), y, &err), RR_OK);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, &err), RR_OK);
    check_pattern(c->name, m, ws, x, B, st, "pattern");

    rr_reg_spec *spec = calloc(ns, sizeof *spec);
    rr_reg_result *res = calloc(ns, sizeof *res);
    for (size_t i = 0; i < ns; i++) {
        spec[i] = parse_spec(json_array_get(specs, i));
        res[i].per_sample = malloc(B * sizeof(float));
        res[i].grad_inputs = malloc(B * D * sizeof(float));
        res[i].grad_parameters = malloc((NP + 1) * sizeof(float));
        res[i].directions = malloc(B * (K > 3 ? K : 3) * K * sizeof(float));
    }
    rr_reg_params p = {.regs = spec, .nregs = ns};
    rr_reg_loss loss = {0};
    cr_assert_eq(rr_reg_compute(m, ws, x, y, B, &p, res, &loss, &err), RR_OK, "%s: %s", c->name,
                 err.msg);

    // Per-sample input gradients of the loss (seed p - e_y) for the displaced points.
    float *z = malloc(B * K * sizeof(float)), *r = malloc(B * K * sizeof(float));
    float *g = malloc(B * D * sizeof(float)), *x2 = malloc(B * D * sizeof(float));
    cr_assert_eq(rr_forward(m, ws, x, B, z, NULL, NULL, NULL), RR_OK);
    cr_assert_eq(rr_cross_entropy(z, y, B, (int)K, NULL, NULL, r, NULL, NULL), RR_OK);
    cr_assert_eq(rr_vjp(m, ws, x, B, r, g, NULL, NULL), RR_OK);

    char what[400], key[64], name[400];
    for (size_t i = 0; i < ns; i++) {
        snprintf(key, sizeof key, "reg/%02zu", i);
        const char *rn = json_string_value(json_object_get(json_array_get(specs, i), "name"));
        if (spec[i].name == RR_REG_CURVATURE && spec[i].method == RR_REG_FINITE_DIFFERENCE) {
            const double h = spec[i].h > 0 ? spec[i].h : RR_REG_DEFAULT_H;
            for (size_t b = 0; b < B; b++) {
                size_t nnz = 0;
                for (size_t j = 0; j < D; j++)
                    nnz += g[b * D + j] != 0.0f;
                const float inv = (float)(1.0 / sqrt((double)nnz));
                for (size_t j = 0; j < D; j++) {
                    const float u = g[b * D + j] > 0 ? inv : g[b * D + j] < 0 ? -inv : 0.0f;
                    x2[b * D + j] = (float)(x[b * D + j] + h * u);
                }
            }
            snprintf(name, sizeof name, "%s %s x + h u", c->name, key);
            snprintf(what, sizeof what, "%s/pattern", key);
            check_pattern(name, m, ws, x2, B, st, what);
        }
        snprintf(what, sizeof what, "%s %s (%s) value", c->name, key, rn);
        float v = (float)res[i].value;
        snprintf(name, sizeof name, "%s/value", key);
        compare(what, &v, rr_test_need(st, name), 1);
        if (spec[i].name != RR_REG_WEIGHT_DECAY) {
            snprintf(what, sizeof what, "%s %s (%s) per_sample", c->name, key, rn);
            snprintf(name, sizeof name, "%s/per_sample", key);
            compare(what, res[i].per_sample, rr_test_need(st, name), B);
        }
        snprintf(what, sizeof what, "%s %s (%s) grad_inputs", c->name, key, rn);
        snprintf(name, sizeof name, "%s/grad_inputs", key);
        compare(what, res[i].grad_inputs, rr_test_need(st, name), B * D);
        for (size_t k = 0; k < rr_model_num_param_tensors(m); k++) {
            const rr_param *pr = rr_model_param(m, k);
            snprintf(what, sizeof what, "%s %s (%s) grad/%s", c->name, key, rn, pr->name);
            snprintf(name, sizeof name, "%s/grad/%s", key, pr->name);
            compare(what, res[i].grad_parameters + pr->offset, rr_test_need(st, name), pr->numel);
        }
        snprintf(name, sizeof name, "%s/directions", key);
        const rr_st_tensor *td = rr_safetensors_find(st, name);
        if (td) {
            float *want = malloc(td->numel * sizeof(float));
            cr_assert_eq(rr_st_tensor_to_f32(td, want, NULL), RR_OK);
            cr_expect(memcmp(want, res[i].directions, td->numel * sizeof(float)) == 0,
                      "%s %s: the C directions differ from the replica torch used", c->name, key);
            free(want);
        }
    }

    for (size_t i = 0; i < ns; i++) {
        free(res[i].per_sample);
        free(res[i].grad_inputs);
        free(res[i].grad_parameters);
        free(res[i].directions);
    }
    free(x2);
    free(g);
    free(r);
    free(z);
    free(res);
    free(spec);
    rr_workspace_free(ws);
    free(y);
    free(x);
    json_decref(meta);
    rr_safetensors_free(st);
    free(buf);
    rr_model_release(m);
}
