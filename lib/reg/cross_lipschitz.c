// cross_lipschitz (math.md; Hein & Andriushchenko): R_i = (1/K^2) sum_{l,m} ||grad z_l -
// grad z_m||^2 = (2/K) ||J_c||_F^2, J_c = J minus its mean row (connection 3).
//
// grad_x R = 0 inside a linear region; dR/dJ = (4/K) J_c, paired with the Jacobian pass's rows.
#include "reg/reg_impl.h"

rr_status rr__reg_cross_lipschitz(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o)
{
    (void)s;
    const size_t D = c->D, K = c->K, nb = c->nb;
    rr__reg_zero_inputs(c, o);
    float *Jc = c->rows; // [nb, K, D]
#pragma omp parallel for schedule(static) if (nb * K * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        const float *J = c->J + i * K * D;
        float *Ji = Jc + i * K * D;
        double R = 0.0;
        for (size_t j = 0; j < D; j++) {
            double mean = 0.0;
            for (size_t k = 0; k < K; k++)
                mean += J[k * D + j];
            mean /= (double)K;
            for (size_t k = 0; k < K; k++) {
                const double v = J[k * D + j] - mean;
                Ji[k * D + j] = (float)v;
                R += v * v;
            }
        }
        c->rs[i] = R * (2.0 / (double)K);
    }
    rr__reg_report(c, o);
    if (o->grad_parameters) {
        const float f = (float)(4.0 / (double)K * c->scale);
#pragma omp parallel for schedule(static) if (nb * K * D >= RR__REG_PAR_MIN)
        for (size_t j = 0; j < nb * K * D; j++)
            c->tan[j] = f * Jc[j];
        rr__reg_jvp(c, c->ws, c->tan, K, NULL, &c->uJ, o->grad_parameters);
    }
    return RR_OK;
}
