// JSMA (math.md, "Attacks"), after torchattacks' JSMA with the saliency map on probabilities:
// per iteration the pair of features (p, q) maximising alpha * |beta| with alpha > 0 and
// beta < 0 (theta > 0; theta < 0: alpha < 0, beta > 0), alpha and beta being the sums over the
// pair of the target's probability gradient and of the other classes', both penalised
// outside the search domain as torchattacks does; both features move by theta, the point is
// clipped to input_range and they leave the domain. Untargeted runs aim at (label + 1) mod K
// as torchattacks does. A sample stops at the target, after ceil(gamma * D / 2) iterations
// (or max_iter), when the domain is empty, or when no pair satisfies the conditions
// (torchattacks would then move feature 0 twice; that is not an attack step).
// Batched: one Jacobian pass for the running samples per iteration; the pair search is
// O(D^2) time and O(D) memory per sample, OpenMP across samples.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

rr_status rr__attack_jsma(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const double theta = a->p.theta;
    const bool inc = theta > 0;
    const int max_it = a->p.max_iter > 0 ? a->p.max_iter : (int)ceil((double)D * a->p.gamma / 2.0);
    rr_attack_result *out = a->out;
    if (K > 256)
        return rr_error_set(a->err, RR_EUNSUPPORTED, "attack", "jsma handles up to 256 classes");
    float *xs = rr__atk_alloc(a, B * D), *J = rr__atk_alloc(a, B * K * D);
    float *z = rr__atk_alloc(a, B * K), *tg = rr__atk_alloc(a, B * 2 * D);
    unsigned char *dom = (unsigned char *)rr__atk_alloc(a, B * D / 4 + 1);
    size_t *act = (size_t *)rr__atk_alloc(a, 2 * B);
    int64_t *target = (int64_t *)rr__atk_alloc(a, 2 * B);
    unsigned char *run = (unsigned char *)rr__atk_alloc(a, B);
    rr_status st = (xs && J && z && tg && dom && act && target && run) ? RR_OK : RR_ENOMEM;
    if (st != RR_OK)
        goto out;
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    const float span = a->has_range ? a->hi - a->lo : 0.0f;
    for (size_t b = 0; b < B; b++) {
        target[b] = a->targets ? a->targets[b] : (a->labels[b] + 1) % (int64_t)K;
        run[b] = 1;
        out->iterations[b] = 0;
        for (size_t i = 0; i < D; i++) {
            const float v = a->x0[b * D + i];
            dom[b * D + i] =
                !a->has_range || (inc ? v < a->lo + 0.99f * span : v > a->lo + 0.01f * span);
        }
    }
    st = rr__atk_forward(a, a->x0, B, z);
    if (st != RR_OK)
        goto out;
    a->progress_total = max_it;
    for (int it = 0;; it++) {
        size_t n = 0;
        for (size_t b = 0; b < B; b++) {
            if (!run[b])
                continue;
            size_t left = 0;
            for (size_t i = 0; i < D; i++)
                left += dom[b * D + i];
            if (it >= max_it || left == 0 || rr__atk_argmax(z + b * K, (int)K) == target[b])
                run[b] = 0;
            else
                act[n++] = b;
        }
        if (n == 0)
            break;
        for (size_t j = 0; j < n; j++)
            memcpy(xs + j * D, out->adversarial + act[j] * D, D * sizeof(float));
        st = rr__atk_jacobian(a, xs, n, J, z); // z: rows of the running samples
        if (st != RR_OK)
            break;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t j = 0; j < n; j++) {
            const size_t b = act[j];
            const float *Jb = J + j * K * D, *zb = z + j * K;
            const int64_t t = target[b];
            // Probabilities and the gradients of p_t and of sum_{k != t} p_k:
            // dp_k/dx = p_k (J_k - sum_j p_j J_j).
            double p[256], mx = zb[0], sum = 0.0;
            const size_t KK = K;
            for (size_t k = 0; k < KK; k++)
                mx = zb[k] > mx ? zb[k] : mx;
            for (size_t k = 0; k < KK; k++)
                sum += (p[k] = exp(zb[k] - mx));
            for (size_t k = 0; k < KK; k++)
                p[k] /= sum;
            float *ta = tg + b * 2 * D, *tb = ta + D;
            double amax = 0.0, bmax = 0.0;
            for (size_t i = 0; i < D; i++) {
                double mean = 0.0;
                for (size_t k = 0; k < KK; k++)
                    mean += p[k] * Jb[k * D + i];
                double gt = 0.0, go = 0.0;
                for (size_t k = 0; k < KK; k++) {
                    const double gk = p[k] * (Jb[k * D + i] - mean);
                    if ((int64_t)k == t)
                        gt = gk;
                    else
                        go += gk;
                }
                ta[i] = (float)gt;
                tb[i] = (float)go;
                amax = fabs(gt) > amax ? fabs(gt) : amax;
                bmax = fabs(go) > bmax ? fabs(go) : bmax;
            }
            const unsigned char *db = dom + b * D;
            for (size_t i = 0; i < D; i++) {
                const double coef = db[i] ? 0.0 : (inc ? 2.0 : -2.0);
                ta[i] = (float)(ta[i] - coef * amax);
                tb[i] = (float)(tb[i] + coef * bmax);
            }
            double best = 0.0;
            size_t bp = 0, bq = 0;
            bool any = false;
            for (size_t pi = 0; pi < D; pi++) {
                const float ap = ta[pi], bpv = tb[pi];
                for (size_t q = pi + 1; q < D; q++) {
                    const float al = ap + ta[q], be = bpv + tb[q];
                    if (inc ? !(al > 0.0f && be < 0.0f) : !(al < 0.0f && be > 0.0f))
                        continue;
                    const double s = fabs((double)al) * fabs((double)be);
                    if (!any || s > best) {
                        best = s;
                        bp = pi;
                        bq = q;
                        any = true;
                    }
                }
            }
            if (!any) {
                run[b] = 0;
                continue;
            }
            float *xb = out->adversarial + b * D;
            xb[bp] = (float)(xb[bp] + theta);
            xb[bq] = (float)(xb[bq] + theta);
            rr__atk_clip(a, xb, D);
            dom[b * D + bp] = dom[b * D + bq] = 0;
            out->iterations[b] = it + 1;
        }
        if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
            break;
        size_t m2 = 0;
        for (size_t j = 0; j < n; j++)
            if (run[act[j]]) {
                act[m2] = act[j];
                memcpy(xs + m2 * D, out->adversarial + act[j] * D, D * sizeof(float));
                m2++;
            }
        if (m2 == 0)
            break;
        st = rr__atk_forward(a, xs, m2, J);
        if (st != RR_OK)
            break;
        for (size_t j = 0; j < m2; j++)
            memcpy(z + act[j] * K, J + j * K, K * sizeof(float));
    }
out:
    rr_aligned_free(xs);
    rr_aligned_free(J);
    rr_aligned_free(z);
    rr_aligned_free(tg);
    rr_aligned_free(dom);
    rr_aligned_free(act);
    rr_aligned_free(target);
    rr_aligned_free(run);
    return st;
}
