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
#include <stdlib.h>
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

typedef struct fab {
    rr__atk *a;
    const size_t *act; // [n] sample of each running row
    const int64_t *tg; // [n] target of each running row
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

rr_status rr__attack_fab(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const int steps = a->p.steps, R = a->p.restarts;
    const int NT = a->K - 1 < 9 ? a->K - 1 : 9;
    const double eps = a->p.epsilon;
    rr_attack_result *out = a->out;
    const size_t nthreads = (size_t)omp_get_max_threads();
    float *x1 = rr__atk_alloc(a, B * D), *xa = rr__atk_alloc(a, B * D);
    float *best = rr__atk_alloc(a, B * D), *g = rr__atk_alloc(a, B * D);
    float *z = rr__atk_alloc(a, B * K);
    int64_t *rank = (int64_t *)rr__atk_alloc(a, 2 * B * (size_t)(NT > 0 ? NT : 1));
    int64_t *tg = (int64_t *)rr__atk_alloc(a, 2 * B);
    double *res = (double *)rr__atk_alloc(a, 2 * B), *bestn = (double *)rr__atk_alloc(a, 2 * B);
    size_t *act = (size_t *)rr__atk_alloc(a, 2 * B);
    unsigned char *run = (unsigned char *)rr__atk_alloc(a, B);
    // Per thread: the breakpoints [D] (3 doubles each) and the two steps d1, d2 [D] each.
    double *scr = (double *)rr__atk_alloc(a, 2 * nthreads * 5 * D);
    rr_status st = (x1 && xa && best && g && z && rank && tg && res && bestn && act && run && scr)
                       ? RR_OK
                       : RR_ENOMEM;
    if (st != RR_OK)
        goto out;
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    if ((st = rr__atk_forward(a, a->x0, B, z)) != RR_OK)
        goto out;
    for (size_t b = 0; b < B; b++) {
        const float *zb = z + b * K;
        run[b] = rr__atk_argmax(zb, (int)K) == a->labels[b];
        bestn[b] = INFINITY;
        out->iterations[b] = 0;
        // Rank 1 is the label of a sample that is run; targets are ranks 2 .. NT + 1.
        int64_t *rb = rank + b * (size_t)NT;
        for (int q = 0; q <= NT; q++) {
            int64_t pick = -1;
            for (size_t k = 0; k < K; k++) {
                bool taken = false;
                for (int p = 0; p < q; p++)
                    taken =
                        taken || (p == 0 ? (int64_t)k == a->labels[b] : rb[p - 1] == (int64_t)k);
                if (!taken && (pick < 0 || zb[k] > zb[pick]))
                    pick = (int64_t)k;
            }
            if (q > 0)
                rb[q - 1] = pick;
        }
    }
    a->progress_total = (double)NT * R * steps;
    fab f = {.a = a, .act = act, .tg = tg};
    for (int ti = 0; ti < NT; ti++) {
        for (int r = 0; r < R; r++) {
            const int rho = ti * R + r; // the run's index (trace rows rho * steps ..)
            size_t n = 0;
            for (size_t b = 0; b < B; b++)
                if (run[b])
                    act[n++] = b;
            if (n == 0)
                goto out;
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
            for (size_t j = 0; j < n; j++) {
                const size_t b = act[j];
                memcpy(xa + j * D, a->x0 + b * D, D * sizeof(float));
                tg[j] = rank[b * (size_t)NT + (size_t)ti];
                res[j] = INFINITY;
                if (r == 0)
                    memcpy(x1 + j * D, xa + j * D, D * sizeof(float));
                else
                    random_start(a, b, (uint64_t)rho, xa + j * D, x1 + j * D);
            }
            for (int t = 0; t < steps; t++) {
                st = rr__atk_grad_seeded(a, x1, n, fab_seeds, &f, g, z);
                if (st != RR_OK)
                    goto out;
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
                for (size_t j = 0; j < n; j++) {
                    const size_t b = act[j];
                    double *s = scr + (size_t)omp_get_thread_num() * 5 * D;
                    double *d1 = s + 3 * D, *d2 = s + 4 * D;
                    const float *w = g + j * D, *zj = z + j * K;
                    float *xj = x1 + j * D;
                    const float *x0 = xa + j * D;
                    // The hyperplane f + w . (u - x1) = 0: its offset at x1 is f, at x0
                    // f + w . (x0 - x1).
                    const double fv = (double)zj[tg[j]] - (double)zj[a->labels[b]];
                    double c0 = fv;
                    for (size_t i = 0; i < D; i++)
                        c0 += (double)w[i] * ((double)x0[i] - (double)xj[i]);
                    const double a1 =
                        fmax(rr__fab_project(a, xj, w, fv, d1, (rr__fab_brk *)s), 1e-8);
                    const double a2 =
                        fmax(rr__fab_project(a, x0, w, c0, d2, (rr__fab_brk *)s), 1e-8);
                    double al = a1 / (a1 + a2);
                    al = al < 0 ? 0 : (al > FAB_ALPHA_MAX ? FAB_ALPHA_MAX : al);
                    for (size_t i = 0; i < D; i++)
                        xj[i] = (float)(((double)xj[i] + FAB_ETA * d1[i]) * (1.0 - al) +
                                        ((double)x0[i] + FAB_ETA * d2[i]) * al);
                    rr__atk_clip(a, xj, D);
                }
                if ((st = rr__atk_forward(a, x1, n, z)) != RR_OK)
                    goto out;
                    // A misclassified iterate closer than the run's best becomes it; then step
                    // back.
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
                for (size_t j = 0; j < n; j++) {
                    const size_t b = act[j];
                    if (rr__atk_argmax(z + j * K, (int)K) == a->labels[b])
                        continue;
                    float *xj = x1 + j * D;
                    const float *x0 = xa + j * D;
                    const double tn = dist(a, xj, x0);
                    if (tn < res[j]) {
                        res[j] = tn;
                        memcpy(best + j * D, xj, D * sizeof(float));
                    }
                    for (size_t i = 0; i < D; i++)
                        xj[i] = (float)((double)x0[i] + ((double)xj[i] - (double)x0[i]) * FAB_BETA);
                }
                if (a->p.trace) {
                    float *row = a->p.trace + ((size_t)rho * steps + (size_t)t) * B * D;
                    for (size_t j = 0; j < n; j++)
                        memcpy(row + act[j] * D, x1 + j * D, D * sizeof(float));
                }
                if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
                    goto out;
            }
            // Keep the smallest adversarial over the runs; bounded: stop once within epsilon.
            for (size_t j = 0; j < n; j++) {
                const size_t b = act[j];
                out->iterations[b] += steps;
                if (res[j] < bestn[b]) {
                    bestn[b] = res[j];
                    memcpy(out->adversarial + b * D, best + j * D, D * sizeof(float));
                }
                if (isfinite(eps) && bestn[b] <= eps)
                    run[b] = 0;
            }
        }
    }
out:
    // Bounded: a result outside epsilon does not count, and x0 is returned.
    if (st == RR_OK)
        for (size_t b = 0; b < B; b++)
            if (isfinite(bestn[b]) && !(bestn[b] <= eps))
                memcpy(out->adversarial + b * D, a->x0 + b * D, D * sizeof(float));
    rr_aligned_free(x1);
    rr_aligned_free(xa);
    rr_aligned_free(best);
    rr_aligned_free(g);
    rr_aligned_free(z);
    rr_aligned_free(rank);
    rr_aligned_free(tg);
    rr_aligned_free(res);
    rr_aligned_free(bestn);
    rr_aligned_free(act);
    rr_aligned_free(run);
    rr_aligned_free(scr);
    return st;
}
