// Chunk-level passes shared by the public compute calls (forward.c, vjp.c, jvp.c,
// jacobian.c) and, later, the regularizers: one forward over nb samples, then any number of
// backward or tangent passes over nb * R rows that reuse its masks and max-pool indices.
#ifndef RR_NN_PASSES_H
#define RR_NN_PASSES_H

#include "nn/workspace_impl.h"

// Primal forward of nb <= ws->nb samples x [nb, D] (borrowed until the chunk's passes are
// done). Returns the logits [nb, K], which live in the workspace.
const float *rr__forward_chunk(const rr_model *m, rr_workspace *ws, const float *x, size_t nb);

// Backward (VJP) of the chunk's last forward for nb * R rows (row r belongs to sample r / R):
// g_logits [nb*R, K] -> gx [nb*R, D] (overwritten; NULL when not needed). When dparams is not
// NULL (then R must be 1) it ACCUMULATES the parameter gradient sum_r d<g_r, z_r>/dtheta.
void rr__backward_chunk(const rr_model *m, rr_workspace *ws, size_t nb, size_t R,
                        const float *g_logits, float *gx, float *dparams);

// Forward tangents (JVP) through the chunk's linear region: v [nb*T, D] -> out [nb*T, K]
// (overwritten), row r belonging to sample r / T.
void rr__tangent_chunk(const rr_model *m, rr_workspace *ws, size_t nb, size_t T, const float *v,
                       float *out);

// Pattern bytes of the chunk's samples (rows of `stride` bytes) and their 64-bit hashes.
void rr__pattern_chunk(const rr_model *m, const rr_workspace *ws, size_t nb, uint8_t *pattern,
                       size_t stride);
void rr__pattern_hash_chunk(const rr_model *m, const rr_workspace *ws, size_t nb, uint64_t *hash);

// Shared argument checks of the public calls: workspace planned for m, finite inputs.
rr_status rr__check_call(const rr_model *m, const rr_workspace *ws, const float *x, size_t B,
                         rr_error *err);

#endif
