// Cancellation and progress of a long computation: the one struct every params struct of a
// long call (rr_reg_params, rr_attack_params, rr_certify_params, rr_robustness_params,
// rr_train_params) carries as its `control` member (ggml_cplan's abort_callback, one place).
//
// A zero-initialised rr_control (what designated initialisers leave) asks for nothing: no
// cancellation, no progress. Both callbacks run on the thread that made the call, never inside
// the library's OpenMP regions, between chunks, steps or samples; they must be cheap and must
// not call back into the same computation. Ownership: the contexts are borrowed for the call.
#ifndef RR_CORE_CONTROL_H
#define RR_CORE_CONTROL_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Returns true to stop the call, which then returns RR_ECANCELLED (outputs are unspecified).
typedef bool (*rr_abort_fn)(void *ctx);
// The fraction of the call done, in [0, 1], non-decreasing within a call.
typedef void (*rr_progress_fn)(void *ctx, double fraction);

typedef struct rr_control {
    rr_abort_fn abort; // may be NULL: never cancelled
    void *abort_ctx;
    rr_progress_fn progress; // may be NULL: no reports
    void *progress_ctx;
} rr_control;

#ifdef __cplusplus
}
#endif

#endif
