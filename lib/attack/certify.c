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
            case RR_OP_LINEAR: {
                const float *W = m->params[op->p_weight].data;
                const float *bias = op->p_bias >= 0 ? m->params[op->p_bias].data : NULL;
                for (int o = 0; o < op->oc; o++) {
                    double acc = bias ? bias[o] : 0.0;
                    const float *w = W + (size_t)o * op->c;
                    for (int k = 0; k < op->c; k++)
                        acc += (double)w[k] * in[k];
                    out[o] = acc;
                }
                break;
            }
            case RR_OP_CONV2D: {
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
                                        acc += (double)W[(((size_t)oc * op->c + c) * op->kh + ky) *
                                                             op->kw +
                                                         kx] *
                                               in[((size_t)c * op->h + iy) * op->w + ix];
                                    }
                                }
                            out[((size_t)oc * op->oh + oy) * op->ow + ox] = acc;
                        }
                break;
            }
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
            case RR_OP_AVGPOOL: {
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
                break;
            }
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

rr_status rr_certify(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                     const rr_certify_params *p, rr_certify_result *out, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = m->D, K = (size_t)m->K;
    const bool l2 = p->norm == RR_NORM_L2;
    if (p->norm != RR_NORM_L2 && p->norm != RR_NORM_LINF)
        return rr_error_set(err, RR_EINVAL, "norm", "norm must be l2 or linf");
    if (p->labels)
        for (size_t b = 0; b < B; b++)
            if (p->labels[b] < 0 || p->labels[b] >= m->K)
                return rr_error_set(err, RR_EINVAL, "labels",
                                    "labels[%zu] = %lld is out of range [0, %d)", b,
                                    (long long)p->labels[b], m->K);
    if (B == 0)
        return RR_OK;
    // Tangents per sample per block, and samples per chunk.
    size_t T = D < 128 ? D : 128, cap = rr__ws_chunk_for(ws, T);
    while (cap == 0 && T > 1) {
        T /= 2;
        cap = rr__ws_chunk_for(ws, T);
    }
    if (cap == 0)
        return rr_error_set(err, RR_EINVAL, NULL,
                            "the workspace cannot hold one sample's tangents");
    size_t nbmax = cap < B ? cap : B;
    const size_t vcap = ((size_t)16 << 20) / (T * D); // identity tangents within 64 MiB
    nbmax = nbmax < vcap ? nbmax : (vcap ? vcap : 1);
    // Constraint slots: relu inputs, then kh * kw per max-pool output.
    size_t *coff = calloc((size_t)m->nops, sizeof *coff),
           *off = calloc((size_t)m->nacts, sizeof *off);
    size_t NC = 0, dsz = 0;
    if (coff && off) {
        for (int i = 0; i < m->nops; i++) {
            const rr_op *op = &m->ops[i];
            coff[i] = NC;
            if (op->kind == RR_OP_RELU)
                NC += op->n_in;
            else if (op->kind == RR_OP_MAXPOOL)
                NC += op->n_out * (size_t)op->kh * op->kw;
        }
        // Double activations: buffer a at off[a]; aliasing buffers (flatten, RES_BEGIN) share.
        off[0] = 0;
        dsz = D;
        for (int a = 1; a < m->nacts; a++) {
            off[a] = dsz;
            dsz += m->act_size[a];
        }
    }
    double *acc = rr_aligned_alloc(nbmax * (NC ? NC : 1) * sizeof(double));
    double *dact = rr_aligned_alloc(nbmax * dsz * sizeof(double));
    float *J = rr_aligned_alloc(nbmax * K * D * sizeof(float));
    float *v = rr_aligned_alloc(nbmax * T * D * sizeof(float));
    float *jo = rr_aligned_alloc(nbmax * T * K * sizeof(float));
    float *zf = rr_aligned_alloc(B * K * sizeof(float));
    if (!coff || !off || !acc || !dact || !J || !v || !jo || !zf) {
        st = rr_error_set(err, RR_ENOMEM, NULL, "out of memory for certificates");
        goto done;
    }
    memset(v, 0, nbmax * T * D * sizeof(float));
    for (size_t b0 = 0; b0 < B && st == RR_OK; b0 += nbmax) {
        const size_t nb = B - b0 < nbmax ? B - b0 : nbmax;
        const float *xb = x + b0 * D;
        const float *z = rr__forward_chunk(m, ws, xb, nb);
        memcpy(zf + b0 * K, z, nb * K * sizeof(float));
        memset(acc, 0, nb * NC * sizeof(double));
        cert_ctx cx = {.m = m, .ws = ws, .nb = nb, .l2 = l2, .acc = acc, .NC = NC, .coff = coff};
        for (size_t i0 = 0; i0 < D; i0 += T) {
            const size_t Tb = D - i0 < T ? D - i0 : T;
            // Identity tangents e_{i0 + t}.
            for (size_t s = 0; s < nb; s++)
                for (size_t t = 0; t < Tb; t++)
                    v[(s * Tb + t) * D + i0 + t] = 1.0f;
            cx.T = Tb;
            rr__tangent_chunk_hook(m, ws, nb, Tb, v, jo, NULL, NULL, hook, &cx);
            for (size_t s = 0; s < nb; s++)
                for (size_t t = 0; t < Tb; t++)
                    v[(s * Tb + t) * D + i0 + t] = 0.0f;
            for (size_t s = 0; s < nb; s++)
                for (size_t k = 0; k < K; k++)
                    for (size_t t = 0; t < Tb; t++)
                        J[(s * K + k) * D + i0 + t] = jo[(s * Tb + t) * K + k];
            if (p->control.abort && p->control.abort(p->control.abort_ctx)) {
                st = rr_error_set(err, RR_ECANCELLED, NULL, "certification was cancelled");
                break;
            }
        }
        if (st != RR_OK)
            break;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t s = 0; s < nb; s++) {
            const size_t b = b0 + s;
            double *da = dact + s * dsz;
            forward64(m, ws, s, xb + s * D, da, off);
            const double *z64 = da + off[m->ops[m->nops - 1].out];
            const float *Js = J + s * K * D;
            const int64_t pred = argmax_f(z + s * K, (int)K);
            const int64_t c = p->labels ? p->labels[b] : pred;
            out->predictions[b] = pred;
            // Decision distance.
            double dD = INFINITY;
            int jstar = -1;
            for (size_t j = 0; j < K; j++) {
                if ((int64_t)j == c)
                    continue;
                double nq = 0.0;
                for (size_t i = 0; i < D; i++) {
                    const double w = (double)Js[j * D + i] - Js[(size_t)c * D + i];
                    nq += l2 ? w * w : fabs(w);
                }
                if (nq == 0.0)
                    continue;
                nq = l2 ? sqrt(nq) : nq;
                double d = (z64[c] - z64[j]) / nq;
                d = d > 0 ? d : 0.0;
                if (d < dD) {
                    dD = d;
                    jstar = (int)j;
                }
            }
            // Region distance.
            double dB = INFINITY;
            int layer = -1;
            int64_t unit = -1, other = -1;
            const double *as = acc + s * NC;
            for (int i = 0; i < m->nops; i++) {
                const rr_op *op = &m->ops[i];
                const double *in = da + off[op->in];
                if (op->kind == RR_OP_RELU) {
                    const double *a = as + coff[i];
                    for (size_t u = 0; u < op->n_in; u++) {
                        if (a[u] == 0.0)
                            continue;
                        const double d = fabs(in[u]) / (l2 ? sqrt(a[u]) : a[u]);
                        if (d < dB) {
                            dB = d;
                            layer = op->pattern;
                            unit = (int64_t)u;
                            other = -1;
                        }
                    }
                } else if (op->kind == RR_OP_MAXPOOL) {
                    const size_t HW = (size_t)op->h * op->w, P = (size_t)op->oh * op->ow;
                    const size_t KW = (size_t)op->kh * op->kw;
                    const int32_t *ix = op_idx(ws, op, s);
                    for (size_t ch = 0; ch < (size_t)op->c; ch++)
                        for (int oy = 0; oy < op->oh; oy++)
                            for (int ox = 0; ox < op->ow; ox++) {
                                int y0, y1, x0, x1;
                                window(op, oy, ox, &y0, &y1, &x0, &x1, NULL);
                                const size_t pp = (size_t)oy * op->ow + ox;
                                const size_t sel = ch * HW + (size_t)ix[ch * P + pp];
                                const int wy = oy * op->sh - op->ph, wx = ox * op->sw - op->pw;
                                const double *a = as + coff[i] + (ch * P + pp) * KW;
                                for (int iy = y0; iy < y1; iy++)
                                    for (int jx = x0; jx < x1; jx++) {
                                        const size_t vv = ch * HW + (size_t)iy * op->w + jx;
                                        const double q = a[(size_t)(iy - wy) * op->kw + (jx - wx)];
                                        if (vv == sel || q == 0.0)
                                            continue;
                                        const double d =
                                            fabs(in[sel] - in[vv]) / (l2 ? sqrt(q) : q);
                                        if (d < dB) {
                                            dB = d;
                                            layer = op->pattern;
                                            unit = (int64_t)sel;
                                            other = (int64_t)vv;
                                        }
                                    }
                            }
                }
            }
            const bool wrong = p->labels && pred != c;
            out->region_distance[b] = dB;
            out->decision_distance[b] = wrong ? 0.0 : dD;
            out->certified_radius[b] = wrong ? 0.0 : (dD < dB ? dD : dB);
            out->exact[b] = !wrong && jstar >= 0 && dD < dB;
            if (out->decision_class)
                out->decision_class[b] = wrong ? -1 : jstar;
            if (out->region_layer) {
                out->region_layer[b] = layer;
                out->region_unit[b] = unit;
                out->region_other[b] = other;
            }
            // The candidate point: x + (1 + 1e-4) r toward j*.
            float *xa = out->adversarial + b * D;
            memcpy(xa, xb + s * D, D * sizeof(float));
            if (out->exact[b]) {
                double nq = 0.0;
                for (size_t i = 0; i < D; i++) {
                    const double w = (double)Js[(size_t)jstar * D + i] - Js[(size_t)c * D + i];
                    nq += l2 ? w * w : fabs(w);
                }
                const double gap = z64[c] - z64[jstar];
                for (size_t i = 0; i < D; i++) {
                    const double w = (double)Js[(size_t)jstar * D + i] - Js[(size_t)c * D + i];
                    const double r =
                        l2 ? gap * w / nq : gap * (w > 0 ? 1.0 : (w < 0 ? -1.0 : 0.0)) / nq;
                    xa[i] = (float)((double)xa[i] + (1.0 + 1e-4) * r);
                }
            }
        }
        if (p->control.progress)
            p->control.progress(p->control.progress_ctx, (double)(b0 + nb) / (double)B);
    }
    if (st != RR_OK)
        goto done;
    // Confirm the flips with a forward pass at the returned points.
    st = rr_forward(m, ws, out->adversarial, B, zf, NULL, NULL, err);
    if (st == RR_OK)
        for (size_t b = 0; b < B; b++)
            if (out->exact[b]) {
                const int64_t c = p->labels ? p->labels[b] : out->predictions[b];
                if (argmax_f(zf + b * K, (int)K) == c) {
                    out->exact[b] = false;
                    memcpy(out->adversarial + b * D, x + b * D, D * sizeof(float));
                }
            }
done:
    free(coff);
    free(off);
    rr_aligned_free(acc);
    rr_aligned_free(dact);
    rr_aligned_free(J);
    rr_aligned_free(v);
    rr_aligned_free(jo);
    rr_aligned_free(zf);
    return st;
}
