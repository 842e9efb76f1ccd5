// Chunk-level passes shared by the public compute calls (forward.c, vjp.c, jvp.c,
// jacobian.c) and, later, the regularizers: one forward over nb samples, then any number of
// backward or tangent passes over nb * R rows that reuse its masks and max-pool indices.
#ifndef RR_NN_PASSES_H
#define RR_NN_PASSES_H

#include "nn/workspace_impl.h"

// logsumexp(z) of one row of K >= 1 logits, as max + log(sum exp(z - max)) in double: the one
// softmax normaliser of the library (loss.c, jacobian.c, reg.c).
double rr__logsumexp(const float *z, size_t K);

// Primal forward of nb <= ws->nb samples x [nb, D] (borrowed until the chunk's passes are
// done). Returns the logits [nb, K], which live in the workspace.
const float *rr__forward_chunk(const rr_model *m, rr_workspace *ws, const float *x, size_t nb);

// Backward rows recorded at the output of every parameterised op (u_i = the gradient arriving
// at op i's output), kept for parameter gradients of functions of J (math.md: on a ReLU net,
// <A, dJ/dtheta> is backprop through the masked linear net, whose adjoint is a tangent pass).
// at[i] holds rows * n_out(op i) floats for ops with parameters, NULL for the others.
typedef struct rr__ustore {
    float **at;  // m->nops entries
    size_t rows; // capacity in rows
} rr__ustore;

// Floats a store of `rows` rows needs, and carving one out of block (that many floats) with
// the pointer array ptrs (m->nops entries).
size_t rr__ustore_floats(const rr_model *m, size_t rows);
void rr__ustore_init(rr__ustore *us, const rr_model *m, float *block, float **ptrs, size_t rows);

// Backward (VJP) of the chunk's last forward for nb * R rows (row r belongs to sample r / R):
// g_logits [nb*R, K] -> gx [nb*R, D] (overwritten; NULL when not needed). When dparams is not
// NULL (then R must be 1) it ACCUMULATES the parameter gradient sum_r d<g_r, z_r>/dtheta.
// When us is not NULL, the rows reaching each parameterised op are recorded in it.
void rr__backward_chunk(const rr_model *m, rr_workspace *ws, size_t nb, size_t R,
                        const float *g_logits, float *gx, float *dparams, rr__ustore *us);

// Forward tangents (JVP) through the chunk's linear region: v [nb*T, D] -> out [nb*T, K]
// (overwritten; may be NULL), row r belonging to sample r / T. When us and dparams are not
// NULL, it also ACCUMULATES sum_r d<u_r, J v_r>/dtheta, u_r being row r of a backward pass
// recorded in us (for the same chunk and nb * T rows): with backward seeds a_r that is the
// parameter gradient of sum_r a_r^T J b_r at fixed masks, b_r = v_r.
void rr__tangent_chunk(const rr_model *m, rr_workspace *ws, size_t nb, size_t T, const float *v,
                       float *out, const rr__ustore *us, float *dparams);

// The same, calling hook(ctx, op, t, rows) with the tangent rows t [rows, n_in] that reach
// every pattern op (relu / leaky_relu / max-pool) before the op applies (certificates: with
// identity tangents these rows are the gradients of the op's inputs).
typedef void (*rr__tangent_hook)(void *ctx, int op, const float *t, size_t rows);
void rr__tangent_chunk_hook(const rr_model *m, rr_workspace *ws, size_t nb, size_t T,
                            const float *v, float *out, const rr__ustore *us, float *dparams,
                            rr__tangent_hook hook, void *hook_ctx);
// Pattern bytes of the chunk's samples (rows of `stride` bytes) and their 64-bit hashes.
void rr__pattern_chunk(const rr_model *m, const rr_workspace *ws, size_t nb, uint8_t *pattern,
                       size_t stride);
void rr__pattern_hash_chunk(const rr_model *m, const rr_workspace *ws, size_t nb, uint64_t *hash);

// Shared argument checks of the public calls: workspace planned for m, finite inputs; then
// the workspace's per-thread scratch fitted to the calling thread's thread count.
rr_status rr__check_call(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                         rr_error *err);

#endif
