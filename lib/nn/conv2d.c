// 2-D convolution (PyTorch Conv2d with zero padding, dilation 1, groups 1) via im2col and one
// sgemm per chunk of rows, the rows' output positions side by side as the GEMM's N dimension.
//
// For a chunk of n rows with P = OH*OW output positions and CKK = C*kh*kw:
//   col [CKK, n*P]  im2col of the n inputs (OpenMP over rows)
//   forward: tmp [Cout, n*P] = W [Cout, CKK] col,  then scattered to [n, Cout, P] (+ bias)
//   vjp:     col = W^T tmp (tmp = gathered Gy),   then col2im into Gx
//   params:  dW [Cout, CKK] += tmp col^T,  db += row sums of tmp
// Chunks hold at most CONV_COL_FLOATS floats of columns, so scratch stays bounded for any
// batch while each GEMM stays large enough to run near peak.
#include <string.h>

#include "core/blas.h"
#include "nn/layers.h"

#define CONV_COL_FLOATS ((size_t)1 << 22)

static size_t conv_ckk(const rr_op *op)
{
    return (size_t)op->c * (size_t)op->kh * (size_t)op->kw;
}

size_t rr__conv2d_chunk_rows(const rr_op *op)
{
    size_t P = (size_t)op->oh * (size_t)op->ow;
    size_t ckk = conv_ckk(op), wide = ckk > (size_t)op->oc ? ckk : (size_t)op->oc;
    size_t n = CONV_COL_FLOATS / (wide * P);
    return n ? n : 1;
}

void rr__conv2d_scratch_need(const rr_op *op, size_t rows, size_t *col, size_t *tmp)
{
    size_t n = rr__conv2d_chunk_rows(op);
    if (rows < n)
        n = rows;
    size_t P = (size_t)op->oh * (size_t)op->ow;
    *col = conv_ckk(op) * P * n;
    *tmp = (size_t)op->oc * P * n;
}

// Rows per chunk given the scratch actually available.
static size_t chunk_rows(const rr_op *op, const rr__scratch *s)
{
    size_t P = (size_t)op->oh * (size_t)op->ow;
    size_t n = rr__conv2d_chunk_rows(op);
    size_t by_col = s->col_cap / (conv_ckk(op) * P), by_tmp = s->tmp_cap / ((size_t)op->oc * P);
    if (by_col < n)
        n = by_col;
    if (by_tmp < n)
        n = by_tmp;
    RR_ASSERT(n >= 1);
    return n;
}

// The range of output columns ox whose input column ix = ox*sw - pw + kj lies in [0, W).
static void valid_range(int kj, int sw, int pw, int W, int OW, int *lo, int *hi)
{
    int a = pw - kj; // need ox*sw >= a
    int l = a <= 0 ? 0 : (a + sw - 1) / sw;
    int b = W + pw - kj; // need ox*sw < b
    int h = b <= 0 ? 0 : (b + sw - 1) / sw;
    *lo = l < OW ? l : OW;
    *hi = h < OW ? h : OW;
    if (*hi < *lo)
        *hi = *lo;
}

// col[(ci*kh + ki)*kw + kj][oy*OW + ox] (leading dimension ld) = x[ci][iy][ix] or 0 outside.
static void im2col(float *col, size_t ld, const float *x, const rr_op *op)
{
    const int H = op->h, W = op->w, OH = op->oh, OW = op->ow;
    for (int ci = 0; ci < op->c; ci++)
        for (int ki = 0; ki < op->kh; ki++)
            for (int kj = 0; kj < op->kw; kj++) {
                float *dst = col + ((size_t)(ci * op->kh + ki) * op->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, op->sw, op->pw, W, OW, &lo, &hi);
                for (int oy = 0; oy < OH; oy++) {
                    float *d = dst + (size_t)oy * OW;
                    int iy = oy * op->sh - op->ph + ki;
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = x + ((size_t)ci * H + iy) * W;
                    const int off = kj - op->pw;
                    for (int ox = 0; ox < lo; ox++)
                        d[ox] = 0.0f;
                    for (int ox = lo; ox < hi; ox++)
                        d[ox] = src[ox * op->sw + off];
                    for (int ox = hi; ox < OW; ox++)
                        d[ox] = 0.0f;
                }
            }
}

// The adjoint of im2col: g[ci][iy][ix] += col[...] (g must be zeroed by the caller).
static void col2im(float *g, const float *col, size_t ld, const rr_op *op)
{
    const int H = op->h, W = op->w, OH = op->oh, OW = op->ow;
    for (int ci = 0; ci < op->c; ci++)
        for (int ki = 0; ki < op->kh; ki++)
            for (int kj = 0; kj < op->kw; kj++) {
                const float *src = col + ((size_t)(ci * op->kh + ki) * op->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, op->sw, op->pw, W, OW, &lo, &hi);
                for (int oy = 0; oy < OH; oy++) {
                    int iy = oy * op->sh - op->ph + ki;
                    if (iy < 0 || iy >= H)
                        continue;
                    const float *s = src + (size_t)oy * OW;
                    float *d = g + ((size_t)ci * H + iy) * W;
                    const int off = kj - op->pw;
                    for (int ox = lo; ox < hi; ox++)
                        d[ox * op->sw + off] += s[ox];
                }
            }
}

void rr__conv2d_forward(const rr_model *m, const rr_op *op, float *out, const float *in,
                        size_t rows, bool affine, const rr__scratch *s)
{
    const size_t P = (size_t)op->oh * op->ow, ckk = conv_ckk(op), Co = (size_t)op->oc;
    const float *W = m->params[op->p_weight].data;
    const float *bias = affine && op->p_bias >= 0 ? m->params[op->p_bias].data : NULL;
    const size_t step = chunk_rows(op, s);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        const size_t n = rows - r0 < step ? rows - r0 : step, ld = n * P;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++)
            im2col(s->col + j * P, ld, in + (r0 + j) * op->n_in, op);
        rr__sgemm(false, false, Co, ld, ckk, 1.0f, W, ckk, s->col, ld, 0.0f, s->tmp, ld);
        // [Cout, n*P] -> [n, Cout, P], adding the bias.
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++)
            for (size_t co = 0; co < Co; co++) {
                float *dst = out + (r0 + j) * op->n_out + co * P;
                const float *src = s->tmp + co * ld + j * P;
                const float b = bias ? bias[co] : 0.0f;
                for (size_t p = 0; p < P; p++)
                    dst[p] = src[p] + b;
            }
    }
}

// Gathers rows [r0, r0+n) of G [rows, Cout, P] into tmp [Cout, n*P].
static void gather(float *tmp, const float *g, size_t r0, size_t n, const rr_op *op)
{
    const size_t P = (size_t)op->oh * op->ow, ld = n * P;
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++)
        for (size_t co = 0; co < (size_t)op->oc; co++)
            memcpy(tmp + co * ld + j * P, g + (r0 + j) * op->n_out + co * P, P * sizeof(float));
}

void rr__conv2d_vjp(const rr_model *m, const rr_op *op, float *gin, const float *gout, size_t rows,
                    const rr__scratch *s)
{
    const size_t P = (size_t)op->oh * op->ow, ckk = conv_ckk(op), Co = (size_t)op->oc;
    const float *W = m->params[op->p_weight].data;
    const size_t step = chunk_rows(op, s);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        const size_t n = rows - r0 < step ? rows - r0 : step, ld = n * P;
        gather(s->tmp, gout, r0, n, op);
        rr__sgemm(true, false, ckk, ld, Co, 1.0f, W, ckk, s->tmp, ld, 0.0f, s->col, ld);
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++) {
            float *g = gin + (r0 + j) * op->n_in;
            memset(g, 0, op->n_in * sizeof(float));
            col2im(g, s->col + j * P, ld, op);
        }
    }
}

void rr__conv2d_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                           const float *in, size_t rows, bool affine, const rr__scratch *s)
{
    const size_t P = (size_t)op->oh * op->ow, ckk = conv_ckk(op), Co = (size_t)op->oc;
    float *dW = dparams + m->params[op->p_weight].offset;
    float *db = affine && op->p_bias >= 0 ? dparams + m->params[op->p_bias].offset : NULL;
    const size_t step = chunk_rows(op, s);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        const size_t n = rows - r0 < step ? rows - r0 : step, ld = n * P;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++)
            im2col(s->col + j * P, ld, in + (r0 + j) * op->n_in, op);
        gather(s->tmp, gout, r0, n, op);
        rr__sgemm(false, true, Co, ckk, ld, 1.0f, s->tmp, ld, s->col, ld, 1.0f, dW, ckk);
        if (db) {
            // Each channel's sum runs in a fixed order whatever the thread count.
#pragma omp parallel for schedule(static)
            for (size_t co = 0; co < Co; co++) {
                double acc = 0.0;
                const float *t = s->tmp + co * ld;
                for (size_t q = 0; q < ld; q++)
                    acc += t[q];
                db[co] += (float)acc;
            }
        }
    }
}
