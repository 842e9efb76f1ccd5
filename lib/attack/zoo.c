// ZOO (math.md, "Attacks"): black-box, after ART's ZooAttack with its defaults (max_iter 10,
// binary_search_steps 1, learning_rate 1e-2, initial_const 1e-3, variable_h 1e-4,
// nb_parallel 128, abort early): the C&W loss ||x' - x||^2 + c * max(0, z_y - max z_j + kappa)
// in input space, estimated per coordinate by symmetric finite differences
// (f(x + h e_i) - f(x - h e_i)) / 2h on nb_parallel coordinates per iteration, each updated by
// coordinate-wise ADAM, then clipped to input_range. Only forward passes: the model's gradient
// is never called. Coordinates are drawn uniformly without replacement from the sample's
// (seed, index) stream; ART's resizing and importance sampling (for large images) are not
// used. The binary search over c and the kept smallest successful perturbation are C&W's.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

#define ZOO_PARALLEL 128

static double zoo_loss(const rr__atk *a, size_t b, const float *z, double l2, double c)
{
    const int K = a->K;
    const int64_t t = rr__atk_class(a, b);
    double o = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != t && z[k] > o)
            o = z[k];
    const double h = a->targets ? o - z[t] + a->p.confidence : z[t] - o + a->p.confidence;
    return l2 + c * (h > 0 ? h : 0);
}

static bool zoo_hit(const rr__atk *a, size_t b, const float *z)
{
    return rr__atk_hit(a, b, rr__atk_argmax(z, a->K));
}

rr_status rr__attack_zoo(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const size_t P = D < ZOO_PARALLEL ? D : ZOO_PARALLEL;
    const size_t R = 2 * P + 1; // evaluation rows per sample: x, then x +- h e_i
    const double h = a->p.h;
    const int steps = a->p.max_iter, bsteps = a->p.binary_search_steps;
    const int every = steps / 10 > 0 ? steps / 10 : 1;
    rr_attack_result *out = a->out;
    // Samples per evaluation block: bounded so that the block stays within ~64 MiB.
    size_t sb = ((size_t)16 << 20) / (R * D + 1);
    sb = sb < 1 ? 1 : (sb > B ? B : sb);
    float *cur = rr__atk_alloc(a, B * D), *m1 = rr__atk_alloc(a, B * D);
    float *m2 = rr__atk_alloc(a, B * D), *ev = rr__atk_alloc(a, sb * R * D);
    float *z = rr__atk_alloc(a, (sb * R > B ? sb * R : B) * K);
    int *coords = (int *)rr__atk_alloc(a, sb * P);
    int *tcount = (int *)rr__atk_alloc(a, B * D);
    double *dbl = (double *)rr__atk_alloc(a, 2 * 5 * B);
    unsigned char *run = (unsigned char *)rr__atk_alloc(a, 2 * B);
    rr_status st =
        (cur && m1 && m2 && ev && z && coords && tcount && dbl && run) ? RR_OK : RR_ENOMEM;
    if (st != RR_OK)
        goto out;
    double *cc = dbl, *lower = dbl + B, *upper = dbl + 2 * B, *obest = dbl + 3 * B,
           *prev = dbl + 4 * B;
    unsigned char *found = run + B;
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        cc[b] = a->p.c;
        lower[b] = 0;
        upper[b] = 1e10;
        obest[b] = 1e10;
        out->iterations[b] = 0;
    }
    a->progress_total = (double)bsteps * steps;
    for (int bs = 0; bs < bsteps && st == RR_OK; bs++) {
        memcpy(cur, a->x0, B * D * sizeof(float));
        memset(m1, 0, B * D * sizeof(float));
        memset(m2, 0, B * D * sizeof(float));
        memset(tcount, 0, B * D * sizeof(int));
        for (size_t b = 0; b < B; b++) {
            run[b] = 1;
            found[b] = 0;
            prev[b] = 1e30;
        }
        for (int it = 0; it < steps && st == RR_OK; it++) {
            for (size_t s0 = 0; s0 < B && st == RR_OK; s0 += sb) {
                const size_t ns = B - s0 < sb ? B - s0 : sb;
                // Evaluation rows of the block's running samples.
                size_t rows = 0;
                for (size_t j = 0; j < ns; j++) {
                    const size_t b = s0 + j;
                    if (!run[b])
                        continue;
                    rr_rng rng;
                    rr_rng_init(
                        &rng, a->p.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(bs * steps + it + 1)),
                        rr__atk_stream(a, b));
                    int *cj = coords + j * P;
                    // P distinct coordinates, repeats rejected.
                    for (size_t q = 0; q < P; q++) {
                        for (;;) {
                            const int c = (int)(rr_rng_next(&rng) % D);
                            bool dup = false;
                            for (size_t r = 0; r < q && !dup; r++)
                                dup = cj[r] == c;
                            if (!dup) {
                                cj[q] = c;
                                break;
                            }
                        }
                    }
                    const float *xb = cur + b * D;
                    float *e = ev + rows * D;
                    memcpy(e, xb, D * sizeof(float));
                    for (size_t q = 0; q < P; q++) {
                        float *ep = e + (1 + 2 * q) * D, *em = ep + D;
                        memcpy(ep, xb, D * sizeof(float));
                        memcpy(em, xb, D * sizeof(float));
                        ep[cj[q]] = (float)(xb[cj[q]] + h);
                        em[cj[q]] = (float)(xb[cj[q]] - h);
                    }
                    rows += R;
                }
                if (rows == 0)
                    continue;
                st = rr__atk_forward(a, ev, rows, z);
                if (st != RR_OK)
                    break;
                size_t r0 = 0;
                for (size_t j = 0; j < ns; j++) {
                    const size_t b = s0 + j;
                    if (!run[b])
                        continue;
                    const float *x0 = a->x0 + b * D, *e = ev + r0 * D, *zr = z + r0 * K;
                    float *xb = cur + b * D;
                    double l2 = 0.0;
                    for (size_t i = 0; i < D; i++) {
                        const double d = (double)xb[i] - x0[i];
                        l2 += d * d;
                    }
                    const double loss = zoo_loss(a, b, zr, l2, cc[b]);
                    if (it % every == 0) {
                        if (loss > prev[b] * 0.9999) {
                            run[b] = 0;
                            r0 += R;
                            continue;
                        }
                        prev[b] = loss;
                    }
                    out->iterations[b]++;
                    if (zoo_hit(a, b, zr)) {
                        found[b] = 1;
                        if (l2 < obest[b]) {
                            obest[b] = l2;
                            memcpy(out->adversarial + b * D, xb, D * sizeof(float));
                        }
                    }
                    // Coordinate ADAM (ART: beta1 0.9, beta2 0.999, eps 1e-8).
                    const int *cj = coords + j * P;
                    for (size_t q = 0; q < P; q++) {
                        const int i = cj[q];
                        const float *ep = e + (1 + 2 * q) * D, *em = ep + D;
                        double l2p = l2, l2m = l2;
                        const double dp = (double)ep[i] - x0[i], dm = (double)em[i] - x0[i],
                                     d0 = (double)xb[i] - x0[i];
                        l2p += dp * dp - d0 * d0;
                        l2m += dm * dm - d0 * d0;
                        const double fp = zoo_loss(a, b, zr + (1 + 2 * q) * K, l2p, cc[b]);
                        const double fm = zoo_loss(a, b, zr + (2 + 2 * q) * K, l2m, cc[b]);
                        const double g = (fp - fm) / (2.0 * h);
                        const size_t k = b * D + (size_t)i;
                        m1[k] = (float)(0.9 * m1[k] + 0.1 * g);
                        m2[k] = (float)(0.999 * m2[k] + 0.001 * g * g);
                        const int t = ++tcount[k];
                        const double mh = m1[k] / (1.0 - pow(0.9, t));
                        const double vh = m2[k] / (1.0 - pow(0.999, t));
                        double v = (double)xb[i] - a->p.learning_rate * mh / (sqrt(vh) + 1e-8);
                        if (a->has_range)
                            v = v < a->lo ? a->lo : (v > a->hi ? a->hi : v);
                        xb[i] = (float)v;
                    }
                    r0 += R;
                }
            }
            if (st == RR_OK)
                st = rr__atk_poll(a, 1.0);
        }
        if (st != RR_OK)
            break;
        // The final iterate counts too.
        st = rr__atk_forward(a, cur, B, z);
        if (st != RR_OK)
            break;
        for (size_t b = 0; b < B; b++) {
            double l2 = 0.0;
            for (size_t i = 0; i < D; i++) {
                const double d = (double)cur[b * D + i] - a->x0[b * D + i];
                l2 += d * d;
            }
            if (zoo_hit(a, b, z + b * K)) {
                found[b] = 1;
                if (l2 < obest[b]) {
                    obest[b] = l2;
                    memcpy(out->adversarial + b * D, cur + b * D, D * sizeof(float));
                }
            }
            if (found[b]) {
                upper[b] = fmin(upper[b], cc[b]);
                if (upper[b] < 1e9)
                    cc[b] = (lower[b] + upper[b]) / 2;
            } else {
                lower[b] = fmax(lower[b], cc[b]);
                cc[b] = upper[b] < 1e9 ? (lower[b] + upper[b]) / 2 : cc[b] * 10;
            }
        }
    }
out:
    rr_aligned_free(cur);
    rr_aligned_free(m1);
    rr_aligned_free(m2);
    rr_aligned_free(ev);
    rr_aligned_free(z);
    rr_aligned_free(coords);
    rr_aligned_free(tcount);
    rr_aligned_free(dbl);
    rr_aligned_free(run);
    return st;
}
