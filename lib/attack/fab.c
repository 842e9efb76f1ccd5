// FAB-T, the targeted Fast Adaptive Boundary attack (math.md, "Attacks"; Croce & Hein, ICML
// 2020) as AutoAttack runs it (fra31/auto-attack `FABAttack_PT`, targeted), linf and l2.
//
// Targets: the classes ranked 2nd .. (n+1)th by the clean logits, n = min(9, K - 1) (ties: the
// lower class first), one run of `steps` each (times `restarts`). Per step, with the exact
// gradient w = grad(z_t - z_y) at the iterate x1 (one VJP through the frozen masks: on a ReLU
// net f is affine on the region of x1, so the linearisation z_t - z_y + w . (u - x1) = 0 is
// the true boundary of that region's affine piece), d1 and d2 are the smallest (linf or l2)
// steps from x1 and from the clean x0 onto that hyperplane inside input_range, and
//   alpha = clamp(|d1| / (|d1| + |d2|), 0, alpha_max),
//   x1 = clip((x1 + eta d1)(1 - alpha) + (x0 + eta d2) alpha),
// alpha_max 0.1, eta 1.05, beta 0.9. When x1 is misclassified (argmax != y, as FAB) and
// closer to x0 than the run's best, it becomes the best; then the backward step
// x1 = x0 + beta (x1 - x0). No random start in the first restart; restart r > 0 starts at
// x0 + eps_r / 2 * u / |u| (u uniform in [-1, 1]^D for linf, normal for l2, from the stream
// (seed + 0x9E37.. * (target * restarts + r), b), eps_r = epsilon or AutoAttack's default 0.3
// / 1.0 when unbounded), clipped.
// epsilon: left default (+inf) FAB-T is a minimum-norm attack: every sample the model gets
// right runs every target and keeps the smallest adversarial found. With a finite epsilon
// (AutoAttack runs FAB-T so), a sample stops at the first target whose result is within
// epsilon and counts as broken only then; otherwise it returns x0 (AutoAttack's perturb).
// Samples misclassified at x0 are not attacked. Batched: one VJP and one forward per step for
// all running samples, projections (fab_projection.c) per sample under OpenMP with per-thread
// scratch; nothing is allocated inside the step loop.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

// Below this much work (rows x features) a step runs on the calling thread: OpenMP's fork and
// barrier would cost more than the loop (results do not depend on it).
#define PAR_MIN 16384

#define FAB_ALPHA_MAX 0.1
#define FAB_ETA       1.05
#define FAB_BETA      0.9

// ---- the attack ----

// Scratch, carved from one block (rr__carve).
typedef struct fab {
    rr__atk *a;
    float *x1, *xa, *best, *g; // [B, D] iterates, clean inputs, run's best, gradients of the rows
    float *z;                  // [B, K] logits of the rows
    int *order;                // [B, K] classes by clean logit (rr__atk_rank)
    int64_t *tg;               // [B] target of each running row
    double *res, *bestn;       // [B] run's best norm per row, overall best per sample
    size_t *act;               // [B] sample of each running row
    bool *run;                 // [B] sample still attacked
    rr__fab_brk *brk;          // [threads, D] breakpoints
    double *dd;                // [threads, 2 D] the steps d1, d2
} fab;

// Seeds e_t - e_y: the VJP is grad(z_t - z_y).
static void fab_seeds(void *ctx, size_t b0, size_t nb, const float *z, float *seeds)
{
    (void)z;
    const fab *f = ctx;
    const size_t K = (size_t)f->a->K;
    for (size_t r = 0; r < nb; r++) {
        float *sr = seeds + r * K;
        memset(sr, 0, K * sizeof(float));
        sr[f->tg[b0 + r]] += 1.0f;
        sr[f->a->labels[f->act[b0 + r]]] -= 1.0f;
    }
}

static double dist(const rr__atk *a, const float *u, const float *v)
{
    double n = 0.0;
    for (size_t i = 0; i < a->D; i++) {
        const double e = (double)u[i] - (double)v[i];
        n = a->p.norm == RR_NORM_LINF ? fmax(n, fabs(e)) : n + e * e;
    }
    return a->p.norm == RR_NORM_LINF ? n : sqrt(n);
}

// Restart r > 0 of FAB: x0 + eps_r / 2 * u / ||u|| (see the top), clipped.
static void random_start(const rr__atk *a, size_t b, uint64_t run, const float *x0, float *x1)
{
    const size_t D = a->D;
    const bool linf = a->p.norm == RR_NORM_LINF;
    const double eps = isfinite(a->p.epsilon) ? a->p.epsilon : (linf ? 0.3 : 1.0);
    rr_rng rng;
    rr_rng_init(&rng, a->p.seed + 0x9E3779B97F4A7C15ull * run, rr__atk_stream(a, b));
    double n = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double u = linf ? 2.0 * rr_rng_uniform(&rng) - 1.0 : rr_rng_normal(&rng);
        x1[i] = (float)u;
        n = linf ? fmax(n, fabs(u)) : n + u * u;
    }
    const double f = 0.5 * eps / ((linf ? n : sqrt(n)) + 1e-30);
    for (size_t i = 0; i < D; i++)
        x1[i] = (float)((double)x0[i] + (double)x1[i] * f);
    rr__atk_clip(a, x1, D);
}

static void *carve(fab *f, size_t B, size_t D, size_t K)
{
    const size_t T = (size_t)omp_get_max_threads();
    const rr__carve_part parts[] = {
        RR__CARVE_PART(f->x1, B * D),    RR__CARVE_PART(f->xa, B * D),
        RR__CARVE_PART(f->best, B * D),  RR__CARVE_PART(f->g, B * D),
        RR__CARVE_PART(f->z, B * K),     RR__CARVE_PART(f->order, B * K),
        RR__CARVE_PART(f->tg, B),        RR__CARVE_PART(f->res, B),
        RR__CARVE_PART(f->bestn, B),     RR__CARVE_PART(f->act, B),
        RR__CARVE_PART(f->run, B),       RR__CARVE_PART(f->brk, T * D),
        RR__CARVE_PART(f->dd, T * 2 * D)};
    return rr__carve(f->a->err, parts, sizeof parts / sizeof parts[0]);
}

// The clean logits: which samples run (classified right), and their classes by logit.
static rr_status clean(fab *f)
{
    rr__atk *a = f->a;
    const size_t B = a->B, K = (size_t)a->K;
    rr_status st = rr__atk_forward(a, a->x0, B, f->z);
    if (st != RR_OK)
        return st;
    for (size_t b = 0; b < B; b++) {
        const float *zb = f->z + b * K;
        f->run[b] = rr__atk_argmax(zb, (int)K) == a->labels[b];
        f->bestn[b] = INFINITY;
        a->out->iterations[b] = 0;
        // Rank 1 is the label of a sample that is run; targets are ranks 2 .. NT + 1.
        rr__atk_rank(zb, (int)K, f->order + b * K);
    }
    return RR_OK;
}

// The n running rows of target ti, restart r (run rho): clean inputs, targets, starts.
static void start_rows(fab *f, size_t n, int ti, int r, int rho)
{
    const rr__atk *a = f->a;
    const size_t D = a->D, K = (size_t)a->K;
    rr__atk_gather(a->x0, f->act, n, D, f->xa);
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
    for (size_t j = 0; j < n; j++) {
        const size_t b = f->act[j];
        f->tg[j] = f->order[b * K + (size_t)ti + 1];
        f->res[j] = INFINITY;
        if (r == 0)
            memcpy(f->x1 + j * D, f->xa + j * D, D * sizeof(float));
        else
            random_start(a, b, (uint64_t)rho, f->xa + j * D, f->x1 + j * D);
    }
}

// Row j's step: the projections of x1 and x0 onto the linearised boundary, blended.
static void step_row(const fab *f, size_t j)
{
    const rr__atk *a = f->a;
    const size_t D = a->D, K = (size_t)a->K, th = (size_t)omp_get_thread_num();
    rr__fab_brk *brk = f->brk + th * D;
    double *d1 = f->dd + th * 2 * D, *d2 = d1 + D;
    const float *w = f->g + j * D, *zj = f->z + j * K, *x0 = f->xa + j * D;
    float *xj = f->x1 + j * D;
    // The hyperplane f + w . (u - x1) = 0: its offset at x1 is f, at x0 f + w . (x0 - x1).
    const double fv = (double)zj[f->tg[j]] - (double)zj[a->labels[f->act[j]]];
    double c0 = fv;
    for (size_t i = 0; i < D; i++)
        c0 += (double)w[i] * ((double)x0[i] - (double)xj[i]);
    const double a1 = fmax(rr__fab_project(a, xj, w, fv, d1, brk), 1e-8);
    const double a2 = fmax(rr__fab_project(a, x0, w, c0, d2, brk), 1e-8);
    double al = a1 / (a1 + a2);
    al = al < 0 ? 0 : (al > FAB_ALPHA_MAX ? FAB_ALPHA_MAX : al);
    for (size_t i = 0; i < D; i++)
        xj[i] = (float)(((double)xj[i] + FAB_ETA * d1[i]) * (1.0 - al) +
                        ((double)x0[i] + FAB_ETA * d2[i]) * al);
    rr__atk_clip(a, xj, D);
}

// Row j after its step: a misclassified iterate closer than the run's best becomes it; then
// the step back toward x0.
static void keep_row(const fab *f, size_t j)
{
    const rr__atk *a = f->a;
    const size_t D = a->D, K = (size_t)a->K;
    if (rr__atk_argmax(f->z + j * K, (int)K) == a->labels[f->act[j]])
        return;
    float *xj = f->x1 + j * D;
    const float *x0 = f->xa + j * D;
    const double tn = dist(a, xj, x0);
    if (tn < f->res[j]) {
        f->res[j] = tn;
        memcpy(f->best + j * D, xj, D * sizeof(float));
    }
    for (size_t i = 0; i < D; i++)
        xj[i] = (float)((double)x0[i] + ((double)xj[i] - (double)x0[i]) * FAB_BETA);
}

// One run of `steps` over the n running rows (trace rows rho * steps ..).
static rr_status run_steps(fab *f, size_t n, int rho)
{
    rr__atk *a = f->a;
    const size_t D = a->D;
    const int steps = a->p.steps;
    for (int t = 0; t < steps; t++) {
        rr_status st = rr__atk_grad_seeded(a, f->x1, n, fab_seeds, f, f->g, f->z);
        if (st != RR_OK)
            return st;
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
        for (size_t j = 0; j < n; j++)
            step_row(f, j);
        if ((st = rr__atk_forward(a, f->x1, n, f->z)) != RR_OK)
            return st;
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
        for (size_t j = 0; j < n; j++)
            keep_row(f, j);
        if (a->hooks.trace)
            rr__atk_scatter(f->x1, f->act, n, D,
                            a->hooks.trace + ((size_t)rho * steps + (size_t)t) * a->B * D);
        if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
            return st;
    }
    return RR_OK;
}

// Keeps the smallest adversarial over the runs; bounded: a sample stops once within epsilon.
static void keep_runs(fab *f, size_t n)
{
    rr__atk *a = f->a;
    const size_t D = a->D;
    for (size_t j = 0; j < n; j++) {
        const size_t b = f->act[j];
        a->out->iterations[b] += a->p.steps;
        if (f->res[j] < f->bestn[b]) {
            f->bestn[b] = f->res[j];
            memcpy(a->out->adversarial + b * D, f->best + j * D, D * sizeof(float));
        }
        if (isfinite(a->p.epsilon) && f->bestn[b] <= a->p.epsilon)
            f->run[b] = false;
    }
}

rr_status rr__attack_fab(rr__atk *a)
{
    const size_t B = a->B, D = a->D;
    const int R = a->p.restarts;
    const int NT = a->K - 1 < 9 ? a->K - 1 : 9;
    const double eps = a->p.epsilon;
    fab f = {.a = a};
    void *block = carve(&f, B, D, (size_t)a->K);
    if (!block)
        return RR_ENOMEM;
    memcpy(a->out->adversarial, a->x0, B * D * sizeof(float));
    rr_status st = clean(&f);
    a->progress_total = (double)NT * R * a->p.steps;
    for (int ti = 0; ti < NT && st == RR_OK; ti++) {
        for (int r = 0; r < R && st == RR_OK; r++) {
            const size_t n = rr__atk_active(f.run, true, B, f.act);
            if (n == 0)
                goto out;
            start_rows(&f, n, ti, r, ti * R + r);
            if ((st = run_steps(&f, n, ti * R + r)) == RR_OK)
                keep_runs(&f, n);
        }
    }
out:
    // Bounded: a result outside epsilon does not count, and x0 is returned.
    if (st == RR_OK)
        for (size_t b = 0; b < B; b++)
            if (isfinite(f.bestn[b]) && !(f.bestn[b] <= eps))
                memcpy(a->out->adversarial + b * D, a->x0 + b * D, D * sizeof(float));
    rr_aligned_free(block);
    return st;
}
