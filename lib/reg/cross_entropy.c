// cross_entropy (math.md): R_i = l_i = logsumexp(z_i) - z_{i,y}. dR/dz = p - e_y, so both
// gradients come from one backward row with that seed.
#include "reg/reg_impl.h"

rr_status rr__reg_cross_entropy(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o)
{
    (void)s;
    const size_t K = c->K;
    for (size_t i = 0; i < c->nb; i++) {
        if (o->per_sample)
            o->per_sample[c->b0 + i] = (float)c->ce[i];
        o->value += c->ce[i];
    }
    if (o->grad_inputs || o->grad_parameters) {
        for (size_t i = 0; i < c->nb * K; i++)
            c->seed[i] = (float)(c->r[i] * c->scale);
        rr__reg_vjp(c, c->ws, c->seed, 1, o->grad_inputs ? o->grad_inputs + c->b0 * c->D : NULL,
                    o->grad_parameters, NULL);
    }
    return RR_OK;
}
