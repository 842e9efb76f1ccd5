// jacobian (math.md; Jakubovitz & Giryes, Hoffman et al.): R_i = ||J_i||_F^2, exact or by
// random projections R_i = (K/n) sum_j ||J_i^T v_ij||^2 with v_ij uniform on the unit sphere
// of R^K (unbiased: E[K v v^T] = I) or v_ij = e_j (onehot, n = K, exact).
//
// grad_x R = 0 inside a linear region. Parameters: dR/dJ = 2J = sum_k e_k (2 J_k)^T, i.e. the
// Jacobian pass's rows (seeds e_k) paired with tangents 2 J_k; for projections
// dR/dJ = (2K/n) sum_j v_j u_j^T with u_j = J^T v_j: seeds v_j, tangents (2K/n) u_j, n rows
// per sample whatever K is.
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "reg/reg_impl.h"

static rr_status exact(rr__reg_ctx *c, rr_reg_result *o)
{
    const size_t D = c->D, K = c->K, nb = c->nb;
#pragma omp parallel for schedule(static) if (nb * K * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        const float *J = c->J + i * K * D;
        double R = 0.0;
        for (size_t j = 0; j < K * D; j++)
            R += (double)J[j] * J[j];
        c->rs[i] = R;
    }
    rr__reg_report(c, o);
    if (o->grad_parameters) {
        const float f = (float)(2.0 * c->scale);
#pragma omp parallel for schedule(static) if (nb * K * D >= RR__REG_PAR_MIN)
        for (size_t j = 0; j < nb * K * D; j++)
            c->tan[j] = f * c->J[j];
        rr__reg_jvp(c, c->ws, c->tan, K, NULL, &c->uJ, o->grad_parameters);
    }
    return RR_OK;
}

static rr_status projection(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o)
{
    const size_t D = c->D, K = c->K, nb = c->nb;
    const bool onehot = s->directions == RR_REG_ONEHOT;
    const size_t n = onehot ? K : (s->projections ? (size_t)s->projections : 1);
    // Directions: a stream per (seed, sample index in the batch).
    float *v = c->seed; // [nb * n, K]
    for (size_t i = 0; i < nb; i++) {
        rr_rng rng;
        rr_rng_init(&rng, s->seed, c->b0 + i);
        for (size_t j = 0; j < n; j++) {
            float *vj = v + (i * n + j) * K;
            if (onehot) {
                for (size_t k = 0; k < K; k++)
                    vj[k] = k == j ? 1.0f : 0.0f;
                continue;
            }
            // A standard normal vector, normalised: uniform on the sphere.
            double nn = 0.0;
            for (size_t k = 0; k < K; k++) {
                vj[k] = (float)rr_rng_normal(&rng);
                nn += (double)vj[k] * vj[k];
            }
            nn = sqrt(nn);
            for (size_t k = 0; k < K; k++)
                vj[k] = (float)(vj[k] / nn);
        }
    }
    if (o->directions)
        memcpy(o->directions + c->b0 * n * K, v, nb * n * K * sizeof(float));
    // u_j = J^T v_j: one backward pass of n rows per sample.
    float *u = c->rows;
    rr__reg_vjp(c, c->ws, v, n, u, NULL, o->grad_parameters ? &c->u2 : NULL);
    const double f = (double)K / (double)n;
#pragma omp parallel for schedule(static) if (nb * n * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        double R = 0.0;
        for (size_t j = 0; j < n * D; j++)
            R += (double)u[i * n * D + j] * u[i * n * D + j];
        c->rs[i] = R * f;
    }
    rr__reg_report(c, o);
    if (o->grad_parameters) {
        const float t = (float)(2.0 * f * c->scale);
#pragma omp parallel for schedule(static) if (nb * n * D >= RR__REG_PAR_MIN)
        for (size_t j = 0; j < nb * n * D; j++)
            c->tan[j] = t * u[j];
        rr__reg_jvp(c, c->ws, c->tan, n, NULL, &c->u2, o->grad_parameters);
    }
    return RR_OK;
}

rr_status rr__reg_jacobian(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o)
{
    rr__reg_zero_inputs(c, o);
    return s->estimator == RR_REG_PROJECTION ? projection(c, s, o) : exact(c, o);
}
