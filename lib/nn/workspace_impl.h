// Internal layout of rr_workspace (see workspace.h) and the chunk drivers' shared helpers.
#ifndef RR_NN_WORKSPACE_IMPL_H
#define RR_NN_WORKSPACE_IMPL_H

#include <stdint.h>

#include "nn/model_impl.h"
#include "nn/workspace.h"

// Conv GEMMs take this many rows at a time, and parameter gradients are summed in at most
// RR_CONV_GROUPS groups of such blocks, as many as the rows give (conv2d.c).
#define RR_CONV_BLOCK  4
#define RR_CONV_GROUPS 64

// Kernel scratch. Conv (see conv2d.c): per-thread im2col and GEMM output of one block of
// rows, and per-group partial sums of the weight and bias gradients. Linear: the partial
// products of a split GEMM (core/blas.h).
typedef struct rr__scratch {
    float *row; // nthreads blocks of row_cap floats: its own allocation, grown with the
                // caller's thread count (rr__ws_fit_threads)
    size_t row_cap;
    int nthreads; // OpenMP threads the row blocks are there for
    float *split; // RR__GEMM_SPLIT_FLOATS floats, NULL when the model has no linear layer
    float *part;  // RR_CONV_GROUPS blocks of part_cap floats
    size_t part_cap;
    double *bpart; // RR_CONV_GROUPS blocks of bpart_cap doubles
    size_t bpart_cap;
} rr__scratch;

struct rr_workspace {
    const rr_model *m; // borrowed: the model this workspace was planned for
    size_t nb;         // samples per chunk
    size_t rows;       // backward / tangent rows per chunk (nb * planned rows per sample)
    size_t *act_off;   // per activation buffer: float offset of its [nb, n] block (buffer 0
                       // is the caller's input and has none)
    float **act;       // per activation buffer: pointer for the current chunk
    float *act_block;  // nb * m->act_total floats
    int32_t *idx;      // nb * m->idx_total max-pool arg-max indices
    float *g[2];       // ping-pong row buffers, rows * m->max_act floats each
    float *stash;      // m->res_depth slots of rows * m->max_act floats
    float *seed;       // rows * K floats (backward seeds)
    rr__scratch scratch;
    void *block; // the single allocation everything above points into
    size_t bytes;
    rr_workspace_params plan; // what it was planned with (budget resolved)
    void *ext;                // per-call scratch of callers beyond the plan (rr__ws_ext), kept
    size_t ext_bytes;
    rr_workspace *twin; // a second workspace with the same plan (rr__ws_twin), kept
};

// Scratch of at least `bytes` beyond the plan, grown when needed and kept for the next call
// (its contents do not survive a call). NULL and RR_ENOMEM when it cannot grow.
void *rr__ws_ext(rr_workspace *ws, size_t bytes, rr_error *err);
// A second workspace with the same plan, for computations that need two forward states at
// once (created on first use, then kept). NULL and an error when it cannot be created.
rr_workspace *rr__ws_twin(rr_workspace *ws, rr_error *err);

// Per-thread kernel scratch for the calling thread's OpenMP thread count (of ws and its twin),
// grown when a call runs with more threads than the last. RR_ENOMEM when it cannot grow.
rr_status rr__ws_fit_threads(rr_workspace *ws, rr_error *err);

// Samples per chunk when a call needs R rows per sample (0 when even one sample does not fit).
size_t rr__ws_chunk_for(const rr_workspace *ws, size_t R);

#endif
