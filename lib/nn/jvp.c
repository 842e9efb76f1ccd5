// Forward tangents (Jacobian-vector products) through the frozen linear region, and rr_jvp.
//
// The tangent map of each op is its linear part: no bias or batchnorm shift, the primal
// relu masks and max-pool indices, avg-pool as is. A residual block stashes the tangent at
// its input (RES_BEGIN) and adds it at its output (RES_END).
#include <string.h>

#include "nn/forward.h"
#include "nn/layers.h"
#include "nn/passes.h"

void rr__tangent_chunk(const rr_model *m, rr_workspace *ws, size_t nb, size_t T, const float *v,
                       float *out, const rr__ustore *us, float *dparams)
{
    rr__tangent_chunk_hook(m, ws, nb, T, v, out, us, dparams, NULL, NULL);
}

void rr__tangent_chunk_hook(const rr_model *m, rr_workspace *ws, size_t nb, size_t T,
                            const float *v, float *out, const rr__ustore *us, float *dparams,
                            rr__tangent_hook hook, void *hook_ctx)
{
    const size_t rows = nb * T;
    RR_ASSERT(rows <= ws->rows && (!us || rows <= us->rows));
    const bool params = us != NULL && dparams != NULL;
    const float *cur = v;
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        if (hook && op->pattern >= 0)
            hook(hook_ctx, i, cur, rows);
        float *next = cur == ws->g[0] ? ws->g[1] : ws->g[0];
        float *inplace = (cur == ws->g[0] || cur == ws->g[1]) ? (float *)cur : next;
        const float *x = ws->act[op->in];
        float *stash = ws->stash + (size_t)op->depth * rows * m->max_act;
        // d<u, L_theta(t)>/dtheta of the op's linear part L_theta at the tangent t it receives.
        if (params && us->at[i]) {
            if (op->kind == RR_OP_LINEAR)
                rr__linear_vjp_params(m, op, dparams, us->at[i], cur, rows, false, &ws->scratch);
            else if (op->kind == RR_OP_CONV2D)
                rr__conv2d_vjp_params(m, op, dparams, us->at[i], cur, rows, false, &ws->scratch);
            else if (op->kind == RR_OP_BATCHNORM)
                rr__batchnorm_vjp_params(m, op, dparams, us->at[i], cur, rows, false);
        }
        switch (op->kind) {
            case RR_OP_LINEAR:
                rr__linear_forward(m, op, next, cur, rows, false, &ws->scratch);
                cur = next;
                break;
            case RR_OP_CONV2D:
                rr__conv2d_forward(m, op, next, cur, rows, false, &ws->scratch);
                cur = next;
                break;
            case RR_OP_RELU:
                rr__relu_jvp(op, inplace, cur, x, rows, T);
                cur = inplace;
                break;
            case RR_OP_MAXPOOL:
                rr__maxpool_jvp(op, next, cur, ws->idx + ws->nb * op->idx_off, rows, T);
                cur = next;
                break;
            case RR_OP_AVGPOOL:
                rr__avgpool_jvp(op, next, cur, rows);
                cur = next;
                break;
            case RR_OP_BATCHNORM:
                rr__batchnorm_forward(op, inplace, cur, rows, false);
                cur = inplace;
                break;
            case RR_OP_RES_BEGIN:
                memcpy(stash, cur, rows * op->n_in * sizeof(float));
                break;
            case RR_OP_RES_END:
                rr__residual_add(inplace, cur, stash, rows * op->n_out);
                cur = inplace;
                break;
            case RR_OP_FLATTEN:
                break;
        }
    }
    if (out)
        memcpy(out, cur, rows * (size_t)m->K * sizeof(float));
}

rr_status rr_jvp(const rr_model *m, rr_workspace *ws, const float *x, size_t B, const float *v,
                 size_t T, float *jv, float *logits, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    if (T == 0)
        return rr_error_set(err, RR_EINVAL, "tangents", "at least one tangent per sample");
    const size_t D = m->D, K = (size_t)m->K;
    const size_t chunk = rr__ws_chunk_for(ws, T);
    if (chunk == 0)
        return rr_error_set(err, RR_EINVAL, "tangents",
                            "the workspace holds %zu rows, fewer than the %zu tangents of one "
                            "sample",
                            ws->rows, T);
    if (B && !rr_all_finite(v, B * T * D))
        return rr_error_set(err, RR_ENONFINITE, "tangents", "tangents contain NaN or Inf");
    for (size_t b0 = 0; b0 < B; b0 += chunk) {
        const size_t nb = B - b0 < chunk ? B - b0 : chunk;
        const float *z = rr__forward_chunk(m, ws, x + b0 * D, nb);
        if (logits)
            memcpy(logits + b0 * K, z, nb * K * sizeof(float));
        rr__tangent_chunk(m, ws, nb, T, v + b0 * T * D, jv + b0 * T * K, NULL, NULL);
    }
    return RR_OK;
}
