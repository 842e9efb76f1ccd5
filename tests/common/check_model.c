// The kernel checker (see check_model.h).
#include "check_model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "naive.h"
#include "rr_test.h"

static double max_abs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

static bool allclose(const char *what, const float *got, const double *want, size_t n)
{
    double atol = RR_TEST_ATOL_REL * (max_abs(want, n) > 0 ? max_abs(want, n) : 1.0);
    return rr_expect_allclose(what, got, want, n, RR_TEST_RTOL, atol);
}

size_t rr_check_model(const char *arch_json, const rr_check_opts *o)
{
    const size_t B = o->B ? o->B : 3;
    const double lo = o->lo < o->hi ? o->lo : -1.0, hi = o->lo < o->hi ? o->hi : 1.0;
    rr_model *m = rr_test_model(arch_json, o->seed + 1, o->scale > 0 ? o->scale : 1.5,
                                o->dtype == RR_DTYPE_BOOL ? RR_DTYPE_F32 : o->dtype);
    if (m == NULL)
        return 0;
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const size_t PB = rr_model_pattern_bytes(m), NP = rr_model_param_array_size(m);
    double *theta = rr_test_params(m);
    uint64_t rng = o->seed * 7919 + 17;
    rr_error err = {0};

    // Inputs at least 1e-3 (relative) away from every kink, as float32 values.
    double *x = malloc(B * D * sizeof(double));
    float *xf = malloc(B * D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        bool ok = rr_test_draw_sample(m, theta, x + b * D, lo, hi, 1e-3, &rng);
        cr_assert(ok, "could not draw a sample away from kinks");
        for (size_t i = 0; i < D; i++)
            xf[b * D + i] = (float)x[b * D + i];
    }

    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K, .budget_bytes = o->budget};
    cr_assert(rr_workspace_new(m, &wp, &ws, &err) == RR_OK, "%s", err.msg);

    // ---- forward and pattern ----
    double *z = malloc(B * K * sizeof(double));
    uint8_t *pat_ref = calloc(B * PB + 1, 1), *pat = calloc(B * PB + 1, 1);
    for (size_t b = 0; b < B; b++)
        rr_naive_forward(m, theta, x + b * D, z + b * K, pat_ref + b * PB, NULL);
    float *zf = malloc(B * K * sizeof(float));
    uint64_t *hash = malloc(B * sizeof(uint64_t));
    cr_assert(rr_forward(m, ws, xf, B, zf, pat, hash, &err) == RR_OK, "%s", err.msg);
    allclose("logits", zf, z, B * K);
    cr_expect(memcmp(pat, pat_ref, B * PB) == 0, "activation pattern differs from the naive one");
    for (size_t b = 0; b < B; b++)
        cr_expect(hash[b] == rr_pattern_hash(pat + b * PB, PB), "streamed hash != hash of bytes");

    // ---- Jacobian by central differences of the naive forward (exact up to rounding inside
    // the region; the pattern at x +- h e_i is checked) ----
    const double h = 1e-6;
    double *J = malloc(B * K * D * sizeof(double));
    double *zp = malloc(K * sizeof(double)), *zm = malloc(K * sizeof(double));
    uint8_t *pp = malloc(PB + 1), *pm = malloc(PB + 1);
    double *xx = malloc(D * sizeof(double));
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < D; i++) {
            memcpy(xx, x + b * D, D * sizeof(double));
            xx[i] += h;
            rr_naive_forward(m, theta, xx, zp, pp, NULL);
            xx[i] -= 2 * h;
            rr_naive_forward(m, theta, xx, zm, pm, NULL);
            cr_assert(memcmp(pp, pat_ref + b * PB, PB) == 0 &&
                          memcmp(pm, pat_ref + b * PB, PB) == 0,
                      "finite difference left the linear region");
            for (size_t k = 0; k < K; k++)
                J[(b * K + k) * D + i] = (zp[k] - zm[k]) / (2 * h);
        }
    float *Jf = malloc(B * K * D * sizeof(float));
    cr_assert(rr_jacobian(m, ws, xf, B, RR_JACOBIAN_LOGITS, Jf, NULL, &err) == RR_OK, "%s",
              err.msg);
    allclose("jacobian", Jf, J, B * K * D);

    // log-probabilities: J_k - sum_j p_j J_j
    double *Jl = malloc(B * K * D * sizeof(double));
    for (size_t b = 0; b < B; b++) {
        double mx = z[b * K], s = 0;
        for (size_t k = 0; k < K; k++)
            mx = fmax(mx, z[b * K + k]);
        for (size_t k = 0; k < K; k++)
            s += exp(z[b * K + k] - mx);
        for (size_t i = 0; i < D; i++) {
            double mean = 0;
            for (size_t k = 0; k < K; k++)
                mean += exp(z[b * K + k] - mx) / s * J[(b * K + k) * D + i];
            for (size_t k = 0; k < K; k++)
                Jl[(b * K + k) * D + i] = J[(b * K + k) * D + i] - mean;
        }
    }
    cr_assert(rr_jacobian(m, ws, xf, B, RR_JACOBIAN_LOG_PROBABILITIES, Jf, NULL, &err) == RR_OK);
    allclose("jacobian of log-probabilities", Jf, Jl, B * K * D);

    // ---- JVP: J v for T = 2 tangents ----
    const size_t T = 2;
    float *v = malloc(B * T * D * sizeof(float)), *jvf = malloc(B * T * K * sizeof(float));
    double *jv = calloc(B * T * K, sizeof(double));
    for (size_t i = 0; i < B * T * D; i++)
        v[i] = (float)(2 * rr_test_uniform(&rng) - 1);
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t k = 0; k < K; k++)
                for (size_t i = 0; i < D; i++)
                    jv[(b * T + t) * K + k] += J[(b * K + k) * D + i] * v[(b * T + t) * D + i];
    cr_assert(rr_jvp(m, ws, xf, B, v, T, jvf, NULL, &err) == RR_OK, "%s", err.msg);
    allclose("jvp", jvf, jv, B * T * K);

    // ---- VJP to the input: J^T g ----
    float *g = malloc(B * K * sizeof(float)), *gxf = malloc(B * D * sizeof(float));
    double *gx = calloc(B * D, sizeof(double));
    for (size_t i = 0; i < B * K; i++)
        g[i] = (float)(2 * rr_test_uniform(&rng) - 1);
    for (size_t b = 0; b < B; b++)
        for (size_t k = 0; k < K; k++)
            for (size_t i = 0; i < D; i++)
                gx[b * D + i] += g[b * K + k] * J[(b * K + k) * D + i];
    float *gpf = malloc((NP + 1) * sizeof(float));
    cr_assert(rr_vjp(m, ws, xf, B, g, gxf, gpf, &err) == RR_OK, "%s", err.msg);
    allclose("vjp to inputs", gxf, gx, B * D);

    // The parameter gradient alone (input gradient not requested) must be the same.
    float *gpf2 = malloc((NP + 1) * sizeof(float));
    cr_assert(rr_vjp(m, ws, xf, B, g, NULL, gpf2, &err) == RR_OK, "%s", err.msg);
    cr_expect(memcmp(gpf, gpf2, NP * sizeof(float)) == 0,
              "parameter gradient differs when the input gradient is skipped");

    // ---- VJP to parameters: FD over each parameter element of sum_b <g_b, z_b(theta)>.
    // Logits are polynomial in theta, so the central difference has an O(h^2) error. ----
    size_t checked = 0;
    for (size_t pi = 0; pi < rr_model_num_param_tensors(m); pi++) {
        const rr_param *p = rr_model_param(m, pi);
        double *want = malloc(p->numel * sizeof(double));
        for (size_t j = 0; j < p->numel; j++) {
            double *t = &theta[p->offset + j], saved = *t, hp = 1e-6 * fmax(1.0, fabs(saved));
            double fp = 0, fm = 0;
            for (size_t b = 0; b < B; b++) {
                *t = saved + hp;
                rr_naive_forward(m, theta, x + b * D, zp, pp, NULL);
                *t = saved - hp;
                rr_naive_forward(m, theta, x + b * D, zm, pm, NULL);
                cr_assert(memcmp(pp, pat_ref + b * PB, PB) == 0 &&
                              memcmp(pm, pat_ref + b * PB, PB) == 0,
                          "parameter finite difference left the linear region (%s)", p->name);
                for (size_t k = 0; k < K; k++) {
                    fp += g[b * K + k] * zp[k];
                    fm += g[b * K + k] * zm[k];
                }
            }
            *t = saved;
            want[j] = (fp - fm) / (2 * hp);
        }
        char what[300];
        snprintf(what, sizeof what, "vjp to parameter %s", p->name);
        allclose(what, gpf + p->offset, want, p->numel);
        checked += p->numel;
        free(want);
    }

    // ---- determinism: chunked (one sample per chunk) equals whole-batch for every output
    // that is per sample ----
    rr_workspace *ws1 = NULL;
    rr_workspace_params wp1 = {.max_batch = 1, .rows_per_sample = K};
    cr_assert(rr_workspace_new(m, &wp1, &ws1, &err) == RR_OK);
    float *Jf1 = malloc(B * K * D * sizeof(float));
    cr_assert(rr_jacobian(m, ws1, xf, B, RR_JACOBIAN_LOGITS, Jf1, NULL, &err) == RR_OK);
    cr_assert(rr_jacobian(m, ws, xf, B, RR_JACOBIAN_LOGITS, Jf, NULL, &err) == RR_OK);
    allclose("jacobian, one sample per chunk", Jf1, J, B * K * D);
    rr_workspace_free(ws1);

    free(Jf1);
    free(gpf2);
    free(gpf);
    free(gx);
    free(gxf);
    free(g);
    free(jv);
    free(jvf);
    free(v);
    free(Jl);
    free(Jf);
    free(xx);
    free(pm);
    free(pp);
    free(zm);
    free(zp);
    free(J);
    free(hash);
    free(zf);
    free(pat);
    free(pat_ref);
    free(z);
    rr_workspace_free(ws);
    free(xf);
    free(x);
    free(theta);
    rr_model_release(m);
    return checked;
}
