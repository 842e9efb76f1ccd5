// APGD (math.md, "Attacks"): Croce & Hein 2020, "Reliable evaluation of adversarial robustness
// with an ensemble of diverse parameter-free attacks", as AutoAttack's APGDAttack (apgd_ce, the
// cross-entropy) and APGDAttack_targeted (apgd_t, the targeted DLR loss), linf and l2.
//
// A run: start at x + eps * t / ||t||_p (clipped to input_range), step size eta = 2 eps, a plain
// first step and momentum 0.75 after it; at the checkpoints w_j = ceil(p_j * steps) eta is
// halved and the iterate moves back to the best point (with its gradient) when fewer than
// rho = 0.75 of the steps since the last checkpoint increased the loss, or when eta was not
// halved at the last checkpoint and the best loss has not improved since. Where math.md is
// precise it wins over the published code: checkpoints are ceil(p_j * steps) (the code's
// integer intervals agree with them at steps = 100), the oscillation test is strict ("fewer
// than", the paper; the code uses <=), and the first step's loss is compared with the start's
// (the code compares it with an unwritten zero). Elsewhere the code is followed: the momentum
// term after a move back is x_best - x^(i-1), the point before the last step.
//
// Runs: apgd_ce runs `restarts` times, apgd_t `restarts` times for each of its n = min(9, K-1)
// targets (the classes ranked 2nd..(n+1)th by the clean logits); each run attacks only the
// samples not yet misclassified (a sample misclassified at the clean input is not attacked).
// A sample's result is its last misclassified iterate, else the highest-loss point of all runs.
//
// Memory: every buffer is allocated before the first run; the step loop allocates nothing.
// Threads: one batched gradient per step for the running samples, OpenMP over samples between
// them; each random start comes from a (seed, run, sample index) stream, so results depend
// neither on the thread count nor on which other samples are still being attacked.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

#define MOMENTUM   0.75 // alpha of the momentum step
#define RHO        0.75 // the oscillation threshold
#define MAX_CHECKS 16   // p_j reaches 1 after 9 checkpoints

// ---- checkpoints ----

// The checkpoints w_1 < w_2 < ... <= steps of math.md; returns how many. p_j is kept in
// hundredths so that ceil(p_j * steps) is exact (0.22 + 0.19 is not 0.41 in binary).
// Checkpoints that coincide for small `steps` count once.
static int checkpoints(int steps, int *at)
{
    long q_prev = 0, q = 22, last = 0;
    int n = 0;
    for (;;) {
        const long w = (q * steps + 99) / 100;
        if (w > steps || n == MAX_CHECKS)
            break;
        if (w > last)
            at[n++] = (int)(last = w);
        const long gap = q - q_prev - 3 > 6 ? q - q_prev - 3 : 6;
        q_prev = q;
        q += gap;
    }
    return n;
}

// ---- losses ----

typedef struct run {
    const rr__atk *a;
    bool dlr;             // targeted DLR loss, else cross-entropy
    const int64_t *y, *t; // [n] labels and targets (dlr) of the rows
    float *loss;          // [n] loss at the rows' points
    bool *wrong;          // [n] argmax of the logits != label
} run;

// The m = min(4, K) largest logits' indices into top, descending (ties: lower index first).
static void top4(const float *z, int K, int *top)
{
    const int m = K < 4 ? K : 4;
    int n = 0;
    for (int k = 0; k < K; k++) {
        if (n == m && !(z[k] > z[top[m - 1]]))
            continue; // not among the m largest so far
        int p = n < m ? n++ : m - 1;
        while (p > 0 && z[k] > z[top[p - 1]]) {
            top[p] = top[p - 1];
            p--;
        }
        top[p] = k;
    }
}

// Seeds of the batched backward: d loss / d z of each row, and the loss and misclassification
// at its logits z [nb, K]. Cross-entropy: l = logsumexp(z) - z_y, dl/dz = p - e_y. Targeted DLR
// (math.md): l = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12), dl/dz = (e_t - e_y) / den
// - l / den * (e_pi1 - (e_pi3 + e_pi4) / 2); K = 3 uses z_pi1 - z_pi3, K = 2 the margin z_t - z_y.
static void seeds(void *ctx, size_t b0, size_t nb, const float *z, float *sd)
{
    const run *r = ctx;
    const int K = r->a->K;
    for (size_t j = 0; j < nb; j++) {
        const size_t b = b0 + j;
        const float *zb = z + j * (size_t)K;
        float *s = sd + j * (size_t)K;
        const int64_t y = r->y[b];
        r->wrong[b] = rr__atk_argmax(zb, K) != y;
        if (!r->dlr) {
            double mx = zb[0], sum = 0.0;
            for (int k = 1; k < K; k++)
                mx = zb[k] > mx ? zb[k] : mx;
            for (int k = 0; k < K; k++)
                sum += exp((double)zb[k] - mx);
            r->loss[b] = (float)(mx + log(sum) - zb[y]);
            for (int k = 0; k < K; k++)
                s[k] = (float)(exp((double)zb[k] - mx) / sum - (k == y ? 1.0 : 0.0));
            continue;
        }
        const int64_t t = r->t[b];
        const double num = (double)zb[t] - (double)zb[y];
        if (K == 2) {
            r->loss[b] = (float)num;
            for (int k = 0; k < K; k++)
                s[k] = (float)((k == t) - (k == y));
            continue;
        }
        int top[4];
        top4(zb, K, top);
        // den and its gradient: +1 at pi1, -1/2 at pi3 and pi4 (K = 3: -1 at pi3).
        const double w3 = K == 3 ? 1.0 : 0.5;
        double den = (double)zb[top[0]] - w3 * zb[top[2]];
        if (K > 3)
            den -= w3 * zb[top[3]];
        den += 1e-12;
        const double l = num / den;
        r->loss[b] = (float)l;
        for (int k = 0; k < K; k++) {
            double v = ((k == t) - (k == y)) / den;
            if (k == top[0])
                v -= l / den;
            if (k == top[2] || (K > 3 && k == top[3]))
                v += w3 * l / den;
            s[k] = (float)v;
        }
    }
}

// ---- steps ----

static double box(const rr__atk *a, double v)
{
    if (!a->has_range)
        return v;
    return v < a->lo ? a->lo : (v > a->hi ? a->hi : v);
}

static double ball(double v, double x, double eps)
{
    return v < x - eps ? x - eps : (v > x + eps ? x + eps : v);
}

// v rounded to a float no farther from x than v is (an ulp towards x when rounding to nearest
// went outwards), so that rounding never takes a point out of the eps-ball, in either norm.
static float round_in(double v, float x)
{
    const float f = (float)v;
    return fabs((double)f - (double)x) > fabs(v - (double)x) ? nextafterf(f, x) : f;
}

// One APGD step of a sample in place (AutoAttack's attack_single_run, linf):
//   z = P(x_k + eta sign(g)),  x_{k+1} = P(x_k + mom (z - x_k) + (1 - mom)(x_k - x_{k-1}))
// with P the projection onto the eps-ball and input_range; xo holds x_{k-1} and becomes x_k.
static void step_linf(const rr__atk *a, float *xa, float *xo, const float *x, const float *g,
                      double eta, double mom)
{
    const double eps = a->p.epsilon;
    for (size_t i = 0; i < a->D; i++) {
        const double cur = xa[i], g2 = cur - (double)xo[i];
        const double s = g[i] > 0 ? 1.0 : (g[i] < 0 ? -1.0 : 0.0);
        const double z = box(a, ball(cur + eta * s, x[i], eps));
        const double v = box(a, ball(cur + (z - cur) * mom + g2 * (1.0 - mom), x[i], eps));
        xo[i] = xa[i];
        xa[i] = round_in(v, x[i]);
    }
}

// Coordinate i of the l2 step's momentum point v = x_k + mom (z - x_k) + (1 - mom)(x_k - x_{k-1}),
// z = P(x_k + gs g) with P's factor f1; recomputed in each pass rather than stored.
static inline double l2_blend(const rr__atk *a, double cur, double old, double x, double g,
                              double gs, double f1, double mom)
{
    const double z = box(a, x + (cur + gs * g - x) * f1);
    return cur + (z - cur) * mom + (cur - old) * (1.0 - mom);
}

// The l2 step: the same with z = P(x_k + eta g / (||g|| + 1e-12)) and the code's projection
// P(v) = box(x + (v - x) / (||v - x|| + 1e-12) * min(eps, ||v - x||)).
static void step_l2(const rr__atk *a, float *xa, float *xo, const float *x, const float *g,
                    double eta, double mom)
{
    const size_t D = a->D;
    const double eps = a->p.epsilon;
    double gn = 0.0;
    for (size_t i = 0; i < D; i++)
        gn += (double)g[i] * g[i];
    const double gs = eta / (sqrt(gn) + 1e-12);
    double n1 = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double d = (double)xa[i] + gs * g[i] - x[i];
        n1 += d * d;
    }
    n1 = sqrt(n1);
    const double f1 = fmin(eps, n1) / (n1 + 1e-12);
    double n2 = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double d = l2_blend(a, xa[i], xo[i], x[i], g[i], gs, f1, mom) - x[i];
        n2 += d * d;
    }
    n2 = sqrt(n2);
    const double f2 = fmin(eps, n2) / (n2 + 1e-12);
    for (size_t i = 0; i < D; i++) {
        const double v = l2_blend(a, xa[i], xo[i], x[i], g[i], gs, f1, mom);
        xo[i] = xa[i];
        xa[i] = round_in(box(a, x[i] + (v - x[i]) * f2), x[i]);
    }
}

// The start of sample b in run `r`: x + eps t / (||t||_p + 1e-12), t ~ U(-1, 1)^D (linf) or
// N(0, I) (l2), clipped to input_range; t from the stream of (seed, run, the sample's index).
static void random_start(const rr__atk *a, size_t b, int r, float *xb)
{
    const size_t D = a->D;
    const float *x = a->x0 + b * D;
    const double eps = a->p.epsilon;
    rr_rng rng;
    const uint64_t stream = rr__atk_stream(a, b);
    rr_rng_init(&rng, a->p.seed + 0xD1B54A32D192ED03ull * (uint64_t)(r + 1), stream);
    double nt = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double t =
            a->p.norm == RR_NORM_LINF ? 2.0 * rr_rng_uniform(&rng) - 1.0 : rr_rng_normal(&rng);
        xb[i] = (float)t; // the norm is of the float values, so |f t_i| <= eps holds exactly
        nt = a->p.norm == RR_NORM_LINF ? fmax(nt, fabs((double)xb[i])) : nt + (double)xb[i] * xb[i];
    }
    if (a->p.norm == RR_NORM_L2)
        nt = sqrt(nt);
    const double f = eps / (nt + 1e-12);
    for (size_t i = 0; i < D; i++)
        xb[i] = round_in(box(a, x[i] + f * xb[i]), x[i]);
}

// ---- the attack ----

// Scratch, carved from one allocation: [B, D] points, [B, K] logits, [B] per-sample state.
typedef struct bufs {
    float *xa, *xo, *xb, *g, *gb; // [B, D] iterate, previous, best, gradients of the rows
    float *zc;                    // [B, K] clean logits
    int *order;                   // [B, K] classes by clean logit, descending (apgd_t)
    int64_t *ys, *ts;             // [B] labels and targets of the rows
    size_t *idx;                  // [B] sample index of each row
    float *loss, *best, *prev, *last_best, *best_any; // [B]
    double *eta;                                      // [B]
    int *ups;                                         // [B] loss increases since a checkpoint
    bool *wrong, *found, *reduced, *done;             // [B]
} bufs;

static void *carve(rr__atk *a, bufs *s, size_t B, size_t D, size_t K)
{
    const rr__carve_part parts[] = {RR__CARVE_PART(s->xa, B * D),    RR__CARVE_PART(s->xo, B * D),
                                    RR__CARVE_PART(s->xb, B * D),    RR__CARVE_PART(s->g, B * D),
                                    RR__CARVE_PART(s->gb, B * D),    RR__CARVE_PART(s->zc, B * K),
                                    RR__CARVE_PART(s->order, B * K), RR__CARVE_PART(s->ys, B),
                                    RR__CARVE_PART(s->ts, B),        RR__CARVE_PART(s->idx, B),
                                    RR__CARVE_PART(s->eta, B),       RR__CARVE_PART(s->loss, B),
                                    RR__CARVE_PART(s->best, B),      RR__CARVE_PART(s->prev, B),
                                    RR__CARVE_PART(s->last_best, B), RR__CARVE_PART(s->best_any, B),
                                    RR__CARVE_PART(s->ups, B),       RR__CARVE_PART(s->wrong, B),
                                    RR__CARVE_PART(s->found, B),     RR__CARVE_PART(s->reduced, B),
                                    RR__CARVE_PART(s->done, B)};
    return rr__carve(a->err, parts, sizeof parts / sizeof parts[0]);
}

// Row j after a step: a misclassified point is kept (found), the best loss's point and
// gradient are kept, and at a checkpoint (check, len steps since the last) eta halves, back at
// the best point, when the loss oscillated or stalled.
static void keep_row(rr__atk *a, bufs *s, size_t j, bool check, int len)
{
    const size_t D = a->D;
    float *xa = s->xa + j * D, *g = s->g + j * D;
    if (s->wrong[j]) {
        s->found[j] = true;
        memcpy(a->out->adversarial + s->idx[j] * D, xa, D * sizeof(float));
    }
    s->ups[j] += s->loss[j] > s->prev[j];
    s->prev[j] = s->loss[j];
    if (s->loss[j] > s->best[j]) {
        s->best[j] = s->loss[j];
        memcpy(s->xb + j * D, xa, D * sizeof(float));
        memcpy(s->gb + j * D, g, D * sizeof(float));
    }
    if (!check)
        return;
    const bool osc = (double)s->ups[j] < RHO * len;
    const bool stall = !s->reduced[j] && s->last_best[j] >= s->best[j];
    s->reduced[j] = osc || stall;
    s->last_best[j] = s->best[j];
    s->ups[j] = 0;
    if (s->reduced[j]) {
        s->eta[j] *= 0.5;
        memcpy(xa, s->xb + j * D, D * sizeof(float));
        memcpy(g, s->gb + j * D, D * sizeof(float));
    }
}

// One run of `steps` on the n rows compacted into s (idx, ys, ts; xa holds the starts).
// R numbers the run for the trace.
static rr_status one_run(rr__atk *a, bufs *s, size_t n, int R, const int *at, int nchk)
{
    const size_t B = a->B, D = a->D;
    const int steps = a->p.steps;
    const double eps = a->p.epsilon;
    float *adv = a->out->adversarial;
    run ctx = {.a = a,
               .dlr = a->p.name == RR_ATTACK_APGD_T,
               .y = s->ys,
               .t = s->ts,
               .loss = s->loss,
               .wrong = s->wrong};
    rr_status st = rr__atk_grad_seeded(a, s->xa, n, seeds, &ctx, s->g, NULL);
    if (st != RR_OK)
        return st;
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++) {
        memcpy(s->xb + j * D, s->xa + j * D, D * sizeof(float));
        memcpy(s->gb + j * D, s->g + j * D, D * sizeof(float));
        memcpy(s->xo + j * D, s->xa + j * D, D * sizeof(float));
        s->best[j] = s->prev[j] = s->last_best[j] = s->loss[j];
        s->eta[j] = 2.0 * eps;
        s->ups[j] = 0;
        s->reduced[j] = true; // no "eta kept" test at the first checkpoint (the code's init)
        s->found[j] = s->wrong[j];
        if (s->wrong[j])
            memcpy(adv + s->idx[j] * D, s->xa + j * D, D * sizeof(float));
    }
    int c = 0, last_w = 0;
    for (int i = 0; i < steps && st == RR_OK; i++) {
        const double mom = i > 0 ? MOMENTUM : 1.0;
        const size_t row = (size_t)R * (size_t)steps + (size_t)i;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++) {
            if (a->hooks.trace_eta)
                a->hooks.trace_eta[row * B + s->idx[j]] = (float)s->eta[j];
            if (a->p.norm == RR_NORM_LINF)
                step_linf(a, s->xa + j * D, s->xo + j * D, a->x0 + s->idx[j] * D, s->g + j * D,
                          s->eta[j], mom);
            else
                step_l2(a, s->xa + j * D, s->xo + j * D, a->x0 + s->idx[j] * D, s->g + j * D,
                        s->eta[j], mom);
            if (a->hooks.trace)
                memcpy(a->hooks.trace + (row * B + s->idx[j]) * D, s->xa + j * D,
                       D * sizeof(float));
        }
        st = rr__atk_grad_seeded(a, s->xa, n, seeds, &ctx, s->g, NULL);
        if (st != RR_OK)
            break;
        const bool check = c < nchk && i + 1 == at[c];
        const int len = check ? at[c] - last_w : 0;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++)
            keep_row(a, s, j, check, len);
        if (check)
            last_w = at[c++];
        st = rr__atk_poll(a, 1.0);
    }
    return st;
}

rr_status rr__attack_apgd(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const bool dlr = a->p.name == RR_ATTACK_APGD_T;
    const int steps = a->p.steps, restarts = a->p.restarts;
    const int targets = dlr ? (a->K - 1 < 9 ? a->K - 1 : 9) : 1;
    rr_attack_result *out = a->out;
    int at[MAX_CHECKS];
    const int nchk = checkpoints(steps, at);
    bufs s = {0};
    void *block = carve(a, &s, B, D, K);
    if (!block)
        return RR_ENOMEM;
    // The clean logits: misclassified samples are not attacked; apgd_t ranks its targets.
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    rr_status st = rr__atk_forward(a, a->x0, B, s.zc);
    if (st != RR_OK)
        goto done;
    for (size_t b = 0; b < B; b++) {
        const float *z = s.zc + b * K;
        out->iterations[b] = 0;
        s.done[b] = rr__atk_argmax(z, (int)K) != a->labels[b];
        s.best_any[b] = -INFINITY;
        if (dlr)
            rr__atk_rank(z, (int)K, s.order + b * K);
    }
    a->progress_total = (double)targets * restarts * steps;
    for (int tg = 0; tg < targets && st == RR_OK; tg++) {
        for (int r = 0; r < restarts && st == RR_OK; r++) {
            const int R = tg * restarts + r;
            const size_t n = rr__atk_active(s.done, false, B, s.idx);
            if (n == 0) {
                st = rr__atk_poll(a, steps);
                continue;
            }
#pragma omp parallel for schedule(static)
            for (size_t j = 0; j < n; j++) {
                const size_t b = s.idx[j];
                s.ys[j] = a->labels[b];
                s.ts[j] = dlr ? s.order[b * K + (size_t)tg + 1] : -1;
                if (a->hooks.start) {
                    memcpy(s.xa + j * D, a->hooks.start + b * D, D * sizeof(float));
                    rr__atk_clip(a, s.xa + j * D, D);
                } else {
                    random_start(a, b, R, s.xa + j * D);
                }
            }
            st = one_run(a, &s, n, R, at, nchk);
            if (st != RR_OK)
                break;
            for (size_t j = 0; j < n; j++) {
                const size_t b = s.idx[j];
                out->iterations[b] += steps;
                if (s.found[j]) {
                    s.done[b] = true;
                } else if (s.best[j] > s.best_any[b]) {
                    s.best_any[b] = s.best[j];
                    memcpy(out->adversarial + b * D, s.xb + j * D, D * sizeof(float));
                }
            }
        }
    }
done:
    rr_aligned_free(block);
    return st;
}
