// Softmax cross-entropy: values against a direct float64 evaluation, the gradient against
// central differences, and label / finiteness checks.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "relureg.h"

Test(loss, values_probabilities_and_gradient)
{
    const int K = 4;
    const float z[2][4] = {{1.0f, -2.0f, 0.5f, 3.0f}, {100.0f, 99.0f, -50.0f, 0.0f}};
    const int64_t y[2] = {3, 1};
    float loss[2], p[8], g[8];
    double mean;
    cr_assert_eq(rr_cross_entropy(&z[0][0], y, 2, K, loss, p, g, &mean, NULL), RR_OK);
    for (int b = 0; b < 2; b++) {
        double mx = z[b][0], s = 0;
        for (int k = 0; k < K; k++)
            mx = fmax(mx, z[b][k]);
        for (int k = 0; k < K; k++)
            s += exp(z[b][k] - mx);
        double want = mx + log(s) - z[b][y[b]];
        cr_expect(fabs(loss[b] - want) <= 1e-6 * fmax(1, want), "loss %d: %g vs %g", b, loss[b],
                  want);
        double psum = 0;
        for (int k = 0; k < K; k++) {
            psum += p[b * K + k];
            // d loss / d z_k by central differences in double
            double zp[4], zm[4], h = 1e-5;
            for (int j = 0; j < K; j++)
                zp[j] = zm[j] = z[b][j];
            zp[k] += h;
            zm[k] -= h;
            double lp, lm, sp = 0, sm = 0, mp = zp[0], mm = zm[0];
            for (int j = 0; j < K; j++)
                mp = fmax(mp, zp[j]), mm = fmax(mm, zm[j]);
            for (int j = 0; j < K; j++)
                sp += exp(zp[j] - mp), sm += exp(zm[j] - mm);
            lp = mp + log(sp) - zp[y[b]];
            lm = mm + log(sm) - zm[y[b]];
            cr_expect(fabs(g[b * K + k] - (lp - lm) / (2 * h)) < 1e-6, "grad %d,%d", b, k);
        }
        cr_expect(fabs(psum - 1) < 1e-6);
    }
    cr_expect(fabs(mean - (loss[0] + loss[1]) / 2) < 1e-6);
}

Test(loss, rejects_labels_out_of_range)
{
    const float z[3] = {0, 1, 2};
    const int64_t bad[1] = {3}, neg[1] = {-1};
    rr_error err = {0};
    cr_expect_eq(rr_cross_entropy(z, bad, 1, 3, NULL, NULL, NULL, NULL, &err), RR_EINVAL);
    cr_expect_str_eq(err.field, "labels");
    cr_expect_eq(rr_cross_entropy(z, neg, 1, 3, NULL, NULL, NULL, NULL, NULL), RR_EINVAL);
}

Test(loss, rejects_non_finite_logits)
{
    const float z[3] = {0, INFINITY, 2};
    const int64_t y[1] = {0};
    cr_expect_eq(rr_cross_entropy(z, y, 1, 3, NULL, NULL, NULL, NULL, NULL), RR_ENONFINITE);
}

// rr_softmax: rows against a float64 evaluation with the max subtracted, large logits that
// would overflow exp without it, and probabilities equal to rr_cross_entropy's (one formula).
Test(loss, softmax_rows)
{
    const size_t B = 3, K = 4;
    const float z[3][4] = {
        {1.0f, -2.0f, 0.5f, 3.0f}, {1000.0f, 999.0f, -50.0f, 0.0f}, {-7.0f, -7.0f, -7.0f, -7.0f}};
    float p[12], pce[12];
    const int64_t y[3] = {0, 1, 2};
    rr_softmax(&z[0][0], B, K, p);
    cr_assert_eq(rr_cross_entropy(&z[0][0], y, B, (int)K, NULL, pce, NULL, NULL, NULL), RR_OK);
    for (size_t b = 0; b < B; b++) {
        double mx = z[b][0], s = 0;
        for (size_t k = 0; k < K; k++)
            mx = fmax(mx, z[b][k]);
        for (size_t k = 0; k < K; k++)
            s += exp(z[b][k] - mx);
        for (size_t k = 0; k < K; k++) {
            const double want = exp(z[b][k] - mx) / s;
            cr_expect(isfinite(p[b * K + k]), "p[%zu][%zu] not finite", b, k);
            cr_expect(fabs(p[b * K + k] - want) <= 1e-7 * fmax(1, want), "p[%zu][%zu] %g vs %g", b,
                      k, p[b * K + k], want);
            cr_expect_eq(p[b * K + k], pce[b * K + k], "softmax and cross-entropy disagree");
        }
    }
    // In place.
    float q[12];
    memcpy(q, z, sizeof q);
    rr_softmax(q, B, K, q);
    cr_expect_arr_eq(q, p, sizeof q);
}
