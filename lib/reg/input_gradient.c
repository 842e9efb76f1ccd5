// input_gradient (math.md; Ross & Doshi-Velez, double backprop): R_i = ||g_i||_2^2 (l2) or
// ||g_i||_1 (l1), g_i = grad_x l_i = J_i^T r_i, r = p - e_y.
//
// With d = dR/dg (2g for l2, sign(g) for l1):
//   dR/dz = S J d            (through r = p - e_y, dp/dz = S)    -> grad_x R = J^T S J d = 2Hg
//   <dR/dJ, dJ> = r^T dJ d   (rank one: seed r, tangent d)
// so J is never formed: one JVP (J d), one backward row with seed S J d (input gradient and the
// parameter part through z), and one tangent row d paired with the stored rows of the g pass.
#include <math.h>

#include "reg/reg_impl.h"

rr_status rr__reg_input_gradient(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o)
{
    const size_t D = c->D, K = c->K, nb = c->nb;
    const bool l1 = s->norm == RR_REG_NORM_L1;
    float *d = c->vd[0];
#pragma omp parallel for schedule(static) if (nb * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        const float *g = c->g + i * D;
        double R = 0.0;
        for (size_t j = 0; j < D; j++) {
            R += l1 ? fabs((double)g[j]) : (double)g[j] * g[j];
            d[i * D + j] = l1 ? (float)((g[j] > 0.0f) - (g[j] < 0.0f)) : 2.0f * g[j];
        }
        c->rs[i] = R;
    }
    rr__reg_report(c, o);
    if (!o->grad_inputs && !o->grad_parameters)
        return RR_OK;
    // dR/dz = S (J d), scaled by the reduction.
    float *Jd = c->vk[0];
    rr__reg_jvp(c, c->ws, d, 1, Jd, NULL, NULL);
    for (size_t i = 0; i < nb; i++) {
        rr__softmax_jvp(c->seed + i * K, c->prob + i * K, Jd + i * K, K);
        for (size_t k = 0; k < K; k++)
            c->seed[i * K + k] = (float)(c->seed[i * K + k] * c->scale);
    }
    rr__reg_vjp(c, c->ws, c->seed, 1, o->grad_inputs ? o->grad_inputs + c->b0 * D : NULL,
                o->grad_parameters, NULL);
    if (o->grad_parameters) {
        // <r d^T, dJ/dtheta>: tangent d (scaled) against the rows of the g pass (seeds r).
        for (size_t j = 0; j < nb * D; j++)
            c->tan[j] = (float)(d[j] * c->scale);
        rr__reg_jvp(c, c->ws, c->tan, 1, NULL, &c->ur, o->grad_parameters);
    }
    return RR_OK;
}
