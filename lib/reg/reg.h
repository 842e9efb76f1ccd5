// Robustness regularizers of ../shared/spec/math.md ("Regularizers"): values per sample, the
// reduced value, and their exact gradients with respect to the inputs and to every model
// parameter, several regularizers sharing one forward pass (and one Jacobian) per call.
//
// Exact, not finite differences: on a piecewise-linear net every regularizer is a function of
// the input Jacobian J and the logits z (math.md, "The connections"). Its input gradient is
// J^T dR/dz (dJ/dx = 0 inside a linear region); its parameter gradient is a backward pass with
// seed dR/dz plus <dR/dJ, dJ/dtheta>, which is backprop through the masked linear net: rows of
// a backward pass paired with a forward-tangent pass (lib/nn/passes.h). Regularizers that
// need only J^T r (input_gradient, curvature) never form J.
// Threads: OpenMP / BLAS threads of the calling thread; results are bit-identical at any
// thread count for the same inputs and seeds. Errors: RR_EINVAL for options out of range
// (field = the option's name), labels out of [0, K); RR_ENONFINITE for non-finite inputs;
// RR_ENOMEM; RR_ECANCELLED when the abort callback says so.
#ifndef RR_REG_REG_H
#define RR_REG_REG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control.h"
#include "core/status.h"
#include "nn/model.h"
#include "nn/workspace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rr_reg_name {
    RR_REG_CROSS_ENTROPY,   // l_i
    RR_REG_INPUT_GRADIENT,  // ||grad_x l_i||_2^2 (l2) or ||grad_x l_i||_1 (l1)
    RR_REG_JACOBIAN,        // ||J_i||_F^2, exact or by random projections
    RR_REG_CROSS_LIPSCHITZ, // (2/K) ||J_c,i||_F^2
    RR_REG_CURVATURE,       // CURE finite difference, h^2 ||H u||^2, or tr H
    RR_REG_WEIGHT_DECAY     // 1/2 sum ||W||^2 over linear and conv weights (not per sample)
} rr_reg_name;

typedef enum rr_reg_norm { RR_REG_NORM_L2, RR_REG_NORM_L1 } rr_reg_norm;
typedef enum rr_reg_estimator { RR_REG_EXACT, RR_REG_PROJECTION } rr_reg_estimator;
typedef enum rr_reg_directions { RR_REG_SPHERE, RR_REG_ONEHOT } rr_reg_directions;
typedef enum rr_reg_method { RR_REG_FINITE_DIFFERENCE, RR_REG_HESSIAN, RR_REG_TRACE } rr_reg_method;

// One regularizer and its options (math.md table; zero-initialised fields mean defaults).
typedef struct rr_reg_spec {
    rr_reg_name name;
    rr_reg_norm norm;             // input_gradient: l2 (default) or l1
    rr_reg_estimator estimator;   // jacobian: exact (default) or projection
    int projections;              // jacobian projection: n >= 1; 0 = default (1, K with onehot)
    rr_reg_directions directions; // jacobian projection: sphere (default) or onehot
    uint64_t seed;                // jacobian projection: directions drawn from (seed, sample)
    rr_reg_method method;         // curvature: finite_difference (default), hessian, trace
    double h;                     // curvature step, > 0; 0 = default 1.5
    bool unsquared;               // curvature: report ||.|| instead of ||.||^2 (squared: false)
} rr_reg_spec;

#define RR_REG_DEFAULT_H 1.5

typedef struct rr_reg_params {
    const rr_reg_spec *regs; // nregs regularizers, borrowed
    size_t nregs;
    bool sum;            // reduction "sum" (default false: "mean") for values and gradients
    int max_projections; // upper bound for `projections` (0 = 10000, api.md --max-steps)
    rr_control control;  // abort polled between chunks and regularizers; progress unused
} rr_reg_params;

// One regularizer's results. Arrays are caller-owned; a NULL array is not computed.
typedef struct rr_reg_result {
    double value;           // reduced value (mean or sum; weight_decay: 1/2 sum ||W||^2)
    float *per_sample;      // [B] (weight_decay: left untouched, it has none)
    float *grad_inputs;     // [B, D], d value / d inputs (OVERWRITTEN)
    float *grad_parameters; // [rr_model_param_array_size(m)], d value / d theta (OVERWRITTEN)
    float *directions;      // [B, n, K] projection directions used (jacobian projection only;
                            // a test hook so that a reference can use the same draws)
} rr_reg_result;

// The softmax cross-entropy of the batch, always computed alongside.
typedef struct rr_reg_loss {
    double value;      // mean (or sum) over the batch
    float *per_sample; // [B], may be NULL
    float *logits;     // [B, K], may be NULL
} rr_reg_loss;

// Checks one spec's options (ranges of math.md "Ranges"); K is the model's class count.
rr_status rr_reg_spec_check(const rr_reg_spec *spec, int K, int max_projections, rr_error *err);

// Computes every regularizer of p->regs on the batch x [B, D] with labels [B] (in [0, K); both
// borrowed for the call) into out[0..nregs) (caller-owned arrays, see rr_reg_result) and the
// loss into *loss (may be NULL). Plan ws with rows_per_sample >= K (and >= projections) for
// whole chunks; smaller plans work in smaller chunks. Errors as at the top of this file, plus
// RR_EINVAL (field "workspace") when ws cannot hold one sample's rows.
rr_status rr_reg_compute(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                         size_t B, const rr_reg_params *p, rr_reg_result *out, rr_reg_loss *loss,
                         rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
