// Model loading: safetensors file -> architecture spec -> flat op list with inferred shapes ->
// checked, converted float32 weights (see model.h; shapes and semantics: model-format.md).
//
// Loading is the only place a file's contents are trusted, so every size is checked before
// it is used: dimensions come in bounded by the spec parser, per-sample activation sizes are
// capped, and all products are overflow-checked. Errors name the tensor or layer at fault.
#include "nn/model_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

// Largest per-sample activation (floats) any layer may produce: 2^28 floats = 1 GiB.
#define MAX_ACT ((size_t)1 << 28)

// ---- shape inference: spec layers -> ops ----

typedef struct builder {
    rr_model *m;
    int cap; // allocated ops
    int nparams_cap;
    size_t pattern_off;
    size_t idx_off;
} builder;

typedef struct cur_shape {
    bool flat;
    int c, h, w; // flat: c = d, h = w = 1
} cur_shape;

static void shape_str(const cur_shape *s, char *buf, size_t cap)
{
    if (s->flat)
        snprintf(buf, cap, "[%d]", s->c);
    else
        snprintf(buf, cap, "[%d, %d, %d]", s->c, s->h, s->w);
}

static rr_status push_op(builder *b, rr_op **out, rr_error *err)
{
    rr_model *m = b->m;
    if (m->nops == b->cap) {
        int ncap = b->cap ? 2 * b->cap : 16;
        rr_op *ops = realloc(m->ops, (size_t)ncap * sizeof *ops);
        if (ops == NULL)
            return rr_error_set(err, RR_ENOMEM, "", "out of memory");
        m->ops = ops;
        b->cap = ncap;
    }
    rr_op *op = &m->ops[m->nops++];
    memset(op, 0, sizeof *op);
    op->p_weight = op->p_bias = op->p_mean = op->p_var = -1;
    op->partner = -1;
    op->pattern = -1;
    *out = op;
    return RR_OK;
}

// Registers a new activation buffer of n floats per sample and returns its index.
static rr_status new_act(builder *b, size_t n, const char *path, int *idx, rr_error *err)
{
    rr_model *m = b->m;
    if (n > MAX_ACT)
        return rr_error_set(err, RR_EUNSUPPORTED, "layers",
                            "%s: output of %zu values per sample exceeds the limit of %zu", path, n,
                            MAX_ACT);
    size_t *sz = realloc(m->act_size, (size_t)(m->nacts + 1) * sizeof *sz);
    if (sz == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    m->act_size = sz;
    sz[m->nacts] = n;
    *idx = m->nacts++;
    return RR_OK;
}

// PyTorch's pooling_output_shape: floor or ceil, and with ceil_mode a last window that would
// start inside the right padding is dropped.
static long pool_out(long in, int k, int s, int p, bool ceil_mode)
{
    long num = in + 2L * p - k;
    long o = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
    if (ceil_mode && (o - 1) * s >= in + p)
        o--;
    return o;
}

static rr_status build_layers(builder *b, const rr_layer_spec *layers, int n, int depth,
                              cur_shape *s, int *cur, rr_error *err);

// A residual block: RES_BEGIN, the body's ops, RES_END (which adds the block's input to the
// body's output into a new activation).
static rr_status build_residual(builder *b, const rr_layer_spec *l, int depth, cur_shape *s,
                                int *cur, const char *have, rr_error *err)
{
    rr_model *m = b->m;
    rr_op *op;
    rr_status st;
    if ((st = push_op(b, &op, err)))
        return st;
    int begin = m->nops - 1;
    op->kind = RR_OP_RES_BEGIN;
    op->spec = l;
    op->in = op->out = *cur;
    op->c = op->oc = s->c;
    op->h = op->oh = s->h;
    op->w = op->ow = s->w;
    op->n_in = op->n_out = m->act_size[*cur];
    op->depth = depth;
    if (depth + 1 > m->res_depth)
        m->res_depth = depth + 1;
    cur_shape in_shape = *s;
    int in_buf = *cur;
    if ((st = build_layers(b, l->layers, l->nlayers, depth + 1, s, cur, err)))
        return st;
    if (s->flat != in_shape.flat || s->c != in_shape.c || s->h != in_shape.h ||
        s->w != in_shape.w) {
        char got[64];
        shape_str(s, got, sizeof got);
        return rr_error_set(err, RR_ESHAPE, "layers",
                            "%s: residual body maps %s to %s; the shapes must match", l->path, have,
                            got);
    }
    if ((st = push_op(b, &op, err)))
        return st;
    op->kind = RR_OP_RES_END;
    op->spec = l;
    op->in = *cur;
    op->c = op->oc = s->c;
    op->h = op->oh = s->h;
    op->w = op->ow = s->w;
    op->n_in = op->n_out = m->act_size[in_buf];
    op->partner = begin;
    op->depth = depth;
    m->ops[begin].partner = m->nops - 1;
    if ((st = new_act(b, op->n_out, l->path, &op->out, err)))
        return st;
    *cur = op->out;
    return RR_OK;
}

static rr_status conv_shape(rr_op *op, const rr_layer_spec *l, const cur_shape *s, const char *have,
                            cur_shape *o, rr_error *err)
{
    op->kind = RR_OP_CONV2D;
    if (s->flat)
        return rr_error_set(err, RR_ESHAPE, "layers",
                            "%s: conv2d needs a [C, H, W] input but gets %s", l->path, have);
    if (l->in_channels != s->c)
        return rr_error_set(err, RR_ESHAPE, "layers",
                            "%s: conv2d has in_channels %d but its input is %s", l->path,
                            l->in_channels, have);
    op->kh = l->kernel[0], op->kw = l->kernel[1];
    op->sh = l->stride[0], op->sw = l->stride[1];
    op->ph = l->padding[0], op->pw = l->padding[1];
    long oh = ((long)s->h + 2L * op->ph - op->kh), ow = ((long)s->w + 2L * op->pw - op->kw);
    if (oh < 0 || ow < 0)
        return rr_error_set(err, RR_ESHAPE, "layers",
                            "%s: conv2d kernel [%d, %d] is larger than its padded input "
                            "%s",
                            l->path, op->kh, op->kw, have);
    o->c = l->out_channels;
    o->h = (int)(oh / op->sh + 1);
    o->w = (int)(ow / op->sw + 1);
    // im2col columns per output position: in_channels * kh * kw.
    size_t ckk;
    if (!rr_size_mul((size_t)s->c, (size_t)op->kh * (size_t)op->kw, &ckk) || ckk > MAX_ACT)
        return rr_error_set(err, RR_EUNSUPPORTED, "layers", "%s: conv2d is too large", l->path);
    return RR_OK;
}

static rr_status pool_shape(rr_op *op, const rr_layer_spec *l, const cur_shape *s, const char *have,
                            cur_shape *o, rr_error *err)
{
    op->kind = l->type == RR_LAYER_MAXPOOL2D ? RR_OP_MAXPOOL : RR_OP_AVGPOOL;
    if (s->flat)
        return rr_error_set(err, RR_ESHAPE, "layers", "%s: %s needs a [C, H, W] input but gets %s",
                            l->path, rr_layer_type_name(l->type), have);
    op->kh = l->kernel[0], op->kw = l->kernel[1];
    op->sh = l->stride[0], op->sw = l->stride[1];
    op->ph = l->padding[0], op->pw = l->padding[1];
    op->ceil_mode = l->ceil_mode;
    op->count_include_pad = l->count_include_pad;
    long oh = pool_out(s->h, op->kh, op->sh, op->ph, op->ceil_mode);
    long ow = pool_out(s->w, op->kw, op->sw, op->pw, op->ceil_mode);
    if (oh < 1 || ow < 1 || (long)s->h + 2L * op->ph < op->kh || (long)s->w + 2L * op->pw < op->kw)
        return rr_error_set(err, RR_ESHAPE, "layers",
                            "%s: %s kernel [%d, %d] does not fit its padded input %s", l->path,
                            rr_layer_type_name(l->type), op->kh, op->kw, have);
    o->h = (int)oh;
    o->w = (int)ow;
    return RR_OK;
}

// The op of layer l on input shape s (`have` describes it): its kind and geometry, its
// output shape *o; RR_ESHAPE when the layer does not fit its input.
static rr_status op_shape(rr_op *op, const rr_layer_spec *l, const cur_shape *s, const char *have,
                          cur_shape *o, rr_error *err)
{
    switch (l->type) {
        case RR_LAYER_LINEAR:
            op->kind = RR_OP_LINEAR;
            if (!s->flat)
                return rr_error_set(err, RR_ESHAPE, "layers",
                                    "%s: linear needs a flat input but gets %s; add a flatten "
                                    "layer before it",
                                    l->path, have);
            if (l->in_features != s->c)
                return rr_error_set(err, RR_ESHAPE, "layers",
                                    "%s: linear has in_features %d but its input is %s", l->path,
                                    l->in_features, have);
            o->c = l->out_features;
            break;
        case RR_LAYER_CONV2D:
            return conv_shape(op, l, s, have, o, err);
        case RR_LAYER_RELU:
        case RR_LAYER_LEAKY_RELU:
            op->kind = RR_OP_RELU;
            op->slope = l->type == RR_LAYER_RELU ? 0.0f : (float)l->negative_slope;
            break;
        case RR_LAYER_MAXPOOL2D:
        case RR_LAYER_AVGPOOL2D:
            return pool_shape(op, l, s, have, o, err);
        case RR_LAYER_FLATTEN:
            op->kind = RR_OP_FLATTEN;
            if (!s->flat) {
                o->flat = true;
                o->c = (int)op->n_in;
                o->h = o->w = 1;
            }
            break;
        case RR_LAYER_BATCHNORM:
            op->kind = RR_OP_BATCHNORM;
            if (l->num_features != s->c)
                return rr_error_set(err, RR_ESHAPE, "layers",
                                    "%s: batchnorm has num_features %d but its input is %s "
                                    "(features are %s)",
                                    l->path, l->num_features, have,
                                    s->flat ? "the vector entries" : "the channels");
            break;
        case RR_LAYER_RESIDUAL:
            break; // build_residual
    }

    return RR_OK;
}

// Completes op (output shape o of input shape s): sizes, its output activation (a flatten
// shares its input's bytes) and its slots in the activation pattern and max-pool indices.
static rr_status op_place(builder *b, rr_op *op, const rr_layer_spec *l, const cur_shape *s,
                          const cur_shape *o, rr_error *err)
{
    rr_model *m = b->m;
    rr_status st;
    size_t n_out;
    if (!rr_size_mul((size_t)o->c, (size_t)o->h * (size_t)o->w, &n_out))
        return rr_error_set(err, RR_EUNSUPPORTED, "layers", "%s: output too large", l->path);
    op->oc = o->c;
    op->oh = o->h;
    op->ow = o->w;
    op->n_out = n_out;
    op->flat_in = s->flat;
    op->flat_out = o->flat;
    if (op->kind == RR_OP_FLATTEN) {
        op->out = op->in; // same bytes, new shape
    } else if ((st = new_act(b, n_out, l->path, &op->out, err))) {
        return st;
    }
    if (op->kind == RR_OP_RELU) {
        op->pattern = m->npattern++;
        op->pattern_off = b->pattern_off;
        b->pattern_off += op->n_in;
    } else if (op->kind == RR_OP_MAXPOOL) {
        op->pattern = m->npattern++;
        op->pattern_off = b->pattern_off;
        b->pattern_off += 4 * op->n_out;
        op->idx_off = b->idx_off;
        b->idx_off += op->n_out;
    }
    return RR_OK;
}

static rr_status build_layer(builder *b, const rr_layer_spec *l, int depth, cur_shape *s, int *cur,
                             rr_error *err)
{
    char have[64];
    shape_str(s, have, sizeof have);
    if (l->type == RR_LAYER_RESIDUAL)
        return build_residual(b, l, depth, s, cur, have, err);
    rr_op *op;
    rr_status st;
    if ((st = push_op(b, &op, err)))
        return st;
    op->spec = l;
    op->in = *cur;
    op->c = s->c;
    op->h = s->h;
    op->w = s->w;
    op->n_in = b->m->act_size[*cur];
    cur_shape o = *s;
    if ((st = op_shape(op, l, s, have, &o, err)) || (st = op_place(b, op, l, s, &o, err)))
        return st;
    *s = o;
    *cur = op->out;
    return RR_OK;
}

static rr_status build_layers(builder *b, const rr_layer_spec *layers, int n, int depth,
                              cur_shape *s, int *cur, rr_error *err)
{
    for (int i = 0; i < n; i++) {
        rr_status st = build_layer(b, &layers[i], depth, s, cur, err);
        if (st != RR_OK)
            return st;
    }
    return RR_OK;
}

// ---- tensors ----

typedef struct want {
    const char *suffix; // "weight", "bias", "running_mean", "running_var"
    int *slot;          // where the param index goes
    rr_shape shape;
} want;

static rr_status add_param(rr_model *m, const rr_safetensors *st, const rr_layer_spec *l,
                           const char *suffix, const rr_shape *shape, int *slot, bool *used,
                           rr_error *err)
{
    char name[RR_SPEC_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s.%s", l->name, suffix);
    char want_s[96];
    rr_shape_format(shape, want_s, sizeof want_s);
    size_t numel;
    if (!rr_shape_numel(shape, &numel))
        return rr_error_set(err, RR_EUNSUPPORTED, name, "tensor '%s' is too large", name);
    if (st) { // loading a file: the tensor must be there, float, of this shape
        const rr_st_tensor *t = rr_safetensors_find(st, name);
        if (t == NULL)
            return rr_error_set(err, RR_ESHAPE, name,
                                "missing tensor '%s' (%s, %s layer, expects shape %s)", name,
                                l->path, rr_layer_type_name(l->type), want_s);
        if (!rr_dtype_is_float(t->dtype))
            return rr_error_set(err, RR_EDTYPE, name, "unsupported dtype %s for tensor %s",
                                rr_dtype_name(t->dtype), name);
        if (!rr_shape_equal(&t->shape, shape)) {
            char got[96];
            rr_shape_format(&t->shape, got, sizeof got);
            return rr_error_set(err, RR_ESHAPE, name, "tensor '%s' has shape %s, %s expects %s",
                                name, got, l->path, want_s);
        }
        used[t - rr_safetensors_at(st, 0)] = true;
    }
    rr_param *p = &m->params[m->nparams];
    if ((m->param_names[m->nparams] = strdup(name)) == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    p->name = m->param_names[m->nparams];
    p->shape = *shape;
    p->numel = numel;
    p->offset = m->param_size;
    // Each parameter starts on a 64-byte boundary of the block.
    m->param_size += (numel + 15) & ~(size_t)15;
    m->param_count += numel;
    *slot = (int)m->nparams++;
    return RR_OK;
}

static rr_shape shape1(int a)
{
    rr_shape s = {.ndim = 1, .dim = {a}};
    return s;
}

static rr_status collect_params(rr_model *m, const rr_safetensors *st, bool *used, rr_error *err)
{
    rr_status rc;
    for (int i = 0; i < m->nops; i++) {
        rr_op *op = &m->ops[i];
        const rr_layer_spec *l = op->spec;
        switch (op->kind) {
            case RR_OP_LINEAR: {
                rr_shape w = {.ndim = 2, .dim = {l->out_features, l->in_features}};
                rr_shape b = shape1(l->out_features);
                if ((rc = add_param(m, st, l, "weight", &w, &op->p_weight, used, err)) ||
                    (l->bias && (rc = add_param(m, st, l, "bias", &b, &op->p_bias, used, err))))
                    return rc;
                break;
            }
            case RR_OP_CONV2D: {
                rr_shape w = {.ndim = 4,
                              .dim = {l->out_channels, l->in_channels, l->kernel[0], l->kernel[1]}};
                rr_shape b = shape1(l->out_channels);
                if ((rc = add_param(m, st, l, "weight", &w, &op->p_weight, used, err)) ||
                    (l->bias && (rc = add_param(m, st, l, "bias", &b, &op->p_bias, used, err))))
                    return rc;
                break;
            }
            case RR_OP_BATCHNORM: {
                rr_shape c = shape1(l->num_features);
                if ((l->affine &&
                     ((rc = add_param(m, st, l, "weight", &c, &op->p_weight, used, err)) ||
                      (rc = add_param(m, st, l, "bias", &c, &op->p_bias, used, err)))) ||
                    (rc = add_param(m, st, l, "running_mean", &c, &op->p_mean, used, err)) ||
                    (rc = add_param(m, st, l, "running_var", &c, &op->p_var, used, err)))
                    return rc;
                // Optional and ignored, but when present it must be the int64 scalar PyTorch
                // writes.
                char name[RR_SPEC_MAX_NAME + 32];
                snprintf(name, sizeof name, "%s.num_batches_tracked", l->name);
                const rr_st_tensor *t = st ? rr_safetensors_find(st, name) : NULL;
                if (t) {
                    if (t->dtype != RR_DTYPE_I64)
                        return rr_error_set(err, RR_EDTYPE, name,
                                            "unsupported dtype %s for tensor %s",
                                            rr_dtype_name(t->dtype), name);
                    if (t->numel != 1)
                        return rr_error_set(err, RR_ESHAPE, name, "tensor '%s' must be a scalar",
                                            name);
                    used[t - rr_safetensors_at(st, 0)] = true;
                }
                break;
            }
            default:
                break;
        }
    }
    size_t n = st ? rr_safetensors_count(st) : 0;
    for (size_t i = 0; i < n; i++)
        if (!used[i]) {
            const char *name = rr_safetensors_at(st, i)->name;
            return rr_error_set(err, RR_ESHAPE, name,
                                "tensor '%s' is not used by any layer of the architecture", name);
        }
    return RR_OK;
}

static rr_status convert_weights(rr_model *m, const rr_safetensors *st, rr_error *err)
{
    m->weights = rr_aligned_alloc((m->param_size ? m->param_size : 1) * sizeof(float));
    if (m->weights == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory for %zu weights", m->param_size);
    memset(m->weights, 0, m->param_size * sizeof(float));
    for (size_t i = 0; i < m->nparams; i++) {
        rr_param *p = &m->params[i];
        float *dst = m->weights + p->offset;
        p->data = dst;
        if (st == NULL) { // a new model: zeros, and running_var 1 so batchnorm is defined
            if (strstr(p->name, ".running_var"))
                for (size_t j = 0; j < p->numel; j++)
                    dst[j] = 1.0f;
            continue;
        }
        const rr_st_tensor *t = rr_safetensors_find(st, p->name);
        rr_convert_to_f32(dst, t->data, t->dtype, p->numel);
        if (!rr_all_finite(dst, p->numel))
            return rr_error_set(err, RR_ENONFINITE, p->name,
                                "tensor '%s' holds NaN or Inf values (after conversion to "
                                "float32)",
                                p->name);
        p->data = dst;
    }
    return RR_OK;
}

// Batchnorm in inference mode is the per-channel affine map x * scale + shift; fold it once.
static rr_status derive_batchnorm(rr_model *m, rr_error *err)
{
    size_t total = 0;
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == RR_OP_BATCHNORM)
            total += 3 * (size_t)m->ops[i].c;
    if (total == 0)
        return RR_OK;
    if (m->derived == NULL && (m->derived = rr_aligned_alloc(total * sizeof(float))) == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    float *d = m->derived;
    for (int i = 0; i < m->nops; i++) {
        rr_op *op = &m->ops[i];
        if (op->kind != RR_OP_BATCHNORM)
            continue;
        int C = op->c;
        op->bn_scale = d;
        op->bn_shift = d + C;
        op->bn_inv_std = d + 2 * C;
        d += 3 * C;
        const float *mean = m->params[op->p_mean].data, *var = m->params[op->p_var].data;
        const float *w = op->p_weight >= 0 ? m->params[op->p_weight].data : NULL;
        const float *b = op->p_bias >= 0 ? m->params[op->p_bias].data : NULL;
        for (int c = 0; c < C; c++) {
            double v = (double)var[c] + op->spec->eps;
            if (!(v > 0))
                return rr_error_set(err, RR_EINVAL, m->params[op->p_var].name,
                                    "%s: running_var + eps must be > 0 (channel %d has %g)",
                                    m->params[op->p_var].name, c, v);
            double inv = 1.0 / sqrt(v);
            double scale = (w ? w[c] : 1.0) * inv;
            op->bn_inv_std[c] = (float)inv;
            op->bn_scale[c] = (float)scale;
            op->bn_shift[c] = (float)((b ? b[c] : 0.0) - mean[c] * scale);
        }
    }
    return RR_OK;
}

static rr_status copy_metadata(rr_model *m, const rr_safetensors *st, const char *arch,
                               rr_error *err)
{
    if ((m->arch_json = strdup(arch)) == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    size_t n = st ? rr_safetensors_metadata_count(st) : 0;
    m->meta_keys = calloc(n ? n : 1, sizeof(char *));
    m->meta_values = calloc(n ? n : 1, sizeof(char *));
    if (!m->meta_keys || !m->meta_values)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    for (size_t i = 0; i < n; i++) {
        m->meta_keys[i] = strdup(rr_safetensors_metadata_key(st, i));
        m->meta_values[i] = strdup(rr_safetensors_metadata_value(st, i));
        m->nmeta = i + 1;
        if (!m->meta_keys[i] || !m->meta_values[i])
            return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    }
    return RR_OK;
}

static void model_free(rr_model *m)
{
    if (m == NULL)
        return;
    rr_model_spec_clear(&m->spec);
    free(m->ops);
    free(m->act_size);
    free(m->pattern_ops);
    if (m->param_names)
        for (size_t i = 0; i < m->nparams; i++)
            free(m->param_names[i]);
    free(m->param_names);
    free(m->params);
    rr_aligned_free(m->weights);
    rr_aligned_free(m->derived);
    free(m->arch_json);
    for (size_t i = 0; i < m->nmeta; i++) {
        free(m->meta_keys[i]);
        free(m->meta_values[i]);
    }
    free(m->meta_keys);
    free(m->meta_values);
    free(m);
}

// Builds a model from its architecture text and, when st is not NULL, the file's tensors
// (validated); without a file the weights are zeros (rr_model_create).
static rr_status model_build(const char *arch, const rr_safetensors *st, rr_model **out,
                             rr_error *err)
{
    bool *used = NULL;
    rr_model *m = NULL;
    rr_status rc;
    *out = NULL;
    if ((m = calloc(1, sizeof *m)) == NULL) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto fail;
    }
    atomic_init(&m->refs, 1);
    if ((rc = rr_model_spec_parse(arch, strlen(arch), &m->spec, err)))
        goto fail;
    m->K = m->spec.num_classes;
    m->ntop = m->spec.nlayers;

    // Flatten the architecture into ops, inferring shapes.
    builder b = {.m = m};
    cur_shape s;
    const rr_shape *in = &m->spec.input_shape;
    if (in->ndim == 1) {
        s = (cur_shape){.flat = true, .c = (int)in->dim[0], .h = 1, .w = 1};
    } else {
        s = (cur_shape){
            .flat = false, .c = (int)in->dim[0], .h = (int)in->dim[1], .w = (int)in->dim[2]};
    }
    if (!rr_shape_numel(in, &m->D) || m->D > MAX_ACT) {
        rc = rr_error_set(err, RR_EUNSUPPORTED, "input_shape", "input_shape is too large");
        goto fail;
    }
    int cur;
    if ((rc = new_act(&b, m->D, "input", &cur, err)) ||
        (rc = build_layers(&b, m->spec.layers, m->spec.nlayers, 0, &s, &cur, err)))
        goto fail;
    if (!s.flat || s.c != m->K) {
        char got[64];
        shape_str(&s, got, sizeof got);
        rc = rr_error_set(err, RR_ESHAPE, "num_classes",
                          "the last layer outputs %s per sample but num_classes is %d (the "
                          "output must be [%d] logits)",
                          got, m->K, m->K);
        goto fail;
    }
    m->pattern_bytes = b.pattern_off;
    m->idx_total = b.idx_off;
    for (int a = 0; a < m->nacts; a++) {
        if (m->act_size[a] > m->max_act)
            m->max_act = m->act_size[a];
        if (a > 0)
            m->act_total += m->act_size[a];
    }
    if ((m->pattern_ops = malloc((size_t)(m->npattern ? m->npattern : 1) * sizeof(int))) == NULL) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].pattern >= 0)
            m->pattern_ops[m->ops[i].pattern] = i;

    // Match tensors to layers (at most 4 per op), then convert them into the weight block.
    size_t nt = st ? rr_safetensors_count(st) : 0, np = 4 * (size_t)m->nops + 1;
    used = calloc(nt ? nt : 1, sizeof *used);
    m->params = calloc(np, sizeof *m->params);
    m->param_names = calloc(np, sizeof(char *));
    if (!used || !m->params || !m->param_names) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto fail;
    }
    if ((rc = collect_params(m, st, used, err)) || (rc = convert_weights(m, st, err)) ||
        (rc = derive_batchnorm(m, err)) || (rc = copy_metadata(m, st, arch, err)))
        goto fail;
    free(used);
    *out = m;
    return RR_OK;

fail:
    free(used);
    model_free(m);
    return rc;
}

rr_status rr_model_load(const uint8_t *buf, size_t len, rr_model **out, rr_error *err)
{
    rr_safetensors *st = NULL;
    *out = NULL;
    rr_status rc = rr_safetensors_parse(buf, len, 0, &st, err);
    if (rc != RR_OK)
        return rc;
    const char *arch = rr_safetensors_metadata(st, "relureg.architecture");
    if (arch == NULL)
        rc = rr_error_set(err, RR_EFORMAT, "relureg.architecture",
                          "the file's __metadata__ has no \"relureg.architecture\" entry; export "
                          "models with relureg.export()");
    else
        rc = model_build(arch, st, out, err);
    rr_safetensors_free(st);
    return rc;
}

rr_status rr_model_create(const char *architecture, rr_model **out, rr_error *err)
{
    return model_build(architecture, NULL, out, err);
}

rr_status rr_model_load_file(const char *path, rr_model **out, rr_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return rr_error_set(err, RR_EIO, "path", "cannot open %s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    rr_status rc = RR_OK;
    long n;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = rr_error_set(err, RR_EIO, "path", "cannot read %s", path);
        goto out;
    }
    if ((buf = malloc(n ? (size_t)n : 1)) == NULL) {
        rc = rr_error_set(err, RR_ENOMEM, "path", "out of memory reading %s", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        rc = rr_error_set(err, RR_EIO, "path", "short read on %s", path);
        goto out;
    }
    rc = rr_model_load(buf, (size_t)n, out, err);
out:
    free(buf);
    fclose(f);
    return rc;
}

float *rr__model_weights(rr_model *m)
{
    RR_ASSERT(atomic_load(&m->refs) == 1);
    return m->weights;
}

rr_status rr__model_refresh(rr_model *m, rr_error *err)
{
    return derive_batchnorm(m, err);
}

rr_status rr_model_save(const rr_model *m, const char *const *meta, size_t n, uint8_t **out,
                        size_t *len, rr_error *err)
{
    rr_st_writer *w = rr_st_writer_new();
    if (w == NULL)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    rr_status rc = rr_st_writer_set_metadata(w, "relureg.architecture", m->arch_json, err);
    for (size_t i = 0; rc == RR_OK && i < n; i++)
        rc = rr_st_writer_set_metadata(w, meta[2 * i], meta[2 * i + 1], err);
    for (size_t i = 0; rc == RR_OK && i < m->nparams; i++) {
        const rr_param *p = &m->params[i];
        rc = rr_st_writer_add(w, p->name, RR_DTYPE_F32, p->shape.dim, p->shape.ndim, p->data, err);
    }
    if (rc == RR_OK)
        rc = rr_st_writer_finish(w, out, len, err);
    rr_st_writer_free(w);
    return rc;
}

rr_model *rr_model_retain(rr_model *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void rr_model_release(rr_model *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        model_free(m);
}

// ---- accessors ----

const rr_shape *rr_model_input_shape(const rr_model *m)
{
    return &m->spec.input_shape;
}

size_t rr_model_input_size(const rr_model *m)
{
    return m->D;
}

int rr_model_num_classes(const rr_model *m)
{
    return m->K;
}

bool rr_model_input_range(const rr_model *m, float *lo, float *hi)
{
    if (!m->spec.has_range)
        return false;
    *lo = (float)m->spec.range_lo;
    *hi = (float)m->spec.range_hi;
    return true;
}

const char *rr_model_class_name(const rr_model *m, int k)
{
    if (m->spec.class_names == NULL || k < 0 || k >= m->K)
        return NULL;
    return m->spec.class_names[k];
}

int rr_model_num_layers(const rr_model *m)
{
    return m->ntop;
}

size_t rr_model_num_param_tensors(const rr_model *m)
{
    return m->nparams;
}

const rr_param *rr_model_param(const rr_model *m, size_t i)
{
    return i < m->nparams ? &m->params[i] : NULL;
}

const rr_param *rr_model_param_find(const rr_model *m, const char *name)
{
    for (size_t i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}

size_t rr_model_param_array_size(const rr_model *m)
{
    return m->param_size;
}

size_t rr_model_num_param_elements(const rr_model *m)
{
    return m->param_count;
}

double rr_model_forward_flops(const rr_model *m)
{
    double f = 0;
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        switch (op->kind) {
            case RR_OP_LINEAR:
                f += 2.0 * (double)op->n_in * (double)op->n_out;
                break;
            case RR_OP_CONV2D:
                f += 2.0 * (double)op->n_out * (double)op->c * op->kh * op->kw;
                break;
            case RR_OP_MAXPOOL:
            case RR_OP_AVGPOOL:
                f += (double)op->n_out * op->kh * op->kw;
                break;
            case RR_OP_FLATTEN:
            case RR_OP_RES_BEGIN:
                break;
            default:
                f += (double)op->n_out;
        }
    }
    return f;
}

const char *rr_model_architecture(const rr_model *m)
{
    return m->arch_json;
}

size_t rr_model_metadata_count(const rr_model *m)
{
    return m->nmeta;
}

const char *rr_model_metadata_key(const rr_model *m, size_t i)
{
    return i < m->nmeta ? m->meta_keys[i] : NULL;
}

const char *rr_model_metadata_value(const rr_model *m, size_t i)
{
    return i < m->nmeta ? m->meta_values[i] : NULL;
}

size_t rr_model_pattern_bytes(const rr_model *m)
{
    return m->pattern_bytes;
}

int rr_model_pattern_layers(const rr_model *m)
{
    return m->npattern;
}

void rr_model_pattern_layer(const rr_model *m, int j, rr_pattern_layer *out)
{
    const rr_op *op = &m->ops[m->pattern_ops[j]];
    memset(out, 0, sizeof *out);
    out->is_maxpool = op->kind == RR_OP_MAXPOOL;
    out->offset = op->pattern_off;
    if (out->is_maxpool) {
        out->units = op->n_out;
        out->shape = (rr_shape){.ndim = 3, .dim = {op->oc, op->oh, op->ow}};
    } else if (op->flat_in) {
        out->units = op->n_in;
        out->shape = (rr_shape){.ndim = 1, .dim = {op->c}};
    } else {
        out->units = op->n_in;
        out->shape = (rr_shape){.ndim = 3, .dim = {op->c, op->h, op->w}};
    }
}
