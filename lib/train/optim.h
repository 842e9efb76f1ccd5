// Optimizers over a flat parameter vector (the model's rr_param layout): SGD with momentum
// (PyTorch's form: v = mu v + g; w -= lr v) and Adam (Kingma & Ba, bias-corrected).
// Ownership: rr_optim owned by the caller (rr_optim_free). Thread rules: one user at a time.
#ifndef RR_TRAIN_OPTIM_H
#define RR_TRAIN_OPTIM_H

#include <stddef.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rr_optim_kind { RR_OPTIM_ADAM, RR_OPTIM_SGD } rr_optim_kind;

typedef struct rr_optim_params {
    rr_optim_kind kind;
    double lr;       // > 0
    double momentum; // SGD, in [0, 1)
    double beta1;    // Adam (0 = default 0.9)
    double beta2;    // Adam (0 = default 0.999)
    double eps;      // Adam (0 = default 1e-8)
} rr_optim_params;

typedef struct rr_optim rr_optim;

// For n parameters. RR_EINVAL for an invalid lr / momentum / beta, RR_ENOMEM.
rr_status rr_optim_new(size_t n, const rr_optim_params *p, rr_optim **out, rr_error *err);
void rr_optim_free(rr_optim *o); // no-op on NULL
// One step: w[0..n) updated in place from the gradient g[0..n).
void rr_optim_step(rr_optim *o, float *w, const float *g);

#ifdef __cplusplus
}
#endif

#endif
