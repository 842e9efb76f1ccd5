// Naive float64 reference forward pass and random test models (see naive.h).
#include "naive.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_impl.h"

uint64_t splitmix(uint64_t *s);
uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rr_test_uniform(uint64_t *state)
{
    return (double)(splitmix(state) >> 11) * 0x1.0p-53;
}

void rr_test_fill(double *x, size_t n, double lo, double hi, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rr_test_uniform(state);
}

// ---- random models ----

typedef struct tensor_buf {
    char name[256];
    rr_shape shape;
    void *data;
} tensor_buf;

static void add_tensor(rr_st_writer *w, tensor_buf *tb, int *nt, const char *prefix,
                       const char *suffix, rr_shape shape, rr_dtype dtype, double lo, double hi,
                       uint64_t *state)
{
    tensor_buf *t = &tb[(*nt)++];
    snprintf(t->name, sizeof t->name, "%s.%s", prefix, suffix);
    t->shape = shape;
    size_t n;
    cr_assert(rr_shape_numel(&shape, &n));
    size_t es = rr_dtype_bits(dtype) / 8;
    t->data = malloc(n * es + 1);
    for (size_t i = 0; i < n; i++) {
        double v = lo + (hi - lo) * rr_test_uniform(state);
        unsigned char *d = (unsigned char *)t->data + i * es;
        if (dtype == RR_DTYPE_F32) {
            float f = (float)v;
            memcpy(d, &f, 4);
        } else if (dtype == RR_DTYPE_F64) {
            memcpy(d, &v, 8);
        } else if (dtype == RR_DTYPE_BF16) {
            float f = (float)v;
            uint32_t u;
            memcpy(&u, &f, 4);
            uint16_t h = (uint16_t)(u >> 16); // truncation is fine: any value will do
            memcpy(d, &h, 2);
        } else {
            cr_assert(dtype == RR_DTYPE_F16);
            // Quantise to a half value exactly representable (|v| < 8, step 2^-10).
            double q = round(v * 1024.0) / 1024.0;
            float f = (float)q;
            uint32_t u;
            memcpy(&u, &f, 4);
            uint32_t sign = (u >> 16) & 0x8000u;
            int e = (int)((u >> 23) & 0xff) - 127 + 15;
            uint32_t man = u & 0x7fffff;
            uint16_t h;
            if (f == 0.0f)
                h = (uint16_t)sign;
            else if (e <= 0) // subnormal half
                h = (uint16_t)(sign | ((man | 0x800000u) >> (14 - e)));
            else
                h = (uint16_t)(sign | ((uint32_t)e << 10) | (man >> 13));
            memcpy(d, &h, 2);
        }
    }
    rr_error err = {0};
    cr_assert(rr_st_writer_add(w, t->name, dtype, shape.dim, shape.ndim, t->data, &err) == RR_OK,
              "%s", err.msg);
}

static rr_shape sh(int n, int a, int b, int c, int d)
{
    rr_shape s = {.ndim = n, .dim = {a, b, c, d}};
    return s;
}

static void add_layer_tensors(rr_st_writer *w, tensor_buf *tb, int *nt, const rr_layer_spec *layers,
                              int n, double scale, rr_dtype dtype, uint64_t *st)
{
    for (int i = 0; i < n; i++) {
        const rr_layer_spec *l = &layers[i];
        switch (l->type) {
            case RR_LAYER_LINEAR: {
                double a = scale / sqrt((double)l->in_features);
                add_tensor(w, tb, nt, l->name, "weight",
                           sh(2, l->out_features, l->in_features, 0, 0), dtype, -a, a, st);
                if (l->bias)
                    add_tensor(w, tb, nt, l->name, "bias", sh(1, l->out_features, 0, 0, 0), dtype,
                               -0.2, 0.2, st);
                break;
            }
            case RR_LAYER_CONV2D: {
                double a = scale / sqrt((double)l->in_channels * l->kernel[0] * l->kernel[1]);
                add_tensor(w, tb, nt, l->name, "weight",
                           sh(4, l->out_channels, l->in_channels, l->kernel[0], l->kernel[1]),
                           dtype, -a, a, st);
                if (l->bias)
                    add_tensor(w, tb, nt, l->name, "bias", sh(1, l->out_channels, 0, 0, 0), dtype,
                               -0.2, 0.2, st);
                break;
            }
            case RR_LAYER_BATCHNORM: {
                rr_shape c = sh(1, l->num_features, 0, 0, 0);
                if (l->affine) {
                    add_tensor(w, tb, nt, l->name, "weight", c, dtype, 0.5, 1.5, st);
                    add_tensor(w, tb, nt, l->name, "bias", c, dtype, -0.3, 0.3, st);
                }
                add_tensor(w, tb, nt, l->name, "running_mean", c, dtype, -0.5, 0.5, st);
                add_tensor(w, tb, nt, l->name, "running_var", c, dtype, 0.5, 2.0, st);
                break;
            }
            case RR_LAYER_RESIDUAL:
                add_layer_tensors(w, tb, nt, l->layers, l->nlayers, scale, dtype, st);
                break;
            default:
                break;
        }
    }
}

rr_model *rr_test_model(const char *arch_json, uint64_t seed, double scale, rr_dtype dtype)
{
    rr_error err = {0};
    rr_model_spec spec;
    if (rr_model_spec_parse(arch_json, strlen(arch_json), &spec, &err) != RR_OK) {
        cr_expect_fail("architecture does not parse: %s", err.msg);
        return NULL;
    }
    rr_st_writer *w = rr_st_writer_new();
    tensor_buf *tb = calloc(4 * RR_SPEC_MAX_LAYERS, sizeof *tb);
    int nt = 0;
    uint64_t st = seed;
    add_layer_tensors(w, tb, &nt, spec.layers, spec.nlayers, scale, dtype, &st);
    rr_st_writer_set_metadata(w, "relureg.architecture", arch_json, &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert(rr_st_writer_finish(w, &buf, &len, &err) == RR_OK, "%s", err.msg);
    rr_st_writer_free(w);
    for (int i = 0; i < nt; i++)
        free(tb[i].data);
    free(tb);
    rr_model_spec_clear(&spec);
    rr_model *m = NULL;
    if (rr_model_load(buf, len, &m, &err) != RR_OK)
        cr_expect_fail("model does not load: %s (%s)", err.msg, err.field);
    free(buf);
    return m;
}

rr_model *rr_test_model_like(const rr_model *like, const double *theta)
{
    rr_error err = {0};
    rr_st_writer *w = rr_st_writer_new();
    const size_t n = rr_model_num_param_tensors(like);
    float **bufs = calloc(n, sizeof(float *));
    for (size_t i = 0; i < n; i++) {
        const rr_param *p = rr_model_param(like, i);
        bufs[i] = malloc((p->numel + 1) * sizeof(float));
        for (size_t j = 0; j < p->numel; j++)
            bufs[i][j] = (float)theta[p->offset + j];
        cr_assert(rr_st_writer_add(w, p->name, RR_DTYPE_F32, p->shape.dim, p->shape.ndim, bufs[i],
                                   &err) == RR_OK);
    }
    rr_st_writer_set_metadata(w, "relureg.architecture", rr_model_architecture(like), &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert(rr_st_writer_finish(w, &buf, &len, &err) == RR_OK, "%s", err.msg);
    rr_st_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    rr_model *m = NULL;
    if (rr_model_load(buf, len, &m, &err) != RR_OK)
        cr_expect_fail("model does not load: %s", err.msg);
    free(buf);
    return m;
}

double *rr_test_params(const rr_model *m)
{
    double *t = calloc(rr_model_param_array_size(m) + 1, sizeof(double));
    for (size_t i = 0; i < rr_model_num_param_tensors(m); i++) {
        const rr_param *p = rr_model_param(m, i);
        for (size_t j = 0; j < p->numel; j++)
            t[p->offset + j] = p->data[j];
    }
    return t;
}

// ---- the naive forward ----

static void note_margin(double *margin, double gap, double scale)
{
    if (margin && scale > 0 && gap / scale < *margin)
        *margin = gap / scale;
}

void rr_naive_forward(const rr_model *m, const double *theta, const double *x, double *logits,
                      uint8_t *pattern, double *margin)
{
    double **act = calloc((size_t)m->nacts, sizeof(double *));
    act[0] = (double *)x;
    for (int a = 1; a < m->nacts; a++)
        act[a] = calloc(m->act_size[a], sizeof(double));
    if (margin)
        *margin = 1.0;
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        const double *in = act[op->in];
        double *out = act[op->out];
        const int C = op->c, H = op->h, W = op->w, OC = op->oc, OH = op->oh, OW = op->ow;
        switch (op->kind) {
            case RR_OP_LINEAR: {
                const double *w = theta + m->params[op->p_weight].offset;
                for (int o = 0; o < OC; o++) {
                    double s = op->p_bias >= 0 ? theta[m->params[op->p_bias].offset + o] : 0;
                    for (int k = 0; k < C; k++)
                        s += w[(size_t)o * C + k] * in[k];
                    out[o] = s;
                }
                break;
            }
            case RR_OP_CONV2D: {
                const double *w = theta + m->params[op->p_weight].offset;
                for (int o = 0; o < OC; o++)
                    for (int oy = 0; oy < OH; oy++)
                        for (int ox = 0; ox < OW; ox++) {
                            double s =
                                op->p_bias >= 0 ? theta[m->params[op->p_bias].offset + o] : 0;
                            for (int c = 0; c < C; c++)
                                for (int ki = 0; ki < op->kh; ki++)
                                    for (int kj = 0; kj < op->kw; kj++) {
                                        int iy = oy * op->sh - op->ph + ki;
                                        int ix = ox * op->sw - op->pw + kj;
                                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                            continue;
                                        s += w[(((size_t)o * C + c) * op->kh + ki) * op->kw + kj] *
                                             in[((size_t)c * H + iy) * W + ix];
                                    }
                            out[((size_t)o * OH + oy) * OW + ox] = s;
                        }
                break;
            }
            case RR_OP_RELU: {
                double mx = 0;
                for (size_t k = 0; k < op->n_in; k++)
                    mx = fabs(in[k]) > mx ? fabs(in[k]) : mx;
                for (size_t k = 0; k < op->n_in; k++) {
                    out[k] = in[k] > 0 ? in[k] : op->slope * in[k];
                    if (pattern)
                        pattern[op->pattern_off + k] = in[k] > 0;
                    note_margin(margin, fabs(in[k]), mx);
                }
                break;
            }
            case RR_OP_MAXPOOL: {
                double mx = 0;
                for (size_t k = 0; k < op->n_in; k++)
                    mx = fabs(in[k]) > mx ? fabs(in[k]) : mx;
                for (int c = 0; c < C; c++)
                    for (int oy = 0; oy < OH; oy++)
                        for (int ox = 0; ox < OW; ox++) {
                            double best = -INFINITY, second = -INFINITY;
                            int arg = -1, count = 0;
                            bool all_zero = true;
                            for (int ki = 0; ki < op->kh; ki++)
                                for (int kj = 0; kj < op->kw; kj++) {
                                    int iy = oy * op->sh - op->ph + ki;
                                    int ix = ox * op->sw - op->pw + kj;
                                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                        continue;
                                    double v = in[((size_t)c * H + iy) * W + ix];
                                    count++;
                                    all_zero = all_zero && v == 0.0;
                                    if (v > best) {
                                        second = best;
                                        best = v;
                                        arg = iy * W + ix;
                                    } else if (v > second) {
                                        second = v;
                                    }
                                }
                            size_t o = ((size_t)c * OH + oy) * OW + ox;
                            if (arg < 0) { // all entries -inf cannot happen with finite inputs
                                arg = 0;
                            }
                            if (all_zero) {
                                // Both sides take the first entry of an all-zero window.
                                int iy = oy * op->sh - op->ph, ix = ox * op->sw - op->pw;
                                arg = (iy < 0 ? 0 : iy) * W + (ix < 0 ? 0 : ix);
                            } else if (count > 1) {
                                note_margin(margin, best - second, mx);
                            }
                            out[o] = best;
                            if (pattern) {
                                uint32_t v = (uint32_t)arg;
                                uint8_t *p = pattern + op->pattern_off + 4 * o;
                                p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
                                p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
                            }
                        }
                break;
            }
            case RR_OP_AVGPOOL:
                for (int c = 0; c < C; c++)
                    for (int oy = 0; oy < OH; oy++)
                        for (int ox = 0; ox < OW; ox++) {
                            // Window over the padded input, clipped to H + pad (ceil_mode).
                            int y0 = oy * op->sh - op->ph, x0 = ox * op->sw - op->pw;
                            int y1 = y0 + op->kh, x1 = x0 + op->kw;
                            if (y1 > H + op->ph)
                                y1 = H + op->ph;
                            if (x1 > W + op->pw)
                                x1 = W + op->pw;
                            int pool = (y1 - y0) * (x1 - x0), real = 0;
                            double s = 0;
                            for (int iy = y0; iy < y1; iy++)
                                for (int ix = x0; ix < x1; ix++)
                                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                                        s += in[((size_t)c * H + iy) * W + ix];
                                        real++;
                                    }
                            out[((size_t)c * OH + oy) * OW + ox] =
                                real ? s / (op->count_include_pad ? pool : real) : 0.0;
                        }
                break;
            case RR_OP_BATCHNORM: {
                size_t P = op->n_in / (size_t)C;
                const double *mean = theta + m->params[op->p_mean].offset;
                const double *var = theta + m->params[op->p_var].offset;
                for (int c = 0; c < C; c++) {
                    double wc = op->p_weight >= 0 ? theta[m->params[op->p_weight].offset + c] : 1;
                    double bc = op->p_bias >= 0 ? theta[m->params[op->p_bias].offset + c] : 0;
                    for (size_t p = 0; p < P; p++)
                        out[c * P + p] =
                            (in[c * P + p] - mean[c]) / sqrt(var[c] + op->spec->eps) * wc + bc;
                }
                break;
            }
            case RR_OP_RES_END: {
                const double *skip = act[m->ops[op->partner].in];
                for (size_t k = 0; k < op->n_out; k++)
                    out[k] = in[k] + skip[k];
                break;
            }
            case RR_OP_FLATTEN:
            case RR_OP_RES_BEGIN:
                break;
        }
    }
    const double *z = act[m->nops ? m->ops[m->nops - 1].out : 0];
    memcpy(logits, z, (size_t)m->K * sizeof(double));
    for (int a = 1; a < m->nacts; a++)
        free(act[a]);
    free(act);
}

bool rr_test_draw_sample(const rr_model *m, const double *theta, double *x, double lo, double hi,
                         double min_margin, uint64_t *state)
{
    double *z = malloc((size_t)m->K * sizeof(double));
    bool ok = false;
    for (int t = 0; t < 1000 && !ok; t++) {
        rr_test_fill(x, m->D, lo, hi, state);
        for (size_t i = 0; i < m->D; i++) // inputs exactly representable in float32
            x[i] = (float)x[i];
        double margin;
        rr_naive_forward(m, theta, x, z, NULL, &margin);
        ok = margin >= min_margin;
    }
    free(z);
    return ok;
}
