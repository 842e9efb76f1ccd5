// 2-D convolution (PyTorch Conv2d with zero padding, dilation 1, groups 1) via im2col + GEMM.
//
// With P = OH*OW output positions and CKK = C*kh*kw, for a block of n <= RR_CONV_BLOCK rows
// (samples, or backward / tangent rows of samples) whose columns sit side by side:
//   forward:  Y [Cout, n*P] = W [Cout, CKK] col [CKK, n*P] (+ bias), scattered to the rows
//   vjp:      colg [CKK, n*P] = W^T Gy [Cout, n*P] (gathered), col2im into each row's Gx
//   params:   dW [Cout, CKK] += Gy col^T,  db += row sums of Gy
// Blocks are independent for forward and vjp: an OpenMP loop over blocks, each thread with
// its block's im2col in a buffer that stays in cache and one serial sgemm per block (a few
// rows per call make the GEMM wide enough to run near peak, PyTorch's CPU path does one).
// Parameter gradients are sums over rows: the blocks are cut into groups, as many as there
// are blocks up to RR_CONV_GROUPS (a count that depends on the rows only); each group is
// summed by one thread in order into its own partial, then the partials in group order, so
// the result does not depend on the thread count.
#include <omp.h>
#include <string.h>

#include "core/blas_impl.h"
#include "nn/layers.h"

static size_t conv_ckk(const rr_op *op)
{
    return (size_t)op->c * (size_t)op->kh * (size_t)op->kw;
}

static size_t conv_P(const rr_op *op)
{
    return (size_t)op->oh * (size_t)op->ow;
}

void rr__conv2d_scratch_need(const rr_op *op, size_t *row, size_t *part, size_t *bpart)
{
    *row = (conv_ckk(op) + (size_t)op->oc) * conv_P(op) * RR_CONV_BLOCK;
    *part = conv_ckk(op) * (size_t)op->oc;
    *bpart = (size_t)op->oc;
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
    const int H = op->h, W = op->w, OH = op->oh, OW = op->ow, sw = op->sw;
    for (int ci = 0; ci < op->c; ci++)
        for (int ki = 0; ki < op->kh; ki++)
            for (int kj = 0; kj < op->kw; kj++) {
                float *dst = col + ((size_t)(ci * op->kh + ki) * op->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, sw, op->pw, W, OW, &lo, &hi);
                const int off = kj - op->pw;
                for (int oy = 0; oy < OH; oy++) {
                    float *d = dst + (size_t)oy * OW;
                    int iy = oy * op->sh - op->ph + ki;
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = x + ((size_t)ci * H + iy) * W;
                    for (int ox = 0; ox < lo; ox++)
                        d[ox] = 0.0f;
                    if (sw == 1) {
                        memcpy(d + lo, src + lo + off, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        for (int ox = lo; ox < hi; ox++)
                            d[ox] = src[ox * sw + off];
                    }
                    for (int ox = hi; ox < OW; ox++)
                        d[ox] = 0.0f;
                }
            }
}

// The adjoint of im2col: g[ci][iy][ix] += col[...] (g must be zeroed by the caller).
static void col2im(float *g, const float *col, size_t ld, const rr_op *op)
{
    const int H = op->h, W = op->w, OH = op->oh, OW = op->ow, sw = op->sw;
    for (int ci = 0; ci < op->c; ci++)
        for (int ki = 0; ki < op->kh; ki++)
            for (int kj = 0; kj < op->kw; kj++) {
                const float *src = col + ((size_t)(ci * op->kh + ki) * op->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, sw, op->pw, W, OW, &lo, &hi);
                const int off = kj - op->pw;
                for (int oy = 0; oy < OH; oy++) {
                    int iy = oy * op->sh - op->ph + ki;
                    if (iy < 0 || iy >= H)
                        continue;
                    const float *s = src + (size_t)oy * OW;
                    float *d = g + ((size_t)ci * H + iy) * W;
                    if (sw == 1) {
                        float *dd = d + off; // dd[ox] for ox in [lo, hi) lies inside the row
                        for (int ox = lo; ox < hi; ox++)
                            dd[ox] += s[ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++)
                            d[ox * sw + off] += s[ox];
                    }
                }
            }
}

// Threads for a block loop: the caller's (rr__check_call fitted the per-thread buffers to
// them; the cap only guards that).
static int row_threads(const rr__scratch *s)
{
    int n = omp_get_max_threads();
    return n < s->nthreads ? n : s->nthreads;
}

// The calling thread's buffers: columns [CKK, RR_CONV_BLOCK*P] and outputs [Cout, ...].
static float *thread_col(const rr__scratch *s)
{
    return s->row + (size_t)omp_get_thread_num() * s->row_cap;
}

static float *thread_out(const rr__scratch *s, const rr_op *op)
{
    return thread_col(s) + conv_ckk(op) * conv_P(op) * RR_CONV_BLOCK;
}

// Copies rows [r0, r0+n) of Y [rows, Cout, P] into / out of t [Cout, n*P].
static void gather_rows(float *t, const float *y, size_t r0, size_t n, const rr_op *op)
{
    const size_t P = conv_P(op);
    for (size_t j = 0; j < n; j++)
        for (size_t co = 0; co < (size_t)op->oc; co++)
            memcpy(t + co * n * P + j * P, y + (r0 + j) * op->n_out + co * P, P * sizeof(float));
}

void rr__conv2d_forward(const rr_model *m, const rr_op *op, float *out, const float *in,
                        size_t rows, bool affine, const rr__scratch *s)
{
    const size_t P = conv_P(op), ckk = conv_ckk(op), Co = (size_t)op->oc;
    const float *W = m->params[op->p_weight].data;
    const float *bias = affine && op->p_bias >= 0 ? m->params[op->p_bias].data : NULL;
    const size_t nblocks = (rows + RR_CONV_BLOCK - 1) / RR_CONV_BLOCK;
#pragma omp parallel for schedule(static) num_threads(row_threads(s))
    for (size_t bk = 0; bk < nblocks; bk++) {
        const size_t r0 = bk * RR_CONV_BLOCK;
        const size_t n = rows - r0 < RR_CONV_BLOCK ? rows - r0 : RR_CONV_BLOCK, ld = n * P;
        float *col = thread_col(s), *y = thread_out(s, op);
        for (size_t j = 0; j < n; j++)
            im2col(col + j * P, ld, in + (r0 + j) * op->n_in, op);
        // The primal map decides relu masks and max-pool winners: equal inputs must give equal
        // outputs there (uniform_gemm.c). Tangent rows decide nothing and take sgemm.
        if (affine)
            rr__gemm_uniform(Co, ld, ckk, W, ckk, col, ld, y, ld);
        else
            rr__sgemm_serial(false, false, Co, ld, ckk, 1.0f, W, ckk, col, ld, 0.0f, y, ld);
        for (size_t j = 0; j < n; j++)
            for (size_t co = 0; co < Co; co++) {
                float *dst = out + (r0 + j) * op->n_out + co * P;
                const float *src = y + co * ld + j * P, b = bias ? bias[co] : 0.0f;
                for (size_t p = 0; p < P; p++)
                    dst[p] = src[p] + b;
            }
    }
}

void rr__conv2d_vjp(const rr_model *m, const rr_op *op, float *gin, const float *gout, size_t rows,
                    const rr__scratch *s)
{
    const size_t P = conv_P(op), ckk = conv_ckk(op), Co = (size_t)op->oc;
    const float *W = m->params[op->p_weight].data;
    const size_t nblocks = (rows + RR_CONV_BLOCK - 1) / RR_CONV_BLOCK;
#pragma omp parallel for schedule(static) num_threads(row_threads(s))
    for (size_t bk = 0; bk < nblocks; bk++) {
        const size_t r0 = bk * RR_CONV_BLOCK;
        const size_t n = rows - r0 < RR_CONV_BLOCK ? rows - r0 : RR_CONV_BLOCK, ld = n * P;
        float *colg = thread_col(s), *g = thread_out(s, op);
        gather_rows(g, gout, r0, n, op);
        rr__sgemm_serial(true, false, ckk, ld, Co, 1.0f, W, ckk, g, ld, 0.0f, colg, ld);
        for (size_t j = 0; j < n; j++) {
            float *gi = gin + (r0 + j) * op->n_in;
            memset(gi, 0, op->n_in * sizeof(float));
            col2im(gi, colg + j * P, ld, op);
        }
    }
}

void rr__conv2d_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                           const float *in, size_t rows, bool affine, const rr__scratch *s)
{
    const size_t P = conv_P(op), ckk = conv_ckk(op), Co = (size_t)op->oc, nw = Co * ckk;
    float *dW = dparams + m->params[op->p_weight].offset;
    float *db = affine && op->p_bias >= 0 ? dparams + m->params[op->p_bias].offset : NULL;
    const size_t nblocks = (rows + RR_CONV_BLOCK - 1) / RR_CONV_BLOCK;
    const size_t per_group = (nblocks + RR_CONV_GROUPS - 1) / RR_CONV_GROUPS;
    const size_t ngroups = (nblocks + per_group - 1) / per_group;
#pragma omp parallel for schedule(dynamic, 1) num_threads(row_threads(s))
    for (size_t grp = 0; grp < ngroups; grp++) {
        float *part = s->part + grp * s->part_cap;
        double *bpart = s->bpart + grp * s->bpart_cap;
        float *col = thread_col(s), *g = thread_out(s, op);
        memset(part, 0, nw * sizeof(float));
        memset(bpart, 0, Co * sizeof(double));
        for (size_t bk = grp * per_group; bk < nblocks && bk < (grp + 1) * per_group; bk++) {
            const size_t r0 = bk * RR_CONV_BLOCK;
            const size_t n = rows - r0 < RR_CONV_BLOCK ? rows - r0 : RR_CONV_BLOCK, ld = n * P;
            for (size_t j = 0; j < n; j++)
                im2col(col + j * P, ld, in + (r0 + j) * op->n_in, op);
            gather_rows(g, gout, r0, n, op);
            // part [Cout, CKK] += Gy [Cout, n*P] col^T
            rr__sgemm_serial(false, true, Co, ckk, ld, 1.0f, g, ld, col, ld, 1.0f, part, ckk);
            if (db)
                for (size_t co = 0; co < Co; co++) {
                    double acc = 0.0;
                    for (size_t q = 0; q < ld; q++)
                        acc += g[co * ld + q];
                    bpart[co] += acc;
                }
        }
    }
    // dW += partial 0, then partial 1, ...: each element in group order.
#pragma omp parallel for schedule(static) if (nw * ngroups > 65536)
    for (size_t i = 0; i < nw; i++)
        for (size_t grp = 0; grp < ngroups; grp++)
            dW[i] += s->part[grp * s->part_cap + i];
    if (db)
        for (size_t grp = 0; grp < ngroups; grp++)
            for (size_t co = 0; co < Co; co++)
                db[co] += (float)s->bpart[grp * s->bpart_cap + co];
}
