// The regularizer driver (reg.h): option checks, scratch planning, and per chunk the shared
// work every regularizer reads — one forward pass, the softmax, and when needed the Jacobian
// (one backward pass with K identity seeds per sample) and grad_x l = J^T (p - e_y) (one
// backward row) — then each regularizer in request order.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "reg/reg_impl.h"

// ---- helpers shared by the regularizer files ----

void rr__softmax_jvp(float *out, const double *p, const float *v, size_t K)
{
    double pv = 0.0;
    for (size_t k = 0; k < K; k++)
        pv += p[k] * v[k];
    for (size_t k = 0; k < K; k++)
        out[k] = (float)(p[k] * ((double)v[k] - pv));
}

double rr__softmax(double *p, const float *z, size_t K, int64_t y)
{
    const double lse = rr__logsumexp(z, K);
    for (size_t k = 0; k < K; k++)
        p[k] = exp(z[k] - lse);
    return lse - z[y];
}

void rr__reg_vjp(const rr__reg_ctx *c, rr_workspace *ws, const float *seeds, size_t R, float *gx,
                 float *dparams, rr__ustore *us)
{
    rr__backward_chunk(c->m, ws, c->nb, R, seeds, gx, dparams, us);
}

void rr__reg_jvp(const rr__reg_ctx *c, rr_workspace *ws, const float *v, size_t T, float *out,
                 const rr__ustore *us, float *dparams)
{
    rr__tangent_chunk(c->m, ws, c->nb, T, v, out, us, dparams);
}

void rr__reg_zero_inputs(const rr__reg_ctx *c, rr_reg_result *o)
{
    if (o->grad_inputs)
        memset(o->grad_inputs + c->b0 * c->D, 0, c->nb * c->D * sizeof(float));
}

void rr__cure_direction(float *u, const float *g, size_t D)
{
    size_t nnz = 0;
    for (size_t i = 0; i < D; i++)
        nnz += g[i] != 0.0f;
    const float inv = nnz ? (float)(1.0 / sqrt((double)nnz)) : 0.0f;
    for (size_t i = 0; i < D; i++)
        u[i] = g[i] > 0.0f ? inv : g[i] < 0.0f ? -inv : 0.0f;
}

// ---- options ----

rr_status rr_reg_spec_check(const rr_reg_spec *s, int K, int max_projections, rr_error *err)
{
    if (max_projections <= 0)
        max_projections = 10000;
    switch (s->name) {
        case RR_REG_CROSS_ENTROPY:
        case RR_REG_CROSS_LIPSCHITZ:
        case RR_REG_WEIGHT_DECAY:
            return RR_OK;
        case RR_REG_INPUT_GRADIENT:
            if (s->norm != RR_REG_NORM_L2 && s->norm != RR_REG_NORM_L1)
                return rr_error_set(err, RR_EINVAL, "norm", "norm must be l2 or l1");
            return RR_OK;
        case RR_REG_JACOBIAN:
            if (s->estimator == RR_REG_EXACT)
                return RR_OK;
            if (s->estimator != RR_REG_PROJECTION)
                return rr_error_set(err, RR_EINVAL, "estimator",
                                    "estimator must be exact or projection");
            if (s->directions == RR_REG_ONEHOT) {
                if (s->projections != 0 && s->projections != K)
                    return rr_error_set(err, RR_EINVAL, "projections",
                                        "directions onehot uses projections = K = %d, got %d", K,
                                        s->projections);
                return RR_OK;
            }
            if (s->directions != RR_REG_SPHERE)
                return rr_error_set(err, RR_EINVAL, "directions",
                                    "directions must be sphere or onehot");
            if (s->projections < 0 || s->projections > max_projections)
                return rr_error_set(err, RR_EINVAL, "projections",
                                    "projections must be in [1, %d], got %d", max_projections,
                                    s->projections);
            return RR_OK;
        case RR_REG_CURVATURE:
            if (s->method != RR_REG_FINITE_DIFFERENCE && s->method != RR_REG_HESSIAN &&
                s->method != RR_REG_TRACE)
                return rr_error_set(err, RR_EINVAL, "method",
                                    "method must be finite_difference, hessian or trace");
            if (!(s->h >= 0) || !isfinite(s->h))
                return rr_error_set(err, RR_EINVAL, "h", "h must be > 0, got %g", s->h);
            return RR_OK;
    }
    return rr_error_set(err, RR_EINVAL, "name", "unknown regularizer");
}

// Projections a spec uses per sample (0 when none).
static size_t projections(const rr_reg_spec *s, size_t K)
{
    if (s->name != RR_REG_JACOBIAN || s->estimator != RR_REG_PROJECTION)
        return 0;
    if (s->directions == RR_REG_ONEHOT)
        return K;
    return s->projections ? (size_t)s->projections : 1;
}

static bool needs_jacobian(const rr_reg_spec *s)
{
    return (s->name == RR_REG_JACOBIAN && s->estimator == RR_REG_EXACT) ||
           s->name == RR_REG_CROSS_LIPSCHITZ ||
           (s->name == RR_REG_CURVATURE && s->method == RR_REG_TRACE);
}

static bool needs_gradient(const rr_reg_spec *s)
{
    return s->name == RR_REG_INPUT_GRADIENT ||
           (s->name == RR_REG_CURVATURE && s->method != RR_REG_TRACE);
}

// ---- scratch plan ----

typedef struct plan {
    bool J, uJ, g, ur, fd, ur2;
    size_t rows; // rows per sample of the regularizers' own passes
} plan;

// Per-thread per-sample scratch: K*K + 8*K doubles, a whole number of cache lines.
static size_t kd_doubles(size_t K)
{
    return (K * K + 8 * K + 7) & ~(size_t)7;
}

// Floats of scratch for a chunk of n samples.
static size_t scratch_floats(const rr_model *m, const plan *pl, size_t n)
{
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const size_t R = pl->rows;
    size_t f = n * K * 4 + 2 * n;                           // z, prob (doubles), r, ce (doubles)
    f += 4 * n * K;                                         // vk
    f += 2 * kd_doubles(K) * (size_t)omp_get_max_threads(); // kd
    f += 2 * n;                                             // rs
    f += n * R * K + 2 * n * R * D + 3 * n * D;             // seed, tan, rows, vd
    f += rr__ustore_floats(m, n * R);                       // u2
    if (pl->J)
        f += n * K * D;
    if (pl->uJ)
        f += rr__ustore_floats(m, n * K);
    if (pl->g)
        f += n * D;
    if (pl->ur)
        f += rr__ustore_floats(m, n);
    if (pl->fd)
        f += 2 * n * D + 3 * n * K;
    if (pl->ur2)
        f += rr__ustore_floats(m, n);
    return f + 64 * 32; // alignment slack for every carve below
}

static float *take(float **q, size_t n)
{
    float *r = *q;
    *q += (n + 15) & ~(size_t)15;
    return r;
}

static void carve(rr__reg_ctx *c, const plan *pl, float *q, float **ptrs)
{
    const size_t n = c->nb, D = c->D, K = c->K, R = pl->rows, nops = (size_t)c->m->nops;
    c->z = take(&q, n * K);
    c->prob = (double *)take(&q, 2 * n * K);
    c->ce = (double *)take(&q, 2 * n);
    c->r = take(&q, n * K);
    for (int i = 0; i < 4; i++)
        c->vk[i] = take(&q, n * K);
    c->kd_stride = kd_doubles(K);
    c->kd = (double *)take(&q, 2 * c->kd_stride * (size_t)omp_get_max_threads());
    c->rs = (double *)take(&q, 2 * n);
    c->seed = take(&q, n * R * K);
    c->tan = take(&q, n * R * D);
    c->rows = take(&q, n * R * D);
    for (int i = 0; i < 3; i++)
        c->vd[i] = take(&q, n * D);
    rr__ustore_init(&c->u2, c->m, take(&q, rr__ustore_floats(c->m, n * R)), ptrs, n * R);
    ptrs += nops;
    c->J = pl->J ? take(&q, n * K * D) : NULL;
    if ((c->have_uJ = pl->uJ)) {
        rr__ustore_init(&c->uJ, c->m, take(&q, rr__ustore_floats(c->m, n * K)), ptrs, n * K);
        ptrs += nops;
    }
    c->g = pl->g ? take(&q, n * D) : NULL;
    if ((c->have_ur = pl->ur)) {
        rr__ustore_init(&c->ur, c->m, take(&q, rr__ustore_floats(c->m, n)), ptrs, n);
        ptrs += nops;
    }
    if (pl->fd) {
        c->x2 = take(&q, n * D);
        c->g2 = take(&q, n * D);
        c->r2 = take(&q, n * K);
        c->prob2 = (double *)take(&q, 2 * n * K);
    }
    if (pl->ur2)
        rr__ustore_init(&c->ur2, c->m, take(&q, rr__ustore_floats(c->m, n)), ptrs, n);
}

void rr__reg_report(const rr__reg_ctx *c, rr_reg_result *o)
{
    for (size_t i = 0; i < c->nb; i++) {
        if (o->per_sample)
            o->per_sample[c->b0 + i] = (float)c->rs[i];
        o->value += c->rs[i];
    }
}

// ---- driver ----

static bool aborted(const rr_reg_params *p)
{
    return p->control.abort && p->control.abort(p->control.abort_ctx);
}

// What the specs need (Jacobian, input gradient, finite-difference twin, stored backward
// rows) and the backward rows per sample; checks each spec.
static rr_status make_plan(const rr_reg_params *p, const rr_reg_result *out, size_t K, plan *pl,
                           bool *any_params, rr_error *err)
{
    *pl = (plan){.rows = 1};
    *any_params = false;
    for (size_t i = 0; i < p->nregs; i++) {
        const rr_reg_spec *s = &p->regs[i];
        rr_status st = rr_reg_spec_check(s, (int)K, p->max_projections, err);
        if (st != RR_OK)
            return st;
        const bool params = out[i].grad_parameters != NULL;
        *any_params |= params;
        if (needs_jacobian(s)) {
            pl->J = true;
            pl->uJ |= params;
            pl->rows = pl->rows > K ? pl->rows : K;
        }
        if (needs_gradient(s)) {
            pl->g = true;
            pl->ur |= params;
        }
        if (s->name == RR_REG_CURVATURE && s->method == RR_REG_FINITE_DIFFERENCE) {
            pl->fd = true;
            pl->ur2 |= params;
        }
        size_t n = projections(s, K);
        pl->rows = pl->rows > n ? pl->rows : n;
    }
    return RR_OK;
}

// Samples per chunk: what the workspace holds at pl->rows rows per sample, and what the
// regularizers' scratch allows within the workspace's budget; 0 when not even one sample fits.
static size_t chunk_size(const rr_model *m, const rr_workspace *ws, const plan *pl, size_t B)
{
    size_t chunk = rr__ws_chunk_for(ws, pl->rows);
    if (chunk == 0)
        return 0;
    const size_t per = scratch_floats(m, pl, 1) * sizeof(float);
    if (chunk > 1 && per * chunk > ws->plan.budget_bytes)
        chunk = ws->plan.budget_bytes / per > 0 ? ws->plan.budget_bytes / per : 1;
    if (B < chunk)
        chunk = B ? B : 1;
    return chunk;
}

// The work every regularizer of a chunk reads: forward, softmax, cross-entropy (added to
// *loss_sum and to *loss), the Jacobian (identity seeds, one backward pass of nb * K rows) and
// grad_x l = J^T (p - e_y) (one backward row), as the plan asks.
static void shared_passes(rr__reg_ctx *c, const plan *pl, rr_reg_loss *loss, double *loss_sum)
{
    const size_t K = c->K, b0 = c->b0;
    const float *z = rr__forward_chunk(c->m, c->ws, c->x, c->nb);
    memcpy(c->z, z, c->nb * K * sizeof(float));
    if (loss && loss->logits)
        memcpy(loss->logits + b0 * K, z, c->nb * K * sizeof(float));
    for (size_t s = 0; s < c->nb; s++) {
        const double l = rr__softmax(c->prob + s * K, c->z + s * K, K, c->y[s]);
        c->ce[s] = l;
        *loss_sum += l;
        if (loss && loss->per_sample)
            loss->per_sample[b0 + s] = (float)l;
        for (size_t k = 0; k < K; k++)
            c->r[s * K + k] = (float)(c->prob[s * K + k] - (k == (size_t)c->y[s]));
    }
    if (pl->J) {
        memset(c->seed, 0, c->nb * K * K * sizeof(float));
        for (size_t r = 0; r < c->nb * K; r++)
            c->seed[r * K + r % K] = 1.0f;
        rr__reg_vjp(c, c->ws, c->seed, K, c->J, NULL, pl->uJ ? &c->uJ : NULL);
    }
    if (pl->g)
        rr__reg_vjp(c, c->ws, c->r, 1, c->g, NULL, pl->ur ? &c->ur : NULL);
}

// One regularizer on the current chunk: adds to o's value and gradients.
static rr_status chunk_reg(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o, rr_error *err)
{
    switch (s->name) {
        case RR_REG_CROSS_ENTROPY:
            return rr__reg_cross_entropy(c, s, o);
        case RR_REG_INPUT_GRADIENT:
            return rr__reg_input_gradient(c, s, o);
        case RR_REG_JACOBIAN:
            return rr__reg_jacobian(c, s, o);
        case RR_REG_CROSS_LIPSCHITZ:
            return rr__reg_cross_lipschitz(c, s, o);
        case RR_REG_CURVATURE:
            return rr__reg_curvature(c, s, o, err);
        case RR_REG_WEIGHT_DECAY:
            rr__reg_zero_inputs(c, o);
            return RR_OK;
    }
    return RR_OK;
}

rr_status rr_reg_compute(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                         size_t B, const rr_reg_params *p, rr_reg_result *out, rr_reg_loss *loss,
                         rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    for (size_t b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= (int64_t)K)
            return rr_error_set(err, RR_EINVAL, "labels",
                                "labels[%zu] = %lld is out of range [0, %zu)", b,
                                (long long)labels[b], K);
    plan pl;
    bool any_params;
    if ((st = make_plan(p, out, K, &pl, &any_params, err)) != RR_OK)
        return st;
    const size_t chunk = chunk_size(m, ws, &pl, B);
    if (chunk == 0)
        return rr_error_set(err, RR_EINVAL, "workspace",
                            "the workspace cannot hold the %zu rows one sample needs; plan it "
                            "with rows_per_sample >= %zu",
                            pl.rows, pl.rows);
    const size_t nops = (size_t)m->nops;
    size_t bytes = scratch_floats(m, &pl, chunk) * sizeof(float) + 4 * nops * sizeof(float *);
    char *ext = rr__ws_ext(ws, bytes, err);
    if (ext == NULL)
        return RR_ENOMEM;
    float **ptrs = (float **)ext;
    float *q = (float *)(ext + ((4 * nops * sizeof(float *) + 63) & ~(size_t)63));
    // The finite-difference twin: a second workspace the curvature's displaced pass uses.
    if (pl.fd && rr__ws_twin(ws, err) == NULL)
        return err ? err->code : RR_ENOMEM;

    for (size_t i = 0; i < p->nregs; i++) {
        out[i].value = 0.0;
        if (out[i].grad_parameters)
            memset(out[i].grad_parameters, 0, rr_model_param_array_size(m) * sizeof(float));
    }
    double loss_sum = 0.0;
    rr__reg_ctx c = {.m = m,
                     .ws = ws,
                     .p = p,
                     .D = D,
                     .K = K,
                     .B = B,
                     .max_rows = pl.rows,
                     .scale = p->sum ? 1.0 : 1.0 / (double)(B ? B : 1),
                     .params = any_params};
    for (size_t b0 = 0; b0 < B; b0 += chunk) {
        c.b0 = b0;
        c.nb = B - b0 < chunk ? B - b0 : chunk;
        c.x = x + b0 * D;
        c.y = labels + b0;
        carve(&c, &pl, q, ptrs);
        if (aborted(p))
            return rr_error_set(err, RR_ECANCELLED, "", "cancelled");
        shared_passes(&c, &pl, loss, &loss_sum);
        for (size_t i = 0; i < p->nregs; i++) {
            if (aborted(p))
                return rr_error_set(err, RR_ECANCELLED, "", "cancelled");
            if ((st = chunk_reg(&c, &p->regs[i], &out[i], err)) != RR_OK)
                return st;
        }
    }
    for (size_t i = 0; i < p->nregs; i++) {
        if (p->regs[i].name == RR_REG_WEIGHT_DECAY)
            rr__reg_weight_decay(m, &out[i], B, D);
        else
            out[i].value *= c.scale;
    }
    if (loss)
        loss->value = loss_sum * c.scale;
    return RR_OK;
}
