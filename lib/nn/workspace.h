// Per-call mutable state for computations on one model: activations, max-pool indices,
// backward / tangent buffers and conv scratch (plan, then compute: ggml's cplan).
//
// A workspace is planned for a model and a number of "rows per sample": 1 for a VJP, K for
// the Jacobian (one backward row per class), T for T forward tangents. A batch larger than
// the memory budget allows is processed in chunks of rr_workspace_chunk() samples (fewer when
// a call needs more rows per sample than planned), so any batch size works with any
// workspace. Kernels never allocate; everything they need is here.
// Ownership: owned by the caller (rr_workspace_free). Thread rules: one workspace serves one
// call at a time; use one per concurrent request. It borrows the model, which must outlive it.
#ifndef RR_NN_WORKSPACE_H
#define RR_NN_WORKSPACE_H

#include <stddef.h>

#include "core/status.h"
#include "nn/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_workspace rr_workspace;

typedef struct rr_workspace_params {
    size_t max_batch;       // samples per call the caller expects (>= 1; bounds the chunk)
    size_t rows_per_sample; // backward / tangent rows per sample to plan for (0 means 1)
    size_t budget_bytes;    // memory for chunked state; 0 = RR_WORKSPACE_DEFAULT_BUDGET
} rr_workspace_params;

#define RR_WORKSPACE_DEFAULT_BUDGET ((size_t)256 << 20)

// Plans and allocates. RR_EINVAL for max_batch 0; RR_ENOMEM when the allocation fails (also
// when even one sample does not fit in the budget and the allocation of that fails).
rr_status rr_workspace_new(const rr_model *m, const rr_workspace_params *p, rr_workspace **out,
                           rr_error *err);
void rr_workspace_free(rr_workspace *ws); // no-op on NULL
// Bytes of chunked state one sample needs at rows_per_sample (0 means 1): what
// rr_workspace_new checks against the budget, so a model whose value at 1 row is over the
// budget can run no call at all. SIZE_MAX when the size overflows. Allocates nothing.
size_t rr_workspace_sample_bytes(const rr_model *m, size_t rows_per_sample);
// Samples per chunk at the planned rows per sample, and the bytes held.
size_t rr_workspace_chunk(const rr_workspace *ws);
size_t rr_workspace_bytes(const rr_workspace *ws);

#ifdef __cplusplus
}
#endif

#endif
