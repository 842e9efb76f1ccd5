// relu and leaky_relu: y = x if x > 0 else slope * x (slope 0 for relu).
//
// Derivative convention at 0, as PyTorch: relu'(0) = 0, leaky_relu'(0) = slope, i.e. the
// mask is (x > 0). Tangent and backward rows share it: t' = t if x > 0 else slope * t, with x
// the primal input of the row's sample (row r belongs to sample r / R).
// The loops are selects over restrict-qualified rows, which the compiler turns into vector
// blends (the Makefile's -O3 -fno-trapping-math): a branch per unit would mispredict on half
// of them, about 5 ns a unit here. The row helpers stay out of line to keep `restrict`.
#include "nn/layers.h"

__attribute__((noinline)) static void select_rows(float *restrict out, const float *restrict t,
                                                  const float *restrict x, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        out[i] = x[i] > 0.0f ? t[i] : slope * t[i];
}

__attribute__((noinline)) static void select_inplace(float *restrict t, const float *restrict x,
                                                     size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        t[i] = x[i] > 0.0f ? t[i] : slope * t[i];
}

void rr__relu_forward(const rr_op *op, float *out, const float *in, size_t rows)
{
    const size_t n = op->n_in;
    const float slope = op->slope;
#pragma omp parallel for schedule(static) if (rows * n > 65536)
    for (size_t r = 0; r < rows; r++)
        select_rows(out + r * n, in + r * n, in + r * n, n, slope);
}

void rr__relu_jvp(const rr_op *op, float *out, const float *t, const float *x, size_t rows,
                  size_t R)
{
    const size_t n = op->n_in;
    const float slope = op->slope;
#pragma omp parallel for schedule(static) if (rows * n > 65536)
    for (size_t r = 0; r < rows; r++) {
        if (out == t)
            select_inplace(out + r * n, x + (r / R) * n, n, slope);
        else
            select_rows(out + r * n, t + r * n, x + (r / R) * n, n, slope);
    }
}

void rr__relu_pattern(const rr_op *op, uint8_t *pattern, size_t stride, const float *x, size_t nb)
{
    const size_t n = op->n_in;
    for (size_t s = 0; s < nb; s++) {
        uint8_t *p = pattern + s * stride + op->pattern_off;
        const float *xs = x + s * n;
        for (size_t i = 0; i < n; i++)
            p[i] = xs[i] > 0.0f;
    }
}
