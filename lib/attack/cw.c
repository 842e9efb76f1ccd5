// Carlini & Wagner L2 and EAD (math.md, "Attacks"), batched over the samples still running.
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

typedef struct cw_state {
    rr__atk *a;
    const size_t *act;    // running sample of each gathered row
    const double *cconst; // [B] current c
    float *loss1;         // [n] hinge value per gathered row
} cw_state;

// max_{j != t} z_j
static double other_max(const float *z, int K, int64_t t)
{
    double o = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != t && z[k] > o)
            o = z[k];
    return o;
}

// Seeds c * d hinge / dz, and the hinge per row.
static void cw_seeds(void *ctx, size_t b0, size_t nb, const float *z, float *seeds)
{
    cw_state *s = ctx;
    const int K = s->a->K;
    const double kappa = s->a->p.confidence;
    for (size_t r = 0; r < nb; r++) {
        const size_t b = s->act[b0 + r];
        const float *zr = z + r * (size_t)K;
        float *sr = seeds + r * (size_t)K;
        memset(sr, 0, (size_t)K * sizeof(float));
        const int64_t t = rr__atk_class(s->a, b);
        int jo = -1;
        for (int k = 0; k < K; k++)
            if (k != t && (jo < 0 || zr[k] > zr[jo]))
                jo = k;
        const double real = zr[t], other = zr[jo];
        const double h = s->a->targets ? other - real + kappa : real - other + kappa;
        s->loss1[b0 + r] = (float)(h > 0 ? h : 0);
        if (h > 0) {
            const double c = s->cconst[b];
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

rr_status rr__attack_cw(rr__atk *a, bool elastic)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const int steps = a->p.max_iter, bsteps = a->p.binary_search_steps;
    const int every = steps / 10 > 0 ? steps / 10 : 1;
    const bool repeat = bsteps >= 10;
    const double beta = elastic ? a->p.beta : 0.0;
    const double bm = a->has_range ? 0.5 * ((double)a->hi - a->lo) : 1.0;
    const double bp = a->has_range ? 0.5 * ((double)a->hi + a->lo) : 0.0;
    rr_attack_result *out = a->out;
    // Per sample: w / x_k, Adam m and v / y_k, the gathered rows and their gradients.
    float *w = rr__atk_alloc(a, B * D), *m1 = rr__atk_alloc(a, B * D);
    float *m2 = rr__atk_alloc(a, B * D), *xs = rr__atk_alloc(a, B * D);
    float *g = rr__atk_alloc(a, B * D), *z = rr__atk_alloc(a, B * K);
    float *loss1 = rr__atk_alloc(a, B);
    double *dbl = (double *)rr__atk_alloc(a, 2 * 6 * B);
    size_t *act = (size_t *)rr__atk_alloc(a, 2 * B);
    int *steps_b = (int *)rr__atk_alloc(a, 2 * B);
    rr_status st =
        (w && m1 && m2 && xs && g && z && loss1 && dbl && act && steps_b) ? RR_OK : RR_ENOMEM;
    if (st != RR_OK)
        goto out;
    double *cc = dbl, *lower = dbl + B, *upper = dbl + 2 * B, *obest = dbl + 3 * B;
    double *best = dbl + 4 * B, *prev = dbl + 5 * B;
    bool *found = (bool *)(steps_b + B); // this binary step found a success
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        cc[b] = a->p.c;
        lower[b] = 0.0;
        upper[b] = 1e10;
        obest[b] = 1e10;
        out->iterations[b] = 0;
    }
    a->progress_total = (double)bsteps * steps;
    cw_state cs = {.a = a, .act = act, .cconst = cc, .loss1 = loss1};
    // The box variable of the clean input, atanh((x - bp) / bm * 0.999999), is recomputed
    // where needed rather than stored.
    for (int bs = 0; bs < bsteps && st == RR_OK; bs++) {
        if (repeat && bs == bsteps - 1)
            for (size_t b = 0; b < B; b++)
                cc[b] = upper[b];
        // Reset the optimiser state.
        if (elastic) {
            memcpy(w, a->x0, B * D * sizeof(float));  // x_k
            memcpy(m1, a->x0, B * D * sizeof(float)); // y_k
        } else {
            memset(w, 0, B * D * sizeof(float));
            memset(m1, 0, B * D * sizeof(float));
            memset(m2, 0, B * D * sizeof(float));
        }
        for (size_t b = 0; b < B; b++) {
            best[b] = 1e10;
            found[b] = false;
            prev[b] = 1e6;
            steps_b[b] = 1; // running
        }
        for (int it = 0; it < steps && st == RR_OK; it++) {
            size_t n = 0;
            for (size_t b = 0; b < B; b++)
                if (steps_b[b])
                    act[n++] = b;
            if (n == 0)
                break;
                // The point the loss is differentiated at: C&W's newimg, EAD's slack y_k.
#pragma omp parallel for schedule(static)
            for (size_t j = 0; j < n; j++) {
                const size_t b = act[j];
                float *xr = xs + j * D;
                const float *x0 = a->x0 + b * D;
                if (elastic) {
                    memcpy(xr, m1 + b * D, D * sizeof(float));
                } else if (a->has_range) {
                    for (size_t i = 0; i < D; i++) {
                        const double ti = atanh(((double)x0[i] - bp) / bm * 0.999999);
                        xr[i] = (float)(tanh((double)w[b * D + i] + ti) * bm + bp);
                    }
                } else {
                    for (size_t i = 0; i < D; i++)
                        xr[i] = x0[i] + w[b * D + i];
                }
            }
            st = rr__atk_grad_seeded(a, xs, n, cw_seeds, &cs, g, z);
            if (st != RR_OK)
                break;
            if (elastic) {
                // FISTA step on the slack, then the new x_k in xs for its evaluation.
                const double lr = a->p.learning_rate * sqrt(1.0 - (double)it / steps);
                const double zt = (it + 1.0) / (it + 4.0);
#pragma omp parallel for schedule(static)
                for (size_t j = 0; j < n; j++) {
                    const size_t b = act[j];
                    const float *x0 = a->x0 + b * D;
                    float *xk = w + b * D, *yk = m1 + b * D, *xr = xs + j * D;
                    const float *gr = g + j * D;
                    for (size_t i = 0; i < D; i++) {
                        const double y =
                            (double)yk[i] - lr * (gr[i] + 2.0 * ((double)yk[i] - x0[i]));
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
                st = rr__atk_forward(a, xs, n, z);
                if (st != RR_OK)
                    break;
            }
#pragma omp parallel for schedule(static)
            for (size_t j = 0; j < n; j++) {
                const size_t b = act[j];
                const float *x0 = a->x0 + b * D, *xr = xs + j * D, *zr = z + j * K;
                double l2 = 0.0, l1 = 0.0;
                for (size_t i = 0; i < D; i++) {
                    const double orig =
                        a->has_range && !elastic
                            ? tanh(atanh(((double)x0[i] - bp) / bm * 0.999999)) * bm + bp
                            : x0[i];
                    const double d = (double)xr[i] - orig;
                    l2 += d * d;
                    l1 += fabs(d);
                }
                double hinge;
                if (elastic) {
                    const int64_t t = rr__atk_class(a, b);
                    const double o = other_max(zr, (int)K, t);
                    const double hh =
                        a->targets ? o - zr[t] + a->p.confidence : zr[t] - o + a->p.confidence;
                    hinge = hh > 0 ? hh : 0;
                } else {
                    hinge = loss1[j];
                }
                const double loss = l2 + cc[b] * hinge + beta * l1;
                if (it % every == 0) {
                    if (loss > prev[b] * 0.9999) {
                        steps_b[b] = 0;
                        continue;
                    }
                    prev[b] = loss;
                }
                out->iterations[b]++;
                const double dist = elastic ? beta * l1 + l2 : l2;
                if (cw_compare(a, b, zr)) {
                    if (dist < best[b]) {
                        best[b] = dist;
                        found[b] = true;
                    }
                    if (dist < obest[b]) {
                        obest[b] = dist;
                        memcpy(out->adversarial + b * D, xr, D * sizeof(float));
                    }
                }
                if (!elastic) {
                    // Adam on w: dL/dnewimg = 2 (newimg - orig) + c dhinge, through the tanh.
                    float *wb = w + b * D, *mb = m1 + b * D, *vb = m2 + b * D;
                    const float *gr = g + j * D;
                    const double t1 = it + 1.0;
                    const double lr =
                        a->p.learning_rate * sqrt(1.0 - pow(0.999, t1)) / (1.0 - pow(0.9, t1));
                    for (size_t i = 0; i < D; i++) {
                        const double orig =
                            a->has_range
                                ? tanh(atanh(((double)x0[i] - bp) / bm * 0.999999)) * bm + bp
                                : x0[i];
                        double gi = 2.0 * ((double)xr[i] - orig) + gr[i];
                        if (a->has_range) {
                            const double u = ((double)xr[i] - bp) / bm;
                            gi *= bm * (1.0 - u * u);
                        }
                        mb[i] = (float)(0.9 * mb[i] + 0.1 * gi);
                        vb[i] = (float)(0.999 * vb[i] + 0.001 * gi * gi);
                        wb[i] = (float)((double)wb[i] - lr * mb[i] / (sqrt((double)vb[i]) + 1e-8));
                    }
                }
            }
            if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
                break;
        }
        // Binary search over c.
        for (size_t b = 0; b < B; b++) {
            if (found[b]) {
                upper[b] = fmin(upper[b], cc[b]);
                if (upper[b] < 1e9)
                    cc[b] = (lower[b] + upper[b]) / 2;
            } else {
                lower[b] = fmax(lower[b], cc[b]);
                if (upper[b] < 1e9)
                    cc[b] = (lower[b] + upper[b]) / 2;
                else
                    cc[b] *= 10;
            }
        }
    }
out:
    rr_aligned_free(w);
    rr_aligned_free(m1);
    rr_aligned_free(m2);
    rr_aligned_free(xs);
    rr_aligned_free(g);
    rr_aligned_free(z);
    rr_aligned_free(loss1);
    rr_aligned_free(dbl);
    rr_aligned_free(act);
    rr_aligned_free(steps_b);
    return st;
}
