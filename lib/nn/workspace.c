// Workspace planning and allocation (see workspace.h).
//
// Per sample a chunk needs: every activation buffer (act_total floats) and max-pool index
// (idx_total int32) of the forward pass, and for each of its R backward / tangent rows two
// ping-pong buffers and one stash per residual nesting level (max_act floats each) plus a
// seed row of K floats. The chunk is as many samples as fit the budget, at most max_batch.
// Conv scratch: one im2col row per thread (allocated on its own, since it follows the thread
// count of the calls), and RR_CONV_GROUPS partial gradients of the largest conv weight.
// Linear layers: the scratch of a split GEMM.
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/blas_impl.h"
#include "nn/layers.h"

// Bytes reserved for one sub-buffer of n elements of `size` bytes, rounded up to 64.
static bool reserve(size_t *total, size_t n, size_t size)
{
    size_t b;
    if (!rr_size_mul(n, size, &b) || !rr_size_add(b, 63, &b))
        return false;
    return rr_size_add(*total, b & ~(size_t)63, total);
}

static void *carve(char **p, size_t n, size_t size)
{
    void *r = *p;
    *p += ((n * size) + 63) & ~(size_t)63;
    return r;
}

size_t rr_workspace_sample_bytes(const rr_model *m, size_t rows_per_sample)
{
    const size_t R = rows_per_sample ? rows_per_sample : 1;
    // Floats per sample (int32 indices counted as floats: same size).
    size_t per_row, per_sample, acts;
    bool ok = rr_size_mul(m->max_act, (size_t)(2 + m->res_depth), &per_row) &&
              rr_size_add(per_row, (size_t)m->K, &per_row) &&
              rr_size_mul(per_row, R, &per_sample) &&
              rr_size_add(m->act_total, m->idx_total, &acts) &&
              rr_size_add(per_sample, acts, &per_sample) &&
              rr_size_mul(per_sample, sizeof(float), &per_sample);
    return ok ? per_sample : SIZE_MAX;
}

rr_status rr_workspace_new(const rr_model *m, const rr_workspace_params *p, rr_workspace **out,
                           rr_error *err)
{
    *out = NULL;
    if (p == NULL || p->max_batch == 0)
        return rr_error_set(err, RR_EINVAL, "max_batch", "a workspace needs max_batch >= 1");
    const size_t R = p->rows_per_sample ? p->rows_per_sample : 1;
    const size_t budget = p->budget_bytes ? p->budget_bytes : RR_WORKSPACE_DEFAULT_BUDGET;

    const size_t per_sample = rr_workspace_sample_bytes(m, R);
    bool ok = per_sample != SIZE_MAX;
    if (!ok || per_sample > budget)
        return rr_error_set(err, RR_ENOMEM, "",
                            "one sample needs %zu MiB of workspace at %zu "
                            "rows per sample, over the budget of %zu MiB",
                            ok ? per_sample >> 20 : (size_t)-1, R, budget >> 20);
    size_t nb = budget / per_sample;
    if (nb > p->max_batch)
        nb = p->max_batch;
    const size_t rows = nb * R;

    size_t row = 0, part = 0, bpart = 0, split = 0;
    for (int i = 0; i < m->nops; i++) {
        if (m->ops[i].kind == RR_OP_LINEAR)
            split = RR__GEMM_SPLIT_FLOATS;
        if (m->ops[i].kind == RR_OP_CONV2D) {
            size_t w, pa, bp;
            rr__conv2d_scratch_need(&m->ops[i], &w, &pa, &bp);
            row = w > row ? w : row;
            part = pa > part ? pa : part;
            bpart = bp > bpart ? bp : bpart;
        }
    }

    size_t total = 0;
    ok = reserve(&total, 1, sizeof(rr_workspace)) &&
         reserve(&total, (size_t)m->nacts, sizeof(size_t)) &&
         reserve(&total, (size_t)m->nacts, sizeof(float *)) &&
         reserve(&total, nb * m->act_total, sizeof(float)) &&
         reserve(&total, nb * m->idx_total, sizeof(int32_t)) &&
         reserve(&total, rows * m->max_act, sizeof(float)) &&
         reserve(&total, rows * m->max_act, sizeof(float)) &&
         reserve(&total, rows * m->max_act * (size_t)m->res_depth, sizeof(float)) &&
         reserve(&total, rows * (size_t)m->K, sizeof(float)) &&
         reserve(&total, part * RR_CONV_GROUPS, sizeof(float)) &&
         reserve(&total, bpart * RR_CONV_GROUPS, sizeof(double));
    char *block = ok ? rr_aligned_alloc(total) : NULL;
    if (block == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory for a %zu MiB workspace",
                            total >> 20);

    char *q = block;
    rr_workspace *ws = carve(&q, 1, sizeof(rr_workspace));
    memset(ws, 0, sizeof *ws);
    ws->m = m;
    ws->plan = (rr_workspace_params){
        .max_batch = p->max_batch, .rows_per_sample = R, .budget_bytes = budget};
    ws->nb = nb;
    ws->rows = rows;
    ws->block = block;
    ws->bytes = total;
    ws->act_off = carve(&q, (size_t)m->nacts, sizeof(size_t));
    ws->act = carve(&q, (size_t)m->nacts, sizeof(float *));
    ws->act_block = carve(&q, nb * m->act_total, sizeof(float));
    ws->idx = carve(&q, nb * m->idx_total, sizeof(int32_t));
    ws->g[0] = carve(&q, rows * m->max_act, sizeof(float));
    ws->g[1] = carve(&q, rows * m->max_act, sizeof(float));
    ws->stash = carve(&q, rows * m->max_act * (size_t)m->res_depth, sizeof(float));
    ws->seed = carve(&q, rows * (size_t)m->K, sizeof(float));
    ws->scratch.row_cap = row;
    // The split scratch on its own, in plain pages: most calls never touch it, and then it
    // costs no memory (inside the block, huge pages would make it resident).
    if (split && posix_memalign((void **)&ws->scratch.split, 64, split * sizeof(float)) != 0) {
        rr_aligned_free(block);
        return rr_error_set(err, RR_ENOMEM, "", "out of memory for GEMM scratch");
    }
    ws->scratch.part = carve(&q, part * RR_CONV_GROUPS, sizeof(float));
    ws->scratch.part_cap = part;
    ws->scratch.bpart = carve(&q, bpart * RR_CONV_GROUPS, sizeof(double));
    ws->scratch.bpart_cap = bpart;

    size_t off = 0;
    ws->act_off[0] = 0;
    ws->act[0] = NULL;
    for (int a = 1; a < m->nacts; a++) {
        ws->act_off[a] = off;
        ws->act[a] = ws->act_block + off;
        off += nb * m->act_size[a];
    }
    rr_status st = rr__ws_fit_threads(ws, err);
    if (st != RR_OK) {
        rr_workspace_free(ws);
        return st;
    }
    *out = ws;
    return RR_OK;
}

void rr_workspace_free(rr_workspace *ws)
{
    if (ws) {
        rr_workspace_free(ws->twin);
        rr_aligned_free(ws->scratch.row);
        free(ws->scratch.split);
        rr_aligned_free(ws->ext);
        rr_aligned_free(ws->block);
    }
}

void *rr__ws_ext(rr_workspace *ws, size_t bytes, rr_error *err)
{
    if (bytes <= ws->ext_bytes && ws->ext)
        return ws->ext;
    rr_aligned_free(ws->ext);
    ws->ext_bytes = 0;
    if ((ws->ext = rr_aligned_alloc(bytes)) == NULL) {
        rr_error_set(err, RR_ENOMEM, "", "out of memory for %zu MiB of scratch", bytes >> 20);
        return NULL;
    }
    ws->ext_bytes = bytes;
    return ws->ext;
}

rr_status rr__ws_fit_threads(rr_workspace *ws, rr_error *err)
{
    const int n = omp_get_max_threads();
    for (rr_workspace *w = ws; w; w = w->twin) {
        rr__scratch *s = &w->scratch;
        if (s->row_cap == 0 || n <= s->nthreads)
            continue;
        size_t bytes;
        if (!rr_size_mul(s->row_cap, (size_t)n * sizeof(float), &bytes))
            return rr_error_set(err, RR_ENOMEM, "", "conv scratch too large for %d threads", n);
        float *row = rr_aligned_alloc(bytes);
        if (row == NULL)
            return rr_error_set(err, RR_ENOMEM, "", "out of memory for %zu MiB of conv scratch",
                                bytes >> 20);
        rr_aligned_free(s->row);
        s->row = row;
        s->nthreads = n;
    }
    return RR_OK;
}

rr_workspace *rr__ws_twin(rr_workspace *ws, rr_error *err)
{
    if (ws->twin == NULL && rr_workspace_new(ws->m, &ws->plan, &ws->twin, err) != RR_OK)
        return NULL;
    return ws->twin;
}

size_t rr_workspace_chunk(const rr_workspace *ws)
{
    return ws->nb;
}

size_t rr_workspace_bytes(const rr_workspace *ws)
{
    return ws->bytes;
}

size_t rr__ws_chunk_for(const rr_workspace *ws, size_t R)
{
    size_t n = ws->rows / (R ? R : 1);
    return n < ws->nb ? n : ws->nb;
}
