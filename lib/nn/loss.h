// Softmax cross-entropy (../shared/spec/math.md, "Notation"): l = logsumexp(z) - z_y,
// p = softmax(z), dl/dz = p - e_y. Computed in double from float32 logits.
// Thread rules: pure.
#ifndef RR_NN_LOSS_H
#define RR_NN_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/model.h"
#include "nn/workspace.h"

#ifdef __cplusplus
extern "C" {
#endif

// For B samples of K logits and labels in [0, K): per-sample loss [B], probabilities [B, K]
// and per-sample gradient p - e_y [B, K] (each may be NULL; the gradient is of l_b itself, not
// divided by B), and the mean loss (may be NULL). RR_EINVAL (field "labels") for a label out
// of range; RR_ENONFINITE for non-finite logits.
rr_status rr_cross_entropy(const float *logits, const int64_t *labels, size_t B, int K, float *loss,
                           float *probs, float *g_logits, double *loss_mean, rr_error *err);

// probs [B, K] = softmax of each row of logits [B, K] (finite, as rr_forward writes them), in
// double: p_k = exp(z_k - logsumexp(z)). probs may alias logits. Never fails.
void rr_softmax(const float *logits, size_t B, size_t K, float *probs);

// One pass of training's core step: forward, the MEAN cross-entropy over the batch, and its
// gradient with respect to the inputs g_x [B, D] and the parameters g_params
// [rr_model_param_array_size(m)] (each may be NULL; g_params is OVERWRITTEN). loss_mean and
// per-sample losses loss [B] may be NULL. Errors as rr_vjp and rr_cross_entropy.
rr_status rr_cross_entropy_backward(const rr_model *m, rr_workspace *ws, const float *x,
                                    const int64_t *labels, size_t B, double *loss_mean, float *loss,
                                    float *g_x, float *g_params, rr_error *err);

// Per-sample input gradients of the cross-entropy, g_x[b] = grad_x l(x_b, labels[b]) (not
// divided by B: what attacks step along), and the logits [B, K] (may be NULL). Errors as
// rr_cross_entropy_backward.
rr_status rr_cross_entropy_input_gradient(const rr_model *m, rr_workspace *ws, const float *x,
                                          const int64_t *labels, size_t B, float *g_x,
                                          float *logits, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
