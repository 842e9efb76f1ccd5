// DeepFool (math.md, "Attacks"), l2 after the LTS4 reference code and linf after Foolbox's
// LinfDeepFool, batched: each iteration takes the exact Jacobian of all running samples in one
// pass and picks, per sample, the closest linearised boundary among the candidate classes.
//
// The class left is the label c; the candidates are c and the (candidates - 1) other classes
// with the largest logits at x0 (LTS4's top classes when c is the prediction). Per step, with
// w_k = grad z_k - grad z_c and f_k = z_k - z_c over candidates k != c (classes with w_k = 0
// are skipped): l2 pert_k = |f_k| / ||w_k||_2, r = (pert + 1e-4) w / ||w||_2; linf
// pert_k = |f_k| / ||w_k||_1, r = (pert + 1e-4) sign(w). Then r_tot += r and the iterate is
// clip(x0 + (1 + overshoot) r_tot). A sample stops when its prediction leaves c, after
// max_iter steps, or when no candidate has a non-zero w.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

rr_status rr__attack_deepfool(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const int C = a->p.candidates;
    const bool linf = a->p.norm == RR_NORM_LINF;
    const double os = a->p.overshoot;
    rr_attack_result *out = a->out;
    float *rtot = rr__atk_alloc(a, B * D), *xs = rr__atk_alloc(a, B * D);
    float *J = rr__atk_alloc(a, B * K * D), *z = rr__atk_alloc(a, B * K);
    int *cand = (int *)rr__atk_alloc(a, B * (size_t)C);
    size_t *act = (size_t *)rr__atk_alloc(a, 2 * B); // size_t fits in two floats
    unsigned char *done = (unsigned char *)rr__atk_alloc(a, B);
    rr_status st = (rtot && xs && J && z && cand && act && done) ? RR_OK : RR_ENOMEM;
    if (st != RR_OK)
        goto out;
    memset(rtot, 0, B * D * sizeof(float));
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    memset(done, 0, B);
    // Candidates from the logits at x0.
    st = rr__atk_forward(a, a->x0, B, z);
    if (st != RR_OK)
        goto out;
    for (size_t b = 0; b < B; b++) {
        const float *zb = z + b * K;
        int *cb = cand + b * (size_t)C;
        const int c = (int)a->labels[b];
        cb[0] = c;
        for (int n = 1; n < C; n++) { // the next largest logit (C and K are small)
            int best = -1;
            for (int k = 0; k < (int)K; k++) {
                bool taken = false;
                for (int q = 0; q < n; q++)
                    taken = taken || cb[q] == k;
                if (!taken && (best < 0 || zb[k] > zb[best]))
                    best = k;
            }
            cb[n] = best;
        }
        out->iterations[b] = 0;
    }
    a->progress_total = a->p.max_iter;
    for (int it = 0;; it++) {
        // Running samples: prediction still c.
        size_t n = 0;
        for (size_t b = 0; b < B; b++) {
            if (done[b])
                continue;
            if (rr__atk_argmax(z + b * K, (int)K) != a->labels[b] || it == a->p.max_iter)
                done[b] = 1;
            else
                act[n++] = b;
        }
        if (n == 0)
            break;
        for (size_t j = 0; j < n; j++)
            memcpy(xs + j * D, out->adversarial + act[j] * D, D * sizeof(float));
        st = rr__atk_jacobian(a, xs, n, J, NULL);
        if (st != RR_OK)
            break;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t j = 0; j < n; j++) {
            const size_t b = act[j];
            const float *Jb = J + j * K * D;
            const int *cb = cand + b * (size_t)C;
            const int c = cb[0];
            const float *zb = z + b * K; // logits of this sample at the current iterate
            double best = INFINITY;
            int kbest = -1;
            for (int q = 1; q < C; q++) {
                const int k = cb[q];
                double nw = 0.0;
                for (size_t i = 0; i < D; i++) {
                    const double w = (double)Jb[k * D + i] - Jb[c * D + i];
                    nw += linf ? fabs(w) : w * w;
                }
                if (!linf)
                    nw = sqrt(nw);
                if (nw == 0.0)
                    continue;
                const double pert = fabs((double)zb[k] - zb[c]) / nw;
                if (pert < best) {
                    best = pert;
                    kbest = k;
                }
            }
            if (kbest < 0) {
                done[b] = 1;
                continue;
            }
            float *rb = rtot + b * D, *xb = out->adversarial + b * D;
            const float *x0 = a->x0 + b * D;
            double nw = 0.0;
            if (!linf) {
                for (size_t i = 0; i < D; i++) {
                    const double w = (double)Jb[kbest * D + i] - Jb[c * D + i];
                    nw += w * w;
                }
                nw = sqrt(nw);
            }
            for (size_t i = 0; i < D; i++) {
                const double w = (double)Jb[kbest * D + i] - Jb[c * D + i];
                const double r = linf ? (best + 1e-4) * (w > 0 ? 1.0 : (w < 0 ? -1.0 : 0.0))
                                      : (best + 1e-4) * w / nw;
                rb[i] = (float)((double)rb[i] + r);
                xb[i] = (float)((double)x0[i] + (1.0 + os) * (double)rb[i]);
            }
            rr__atk_clip(a, xb, D);
            out->iterations[b] = it + 1;
        }
        if (a->p.trace)
            memcpy(a->p.trace + (size_t)it * B * D, rtot, B * D * sizeof(float));
        if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
            break;
        // Logits at the new iterates of the samples that moved.
        size_t m2 = 0;
        for (size_t j = 0; j < n; j++)
            if (!done[act[j]]) {
                act[m2] = act[j];
                memcpy(xs + m2 * D, out->adversarial + act[j] * D, D * sizeof(float));
                m2++;
            }
        if (m2 == 0)
            break;
        st = rr__atk_forward(a, xs, m2, J); // J is free: reuse it for the logits
        if (st != RR_OK)
            break;
        for (size_t j = 0; j < m2; j++)
            memcpy(z + act[j] * K, J + j * K, K * sizeof(float));
    }
out:
    rr_aligned_free(rtot);
    rr_aligned_free(xs);
    rr_aligned_free(J);
    rr_aligned_free(z);
    rr_aligned_free(cand);
    rr_aligned_free(act);
    rr_aligned_free(done);
    return st;
}
