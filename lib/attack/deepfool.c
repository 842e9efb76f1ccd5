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

// Scratch, carved from one block.
typedef struct df {
    rr__atk *a;
    float *rtot, *xs; // [B, D] accumulated step per sample, iterates of the running rows
    float *J, *z;     // [B, K, D] Jacobians of the rows, [B, K] logits per sample
    int *cand;        // [B, C] the label, then the candidates
    int *order;       // [K] classes by logit (for the candidates)
    size_t *act;      // [B] sample of each running row
    bool *done;       // [B]
} df;

static void *carve(df *f, size_t B, size_t D, size_t K, size_t C)
{
    const rr__carve_part parts[] = {RR__CARVE_PART(f->rtot, B * D),  RR__CARVE_PART(f->xs, B * D),
                                    RR__CARVE_PART(f->J, B * K * D), RR__CARVE_PART(f->z, B * K),
                                    RR__CARVE_PART(f->cand, B * C),  RR__CARVE_PART(f->order, K),
                                    RR__CARVE_PART(f->act, B),       RR__CARVE_PART(f->done, B)};
    return rr__carve(f->a->err, parts, sizeof parts / sizeof parts[0]);
}

// Sample b's candidates from its logits at x0: the label, then the C - 1 other classes with the
// largest logits (ties: the lower class first).
static void candidates(df *f, size_t b)
{
    const rr__atk *a = f->a;
    const size_t K = (size_t)a->K;
    const int C = a->p.candidates;
    int *cb = f->cand + b * (size_t)C;
    cb[0] = (int)a->labels[b];
    rr__atk_rank(f->z + b * K, (int)K, f->order);
    for (size_t k = 0, n = 1; n < (size_t)C; k++)
        if (f->order[k] != cb[0])
            cb[n++] = f->order[k];
}

// Row j's step toward the closest linearised boundary among its candidates; false when no
// candidate has a non-zero w (the sample stops).
static bool step_row(df *f, size_t j, int it)
{
    rr__atk *a = f->a;
    const size_t D = a->D, K = (size_t)a->K, b = f->act[j];
    const int C = a->p.candidates;
    const bool linf = a->p.norm == RR_NORM_LINF;
    const float *Jb = f->J + j * K * D;
    const int *cb = f->cand + b * (size_t)C;
    const int c = cb[0];
    const float *zb = f->z + b * K; // logits of this sample at the current iterate
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
    if (kbest < 0)
        return false;
    float *rb = f->rtot + b * D, *xb = a->out->adversarial + b * D;
    const float *x0 = a->x0 + b * D;
    const double os = a->p.overshoot;
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
        const double r =
            linf ? (best + 1e-4) * (w > 0 ? 1.0 : (w < 0 ? -1.0 : 0.0)) : (best + 1e-4) * w / nw;
        rb[i] = (float)((double)rb[i] + r);
        xb[i] = (float)((double)x0[i] + (1.0 + os) * (double)rb[i]);
    }
    rr__atk_clip(a, xb, D);
    a->out->iterations[b] = it + 1;
    return true;
}

// The running samples at iteration it (prediction still the label, it < max_iter) into act.
static size_t running(df *f, int it)
{
    const rr__atk *a = f->a;
    const size_t K = (size_t)a->K;
    size_t n = 0;
    for (size_t b = 0; b < a->B; b++) {
        if (f->done[b])
            continue;
        if (rr__atk_argmax(f->z + b * K, (int)K) != a->labels[b] || it == a->p.max_iter)
            f->done[b] = true;
        else
            f->act[n++] = b;
    }
    return n;
}

// Logits at the new iterates of the n rows' samples that moved; *moved gets their number.
static rr_status moved_logits(df *f, size_t n, size_t *moved)
{
    rr__atk *a = f->a;
    size_t m2 = 0;
    for (size_t j = 0; j < n; j++)
        if (!f->done[f->act[j]])
            f->act[m2++] = f->act[j];
    *moved = m2;
    if (m2 == 0)
        return RR_OK;
    return rr__atk_logits_at(a, f->act, m2, f->xs, f->J, f->z); // J is free: scratch
}

rr_status rr__attack_deepfool(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    df f = {.a = a};
    void *block = carve(&f, B, D, K, (size_t)a->p.candidates);
    if (!block)
        return RR_ENOMEM;
    memset(f.rtot, 0, B * D * sizeof(float));
    memcpy(a->out->adversarial, a->x0, B * D * sizeof(float));
    memset(f.done, 0, B);
    // Candidates from the logits at x0.
    rr_status st = rr__atk_forward(a, a->x0, B, f.z);
    if (st != RR_OK)
        goto out;
    for (size_t b = 0; b < B; b++) {
        candidates(&f, b);
        a->out->iterations[b] = 0;
    }
    a->progress_total = a->p.max_iter;
    for (int it = 0;; it++) {
        size_t n = running(&f, it);
        if (n == 0)
            break;
        rr__atk_gather(a->out->adversarial, f.act, n, D, f.xs);
        if ((st = rr__atk_jacobian(a, f.xs, n, f.J, NULL)) != RR_OK)
            break;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t j = 0; j < n; j++)
            if (!step_row(&f, j, it))
                f.done[f.act[j]] = true;
        if (a->hooks.trace)
            memcpy(a->hooks.trace + (size_t)it * B * D, f.rtot, B * D * sizeof(float));
        if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
            break;
        if ((st = moved_logits(&f, n, &n)) != RR_OK || n == 0)
            break;
    }
out:
    rr_aligned_free(block);
    return st;
}
