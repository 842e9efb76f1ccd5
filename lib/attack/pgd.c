// FGSM, PGD and BIM (math.md, "Attacks"): linf after CleverHans v2.1.0 (FastGradientMethod,
// MadryEtAl), l2 after torchattacks (PGDL2).
//
// One batched gradient per step for the samples still running. A step ascends the
// cross-entropy of the label (untargeted) or descends that of the target (targeted), then
// clips to input_range and projects onto the epsilon-ball around the clean input (for linf the
// two clamps commute; for l2 the ball projection comes first, as torchattacks, and clipping
// keeps the point in the ball). Restarts keep, per sample, the first successful run, or else
// the run with the highest loss of the attacked class (lowest for targeted).
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"
#include "nn/loss.h"

// Direction of the step from g = dCE/dx: +g untargeted, -g targeted.
static void step(const rr__atk *a, float *xb, const float *g, double alpha, double gsign)
{
    const size_t D = a->D;
    if (a->p.norm == RR_NORM_LINF) {
        for (size_t i = 0; i < D; i++) {
            const float s = g[i] > 0 ? 1.0f : (g[i] < 0 ? -1.0f : 0.0f);
            xb[i] = (float)((double)xb[i] + alpha * gsign * s);
        }
    } else {
        double n2 = 0.0;
        for (size_t i = 0; i < D; i++)
            n2 += (double)g[i] * g[i];
        const double scale = alpha * gsign / (sqrt(n2) + 1e-10);
        for (size_t i = 0; i < D; i++)
            xb[i] = (float)((double)xb[i] + scale * g[i]);
    }
}

// Projection onto the epsilon-ball around x and input_range.
static void project(const rr__atk *a, float *xb, const float *x, double eps)
{
    const size_t D = a->D;
    if (a->p.norm == RR_NORM_LINF) {
        rr__atk_clip(a, xb, D);
        for (size_t i = 0; i < D; i++) {
            const double d = (double)xb[i] - x[i];
            // Rounded toward x, so that the float result stays within eps.
            if (d > eps)
                xb[i] = rr__atk_toward((double)x[i] + eps, x[i]);
            else if (d < -eps)
                xb[i] = rr__atk_toward((double)x[i] - eps, x[i]);
        }
        // x + eps may round past input_range: the box wins.
        rr__atk_clip(a, xb, D);
    } else {
        double n2 = 0.0;
        for (size_t i = 0; i < D; i++) {
            const double d = (double)xb[i] - x[i];
            n2 += d * d;
        }
        const double n = sqrt(n2);
        if (n > eps) {
            const double f = eps / n;
            for (size_t i = 0; i < D; i++)
                xb[i] = rr__atk_toward(x[i] + ((double)xb[i] - x[i]) * f, x[i]);
        }
        rr__atk_clip(a, xb, D);
    }
}

rr_status rr__attack_fgsm(rr__atk *a)
{
    const size_t B = a->B, D = a->D;
    float *xa = a->out->adversarial;
    float *g = rr__atk_alloc(a, B * D);
    if (!g)
        return RR_ENOMEM;
    const int64_t *cls = a->targets ? a->targets : a->labels;
    rr_status st = rr__atk_ce_grad(a, a->x0, cls, B, g, NULL);
    if (st == RR_OK) {
        memcpy(xa, a->x0, B * D * sizeof(float));
        const double gsign = a->targets ? -1.0 : 1.0;
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < B; b++) {
            step(a, xa + b * D, g + b * D, a->p.epsilon, gsign);
            // The step may round past epsilon: project (a no-op otherwise) and clip.
            project(a, xa + b * D, a->x0 + b * D, a->p.epsilon);
            a->out->iterations[b] = 1;
        }
    }
    rr_aligned_free(g);
    return st;
}

// Random start of sample b in restart r: U(-eps, eps)^D (linf) or torchattacks' l2 draw
// (a normal direction scaled to a uniform fraction of eps), clipped to input_range.
static void random_start(const rr__atk *a, size_t b, int r, float *xb)
{
    const size_t D = a->D;
    const float *x = a->x0 + b * D;
    const double eps = a->p.epsilon;
    rr_rng rng;
    rr_rng_init(&rng, a->p.seed + 0x9E3779B97F4A7C15ull * (uint64_t)r, rr__atk_stream(a, b));
    if (a->p.norm == RR_NORM_LINF) {
        for (size_t i = 0; i < D; i++)
            xb[i] = (float)(x[i] + eps * (2.0 * rr_rng_uniform(&rng) - 1.0));
    } else {
        double n2 = 0.0;
        for (size_t i = 0; i < D; i++) {
            const double v = rr_rng_normal(&rng);
            xb[i] = (float)v;
            n2 += v * v;
        }
        const double f = rr_rng_uniform(&rng) * eps / (sqrt(n2) + 1e-30);
        for (size_t i = 0; i < D; i++)
            xb[i] = (float)(x[i] + xb[i] * f);
    }
    rr__atk_clip(a, xb, D);
}

rr_status rr__attack_pgd(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const int steps = a->p.steps, restarts = a->p.restarts;
    rr_attack_result *out = a->out;
    const int64_t *cls = a->targets ? a->targets : a->labels;
    const double gsign = a->targets ? -1.0 : 1.0;
    float *cur, *g, *z, *best_loss, *loss;
    const rr__carve_part parts[] = {RR__CARVE_PART(cur, B * D), RR__CARVE_PART(g, B * D),
                                    RR__CARVE_PART(z, B * K), RR__CARVE_PART(best_loss, B),
                                    RR__CARVE_PART(loss, B)};
    void *block = rr__carve(a->err, parts, sizeof parts / sizeof parts[0]);
    if (!block)
        return RR_ENOMEM;
    rr_status st = RR_OK;
    a->progress_total = (double)steps * restarts;
    for (int r = 0; r < restarts && st == RR_OK; r++) {
        if (a->hooks.start)
            memcpy(cur, a->hooks.start, B * D * sizeof(float));
        else if (a->p.random_start)
#pragma omp parallel for schedule(static)
            for (size_t b = 0; b < B; b++)
                random_start(a, b, r, cur + b * D);
        else
            memcpy(cur, a->x0, B * D * sizeof(float));
        for (int t = 0; t < steps && st == RR_OK; t++) {
            st = rr__atk_ce_grad(a, cur, cls, B, g, NULL);
            if (st != RR_OK)
                break;
#pragma omp parallel for schedule(static)
            for (size_t b = 0; b < B; b++) {
                step(a, cur + b * D, g + b * D, a->p.step_size, gsign);
                project(a, cur + b * D, a->x0 + b * D, a->p.epsilon);
            }
            if (a->hooks.trace)
                memcpy(a->hooks.trace + (size_t)t * B * D, cur, B * D * sizeof(float));
            st = rr__atk_poll(a, 1.0);
        }
        if (st != RR_OK)
            break;
        // Keep the worst case per sample.
        st = rr__atk_forward(a, cur, B, z);
        if (st != RR_OK)
            break;
        st = rr_cross_entropy(z, cls, B, (int)K, loss, NULL, NULL, NULL, a->err);
        if (st != RR_OK)
            break;
        for (size_t b = 0; b < B; b++) {
            const bool hit = rr__atk_hit(a, b, rr__atk_argmax(z + b * K, (int)K));
            const float score = (float)gsign * loss[b];
            bool take = r == 0;
            if (!take && !out->success[b])
                take = hit || score > best_loss[b];
            if (take) {
                memcpy(out->adversarial + b * D, cur + b * D, D * sizeof(float));
                out->success[b] = hit;
                best_loss[b] = score;
                out->iterations[b] = steps * (r + 1);
            }
        }
    }
    rr_aligned_free(block);
    return st;
}
