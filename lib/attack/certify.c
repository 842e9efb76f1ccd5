// Linear-region certificates (certify.h, math.md "Certificates").
#include "attack/certify.h"

#include <math.h>
#include <string.h>

#include "core/tensor.h"
#include "nn/forward.h"
#include "nn/passes.h"

// ---- double-precision forward inside the float32 pattern -------------------------------

// Window [y0, y1) x [x0, x1) of a pool output clipped to the input, and the average divisor
// (pool.c's rule).
static void window(const rr_op *op, int oy, int ox, int *y0, int *y1, int *x0, int *x1, int *div)
{
    int a0 = oy * op->sh - op->ph, a1 = a0 + op->kh;
    int b0 = ox * op->sw - op->pw, b1 = b0 + op->kw;
    if (a1 > op->h + op->ph)
        a1 = op->h + op->ph;
    if (b1 > op->w + op->pw)
        b1 = op->w + op->pw;
    const int pool = (a1 - a0) * (b1 - b0);
    a0 = a0 < 0 ? 0 : a0;
    b0 = b0 < 0 ? 0 : b0;
    a1 = a1 > op->h ? op->h : a1;
    b1 = b1 > op->w ? op->w : b1;
    *y0 = a0, *y1 = a1, *x0 = b0, *x1 = b1;
    if (div)
        *div = op->count_include_pad ? pool : (a1 - a0) * (b1 - b0);
}

static int64_t argmax_f(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best])
            best = k;
    return best;
}

static const int32_t *op_idx(const rr_workspace *ws, const rr_op *op, size_t s)
{
    return ws->idx + ws->nb * op->idx_off + s * op->n_out;
}

static void linear64(const rr_model *m, const rr_op *op, const double *in, double *out)
{
    const float *W = m->params[op->p_weight].data;
    const float *bias = op->p_bias >= 0 ? m->params[op->p_bias].data : NULL;
    for (int o = 0; o < op->oc; o++) {
        double acc = bias ? bias[o] : 0.0;
        const float *w = W + (size_t)o * op->c;
        for (int k = 0; k < op->c; k++)
            acc += (double)w[k] * in[k];
        out[o] = acc;
    }
}

static void conv64(const rr_model *m, const rr_op *op, const double *in, double *out)
{
    const float *W = m->params[op->p_weight].data;
    const float *bias = op->p_bias >= 0 ? m->params[op->p_bias].data : NULL;
    for (int oc = 0; oc < op->oc; oc++)
        for (int oy = 0; oy < op->oh; oy++)
            for (int ox = 0; ox < op->ow; ox++) {
                double acc = bias ? bias[oc] : 0.0;
                for (int c = 0; c < op->c; c++)
                    for (int ky = 0; ky < op->kh; ky++) {
                        const int iy = oy * op->sh - op->ph + ky;
                        if (iy < 0 || iy >= op->h)
                            continue;
                        for (int kx = 0; kx < op->kw; kx++) {
                            const int ix = ox * op->sw - op->pw + kx;
                            if (ix < 0 || ix >= op->w)
                                continue;
                            acc +=
                                (double)W[(((size_t)oc * op->c + c) * op->kh + ky) * op->kw + kx] *
                                in[((size_t)c * op->h + iy) * op->w + ix];
                        }
                    }
                out[((size_t)oc * op->oh + oy) * op->ow + ox] = acc;
            }
}

static void avgpool64(const rr_op *op, const double *in, double *out)
{
    const size_t HW = (size_t)op->h * op->w;
    for (int c = 0; c < op->c; c++)
        for (int oy = 0; oy < op->oh; oy++)
            for (int ox = 0; ox < op->ow; ox++) {
                int y0, y1, x0, x1, div;
                window(op, oy, ox, &y0, &y1, &x0, &x1, &div);
                double acc = 0.0;
                for (int iy = y0; iy < y1; iy++)
                    for (int jx = x0; jx < x1; jx++)
                        acc += in[c * HW + (size_t)iy * op->w + jx];
                out[((size_t)c * op->oh + oy) * op->ow + ox] =
                    (y0 < y1 && x0 < x1) ? acc / div : 0.0;
            }
}

// Activations of sample s of the chunk in double: buffer a at buf + off[a]. Relu gates and
// max-pool selections are the float32 forward's (ws), so the values are those of the region's
// affine functions at x.
static void forward64(const rr_model *m, const rr_workspace *ws, size_t s, const float *x,
                      double *buf, const size_t *off)
{
    for (size_t i = 0; i < m->D; i++)
        buf[i] = x[i];
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        const double *in = buf + off[op->in];
        double *out = buf + off[op->out];
        switch (op->kind) {
            case RR_OP_LINEAR:
                linear64(m, op, in, out);
                break;
            case RR_OP_CONV2D:
                conv64(m, op, in, out);
                break;
            case RR_OP_RELU: {
                const float *fin = ws->act[op->in] + s * op->n_in;
                for (size_t u = 0; u < op->n_in; u++)
                    out[u] = fin[u] > 0.0f ? in[u] : (double)op->slope * in[u];
                break;
            }
            case RR_OP_MAXPOOL: {
                const int32_t *ix = op_idx(ws, op, s);
                const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow;
                for (size_t c = 0; c < (size_t)op->c; c++)
                    for (size_t p = 0; p < P; p++)
                        out[c * P + p] = in[c * HW + (size_t)ix[c * P + p]];
                break;
            }
            case RR_OP_AVGPOOL:
                avgpool64(op, in, out);
                break;
            case RR_OP_BATCHNORM: {
                const size_t per = op->n_in / (size_t)op->c;
                for (size_t u = 0; u < op->n_in; u++) {
                    const size_t c = u / per;
                    out[u] = in[u] * (double)op->bn_scale[c] + (double)op->bn_shift[c];
                }
                break;
            }
            case RR_OP_RES_END: {
                const double *skip = buf + off[m->ops[op->partner].in];
                for (size_t u = 0; u < op->n_out; u++)
                    out[u] = in[u] + skip[u];
                break;
            }
            case RR_OP_FLATTEN:
            case RR_OP_RES_BEGIN:
                break;
        }
    }
}

// ---- constraint gradients through the tangent pass ---------------------------------------

typedef struct cert_ctx {
    const rr_model *m;
    const rr_workspace *ws;
    size_t nb, T; // samples in the chunk, tangents per sample in this block
    bool l2;
    double *acc;        // [nb, NC]: sum over tangents of |dg|^q
    size_t NC;          // constraints slots per sample
    const size_t *coff; // per op: its first slot
} cert_ctx;

static void hook(void *ctxp, int opi, const float *t, size_t rows)
{
    const cert_ctx *cx = ctxp;
    const rr_op *op = &cx->m->ops[opi];
    const size_t T = cx->T, nb = cx->nb, n = op->n_in;
    (void)rows;
    if (op->kind == RR_OP_RELU) {
        const size_t BLK = 256, nblk = (n + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
        for (size_t q = 0; q < nb * nblk; q++) {
            const size_t s = q / nblk, u0 = (q % nblk) * BLK, u1 = u0 + BLK < n ? u0 + BLK : n;
            double *a = cx->acc + s * cx->NC + cx->coff[opi];
            for (size_t tt = 0; tt < T; tt++) {
                const float *r = t + (s * T + tt) * n;
                if (cx->l2)
                    for (size_t u = u0; u < u1; u++)
                        a[u] += (double)r[u] * r[u];
                else
                    for (size_t u = u0; u < u1; u++)
                        a[u] += fabs((double)r[u]);
            }
        }
    } else { // max-pool: selected entry against every other entry of its window
        const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow;
        const size_t C = (size_t)op->c, KW = (size_t)op->kh * op->kw;
#pragma omp parallel for schedule(static)
        for (size_t q = 0; q < nb * C; q++) {
            const size_t s = q / C, c = q % C;
            const int32_t *ix = op_idx(cx->ws, op, s) + c * P;
            double *a = cx->acc + s * cx->NC + cx->coff[opi] + c * P * KW;
            for (size_t tt = 0; tt < T; tt++) {
                const float *r = t + (s * T + tt) * n + c * HW;
                for (int oy = 0; oy < op->oh; oy++)
                    for (int ox = 0; ox < op->ow; ox++) {
                        int y0, y1, x0, x1;
                        window(op, oy, ox, &y0, &y1, &x0, &x1, NULL);
                        const size_t p = (size_t)oy * op->ow + ox;
                        const float rs = r[ix[p]];
                        const int wy = oy * op->sh - op->ph, wx = ox * op->sw - op->pw;
                        double *ap = a + p * KW;
                        for (int iy = y0; iy < y1; iy++)
                            for (int jx = x0; jx < x1; jx++) {
                                const double d = (double)rs - r[iy * op->w + jx];
                                ap[(size_t)(iy - wy) * op->kw + (jx - wx)] +=
                                    cx->l2 ? d * d : fabs(d);
                            }
                    }
            }
        }
    }
}

// ---- driver -------------------------------------------------------------------------------

// A certification's plan and scratch.
typedef struct cert {
    const rr_model *m;
    rr_workspace *ws;
    const rr_certify_params *p;
    rr_certify_result *out;
    bool l2;
    size_t T, nbmax;    // tangents per sample per block, samples per chunk
    size_t NC, dsz;     // constraint slots and double activations per sample
    size_t *coff;       // [nops] first constraint slot per op
    size_t *off;        // [nacts] double activation buffers
    double *acc, *dact; // [nbmax, NC] constraint gradient norms, [nbmax, dsz] activations
    float *J, *v, *jo;  // [nbmax, K, D] Jacobians, [nbmax, T, D] tangents, [nbmax, T, K] outputs
    float *zf;          // [B, K] logits
} cert;

static rr_status check_args(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                            const rr_certify_params *p, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    if (p->norm != RR_NORM_L2 && p->norm != RR_NORM_LINF)
        return rr_error_set(err, RR_EINVAL, "norm", "norm must be l2 or linf");
    if (p->labels)
        for (size_t b = 0; b < B; b++)
            if (p->labels[b] < 0 || p->labels[b] >= m->K)
                return rr_error_set(err, RR_EINVAL, "labels",
                                    "labels[%zu] = %lld is out of range [0, %d)", b,
                                    (long long)p->labels[b], m->K);
    return RR_OK;
}

// Constraint slots (relu inputs, then kh * kw per max-pool output) and the double activations'
// layout (buffer a at off[a]; aliasing buffers, flatten and RES_BEGIN, share).
static void layout(cert *c)
{
    const rr_model *m = c->m;
    c->NC = 0;
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        c->coff[i] = c->NC;
        if (op->kind == RR_OP_RELU)
            c->NC += op->n_in;
        else if (op->kind == RR_OP_MAXPOOL)
            c->NC += op->n_out * (size_t)op->kh * op->kw;
    }
    c->off[0] = 0;
    c->dsz = m->D;
    for (int a = 1; a < m->nacts; a++) {
        c->off[a] = c->dsz;
        c->dsz += m->act_size[a];
    }
}

static void cert_clear(cert *c)
{
    free(c->coff);
    free(c->off);
    rr_aligned_free(c->acc);
    rr_aligned_free(c->dact);
    rr_aligned_free(c->J);
    rr_aligned_free(c->v);
    rr_aligned_free(c->jo);
    rr_aligned_free(c->zf);
}

// Tangents per block and samples per chunk, then the scratch.
static rr_status plan(cert *c, size_t B, rr_error *err)
{
    const size_t D = c->m->D, K = (size_t)c->m->K;
    size_t T = D < 128 ? D : 128, cap = rr__ws_chunk_for(c->ws, T);
    while (cap == 0 && T > 1) {
        T /= 2;
        cap = rr__ws_chunk_for(c->ws, T);
    }
    if (cap == 0)
        return rr_error_set(err, RR_EINVAL, NULL,
                            "the workspace cannot hold one sample's tangents");
    size_t nbmax = cap < B ? cap : B;
    const size_t vcap = ((size_t)16 << 20) / (T * D); // identity tangents within 64 MiB
    nbmax = nbmax < vcap ? nbmax : (vcap ? vcap : 1);
    c->T = T;
    c->nbmax = nbmax;
    c->coff = calloc((size_t)c->m->nops, sizeof *c->coff);
    c->off = calloc((size_t)c->m->nacts, sizeof *c->off);
    if (c->coff && c->off)
        layout(c);
    c->acc = rr_aligned_alloc(nbmax * (c->NC ? c->NC : 1) * sizeof(double));
    c->dact = rr_aligned_alloc(nbmax * c->dsz * sizeof(double));
    c->J = rr_aligned_alloc(nbmax * K * D * sizeof(float));
    c->v = rr_aligned_alloc(nbmax * T * D * sizeof(float));
    c->jo = rr_aligned_alloc(nbmax * T * K * sizeof(float));
    c->zf = rr_aligned_alloc(B * K * sizeof(float));
    if (!c->coff || !c->off || !c->acc || !c->dact || !c->J || !c->v || !c->jo || !c->zf)
        return rr_error_set(err, RR_ENOMEM, NULL, "out of memory for certificates");
    memset(c->v, 0, nbmax * T * D * sizeof(float));
    return RR_OK;
}

// The chunk's Jacobians J [nb, K, D] and constraint gradient norms acc, through identity
// tangents T at a time.
static rr_status jacobians(cert *c, size_t nb, rr_error *err)
{
    const rr_model *m = c->m;
    const size_t D = m->D, K = (size_t)m->K, T = c->T;
    float *v = c->v;
    memset(c->acc, 0, nb * c->NC * sizeof(double));
    cert_ctx cx = {
        .m = m, .ws = c->ws, .nb = nb, .l2 = c->l2, .acc = c->acc, .NC = c->NC, .coff = c->coff};
    for (size_t i0 = 0; i0 < D; i0 += T) {
        const size_t Tb = D - i0 < T ? D - i0 : T;
        // Identity tangents e_{i0 + t}.
        for (size_t s = 0; s < nb; s++)
            for (size_t t = 0; t < Tb; t++)
                v[(s * Tb + t) * D + i0 + t] = 1.0f;
        cx.T = Tb;
        rr__tangent_chunk_hook(m, c->ws, nb, Tb, v, c->jo, NULL, NULL, hook, &cx);
        for (size_t s = 0; s < nb; s++)
            for (size_t t = 0; t < Tb; t++)
                v[(s * Tb + t) * D + i0 + t] = 0.0f;
        for (size_t s = 0; s < nb; s++)
            for (size_t k = 0; k < K; k++)
                for (size_t t = 0; t < Tb; t++)
                    c->J[(s * K + k) * D + i0 + t] = c->jo[(s * Tb + t) * K + k];
        if (c->p->control.abort && c->p->control.abort(c->p->control.abort_ctx))
            return rr_error_set(err, RR_ECANCELLED, NULL, "certification was cancelled");
    }
    return RR_OK;
}

// The decision distance of class cl at logits z64 with Jacobian Js [K, D]: the smallest
// distance to a linearised boundary z_cl = z_j, and that j (-1 when every w_j is 0).
static double decision(const cert *c, int64_t cl, const double *z64, const float *Js, int *jstar)
{
    const size_t D = c->m->D, K = (size_t)c->m->K;
    const bool l2 = c->l2;
    double dD = INFINITY;
    *jstar = -1;
    for (size_t j = 0; j < K; j++) {
        if ((int64_t)j == cl)
            continue;
        double nq = 0.0;
        for (size_t i = 0; i < D; i++) {
            const double w = (double)Js[j * D + i] - Js[(size_t)cl * D + i];
            nq += l2 ? w * w : fabs(w);
        }
        if (nq == 0.0)
            continue;
        nq = l2 ? sqrt(nq) : nq;
        double d = (z64[cl] - z64[j]) / nq;
        d = d > 0 ? d : 0.0;
        if (d < dD) {
            dD = d;
            *jstar = (int)j;
        }
    }
    return dD;
}

// The closest constraint of the region found so far (distance, layer, unit, other unit).
typedef struct closest {
    double d;
    int layer;
    int64_t unit, other;
} closest;

// Relu op i's constraints |in_u| / ||grad in_u||_q against the closest so far.
static void region_relu(const cert *c, int i, const double *in, const double *a, closest *cl)
{
    const rr_op *op = &c->m->ops[i];
    for (size_t u = 0; u < op->n_in; u++) {
        if (a[u] == 0.0)
            continue;
        const double d = fabs(in[u]) / (c->l2 ? sqrt(a[u]) : a[u]);
        if (d < cl->d)
            *cl = (closest){.d = d, .layer = op->pattern, .unit = (int64_t)u, .other = -1};
    }
}

// Max-pool op i's constraints (the selected entry against every other entry of its window)
// for sample s of the chunk.
static void region_pool(const cert *c, int i, size_t s, const double *in, const double *as,
                        closest *cl)
{
    const rr_op *op = &c->m->ops[i];
    const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow;
    const size_t KW = (size_t)op->kh * op->kw;
    const int32_t *ix = op_idx(c->ws, op, s);
    for (size_t ch = 0; ch < (size_t)op->c; ch++)
        for (int oy = 0; oy < op->oh; oy++)
            for (int ox = 0; ox < op->ow; ox++) {
                int y0, y1, x0, x1;
                window(op, oy, ox, &y0, &y1, &x0, &x1, NULL);
                const size_t pp = (size_t)oy * op->ow + ox;
                const size_t sel = ch * HW + (size_t)ix[ch * P + pp];
                const int wy = oy * op->sh - op->ph, wx = ox * op->sw - op->pw;
                const double *a = as + c->coff[i] + (ch * P + pp) * KW;
                for (int iy = y0; iy < y1; iy++)
                    for (int jx = x0; jx < x1; jx++) {
                        const size_t vv = ch * HW + (size_t)iy * op->w + jx;
                        const double q = a[(size_t)(iy - wy) * op->kw + (jx - wx)];
                        if (vv == sel || q == 0.0)
                            continue;
                        const double d = fabs(in[sel] - in[vv]) / (c->l2 ? sqrt(q) : q);
                        if (d < cl->d)
                            *cl = (closest){.d = d,
                                            .layer = op->pattern,
                                            .unit = (int64_t)sel,
                                            .other = (int64_t)vv};
                    }
            }
}

// The region distance of sample s of the chunk (activations da): the closest constraint.
static closest region(const cert *c, size_t s, const double *da)
{
    closest cl = {.d = INFINITY, .layer = -1, .unit = -1, .other = -1};
    const double *as = c->acc + s * c->NC;
    for (int i = 0; i < c->m->nops; i++) {
        const rr_op *op = &c->m->ops[i];
        const double *in = da + c->off[op->in];
        if (op->kind == RR_OP_RELU)
            region_relu(c, i, in, as + c->coff[i], &cl);
        else if (op->kind == RR_OP_MAXPOOL)
            region_pool(c, i, s, in, as, &cl);
    }
    return cl;
}

// The candidate point xa = x + (1 + 1e-4) r toward j*, from class cl's gap.
static void candidate(const cert *c, const float *Js, int64_t cl, int jstar, double gap, float *xa)
{
    const size_t D = c->m->D;
    const bool l2 = c->l2;
    double nq = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double w = (double)Js[(size_t)jstar * D + i] - Js[(size_t)cl * D + i];
        nq += l2 ? w * w : fabs(w);
    }
    for (size_t i = 0; i < D; i++) {
        const double w = (double)Js[(size_t)jstar * D + i] - Js[(size_t)cl * D + i];
        const double r = l2 ? gap * w / nq : gap * (w > 0 ? 1.0 : (w < 0 ? -1.0 : 0.0)) / nq;
        xa[i] = (float)((double)xa[i] + (1.0 + 1e-4) * r);
    }
}

// Sample s of the chunk (sample b of the batch, input xs, float32 logits z).
static void certify_sample(const cert *c, size_t s, size_t b, const float *xs, const float *z)
{
    const rr_model *m = c->m;
    const size_t D = m->D, K = (size_t)m->K;
    rr_certify_result *out = c->out;
    double *da = c->dact + s * c->dsz;
    forward64(m, c->ws, s, xs, da, c->off);
    const double *z64 = da + c->off[m->ops[m->nops - 1].out];
    const float *Js = c->J + s * K * D;
    const int64_t pred = argmax_f(z, (int)K);
    const int64_t cl = c->p->labels ? c->p->labels[b] : pred;
    out->predictions[b] = pred;
    int jstar;
    const double dD = decision(c, cl, z64, Js, &jstar);
    const closest r = region(c, s, da);
    const bool wrong = c->p->labels && pred != cl;
    out->region_distance[b] = r.d;
    out->decision_distance[b] = wrong ? 0.0 : dD;
    out->certified_radius[b] = wrong ? 0.0 : (dD < r.d ? dD : r.d);
    out->exact[b] = !wrong && jstar >= 0 && dD < r.d;
    if (out->decision_class)
        out->decision_class[b] = wrong ? -1 : jstar;
    if (out->region_layer) {
        out->region_layer[b] = r.layer;
        out->region_unit[b] = r.unit;
        out->region_other[b] = r.other;
    }
    float *xa = out->adversarial + b * D;
    memcpy(xa, xs, D * sizeof(float));
    if (out->exact[b])
        candidate(c, Js, cl, jstar, z64[cl] - z64[jstar], xa);
}

// Confirms the flips with a forward pass at the returned points (a point that does not flip
// is dropped: not exact, x returned).
static rr_status confirm(cert *c, const float *x, size_t B, rr_error *err)
{
    const size_t D = c->m->D, K = (size_t)c->m->K;
    rr_certify_result *out = c->out;
    rr_status st = rr_forward(c->m, c->ws, out->adversarial, B, c->zf, NULL, NULL, err);
    if (st != RR_OK)
        return st;
    for (size_t b = 0; b < B; b++)
        if (out->exact[b]) {
            const int64_t cl = c->p->labels ? c->p->labels[b] : out->predictions[b];
            if (argmax_f(c->zf + b * K, (int)K) == cl) {
                out->exact[b] = false;
                memcpy(out->adversarial + b * D, x + b * D, D * sizeof(float));
            }
        }
    return RR_OK;
}

rr_status rr_certify(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                     const rr_certify_params *p, rr_certify_result *out, rr_error *err)
{
    rr_status st = check_args(m, ws, x, B, p, err);
    if (st != RR_OK || B == 0)
        return st;
    const size_t D = m->D, K = (size_t)m->K;
    cert c = {.m = m, .ws = ws, .p = p, .out = out, .l2 = p->norm == RR_NORM_L2};
    if ((st = plan(&c, B, err)) != RR_OK)
        goto done;
    for (size_t b0 = 0; b0 < B; b0 += c.nbmax) {
        const size_t nb = B - b0 < c.nbmax ? B - b0 : c.nbmax;
        const float *xb = x + b0 * D;
        const float *z = rr__forward_chunk(m, ws, xb, nb);
        memcpy(c.zf + b0 * K, z, nb * K * sizeof(float));
        if ((st = jacobians(&c, nb, err)) != RR_OK)
            goto done;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t s = 0; s < nb; s++)
            certify_sample(&c, s, b0 + s, xb + s * D, z + s * K);
        if (p->control.progress)
            p->control.progress(p->control.progress_ctx, (double)(b0 + nb) / (double)B);
    }
    st = confirm(&c, x, B, err);
done:
    cert_clear(&c);
    return st;
}
