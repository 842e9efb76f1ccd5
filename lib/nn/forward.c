// The primal forward pass over ops, the activation pattern, and the public rr_forward.
//
// Activations of every op stay in the workspace for the chunk: the backward and tangent
// passes of the same chunk read relu inputs (masks), max-pool indices and layer inputs
// (parameter gradients) from there.
#include <string.h>

#include "nn/forward.h"
#include "nn/layers.h"
#include "nn/passes.h"

static int32_t *op_idx(const rr_workspace *ws, const rr_op *op)
{
    return ws->idx + ws->nb * op->idx_off;
}

const float *rr__forward_chunk(const rr_model *m, rr_workspace *ws, const float *x, size_t nb)
{
    // Buffer 0 is the caller's input; no op writes it (flatten and RES_BEGIN only alias).
    ws->act[0] = (float *)x;
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        const float *in = ws->act[op->in];
        float *out = ws->act[op->out];
        switch (op->kind) {
            case RR_OP_LINEAR:
                rr__linear_forward(m, op, out, in, nb, true, &ws->scratch);
                break;
            case RR_OP_CONV2D:
                rr__conv2d_forward(m, op, out, in, nb, true, &ws->scratch);
                break;
            case RR_OP_RELU:
                rr__relu_forward(op, out, in, nb);
                break;
            case RR_OP_MAXPOOL:
                rr__maxpool_forward(op, out, op_idx(ws, op), in, nb);
                break;
            case RR_OP_AVGPOOL:
                rr__avgpool_forward(op, out, in, nb);
                break;
            case RR_OP_BATCHNORM:
                rr__batchnorm_forward(op, out, in, nb, true);
                break;
            case RR_OP_RES_END:
                rr__residual_add(out, in, ws->act[m->ops[op->partner].in], nb * op->n_out);
                break;
            case RR_OP_FLATTEN:
            case RR_OP_RES_BEGIN:
                break;
        }
    }
    return ws->act[m->nops ? m->ops[m->nops - 1].out : 0];
}

void rr__pattern_chunk(const rr_model *m, const rr_workspace *ws, size_t nb, uint8_t *pattern,
                       size_t stride)
{
    for (int j = 0; j < m->npattern; j++) {
        const rr_op *op = &m->ops[m->pattern_ops[j]];
        if (op->kind == RR_OP_RELU)
            rr__relu_pattern(op, pattern, stride, ws->act[op->in], nb);
        else
            rr__maxpool_pattern(op, pattern, stride, op_idx(ws, op), nb);
    }
}

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull

uint64_t rr_pattern_hash(const uint8_t *pattern, size_t n)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = (h ^ pattern[i]) * FNV_PRIME;
    return h;
}

// The same hash, streamed from the activations without materialising the pattern.
void rr__pattern_hash_chunk(const rr_model *m, const rr_workspace *ws, size_t nb, uint64_t *hash)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < nb; s++) {
        uint64_t h = FNV_OFFSET;
        for (int j = 0; j < m->npattern; j++) {
            const rr_op *op = &m->ops[m->pattern_ops[j]];
            if (op->kind == RR_OP_RELU) {
                const float *x = ws->act[op->in] + s * op->n_in;
                for (size_t i = 0; i < op->n_in; i++)
                    h = (h ^ (uint64_t)(x[i] > 0.0f)) * FNV_PRIME;
            } else {
                const int32_t *ix = op_idx(ws, op) + s * op->n_out;
                for (size_t o = 0; o < op->n_out; o++) {
                    uint32_t v = (uint32_t)ix[o];
                    for (int b = 0; b < 4; b++)
                        h = (h ^ ((v >> (8 * b)) & 0xffu)) * FNV_PRIME;
                }
            }
        }
        hash[s] = h;
    }
}

rr_status rr__check_call(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                         rr_error *err)
{
    if (ws == NULL || ws->m != m)
        return rr_error_set(err, RR_EINVAL, "workspace",
                            "the workspace was planned for another model");
    size_t n;
    if (!rr_size_mul(B, m->D, &n))
        return rr_error_set(err, RR_EINVAL, "inputs", "batch too large");
    if (n && !rr_all_finite(x, n))
        return rr_error_set(err, RR_ENONFINITE, "inputs", "inputs contain NaN or Inf");
    return rr__ws_fit_threads(ws, err);
}

rr_status rr_forward(const rr_model *m, rr_workspace *ws, const float *x, size_t B, float *logits,
                     uint8_t *pattern, uint64_t *pattern_hash, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = m->D, K = (size_t)m->K, PB = m->pattern_bytes;
    for (size_t b0 = 0; b0 < B; b0 += ws->nb) {
        const size_t nb = B - b0 < ws->nb ? B - b0 : ws->nb;
        const float *z = rr__forward_chunk(m, ws, x + b0 * D, nb);
        if (logits)
            memcpy(logits + b0 * K, z, nb * K * sizeof(float));
        if (pattern)
            rr__pattern_chunk(m, ws, nb, pattern + b0 * PB, PB);
        if (pattern_hash)
            rr__pattern_hash_chunk(m, ws, nb, pattern_hash + b0);
    }
    return RR_OK;
}
