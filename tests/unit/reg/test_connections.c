// The numbered identities of math.md "The connections", asserted numerically on random nets
// at samples drawn away from kinks, each against an independent computation (the exact
// Jacobian, a literal pair loop, per-label backward passes, a forward at x + h u), and the
// connection quantities rr_connections_compute reports.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "naive.h"
#include "rr_test.h"

// float32 Jacobians against double evaluations of the same formulas: 1e-4 relative.
#define RTOL 1e-4

static const char *mlp =
    "{\"format\": \"relureg/1\", \"input_shape\": [12], \"num_classes\": 5, \"layers\": ["
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 12, \"out_features\": 16},"
    "{\"type\": \"leaky_relu\", \"negative_slope\": 0.1},"
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 16, \"out_features\": 16},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"4\", \"in_features\": 16, \"out_features\": 5}]}";

static const char *cnn =
    "{\"format\": \"relureg/1\", \"input_shape\": [1, 6, 6], \"num_classes\": 4, \"layers\": ["
    "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 1, \"out_channels\": 3, "
    "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
    "{\"type\": \"maxpool2d\", \"kernel_size\": 2}, {\"type\": \"flatten\"},"
    "{\"type\": \"linear\", \"name\": \"4\", \"in_features\": 27, \"out_features\": 4}]}";

typedef struct fixture {
    rr_model *m;
    rr_workspace *ws;
    size_t B, D, K;
    float *x, *J, *z;
    double *p;
    int64_t *y;
} fixture;

static void setup(fixture *f, const char *arch, uint64_t seed, size_t B)
{
    f->m = rr_test_model(arch, seed, 1.5, RR_DTYPE_F32);
    f->B = B;
    f->D = rr_model_input_size(f->m);
    f->K = (size_t)rr_model_num_classes(f->m);
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = f->K};
    cr_assert_eq(rr_workspace_new(f->m, &wp, &f->ws, NULL), RR_OK);
    double *theta = rr_test_params(f->m), *xd = malloc(f->D * sizeof(double));
    f->x = malloc(B * f->D * sizeof(float));
    f->y = malloc(B * sizeof(int64_t));
    uint64_t st = seed * 31 + 7;
    for (size_t b = 0; b < B; b++) {
        cr_assert(rr_test_draw_sample(f->m, theta, xd, -1, 1, 1e-3, &st));
        for (size_t i = 0; i < f->D; i++)
            f->x[b * f->D + i] = (float)xd[i];
        f->y[b] = (int64_t)(b % f->K);
    }
    free(xd);
    free(theta);
    f->J = malloc(B * f->K * f->D * sizeof(float));
    f->z = malloc(B * f->K * sizeof(float));
    f->p = malloc(B * f->K * sizeof(double));
    cr_assert_eq(rr_jacobian(f->m, f->ws, f->x, B, RR_JACOBIAN_LOGITS, f->J, f->z, NULL), RR_OK);
    for (size_t b = 0; b < B; b++) {
        double mx = f->z[b * f->K], s = 0;
        for (size_t k = 0; k < f->K; k++)
            mx = fmax(mx, f->z[b * f->K + k]);
        for (size_t k = 0; k < f->K; k++)
            s += exp(f->z[b * f->K + k] - mx);
        for (size_t k = 0; k < f->K; k++)
            f->p[b * f->K + k] = exp(f->z[b * f->K + k] - mx) / s;
    }
}

static void teardown(fixture *f)
{
    free(f->p);
    free(f->z);
    free(f->J);
    free(f->y);
    free(f->x);
    rr_workspace_free(f->ws);
    rr_model_release(f->m);
}

static double jdot(const fixture *f, size_t b, size_t k, size_t l)
{
    const float *J = f->J + b * f->K * f->D;
    double s = 0;
    for (size_t i = 0; i < f->D; i++)
        s += (double)J[k * f->D + i] * J[l * f->D + i];
    return s;
}

static void close(const char *what, double got, double want, double tol)
{
    cr_expect(fabs(got - want) <= tol * fmax(1e-12, fabs(want)), "%s: %.12g vs %.12g", what, got,
              want);
}

// 1. grad_x l = J^T (p - e_y) = J_c^T (p - e_y); the library's backward pass gives the same.
Test(connections, identity1_input_gradient_through_j_and_jc)
{
    fixture f;
    setup(&f, cnn, 3, 4);
    float *r = malloc(f.B * f.K * sizeof(float)), *g = malloc(f.B * f.D * sizeof(float));
    cr_assert_eq(rr_cross_entropy(f.z, f.y, f.B, (int)f.K, NULL, NULL, r, NULL, NULL), RR_OK);
    cr_assert_eq(rr_vjp(f.m, f.ws, f.x, f.B, r, g, NULL, NULL), RR_OK);
    for (size_t b = 0; b < f.B; b++)
        for (size_t i = 0; i < f.D; i++) {
            double viaJ = 0, viaJc = 0, mean = 0;
            for (size_t k = 0; k < f.K; k++)
                mean += f.J[(b * f.K + k) * f.D + i] / (double)f.K;
            for (size_t k = 0; k < f.K; k++) {
                double e = f.p[b * f.K + k] - (k == (size_t)f.y[b]);
                viaJ += e * f.J[(b * f.K + k) * f.D + i];
                viaJc += e * (f.J[(b * f.K + k) * f.D + i] - mean);
            }
            cr_expect(fabs(viaJ - viaJc) <= 1e-9 + 1e-9 * fabs(viaJ));
            cr_expect(fabs(g[b * f.D + i] - viaJ) <= 1e-6 + RTOL * fabs(viaJ),
                      "g[%zu,%zu] %g vs %g", b, i, g[b * f.D + i], viaJ);
        }
    free(g);
    free(r);
    teardown(&f);
}

// 3. sum_{l,m} ||grad z_l - grad z_m||^2 = 2K||J||^2 - 2||J^T 1||^2 = 2K ||J_c||^2, against a
// literal pair loop; and rr_connections reports ||J||^2 and ||J_c||^2 that satisfy it.
Test(connections, identity3_cross_lipschitz_is_centred_jacobian)
{
    fixture f;
    setup(&f, mlp, 4, 5);
    double *v[11];
    for (int i = 0; i < 10; i++)
        v[i] = calloc(f.B, sizeof(double));
    bool *left = calloc(f.B, sizeof(bool));
    rr_connections c = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], left};
    cr_assert_eq(rr_connections_compute(f.m, f.ws, f.x, f.y, f.B, 1.5, &c, NULL), RR_OK);
    for (size_t b = 0; b < f.B; b++) {
        double pairs = 0, fro = 0, ones = 0;
        for (size_t l = 0; l < f.K; l++)
            for (size_t m = 0; m < f.K; m++)
                pairs += jdot(&f, b, l, l) + jdot(&f, b, m, m) - 2 * jdot(&f, b, l, m);
        for (size_t l = 0; l < f.K; l++) {
            fro += jdot(&f, b, l, l);
            for (size_t m = 0; m < f.K; m++)
                ones += jdot(&f, b, l, m);
        }
        close("pairs vs 2K|J|^2 - 2|J^T 1|^2", pairs, 2 * f.K * fro - 2 * ones, 1e-9);
        close("pairs vs 2K|J_c|^2", pairs, 2.0 * f.K * c.centered_jacobian_fro2[b], 1e-9);
        close("jacobian_fro2", c.jacobian_fro2[b], fro, 1e-12);
    }
    for (int i = 0; i < 10; i++)
        free(v[i]);
    free(left);
    teardown(&f);
}

// 2, 4, 5: the bounds, lambda_max(S) <= 1/2, and tr H in its three forms, with
// E_{yhat ~ p} ||grad_x l(x, yhat)||^2 from one backward pass per label.
Test(connections, identities_2_4_5_bounds_and_trace)
{
    fixture f;
    setup(&f, cnn, 5, 4);
    double *v[10];
    for (int i = 0; i < 10; i++)
        v[i] = calloc(f.B, sizeof(double));
    bool *left = calloc(f.B, sizeof(bool));
    rr_connections c = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], left};
    cr_assert_eq(rr_connections_compute(f.m, f.ws, f.x, f.y, f.B, 1.5, &c, NULL), RR_OK);
    float *seed = malloc(f.B * f.K * sizeof(float)), *g = malloc(f.B * f.D * sizeof(float));
    double *expect_g2 = calloc(f.B, sizeof(double));
    for (size_t yh = 0; yh < f.K; yh++) {
        for (size_t b = 0; b < f.B; b++)
            for (size_t k = 0; k < f.K; k++)
                seed[b * f.K + k] = (float)(f.p[b * f.K + k] - (k == yh));
        cr_assert_eq(rr_vjp(f.m, f.ws, f.x, f.B, seed, g, NULL, NULL), RR_OK);
        for (size_t b = 0; b < f.B; b++) {
            double n2 = 0;
            for (size_t i = 0; i < f.D; i++)
                n2 += (double)g[b * f.D + i] * g[b * f.D + i];
            expect_g2[b] += f.p[b * f.K + yh] * n2;
        }
    }
    for (size_t b = 0; b < f.B; b++) {
        const double *p = f.p + b * f.K;
        // 5. tr H = sum_k p_k |grad z_k|^2 - |J^T p|^2 = E ||grad l(x, yhat)||^2
        //        = 1/2 sum_{l,m} p_l p_m ||grad z_l - grad z_m||^2
        double a = 0, jp = 0, half = 0;
        for (size_t k = 0; k < f.K; k++) {
            a += p[k] * jdot(&f, b, k, k);
            for (size_t l = 0; l < f.K; l++) {
                jp += p[k] * p[l] * jdot(&f, b, k, l);
                half += 0.5 * p[k] * p[l] *
                        (jdot(&f, b, k, k) + jdot(&f, b, l, l) - 2 * jdot(&f, b, k, l));
            }
        }
        close("tr H (first form)", c.hessian_trace[b], a - jp, 1e-9);
        close("tr H = E_yhat ||grad l||^2", c.hessian_trace[b], expect_g2[b], RTOL);
        close("tr H = p-weighted cross-Lipschitz", c.hessian_trace[b], half, 1e-9);
        // 4. lambda_max(S) <= 1/2; H PSD with lambda_max(H) <= tr H; lambda_max(H) <= 1/2 |J_c|_2^2
        double S[64], w[8];
        for (size_t k = 0; k < f.K; k++)
            for (size_t l = 0; l < f.K; l++)
                S[k * f.K + l] = (k == l ? p[k] : 0) - p[k] * p[l];
        rr_eigen_symmetric(S, f.K, w, NULL);
        cr_expect(w[f.K - 1] <= 0.5 && w[0] >= -1e-15, "spectrum of S [%g, %g]", w[0], w[f.K - 1]);
        cr_expect(c.hessian_max_eigenvalue[b] >= 0 &&
                  c.hessian_max_eigenvalue[b] <= c.hessian_trace[b] * (1 + 1e-9));
        // 2. ||grad l||^2 <= ||p - e_y||^2 ||J_c||_2^2 <= ||p - e_y||^2 (K/2) Omega
        const double omega = 2.0 / f.K * c.centered_jacobian_fro2[b];
        cr_expect(c.input_gradient_norm2[b] <= c.input_gradient_bound[b] * (1 + 1e-9));
        cr_expect(c.input_gradient_bound[b] <= c.residual_norm2[b] * f.K / 2 * omega * (1 + 1e-9));
    }
    free(expect_g2);
    free(g);
    free(seed);
    for (int i = 0; i < 10; i++)
        free(v[i]);
    free(left);
    teardown(&f);
}

// 6. Inside Q(x): grad l(x + h u) - grad l(x) = J^T [softmax(z + h J u) - p] exactly, and the
// ratio ||dg||^2 / (h^2 ||H u||^2) is 1 + O(h). With float32 gradients the difference at
// h = 1e-3 carries ~1e-4 relative rounding, so the ratio is checked to 2e-2 there.
Test(connections, identity6_cure_closed_form_in_region)
{
    fixture f;
    setup(&f, mlp, 6, 3);
    double *v[10];
    for (int i = 0; i < 10; i++)
        v[i] = calloc(f.B, sizeof(double));
    bool *left = calloc(f.B, sizeof(bool));
    rr_connections c = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], left};
    cr_assert_eq(rr_connections_compute(f.m, f.ws, f.x, f.y, f.B, 1e-3, &c, NULL), RR_OK);
    for (size_t b = 0; b < f.B; b++) {
        cr_expect(!left[b], "x + h u left the region at h = 1e-3");
        cr_expect(fabs(c.curvature_ratio[b] - 1) < 2e-2, "ratio %g at h = 1e-3",
                  c.curvature_ratio[b]);
    }
    // The exact closed form, at h = 1e-3, against J and z (double), with u from g.
    const double h = 1e-3;
    float *r = malloc(f.B * f.K * sizeof(float)), *g = malloc(f.B * f.D * sizeof(float));
    float *x2 = malloc(f.B * f.D * sizeof(float)), *g2 = malloc(f.B * f.D * sizeof(float));
    float *z2 = malloc(f.B * f.K * sizeof(float)), *r2 = malloc(f.B * f.K * sizeof(float));
    cr_assert_eq(rr_cross_entropy(f.z, f.y, f.B, (int)f.K, NULL, NULL, r, NULL, NULL), RR_OK);
    cr_assert_eq(rr_vjp(f.m, f.ws, f.x, f.B, r, g, NULL, NULL), RR_OK);
    double *u = malloc(f.D * sizeof(double));
    for (size_t b = 0; b < f.B; b++) {
        size_t nnz = 0;
        for (size_t i = 0; i < f.D; i++)
            nnz += g[b * f.D + i] != 0;
        for (size_t i = 0; i < f.D; i++) {
            float ui = (float)((g[b * f.D + i] > 0) - (g[b * f.D + i] < 0)) / sqrtf((float)nnz);
            x2[b * f.D + i] = (float)(f.x[b * f.D + i] + h * ui);
        }
    }
    cr_assert_eq(rr_forward(f.m, f.ws, x2, f.B, z2, NULL, NULL, NULL), RR_OK);
    cr_assert_eq(rr_cross_entropy(z2, f.y, f.B, (int)f.K, NULL, NULL, r2, NULL, NULL), RR_OK);
    cr_assert_eq(rr_vjp(f.m, f.ws, x2, f.B, r2, g2, NULL, NULL), RR_OK);
    for (size_t b = 0; b < f.B; b++) {
        // softmax(z + J (x2 - x)) - p, with the actual (float32) displacement
        double zz[8], mx = -INFINITY, s = 0;
        for (size_t k = 0; k < f.K; k++) {
            zz[k] = f.z[b * f.K + k];
            for (size_t i = 0; i < f.D; i++)
                zz[k] += (double)f.J[(b * f.K + k) * f.D + i] *
                         ((double)x2[b * f.D + i] - f.x[b * f.D + i]);
            mx = fmax(mx, zz[k]);
        }
        for (size_t k = 0; k < f.K; k++)
            s += exp(zz[k] - mx);
        double err = 0, scale = 0;
        for (size_t i = 0; i < f.D; i++) {
            double want = 0;
            for (size_t k = 0; k < f.K; k++)
                want += (exp(zz[k] - mx) / s - f.p[b * f.K + k]) * f.J[(b * f.K + k) * f.D + i];
            double got = (double)g2[b * f.D + i] - g[b * f.D + i];
            err = fmax(err, fabs(got - want));
            scale = fmax(scale, fabs(want));
        }
        // float32 gradients differenced at a step of 1e-3: 1e-2 of the difference's size.
        cr_expect(err <= 1e-2 * scale, "closed form off by %g (scale %g)", err, scale);
    }
    free(u);
    free(r2);
    free(z2);
    free(g2);
    free(x2);
    free(g);
    free(r);
    for (int i = 0; i < 10; i++)
        free(v[i]);
    free(left);
    teardown(&f);
}

// 7. Adding c(x)·1 to all logits (here: the same row a added to every row of the last
// weight, so c(x) = a^T h(x)) changes ||J||^2 but not p, l, grad l, tr H, J_c or Omega.
Test(connections, identity7_common_logit_shift)
{
    fixture f;
    setup(&f, mlp, 7, 4);
    double *theta = rr_test_params(f.m);
    const rr_param *W = rr_model_param_find(f.m, "4.weight");
    for (size_t j = 0; j < 16; j++) {
        const double a = 0.3 * sin((double)j + 1);
        for (size_t k = 0; k < 5; k++)
            theta[W->offset + k * 16 + j] += a;
    }
    rr_model *m2 = rr_test_model_like(f.m, theta);
    rr_workspace *ws2 = NULL;
    rr_workspace_params wp = {.max_batch = f.B, .rows_per_sample = f.K};
    cr_assert_eq(rr_workspace_new(m2, &wp, &ws2, NULL), RR_OK);
    double *a[10], *b2[10];
    bool la[8], lb[8];
    for (int i = 0; i < 10; i++) {
        a[i] = calloc(f.B, sizeof(double));
        b2[i] = calloc(f.B, sizeof(double));
    }
    rr_connections ca = {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], la};
    rr_connections cb = {b2[0], b2[1], b2[2], b2[3], b2[4], b2[5], b2[6], b2[7], b2[8], b2[9], lb};
    // The shifted weights are rounded to float32, so the invariance holds to float32 rounding.
    cr_assert_eq(rr_connections_compute(f.m, f.ws, f.x, f.y, f.B, 1.5, &ca, NULL), RR_OK);
    cr_assert_eq(rr_connections_compute(m2, ws2, f.x, f.y, f.B, 1.5, &cb, NULL), RR_OK);
    bool changed = false;
    for (size_t s = 0; s < f.B; s++) {
        close("||J_c||^2 invariant", cb.centered_jacobian_fro2[s], ca.centered_jacobian_fro2[s],
              1e-4);
        close("||grad l||^2 invariant", cb.input_gradient_norm2[s], ca.input_gradient_norm2[s],
              1e-3);
        close("tr H invariant", cb.hessian_trace[s], ca.hessian_trace[s], 1e-3);
        close("||p - e_y||^2 invariant", cb.residual_norm2[s], ca.residual_norm2[s], 1e-4);
        changed |= fabs(cb.jacobian_fro2[s] - ca.jacobian_fro2[s]) > 1e-2 * ca.jacobian_fro2[s];
    }
    cr_expect(changed, "||J||_F^2 should change with a non-constant common shift");
    for (int i = 0; i < 10; i++) {
        free(a[i]);
        free(b2[i]);
    }
    rr_workspace_free(ws2);
    rr_model_release(m2);
    free(theta);
    teardown(&f);
}
