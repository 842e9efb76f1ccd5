// max-pooling and average pooling with PyTorch's exact semantics (MaxPool2d / AvgPool2d):
// windows start at o*s - p; padded cells are not entries of a max window (they act as -inf)
// and count toward an average's divisor only with count_include_pad, the window being clipped
// to the padded input first; ceil_mode's extra windows are shaped the same way.
//
// Max-pool keeps, per output, the arg-max index h*W + w within the input plane; ties go to
// the first maximal entry in row-major window order (PyTorch: `val > maxval`), so the index,
// the tangent and the gradient agree with torch at ties too.
#include <stdbool.h>
#include <string.h>

#include "nn/layers.h"

// One channel plane: the max and first arg-max of every window, as selects rather than
// branches (a branch on `v > m` mispredicts on random data). Inputs are finite (checked at
// the API), so no NaN rule is needed beyond PyTorch's strict `>`.
static void maxpool_plane(float *restrict y, int32_t *restrict ix, const float *restrict x,
                          const rr_op *op)
{
    const int H = op->h, W = op->w, OH = op->oh, OW = op->ow;
    for (int oy = 0; oy < OH; oy++) {
        int y0 = oy * op->sh - op->ph, y1 = y0 + op->kh;
        y1 = y1 > H ? H : y1;
        y0 = y0 < 0 ? 0 : y0;
        for (int ox = 0; ox < OW; ox++) {
            int x0 = ox * op->sw - op->pw, x1 = x0 + op->kw;
            x1 = x1 > W ? W : x1;
            x0 = x0 < 0 ? 0 : x0;
            int best = y0 * W + x0;
            float m = x[best];
            for (int iy = y0; iy < y1; iy++)
                for (int jx = x0; jx < x1; jx++) {
                    const float v = x[iy * W + jx];
                    const bool gt = v > m;
                    m = gt ? v : m;
                    best = gt ? iy * W + jx : best;
                }
            y[oy * OW + ox] = m;
            ix[oy * OW + ox] = best;
        }
    }
}

// Whole, non-overlapping 2x2 windows with stride 2 (the common case): they tile the input but
// for a last odd row or column, so each input cell belongs to at most one window.
static bool tiles_2x2(const rr_op *op)
{
    return op->kh == 2 && op->kw == 2 && op->sh == 2 && op->sw == 2 && op->ph == 0 && op->pw == 0 &&
           2 * op->oh <= op->h && 2 * op->ow <= op->w;
}

// The common 2x2 / stride 2 / unpadded case with every window whole: the four candidates
// in row-major order, as selects the compiler vectorises across output columns.
static void maxpool_plane_2x2(float *restrict y, int32_t *restrict ix, const float *restrict x,
                              const rr_op *op)
{
    const int W = op->w, OH = op->oh, OW = op->ow;
    for (int oy = 0; oy < OH; oy++) {
        const float *r0 = x + 2 * oy * W, *r1 = r0 + W;
        float *yo = y + oy * OW;
        int32_t *io = ix + oy * OW;
        const int base = 2 * oy * W;
        for (int ox = 0; ox < OW; ox++) {
            const float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            float m = a;
            int k = base + 2 * ox;
            k = b > m ? base + 2 * ox + 1 : k;
            m = b > m ? b : m;
            k = c > m ? base + W + 2 * ox : k;
            m = c > m ? c : m;
            k = d > m ? base + W + 2 * ox + 1 : k;
            m = d > m ? d : m;
            yo[ox] = m;
            io[ox] = k;
        }
    }
}

void rr__maxpool_forward(const rr_op *op, float *out, int32_t *idx, const float *in, size_t nb)
{
    const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow;
    const bool k2 = tiles_2x2(op);
#pragma omp parallel for schedule(static)
    for (size_t sc = 0; sc < nb * (size_t)op->c; sc++) {
        if (k2)
            maxpool_plane_2x2(out + sc * P, idx + sc * P, in + sc * HW, op);
        else
            maxpool_plane(out + sc * P, idx + sc * P, in + sc * HW, op);
    }
}

void rr__maxpool_jvp(const rr_op *op, float *out, const float *t, const int32_t *idx, size_t rows,
                     size_t R)
{
    const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow, C = (size_t)op->c;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const int32_t *ix = idx + (r / R) * op->n_out;
        const float *tr = t + r * op->n_in;
        float *o = out + r * op->n_out;
        for (size_t c = 0; c < C; c++)
            for (size_t p = 0; p < P; p++)
                o[c * P + p] = tr[c * HW + (size_t)ix[c * P + p]];
    }
}

static void maxpool_vjp_2x2(float *restrict gi, const float *restrict g, const int32_t *restrict ix,
                            const rr_op *op)
{
    const int W = op->w, OH = op->oh, OW = op->ow;
    if (2 * OH < op->h || 2 * OW < op->w)
        memset(gi, 0, (size_t)op->h * W * sizeof(float)); // uncovered last row or column
    for (int oy = 0; oy < OH; oy++) {
        float *r0 = gi + 2 * oy * W, *r1 = r0 + W;
        const int base = 2 * oy * W;
        for (int ox = 0; ox < OW; ox++) {
            const float v = g[oy * OW + ox];
            const int k = ix[oy * OW + ox] - base - 2 * ox; // 0, 1, W or W + 1
            r0[2 * ox] = k == 0 ? v : 0.0f;
            r0[2 * ox + 1] = k == 1 ? v : 0.0f;
            r1[2 * ox] = k == W ? v : 0.0f;
            r1[2 * ox + 1] = k == W + 1 ? v : 0.0f;
        }
    }
}

void rr__maxpool_vjp(const rr_op *op, float *gin, const float *gout, const int32_t *idx,
                     size_t rows, size_t R)
{
    const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow, C = (size_t)op->c;
    const bool k2 = tiles_2x2(op);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const int32_t *ix = idx + (r / R) * op->n_out;
        const float *g = gout + r * op->n_out;
        float *gi = gin + r * op->n_in;
        if (k2) {
            for (size_t c = 0; c < C; c++)
                maxpool_vjp_2x2(gi + c * HW, g + c * P, ix + c * P, op);
            continue;
        }
        memset(gi, 0, op->n_in * sizeof(float));
        for (size_t c = 0; c < C; c++)
            for (size_t p = 0; p < P; p++)
                gi[c * HW + (size_t)ix[c * P + p]] += g[c * P + p];
    }
}

void rr__maxpool_pattern(const rr_op *op, uint8_t *pattern, size_t stride, const int32_t *idx,
                         size_t nb)
{
    for (size_t s = 0; s < nb; s++) {
        uint8_t *p = pattern + s * stride + op->pattern_off;
        const int32_t *ix = idx + s * op->n_out;
        for (size_t o = 0; o < op->n_out; o++) {
            uint32_t v = (uint32_t)ix[o]; // little-endian bytes, whatever the host
            p[4 * o + 0] = (uint8_t)v;
            p[4 * o + 1] = (uint8_t)(v >> 8);
            p[4 * o + 2] = (uint8_t)(v >> 16);
            p[4 * o + 3] = (uint8_t)(v >> 24);
        }
    }
}

// Window [y0, y1) x [x0, x1) of output (oy, ox) clipped to the input, and its divisor.
static void avg_window(const rr_op *op, int oy, int ox, int *y0, int *y1, int *x0, int *x1,
                       int *div)
{
    int a0 = oy * op->sh - op->ph, a1 = a0 + op->kh;
    int b0 = ox * op->sw - op->pw, b1 = b0 + op->kw;
    if (a1 > op->h + op->ph)
        a1 = op->h + op->ph;
    if (b1 > op->w + op->pw)
        b1 = op->w + op->pw;
    int pool = (a1 - a0) * (b1 - b0);
    if (a0 < 0)
        a0 = 0;
    if (b0 < 0)
        b0 = 0;
    if (a1 > op->h)
        a1 = op->h;
    if (b1 > op->w)
        b1 = op->w;
    *y0 = a0, *y1 = a1, *x0 = b0, *x1 = b1;
    *div = op->count_include_pad ? pool : (a1 - a0) * (b1 - b0);
}

void rr__avgpool_forward(const rr_op *op, float *out, const float *in, size_t rows)
{
    const int W = op->w, OH = op->oh, OW = op->ow;
#pragma omp parallel for schedule(static)
    for (size_t sc = 0; sc < rows * (size_t)op->c; sc++) {
        const float *x = in + sc * (size_t)op->h * W;
        float *y = out + sc * (size_t)OH * OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int y0, y1, x0, x1, div;
                avg_window(op, oy, ox, &y0, &y1, &x0, &x1, &div);
                float s = 0.0f;
                for (int iy = y0; iy < y1; iy++)
                    for (int jx = x0; jx < x1; jx++)
                        s += x[iy * W + jx];
                // An empty window (possible only with ceil_mode) outputs 0, as in PyTorch.
                y[oy * OW + ox] = (y0 < y1 && x0 < x1) ? s / (float)div : 0.0f;
            }
    }
}

void rr__avgpool_vjp(const rr_op *op, float *gin, const float *gout, size_t rows)
{
    const int W = op->w, OH = op->oh, OW = op->ow;
    const size_t HW = (size_t)op->h * W;
#pragma omp parallel for schedule(static)
    for (size_t sc = 0; sc < rows * (size_t)op->c; sc++) {
        float *gi = gin + sc * HW;
        const float *g = gout + sc * (size_t)OH * OW;
        memset(gi, 0, HW * sizeof(float));
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int y0, y1, x0, x1, div;
                avg_window(op, oy, ox, &y0, &y1, &x0, &x1, &div);
                if (y0 >= y1 || x0 >= x1)
                    continue;
                const float v = g[oy * OW + ox] / (float)div;
                for (int iy = y0; iy < y1; iy++)
                    for (int jx = x0; jx < x1; jx++)
                        gi[iy * W + jx] += v;
            }
    }
}
