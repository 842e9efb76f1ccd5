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

// Scratch, carved from one block.
typedef struct jsma {
    rr__atk *a;
    float *xs, *J, *z;  // [B, D] rows, [B, K, D] their Jacobians, [B, K] logits
    float *tg;          // [B, 2, D] the saliency terms alpha_i, beta_i per sample
    unsigned char *dom; // [B, D] the search domain
    size_t *act;        // [B] sample of each running row
    int64_t *target;    // [B]
    bool *run;          // [B]
} jsma;

static void *carve(jsma *s, size_t B, size_t D, size_t K)
{
    const rr__carve_part parts[] = {RR__CARVE_PART(s->xs, B * D),  RR__CARVE_PART(s->J, B * K * D),
                                    RR__CARVE_PART(s->z, B * K),   RR__CARVE_PART(s->tg, B * 2 * D),
                                    RR__CARVE_PART(s->dom, B * D), RR__CARVE_PART(s->act, B),
                                    RR__CARVE_PART(s->target, B),  RR__CARVE_PART(s->run, B)};
    return rr__carve(s->a->err, parts, sizeof parts / sizeof parts[0]);
}

// Sample b's target and search domain (the features that can still move by theta).
static void setup(jsma *s, size_t b)
{
    const rr__atk *a = s->a;
    const size_t D = a->D;
    const bool inc = a->p.theta > 0;
    const float span = a->has_range ? a->hi - a->lo : 0.0f;
    s->target[b] = a->targets ? a->targets[b] : (a->labels[b] + 1) % (int64_t)a->K;
    s->run[b] = true;
    a->out->iterations[b] = 0;
    for (size_t i = 0; i < D; i++) {
        const float v = a->x0[b * D + i];
        s->dom[b * D + i] =
            !a->has_range || (inc ? v < a->lo + 0.99f * span : v > a->lo + 0.01f * span);
    }
}

// The running samples at iteration it into act (not at the target, domain not empty, it <
// max_it).
static size_t running(jsma *s, int it, int max_it)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, K = (size_t)a->K;
    size_t n = 0;
    for (size_t b = 0; b < a->B; b++) {
        if (!s->run[b])
            continue;
        size_t left = 0;
        for (size_t i = 0; i < D; i++)
            left += s->dom[b * D + i];
        if (it >= max_it || left == 0 || rr__atk_argmax(s->z + b * K, (int)K) == s->target[b])
            s->run[b] = false;
        else
            s->act[n++] = b;
    }
    return n;
}

// Row j's saliency terms: alpha_i (the target's probability gradient) into ta, beta_i (the
// other classes') into tb, penalised outside the domain.
static void saliency(const jsma *s, size_t j)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, K = (size_t)a->K, b = s->act[j];
    const bool inc = a->p.theta > 0;
    const float *Jb = s->J + j * K * D, *zb = s->z + j * K;
    const int64_t t = s->target[b];
    // Probabilities and the gradients of p_t and of sum_{k != t} p_k:
    // dp_k/dx = p_k (J_k - sum_j p_j J_j).
    double p[256], mx = zb[0], sum = 0.0;
    for (size_t k = 0; k < K; k++)
        mx = zb[k] > mx ? zb[k] : mx;
    for (size_t k = 0; k < K; k++)
        sum += (p[k] = exp(zb[k] - mx));
    for (size_t k = 0; k < K; k++)
        p[k] /= sum;
    float *ta = s->tg + b * 2 * D, *tb = ta + D;
    double amax = 0.0, bmax = 0.0;
    for (size_t i = 0; i < D; i++) {
        double mean = 0.0;
        for (size_t k = 0; k < K; k++)
            mean += p[k] * Jb[k * D + i];
        double gt = 0.0, go = 0.0;
        for (size_t k = 0; k < K; k++) {
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
    const unsigned char *db = s->dom + b * D;
    for (size_t i = 0; i < D; i++) {
        const double coef = db[i] ? 0.0 : (inc ? 2.0 : -2.0);
        ta[i] = (float)(ta[i] - coef * amax);
        tb[i] = (float)(tb[i] + coef * bmax);
    }
}

// Row j's step: the best pair (p, q) moves by theta; false when no pair qualifies.
static bool step_row(jsma *s, size_t j, int it)
{
    rr__atk *a = s->a;
    const size_t D = a->D, b = s->act[j];
    const double theta = a->p.theta;
    const bool inc = theta > 0;
    saliency(s, j);
    const float *ta = s->tg + b * 2 * D, *tb = ta + D;
    double best = 0.0;
    size_t bp = 0, bq = 0;
    bool any = false;
    for (size_t pi = 0; pi < D; pi++) {
        const float ap = ta[pi], bpv = tb[pi];
        for (size_t q = pi + 1; q < D; q++) {
            const float al = ap + ta[q], be = bpv + tb[q];
            if (inc ? !(al > 0.0f && be < 0.0f) : !(al < 0.0f && be > 0.0f))
                continue;
            const double sc = fabs((double)al) * fabs((double)be);
            if (!any || sc > best) {
                best = sc;
                bp = pi;
                bq = q;
                any = true;
            }
        }
    }
    if (!any)
        return false;
    float *xb = a->out->adversarial + b * D;
    xb[bp] = (float)(xb[bp] + theta);
    xb[bq] = (float)(xb[bq] + theta);
    rr__atk_clip(a, xb, D);
    s->dom[b * D + bp] = s->dom[b * D + bq] = 0;
    a->out->iterations[b] = it + 1;
    return true;
}

// Logits at the new points of the n rows' samples still running; *moved gets their number.
static rr_status moved_logits(jsma *s, size_t n, size_t *moved)
{
    rr__atk *a = s->a;
    size_t m2 = 0;
    for (size_t j = 0; j < n; j++)
        if (s->run[s->act[j]])
            s->act[m2++] = s->act[j];
    *moved = m2;
    if (m2 == 0)
        return RR_OK;
    return rr__atk_logits_at(a, s->act, m2, s->xs, s->J, s->z);
}

rr_status rr__attack_jsma(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const int max_it = a->p.max_iter > 0 ? a->p.max_iter : (int)ceil((double)D * a->p.gamma / 2.0);
    if (K > 256)
        return rr_error_set(a->err, RR_EUNSUPPORTED, "attack", "jsma handles up to 256 classes");
    jsma s = {.a = a};
    void *block = carve(&s, B, D, K);
    if (!block)
        return RR_ENOMEM;
    memcpy(a->out->adversarial, a->x0, B * D * sizeof(float));
    for (size_t b = 0; b < B; b++)
        setup(&s, b);
    rr_status st = rr__atk_forward(a, a->x0, B, s.z);
    if (st != RR_OK)
        goto out;
    a->progress_total = max_it;
    for (int it = 0;; it++) {
        size_t n = running(&s, it, max_it);
        if (n == 0)
            break;
        rr__atk_gather(a->out->adversarial, s.act, n, D, s.xs);
        st = rr__atk_jacobian(a, s.xs, n, s.J, s.z); // z: rows of the running samples
        if (st != RR_OK)
            break;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t j = 0; j < n; j++)
            if (!step_row(&s, j, it))
                s.run[s.act[j]] = false;
        if ((st = rr__atk_poll(a, 1.0)) != RR_OK)
            break;
        if ((st = moved_logits(&s, n, &n)) != RR_OK || n == 0)
            break;
    }
out:
    rr_aligned_free(block);
    return st;
}
