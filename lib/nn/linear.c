// Linear layer y = x W^T + b, W [O, I] (PyTorch layout), as single sgemm calls with the rows
// (batch, or batch x seeds) as the GEMM's M dimension.
//
// forward: Y[rows, O] = X[rows, I] W^T (+ b)          (tangents: no bias)
// vjp:     Gx[rows, I] = Gy[rows, O] W
// params:  dW[O, I] += Gy^T X,  db[O] += sum_r Gy[r, :]
#include <string.h>

#include "core/blas_impl.h"
#include "nn/layers.h"

void rr__linear_forward(const rr_model *m, const rr_op *op, float *out, const float *in,
                        size_t rows, bool affine, const rr__scratch *s)
{
    const size_t I = op->c, O = op->oc;
    const float *W = m->params[op->p_weight].data;
    float beta = 0.0f;
    if (affine && op->p_bias >= 0) {
        // Start from the bias and let the GEMM accumulate onto it.
        const float *b = m->params[op->p_bias].data;
        for (size_t r = 0; r < rows; r++)
            memcpy(out + r * O, b, O * sizeof(float));
        beta = 1.0f;
    }
    rr__sgemm(false, true, rows, O, I, 1.0f, in, I, W, I, beta, out, O, s->split);
}

void rr__linear_vjp(const rr_model *m, const rr_op *op, float *gin, const float *gout, size_t rows,
                    const rr__scratch *s)
{
    const size_t I = op->c, O = op->oc;
    const float *W = m->params[op->p_weight].data;
    rr__sgemm(false, false, rows, I, O, 1.0f, gout, O, W, I, 0.0f, gin, I, s->split);
}

void rr__linear_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                           const float *in, size_t rows, bool affine, const rr__scratch *s)
{
    const size_t I = op->c, O = op->oc;
    float *dW = dparams + m->params[op->p_weight].offset;
    rr__sgemm(true, false, O, I, rows, 1.0f, gout, O, in, I, 1.0f, dW, I, s->split);
    if (affine && op->p_bias >= 0) {
        // Sum over rows in row order (fixed, thread-independent), in double, a block of
        // columns at a time so that the rows are read contiguously.
        float *db = dparams + m->params[op->p_bias].offset;
        for (size_t o0 = 0; o0 < O; o0 += 256) {
            size_t no = O - o0 < 256 ? O - o0 : 256;
            double acc[256] = {0};
            for (size_t r = 0; r < rows; r++) {
                const float *g = gout + r * O + o0;
                for (size_t o = 0; o < no; o++)
                    acc[o] += g[o];
            }
            for (size_t o = 0; o < no; o++)
                db[o0 + o] += (float)acc[o];
        }
    }
}
