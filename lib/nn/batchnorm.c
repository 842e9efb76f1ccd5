// Batch normalisation in inference mode: y = (x - mean) / sqrt(var + eps) * w + b, folded at
// load into y = x * scale + shift per channel (per feature for [d] inputs, where P = 1).
//
// Parameter gradients, with s = 1/sqrt(var + eps) and u = dL/dy (summed over positions):
//   dw = sum u (x - mean) s     db = sum u     dmean = -sum u w s
//   dvar = -1/2 sum u (x - mean) w s^3
// For the linear part (tangent rows, no shift): y_t = x_t * w * s, so only dw = sum u x_t s
// and dvar = -1/2 sum u x_t w s^3 remain. Running statistics are reported as parameters.
#include "nn/layers.h"

void rr__batchnorm_forward(const rr_op *op, float *out, const float *in, size_t rows, bool affine)
{
    const size_t C = (size_t)op->c, P = op->n_in / C;
#pragma omp parallel for schedule(static)
    for (size_t rc = 0; rc < rows * C; rc++) {
        const size_t c = rc % C;
        const float a = op->bn_scale[c], b = affine ? op->bn_shift[c] : 0.0f;
        const float *x = in + rc * P;
        float *y = out + rc * P;
        for (size_t p = 0; p < P; p++)
            y[p] = x[p] * a + b;
    }
}

void rr__batchnorm_vjp(const rr_op *op, float *gin, const float *gout, size_t rows)
{
    rr__batchnorm_forward(op, gin, gout, rows, false);
}

void rr__batchnorm_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                              const float *in, size_t rows, bool affine)
{
    const size_t C = (size_t)op->c, P = op->n_in / C;
    const float *mean = m->params[op->p_mean].data;
    const float *w = op->p_weight >= 0 ? m->params[op->p_weight].data : NULL;
    float *dw = op->p_weight >= 0 ? dparams + m->params[op->p_weight].offset : NULL;
    float *db = op->p_bias >= 0 ? dparams + m->params[op->p_bias].offset : NULL;
    float *dmean = dparams + m->params[op->p_mean].offset;
    float *dvar = dparams + m->params[op->p_var].offset;
    // One channel per iteration; within it, rows and positions in a fixed order.
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < C; c++) {
        const double mu = affine ? mean[c] : 0.0;
        double su = 0.0, sux = 0.0;
        for (size_t r = 0; r < rows; r++) {
            const float *u = gout + (r * C + c) * P, *x = in + (r * C + c) * P;
            for (size_t p = 0; p < P; p++) {
                su += u[p];
                sux += (double)u[p] * ((double)x[p] - mu);
            }
        }
        const double s = op->bn_inv_std[c], wc = w ? w[c] : 1.0;
        if (dw)
            dw[c] += (float)(sux * s);
        dvar[c] += (float)(-0.5 * sux * wc * s * s * s);
        if (affine) {
            if (db)
                db[c] += (float)su;
            dmean[c] += (float)(-su * wc * s);
        }
    }
}
