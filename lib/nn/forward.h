// Forward pass, vector-Jacobian and Jacobian-vector products of a model's logits
// (../shared/spec/math.md, "Notation": z = f(x), J = dz/dx, exact inside the linear region).
//
// All calls take a batch x [B, D] (row-major, D = product of input_shape; float32, finite:
// NaN/Inf is RR_ENONFINITE with field "inputs"), run it in chunks of the workspace, and
// write caller-owned outputs. RR_EINVAL when the workspace was planned for another model or
// cannot hold one sample at the rows a call needs. Threads: OpenMP / BLAS threads of the
// calling thread (rr_set_num_threads); results do not depend on their number.
#ifndef RR_NN_FORWARD_H
#define RR_NN_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/model.h"
#include "nn/workspace.h"

#ifdef __cplusplus
extern "C" {
#endif

// logits [B, K] (may be NULL); pattern [B, rr_model_pattern_bytes(m)] (may be NULL; see
// model.h for its layout); pattern_hash [B] (may be NULL): rr_pattern_hash of each pattern.
rr_status rr_forward(const rr_model *m, rr_workspace *ws, const float *x, size_t B, float *logits,
                     uint8_t *pattern, uint64_t *pattern_hash, rr_error *err);

// Vector-Jacobian product: given g_logits [B, K], writes g_x [B, D] = sum_k g[b,k] dz_k/dx_b
// (may be NULL) and OVERWRITES g_params [rr_model_param_array_size(m)] (may be NULL) with
// sum_b d<g_b, z_b>/dtheta, laid out as the model's parameters (rr_param.offset).
rr_status rr_vjp(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                 const float *g_logits, float *g_x, float *g_params, rr_error *err);

// Jacobian-vector products: for T tangents per sample v [B, T, D], writes jv [B, T, K] =
// J_b v_bt, and logits [B, K] when not NULL. RR_EINVAL for T == 0.
rr_status rr_jvp(const rr_model *m, rr_workspace *ws, const float *x, size_t B, const float *v,
                 size_t T, float *jv, float *logits, rr_error *err);

// 64-bit FNV-1a hash of a pattern (what /predict reports as activation_pattern_hash).
uint64_t rr_pattern_hash(const uint8_t *pattern, size_t n);

#ifdef __cplusplus
}
#endif

#endif
