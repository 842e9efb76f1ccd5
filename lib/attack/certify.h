// Linear-region certificates (../shared/spec/math.md, "Certificates"): per sample the decision
// distance d_D, the region distance d_B, the certified radius min(d_D, d_B) in l2 or linf, the
// `exact` flag and, when exact, the point that flips the class.
//
// How: one float32 forward fixes the activation pattern (the region Q(x)); a forward-mode
// pass with identity tangents, in blocks of input coordinates, carries the gradient of every
// relu input and max-pool entry (batched GEMMs through each layer, no per-unit backward) and
// accumulates the dual norms of the constraints' gradients; J comes out of the same pass.
// The constraint values g(x) and the logit margins come from a double-precision forward of
// the same float32 weights inside the same pattern. Inputs are not clipped (math.md).
// Threads and determinism as the rest of librelureg. Errors: RR_ENONFINITE ("inputs"),
// RR_EINVAL ("labels"), RR_ENOMEM, RR_ECANCELLED.
#ifndef RR_ATTACK_CERTIFY_H
#define RR_ATTACK_CERTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attack/attack.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_certify_params {
    rr_norm norm;          // RR_NORM_L2 (api.md default) or RR_NORM_LINF
    const int64_t *labels; // [B] or NULL: certify the predicted class
    rr_control control;    // abort polled every block of tangents; progress: samples done
} rr_certify_params;

// Caller-owned arrays of B entries (adversarial: [B, D]); the constraint arrays may be NULL.
// Distances are +INFINITY when no class / constraint is left (api.md: null).
typedef struct rr_certify_result {
    int64_t *predictions;
    double *decision_distance; // d_D (0 for misclassified samples)
    double *region_distance;   // d_B
    double *certified_radius;  // min(d_D, d_B), 0 when misclassified
    bool *exact;
    float *adversarial; // exact rows: x + (1 + 1e-4) r; other rows: the input
    // The binding constraints (for tests and the curious): j* of d_D (-1 when none), and
    // d_B's pattern layer (index among pattern layers, -1 when none), unit (relu: input
    // unit; max-pool: the selected entry, as c * H * W + index in the plane) and, for
    // max-pool, the other entry of the window (-1 for relu).
    int *decision_class;
    int *region_layer;
    int64_t *region_unit, *region_other;
} rr_certify_result;

// Certifies x [B, D] (borrowed). Plan ws with rows_per_sample >= min(D, 128) for whole blocks
// of tangents.
rr_status rr_certify(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                     const rr_certify_params *p, rr_certify_result *out, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
