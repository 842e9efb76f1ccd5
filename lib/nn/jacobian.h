// The exact input Jacobian of the logits, J [B, K, D], in one batched backward pass with K
// seed rows per sample (../shared/spec/math.md, "Notation").
//
// Exact on a ReLU-family net: J is constant on the linear region Q(x) and backprop with the
// forward masks frozen computes it without approximation. Conventions at ties follow
// PyTorch (relu'(0) = 0, first maximal max-pool entry). Errors and threads as forward.h.
#ifndef RR_NN_JACOBIAN_H
#define RR_NN_JACOBIAN_H

#include "nn/forward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rr_jacobian_of {
    RR_JACOBIAN_LOGITS,           // dz/dx
    RR_JACOBIAN_LOG_PROBABILITIES // d log softmax(z)/dx = (I - 1 p^T) J
} rr_jacobian_of;

// J [B, K, D] (row k of sample b is the gradient of output k), and logits [B, K] when not
// NULL. Plan the workspace with rows_per_sample = K for whole chunks.
rr_status rr_jacobian(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                      rr_jacobian_of of, float *J, float *logits, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
