// Carlini & Wagner L2 and EAD (math.md, "Attacks"), batched over the samples still running:
// rr__attack_cw and rr__attack_ead share the binary search over c, the hinge and the bookkeeping
// of a row, and differ in their iteration (Adam on the tanh variable, FISTA on the slack).
//
// C&W after Carlini's l2_attack.py: the tanh box over input_range (without a range the
// perturbation is optimised directly), Adam (TensorFlow's defaults), loss
// ||x' - x||^2 + c * max(0, z_y - max_{j!=y} z_j + kappa) (targeted: z_t against the others),
// the binary search over c with its "repeat" rule, and abort early checked every max_iter / 10
// iterations. EAD after CleverHans' ElasticNetMethod: FISTA on the slack variable with the
// learning rate decayed as lr * sqrt(1 - k / max_iter), shrinkage by beta with projection onto
// input_range, and the EN rule (smallest beta ||d||_1 + ||d||_2^2 among successes).
// Abort early is decided per sample (Carlini's code checks the batch's total loss), so a
// sample's result depends only on itself. Failures return the clean input.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

// Scratch, carved from one block, and the constants of a run.
typedef struct cw {
    rr__atk *a;
    bool elastic;
    double beta, bm, bp; // EAD's beta (0 for C&W); the tanh box: x = tanh(w) bm + bp
    int every;           // abort early is checked every `every` iterations
    float *w, *m1, *m2;  // [B, D] C&W: w, Adam m and v; EAD: x_k, y_k (m2 unused)
    float *xs, *g;       // [B, D] the gathered rows and their gradients
    float *z, *loss1;    // [B, K] logits and [B] hinge of the gathered rows
    double *cc, *lower, *upper, *obest, *best, *prev; // [B]
    size_t *act;                                      // [B] running sample of each gathered row
    bool *live, *found; // [B] running; this binary step found a success
} cw;

static void *carve(cw *s, size_t B, size_t D, size_t K)
{
    const rr__carve_part parts[] = {
        RR__CARVE_PART(s->w, B * D),  RR__CARVE_PART(s->m1, B * D), RR__CARVE_PART(s->m2, B * D),
        RR__CARVE_PART(s->xs, B * D), RR__CARVE_PART(s->g, B * D),  RR__CARVE_PART(s->z, B * K),
        RR__CARVE_PART(s->loss1, B),  RR__CARVE_PART(s->cc, B),     RR__CARVE_PART(s->lower, B),
        RR__CARVE_PART(s->upper, B),  RR__CARVE_PART(s->obest, B),  RR__CARVE_PART(s->best, B),
        RR__CARVE_PART(s->prev, B),   RR__CARVE_PART(s->act, B),    RR__CARVE_PART(s->live, B),
        RR__CARVE_PART(s->found, B)};
    return rr__carve(s->a->err, parts, sizeof parts / sizeof parts[0]);
}

// Seeds c * d hinge / dz, and the hinge per row.
static void cw_seeds(void *ctx, size_t b0, size_t nb, const float *z, float *seeds)
{
    cw *s = ctx;
    const int K = s->a->K;
    for (size_t r = 0; r < nb; r++) {
        const size_t b = s->act[b0 + r];
        const float *zr = z + r * (size_t)K;
        float *sr = seeds + r * (size_t)K;
        memset(sr, 0, (size_t)K * sizeof(float));
        int jo;
        const double h = rr__atk_margin(s->a, b, zr, &jo);
        s->loss1[b0 + r] = (float)(h > 0 ? h : 0);
        if (h > 0) {
            const int64_t t = rr__atk_class(s->a, b);
            const double c = s->cc[b];
            sr[t] = (float)(s->a->targets ? -c : c);
            sr[jo] = (float)(s->a->targets ? c : -c);
        }
    }
}

// Carlini's compare() on logits: success with the confidence margin.
static bool cw_compare(const rr__atk *a, size_t b, const float *z)
{
    const int K = a->K;
    const int64_t t = rr__atk_class(a, b);
    const double kappa = a->p.confidence;
    int best = -1;
    double bv = -INFINITY;
    for (int k = 0; k < K; k++) {
        double v = z[k];
        if (k == t)
            v += a->targets ? -kappa : kappa;
        if (best < 0 || v > bv) {
            best = k;
            bv = v;
        }
    }
    return a->targets ? best == t : best != t;
}

// The clean input as C&W sees it: through the tanh box (atanh then tanh) when there is one.
static inline double cw_orig(const cw *s, float x0)
{
    return s->a->has_range ? tanh(atanh(((double)x0 - s->bp) / s->bm * 0.999999)) * s->bm + s->bp
                           : x0;
}

// Row j after the loss's evaluation at its point xs[j] (logits z[j]): abort early (false: the
// sample stops), the iteration count, and the smallest success.
static bool judge_row(cw *s, size_t j, int it)
{
    rr__atk *a = s->a;
    const size_t D = a->D, K = (size_t)a->K, b = s->act[j];
    const float *x0 = a->x0 + b * D, *xr = s->xs + j * D, *zr = s->z + j * K;
    double l2 = 0.0, l1 = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double orig = s->elastic ? x0[i] : cw_orig(s, x0[i]);
        const double d = (double)xr[i] - orig;
        l2 += d * d;
        l1 += fabs(d);
    }
    double hinge;
    if (s->elastic) {
        const double hh = rr__atk_margin(a, b, zr, NULL);
        hinge = hh > 0 ? hh : 0;
    } else {
        hinge = s->loss1[j];
    }
    const double loss = l2 + s->cc[b] * hinge + s->beta * l1;
    if (it % s->every == 0) {
        if (loss > s->prev[b] * 0.9999) {
            s->live[b] = false;
            return false;
        }
        s->prev[b] = loss;
    }
    a->out->iterations[b]++;
    const double dist = s->elastic ? s->beta * l1 + l2 : l2;
    if (cw_compare(a, b, zr)) {
        if (dist < s->best[b]) {
            s->best[b] = dist;
            s->found[b] = true;
        }
        if (dist < s->obest[b]) {
            s->obest[b] = dist;
            memcpy(a->out->adversarial + b * D, xr, D * sizeof(float));
        }
    }
    return true;
}

// ---- C&W: Adam on the tanh variable ----

// Row j's point newimg = tanh(w + atanh(x0)) (or x0 + w without a box).
static void cw_point(const cw *s, size_t j)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, b = s->act[j];
    const float *x0 = a->x0 + b * D, *w = s->w + b * D;
    float *xr = s->xs + j * D;
    if (a->has_range) {
        for (size_t i = 0; i < D; i++) {
            const double ti = atanh(((double)x0[i] - s->bp) / s->bm * 0.999999);
            xr[i] = (float)(tanh((double)w[i] + ti) * s->bm + s->bp);
        }
    } else {
        for (size_t i = 0; i < D; i++)
            xr[i] = x0[i] + w[i];
    }
}

// Adam on row j's w: dL/dnewimg = 2 (newimg - orig) + c dhinge, through the tanh.
static void cw_adam(const cw *s, size_t j, int it)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, b = s->act[j];
    const float *x0 = a->x0 + b * D, *xr = s->xs + j * D, *gr = s->g + j * D;
    float *wb = s->w + b * D, *mb = s->m1 + b * D, *vb = s->m2 + b * D;
    const double t1 = it + 1.0;
    const double lr = a->p.learning_rate * sqrt(1.0 - pow(0.999, t1)) / (1.0 - pow(0.9, t1));
    for (size_t i = 0; i < D; i++) {
        double gi = 2.0 * ((double)xr[i] - cw_orig(s, x0[i])) + gr[i];
        if (a->has_range) {
            const double u = ((double)xr[i] - s->bp) / s->bm;
            gi *= s->bm * (1.0 - u * u);
        }
        mb[i] = (float)(0.9 * mb[i] + 0.1 * gi);
        vb[i] = (float)(0.999 * vb[i] + 0.001 * gi * gi);
        wb[i] = (float)((double)wb[i] - lr * mb[i] / (sqrt((double)vb[i]) + 1e-8));
    }
}

static rr_status cw_iter(cw *s, int it, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++)
        cw_point(s, j);
    rr_status st = rr__atk_grad_seeded(s->a, s->xs, n, cw_seeds, s, s->g, s->z);
    if (st != RR_OK)
        return st;
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++)
        if (judge_row(s, j, it))
            cw_adam(s, j, it);
    return RR_OK;
}

// ---- EAD: FISTA on the slack ----

// FISTA step on row j's slack y_k (learning rate lr, momentum zt), shrinkage by beta, then
// the new x_k in xs for its evaluation.
static void ead_fista(const cw *s, size_t j, double lr, double zt)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, b = s->act[j];
    const double beta = s->beta;
    const float *x0 = a->x0 + b * D, *gr = s->g + j * D;
    float *xk = s->w + b * D, *yk = s->m1 + b * D, *xr = s->xs + j * D;
    for (size_t i = 0; i < D; i++) {
        const double y = (double)yk[i] - lr * (gr[i] + 2.0 * ((double)yk[i] - x0[i]));
        const double d = y - x0[i];
        double xn = x0[i];
        if (d > beta)
            xn = y - beta;
        else if (d < -beta)
            xn = y + beta;
        if (a->has_range)
            xn = xn < a->lo ? a->lo : (xn > a->hi ? a->hi : xn);
        const float xf = (float)xn;
        yk[i] = (float)(xf + zt * ((double)xf - xk[i]));
        xk[i] = xf;
        xr[i] = xf;
    }
}

static rr_status ead_iter(cw *s, int it, size_t n)
{
    rr__atk *a = s->a;
    // The loss is differentiated at the slack y_k.
    rr__atk_gather(s->m1, s->act, n, a->D, s->xs);
    rr_status st = rr__atk_grad_seeded(a, s->xs, n, cw_seeds, s, s->g, s->z);
    if (st != RR_OK)
        return st;
    const double lr = a->p.learning_rate * sqrt(1.0 - (double)it / a->p.max_iter);
    const double zt = (it + 1.0) / (it + 4.0);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++)
        ead_fista(s, j, lr, zt);
    if ((st = rr__atk_forward(a, s->xs, n, s->z)) != RR_OK)
        return st;
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++)
        judge_row(s, j, it);
    return RR_OK;
}

// ---- the binary search over c, shared ----

typedef rr_status (*cw_iter_fn)(cw *s, int it, size_t n);

// Resets the optimiser and the per-step state for a binary step.
static void binary_reset(cw *s)
{
    rr__atk *a = s->a;
    const size_t B = a->B, D = a->D;
    if (s->elastic) {
        memcpy(s->w, a->x0, B * D * sizeof(float));  // x_k
        memcpy(s->m1, a->x0, B * D * sizeof(float)); // y_k
    } else {
        memset(s->w, 0, B * D * sizeof(float));
        memset(s->m1, 0, B * D * sizeof(float));
        memset(s->m2, 0, B * D * sizeof(float));
    }
    for (size_t b = 0; b < B; b++) {
        s->best[b] = 1e10;
        s->found[b] = false;
        s->prev[b] = 1e6;
        s->live[b] = true;
    }
}

static rr_status search(cw *s, cw_iter_fn iter)
{
    rr__atk *a = s->a;
    const size_t B = a->B;
    const int steps = a->p.max_iter, bsteps = a->p.binary_search_steps;
    const bool repeat = bsteps >= 10;
    memcpy(a->out->adversarial, a->x0, B * a->D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        s->cc[b] = a->p.c;
        s->lower[b] = 0.0;
        s->upper[b] = 1e10;
        s->obest[b] = 1e10;
        a->out->iterations[b] = 0;
    }
    a->progress_total = (double)bsteps * steps;
    rr_status st = RR_OK;
    for (int bs = 0; bs < bsteps && st == RR_OK; bs++) {
        if (repeat && bs == bsteps - 1)
            for (size_t b = 0; b < B; b++)
                s->cc[b] = s->upper[b];
        binary_reset(s);
        for (int it = 0; it < steps && st == RR_OK; it++) {
            const size_t n = rr__atk_active(s->live, true, B, s->act);
            if (n == 0)
                break;
            if ((st = iter(s, it, n)) == RR_OK)
                st = rr__atk_poll(a, 1.0);
        }
        for (size_t b = 0; b < B; b++)
            rr__atk_csearch(s->found[b], &s->lower[b], &s->upper[b], &s->cc[b]);
    }
    return st;
}

static rr_status attack(rr__atk *a, bool elastic, cw_iter_fn iter)
{
    const int steps = a->p.max_iter;
    cw s = {.a = a,
            .elastic = elastic,
            .beta = elastic ? a->p.beta : 0.0,
            .bm = a->has_range ? 0.5 * ((double)a->hi - a->lo) : 1.0,
            .bp = a->has_range ? 0.5 * ((double)a->hi + a->lo) : 0.0,
            .every = steps / 10 > 0 ? steps / 10 : 1};
    void *block = carve(&s, a->B, a->D, (size_t)a->K);
    if (!block)
        return RR_ENOMEM;
    const rr_status st = search(&s, iter);
    rr_aligned_free(block);
    return st;
}

rr_status rr__attack_cw(rr__atk *a)
{
    return attack(a, false, cw_iter);
}

rr_status rr__attack_ead(rr__atk *a)
{
    return attack(a, true, ead_iter);
}
