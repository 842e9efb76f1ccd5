// The backward pass (vector-Jacobian products) with the forward masks frozen, and rr_vjp.
//
// Rows travel through two ping-pong buffers; elementwise ops work in place; a residual block
// stashes the gradient arriving at its output (RES_END) and adds it back at its input
// (RES_BEGIN), one stash slot per nesting depth. When the input gradient is not wanted, the
// pass stops at the first op that has parameters.
#include <string.h>

#include "nn/forward.h"
#include "nn/layers.h"
#include "nn/passes.h"

static bool has_params(const rr_op *op)
{
    return op->p_weight >= 0 || op->p_mean >= 0;
}

size_t rr__ustore_floats(const rr_model *m, size_t rows)
{
    size_t n = 0;
    for (int i = 0; i < m->nops; i++)
        if (has_params(&m->ops[i]))
            n += rows * m->ops[i].n_out;
    return n;
}

void rr__ustore_init(rr__ustore *us, const rr_model *m, float *block, float **ptrs, size_t rows)
{
    us->at = ptrs;
    us->rows = rows;
    for (int i = 0; i < m->nops; i++) {
        ptrs[i] = NULL;
        if (has_params(&m->ops[i])) {
            ptrs[i] = block;
            block += rows * m->ops[i].n_out;
        }
    }
}

void rr__backward_chunk(const rr_model *m, rr_workspace *ws, size_t nb, size_t R,
                        const float *g_logits, float *gx, float *dparams, rr__ustore *us)
{
    const size_t rows = nb * R;
    RR_ASSERT(rows <= ws->rows && (dparams == NULL || R == 1) && (!us || rows <= us->rows));
    int stop = 0;
    if (gx == NULL) {
        // Nothing below the first parameterised op is needed.
        stop = m->nops;
        for (int i = 0; i < m->nops; i++)
            if (has_params(&m->ops[i])) {
                stop = i;
                break;
            }
        if (dparams == NULL && us == NULL)
            return;
    }
    const float *cur = g_logits;
    for (int i = m->nops - 1; i >= stop; i--) {
        const rr_op *op = &m->ops[i];
        const bool need_in = i > stop || gx != NULL;
        // A free buffer to write into: the first op writes straight into gx.
        float *next = (i == 0 && gx) ? gx : (cur == ws->g[0] ? ws->g[1] : ws->g[0]);
        // Where an elementwise op may write: in place when cur is ours.
        float *inplace = (i == 0 && gx)                         ? gx
                         : (cur == ws->g[0] || cur == ws->g[1]) ? (float *)cur
                                                                : next;
        const float *x = ws->act[op->in];
        float *stash = ws->stash + (size_t)op->depth * rows * m->max_act;
        if (us && us->at[i])
            memcpy(us->at[i], cur, rows * op->n_out * sizeof(float));
        switch (op->kind) {
            case RR_OP_LINEAR:
                if (dparams)
                    rr__linear_vjp_params(m, op, dparams, cur, x, rows, true, &ws->scratch);
                if (need_in) {
                    rr__linear_vjp(m, op, next, cur, rows, &ws->scratch);
                    cur = next;
                }
                break;
            case RR_OP_CONV2D:
                if (dparams)
                    rr__conv2d_vjp_params(m, op, dparams, cur, x, rows, true, &ws->scratch);
                if (need_in) {
                    rr__conv2d_vjp(m, op, next, cur, rows, &ws->scratch);
                    cur = next;
                }
                break;
            case RR_OP_RELU:
                rr__relu_vjp(op, inplace, cur, x, rows, R);
                cur = inplace;
                break;
            case RR_OP_MAXPOOL:
                rr__maxpool_vjp(op, next, cur, ws->idx + ws->nb * op->idx_off, rows, R);
                cur = next;
                break;
            case RR_OP_AVGPOOL:
                rr__avgpool_vjp(op, next, cur, rows);
                cur = next;
                break;
            case RR_OP_BATCHNORM:
                if (dparams)
                    rr__batchnorm_vjp_params(m, op, dparams, cur, x, rows, true);
                if (need_in) {
                    rr__batchnorm_vjp(op, inplace, cur, rows);
                    cur = inplace;
                }
                break;
            case RR_OP_RES_END:
                memcpy(stash, cur, rows * op->n_out * sizeof(float));
                break;
            case RR_OP_RES_BEGIN:
                rr__residual_add(inplace, cur, stash, rows * op->n_in);
                cur = inplace;
                break;
            case RR_OP_FLATTEN:
                break;
        }
    }
    if (gx && cur != gx)
        memcpy(gx, cur, rows * m->D * sizeof(float));
}

rr_status rr_vjp(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                 const float *g_logits, float *g_x, float *g_params, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = m->D, K = (size_t)m->K;
    if (B && !rr_all_finite(g_logits, B * K))
        return rr_error_set(err, RR_ENONFINITE, "g_logits", "g_logits contain NaN or Inf");
    if (g_params)
        memset(g_params, 0, m->param_size * sizeof(float));
    for (size_t b0 = 0; b0 < B; b0 += ws->nb) {
        const size_t nb = B - b0 < ws->nb ? B - b0 : ws->nb;
        rr__forward_chunk(m, ws, x + b0 * D, nb);
        rr__backward_chunk(m, ws, nb, 1, g_logits + b0 * K, g_x ? g_x + b0 * D : NULL, g_params,
                           NULL);
    }
    return RR_OK;
}
