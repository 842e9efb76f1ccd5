// Shared state and helpers of the attacks (attack.h): the oracle calls with their counters,
// projections, norms and the per-sample result bookkeeping.
#ifndef RR_ATTACK_IMPL_H
#define RR_ATTACK_IMPL_H

#include <math.h>

#include "attack/attack.h"
#include "core/carve.h"
#include "core/rng.h"

// Test hooks (tests/probe/attack_probe.c drives them; not part of the public API): a start point
// [B, D] replacing PGD's and APGD's random start (restarts must be 1; apgd_t starts every target's
// run there), and a trace [steps, B, D] receiving after every step the iterate (PGD / BIM; rows of
// samples that stopped repeat) or, for DeepFool, the accumulated r_tot before overshoot. APGD
// writes [R * steps, B, D], R = restarts (apgd_ce) or n * restarts (apgd_t, target-major): the
// iterate after each step, before a checkpoint moves it back to the best point; and trace_eta [R *
// steps, B] the step size each step used. Rows of samples not attacked in a run (already
// misclassified) are left as they are in trace and 0 in trace_eta.
// Square: [queries, B, D], the best point after each iteration (restarts must be 1).
// FAB-T: [n_targets * restarts * steps, B, D], the iterate after each step of each run
// (after the backward step), run-major; rows of samples outside a run are left alone.
typedef struct rr__attack_hooks {
    const float *start;
    float *trace;
    float *trace_eta;
} rr__attack_hooks;

// rr_attack with test hooks (NULL: none, as rr_attack). Errors as rr_attack, and RR_EINVAL
// (field "start" / "trace") for hooks the resolved attack cannot take, RR_ENONFINITE ("start").
rr_status rr__attack_hooked(const rr_model *m, rr_workspace *ws, const float *x,
                            const int64_t *labels, size_t B, const rr_attack_params *p,
                            const rr__attack_hooks *hooks, rr_attack_result *out, rr_error *err);

typedef struct rr__atk {
    const rr_model *m;
    rr_workspace *ws;
    size_t B, D;
    int K;
    const float *x0;        // [B, D] clean inputs (borrowed)
    const int64_t *labels;  // [B]
    const int64_t *targets; // [B] when targeted, else NULL
    rr_attack_params p;     // resolved
    rr__attack_hooks hooks; // all NULL but in tests
    bool has_range;
    float lo, hi;
    rr_attack_result *out;
    rr_error *err;
    double progress_done, progress_total; // units of work for the progress callback
} rr__atk;

// The class a sample aims at (target) or away from (label).
static inline int64_t rr__atk_class(const rr__atk *a, size_t b)
{
    return a->targets ? a->targets[b] : a->labels[b];
}

// Whether prediction k counts as success for sample b.
static inline bool rr__atk_hit(const rr__atk *a, size_t b, int64_t k)
{
    return a->targets ? k == a->targets[b] : k != a->labels[b];
}

// The RNG stream id of sample b (attack.h, sample_ids).
static inline uint64_t rr__atk_stream(const rr__atk *a, size_t b)
{
    return a->p.sample_ids ? (uint64_t)a->p.sample_ids[b] : (uint64_t)b;
}

// Oracle calls on n samples (x [n, D]); the counters are the result's.
rr_status rr__atk_forward(rr__atk *a, const float *x, size_t n, float *logits);
// g [n, D] = d CE(z(x), cls) / dx for the classes cls [n], and the logits [n, K] (may be NULL).
rr_status rr__atk_ce_grad(rr__atk *a, const float *x, const int64_t *cls, size_t n, float *g,
                          float *logits);
// g_x [n, D] = sum_k seed[b, k] dz_k/dx (one VJP per sample).
rr_status rr__atk_vjp(rr__atk *a, const float *x, size_t n, const float *seed, float *g_x);
// One forward and one backward over x [n, D]: fn writes the seeds [nb, K] of samples
// b0..b0+nb-1 (indices into x) from their logits z [nb, K]; g_x [n, D] = seeds^T J.
typedef void (*rr__atk_seed_fn)(void *ctx, size_t b0, size_t nb, const float *z, float *seeds);
rr_status rr__atk_grad_seeded(rr__atk *a, const float *x, size_t n, rr__atk_seed_fn fn, void *ctx,
                              float *g_x, float *logits);
// J [n, K, D] and logits [n, K].
rr_status rr__atk_jacobian(rr__atk *a, const float *x, size_t n, float *J, float *logits);

// Clips v [n] to the model's input_range (no-op without one).
void rr__atk_clip(const rr__atk *a, float *v, size_t n);
// argmax of a row of K logits (first maximum, as torch.argmax).
int64_t rr__atk_argmax(const float *z, int K);

// Polls the abort callback (RR_ECANCELLED when it asks to stop) and reports progress.
rr_status rr__atk_poll(rr__atk *a, double units_done);

// Fills out->success, l2, linf, predictions from out->adversarial with one forward pass.
rr_status rr__atk_finalize(rr__atk *a);

// Scratch of n floats (RR_ENOMEM into a->err when it fails); free with rr_aligned_free.
float *rr__atk_alloc(rr__atk *a, size_t n);

// act = the b in [0, B) with live[b] == want, in order; returns their number n.
size_t rr__atk_active(const bool *live, bool want, size_t B, size_t *act);
// Rows of D floats: dst[j] = src[act[j]] (gather) or dst[act[j]] = src[j] (scatter), j < n.
void rr__atk_gather(const float *src, const size_t *act, size_t n, size_t D, float *dst);
void rr__atk_scatter(const float *src, const size_t *act, size_t n, size_t D, float *dst);
// The logits of rows act[0 .. n) at their current adversarial points, written to their rows of
// z [B, K]: gathered into xs [n, D], forwarded into tmp [n, K], scattered.
rr_status rr__atk_logits_at(rr__atk *a, const size_t *act, size_t n, float *xs, float *tmp,
                            float *z);

// order [K] = the classes by logit z [K], descending, ties lower index first (a stable sort;
// order[0] is rr__atk_argmax). apgd_t and fab_t attack order[1 .. n].
void rr__atk_rank(const float *z, int K, int *order);

// C&W's margin of sample b at logits z: z_y - max_{j != y} z_j + kappa, targeted
// max_{j != t} z_j - z_t + kappa (the hinge is its positive part); *jo (may be NULL) gets the
// other class (the first of the maxima).
double rr__atk_margin(const rr__atk *a, size_t b, const float *z, int *jo);
// C&W's binary search over c after a binary step: found or not, narrows [lower, upper] and
// moves c (to the midpoint once an upper bound is known, else c * 10).
void rr__atk_csearch(bool found, double *lower, double *upper, double *c);

// A breakpoint of FAB's projection: the step length r at which coordinate i reaches the box
// and its weight a in the hyperplane equation (|w_i| for linf, w_i^2 for l2).
typedef struct rr__fab_brk {
    double r, a;
    size_t i;
} rr__fab_brk;
// FAB's projection (fab_projection.c): d [D] = the smallest step (a->p.norm) from t [D] with
// w . d = -c and t + d inside input_range, or every coordinate to the box when out of reach;
// returns ||d||. scr [D] is scratch; nothing is allocated.
double rr__fab_project(const rr__atk *a, const float *t, const float *w, double c, double *d,
                       rr__fab_brk *scr);

// The attacks (each fills out->adversarial and out->iterations; finalize does the rest).
rr_status rr__attack_fgsm(rr__atk *a);
rr_status rr__attack_pgd(rr__atk *a);
rr_status rr__attack_deepfool(rr__atk *a);
rr_status rr__attack_cw(rr__atk *a);
rr_status rr__attack_ead(rr__atk *a);
rr_status rr__attack_jsma(rr__atk *a);
rr_status rr__attack_zoo(rr__atk *a);
rr_status rr__attack_apgd(rr__atk *a);
rr_status rr__attack_square(rr__atk *a);
rr_status rr__attack_fab(rr__atk *a);
rr_status rr__attack_autoattack(rr__atk *a);

// Rounds v to float, stepping one ulp back toward x when rounding moved it away from x, so
// that |result - x| <= |v - x|: epsilon-bounded attacks keep their bound exactly in float.
static inline float rr__atk_toward(double v, float x)
{
    float f = (float)v;
    if (fabs((double)f - (double)x) > fabs(v - (double)x))
        f = nextafterf(f, x);
    return f;
}

#endif
