// SGD with momentum and Adam (see optim.h).
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "core/tensor.h"

struct rr_optim {
    rr_optim_params p;
    size_t n;
    long t;   // steps taken
    float *m; // momentum / first moment
    float *v; // Adam second moment
};

rr_status rr_optim_new(size_t n, const rr_optim_params *p, rr_optim **out, rr_error *err)
{
    *out = NULL;
    if (!(p->lr > 0))
        return rr_error_set(err, RR_EINVAL, "lr", "learning rate must be > 0");
    if (p->kind == RR_OPTIM_SGD && !(p->momentum >= 0 && p->momentum < 1))
        return rr_error_set(err, RR_EINVAL, "momentum", "momentum must be in [0, 1)");
    rr_optim *o = calloc(1, sizeof *o);
    if (o == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    o->p = *p;
    if (o->p.beta1 == 0)
        o->p.beta1 = 0.9;
    if (o->p.beta2 == 0)
        o->p.beta2 = 0.999;
    if (o->p.eps == 0)
        o->p.eps = 1e-8;
    if (!(o->p.beta1 > 0 && o->p.beta1 < 1 && o->p.beta2 > 0 && o->p.beta2 < 1)) {
        free(o);
        return rr_error_set(err, RR_EINVAL, "beta", "Adam betas must be in (0, 1)");
    }
    o->n = n;
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        rr_optim_free(o);
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    }
    *out = o;
    return RR_OK;
}

void rr_optim_free(rr_optim *o)
{
    if (o) {
        free(o->m);
        free(o->v);
        free(o);
    }
}

void rr_optim_step(rr_optim *o, float *w, const float *g)
{
    o->t++;
    const float lr = (float)o->p.lr;
    if (o->p.kind == RR_OPTIM_SGD) {
        const float mu = (float)o->p.momentum;
        for (size_t i = 0; i < o->n; i++) {
            o->m[i] = mu * o->m[i] + g[i];
            w[i] -= lr * o->m[i];
        }
        return;
    }
    const float b1 = (float)o->p.beta1, b2 = (float)o->p.beta2, eps = (float)o->p.eps;
    const double c1 = 1.0 - pow(o->p.beta1, (double)o->t), c2 = 1.0 - pow(o->p.beta2, (double)o->t);
    const float step = (float)(o->p.lr / c1), root_c2 = (float)sqrt(c2);
    for (size_t i = 0; i < o->n; i++) {
        o->m[i] = b1 * o->m[i] + (1 - b1) * g[i];
        o->v[i] = b2 * o->v[i] + (1 - b2) * g[i] * g[i];
        w[i] -= step * o->m[i] / (sqrtf(o->v[i]) / root_c2 + eps);
    }
    (void)lr;
}
