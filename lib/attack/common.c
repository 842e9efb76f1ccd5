// rr_attack: option defaults, ranges and targets (the ranges and targets from the attacks'
// table, options.c), the oracle calls with their counters, projections, and the per-sample
// result (attack.h).
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"
#include "nn/forward.h"
#include "nn/jacobian.h"
#include "nn/loss.h"
#include "nn/passes.h"

void rr_attack_params_init(rr_attack_params *p, rr_attack_name name)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->norm = RR_NORM_LINF;
    p->random_start = -1;
    p->epsilon = p->step_size = p->overshoot = p->learning_rate = p->c = p->confidence = p->theta =
        p->gamma = p->beta = p->h = RR_ATTACK_DEFAULT;
    p->p_init = RR_ATTACK_DEFAULT;
}

static rr_status check_double(double v, double lo, bool lo_open, double hi, const char *name,
                              const char *range, rr_error *err)
{
    if (isnan(v) || !isfinite(v) || (lo_open ? v <= lo : v < lo) || v > hi)
        return rr_error_set(err, RR_EINVAL, name, "%s must be %s, got %g", name, range, v);
    return RR_OK;
}

static rr_status check_int(int v, int max, const char *name, rr_error *err)
{
    if (v < 1 || v > max)
        return rr_error_set(err, RR_EINVAL, name, "%s must be in [1, %d], got %d", name, max, v);
    return RR_OK;
}

#define DEF(field, value)                                                                          \
    do {                                                                                           \
        if (isnan(o->field))                                                                       \
            o->field = (value);                                                                    \
    } while (0)
#define DEFI(field, value)                                                                         \
    do {                                                                                           \
        if (o->field <= 0)                                                                         \
            o->field = (value);                                                                    \
    } while (0)

// The defaults of the iterative first-order attacks (pgd, bim; apgd_ce, apgd_t), and what
// they refuse.
static rr_status resolve_pgd(rr_attack_params *o, rr_error *err)
{
    const bool l2 = o->norm == RR_NORM_L2;
    DEF(epsilon, l2 ? 1.0 : 0.3);
    DEF(step_size, l2 ? 0.2 : 0.01);
    DEFI(steps, 40);
    DEFI(restarts, 1);
    if (o->name == RR_ATTACK_BIM) {
        if (o->random_start == 1)
            return rr_error_set(err, RR_EINVAL, "random_start",
                                "bim is pgd without random start; use pgd");
        o->random_start = 0;
    } else if (o->random_start < 0) {
        o->random_start = 1;
    }
    return RR_OK;
}

static rr_status resolve_apgd(rr_attack_params *o, rr_error *err)
{
    const bool l2 = o->norm == RR_NORM_L2;
    const char *const an = o->name == RR_ATTACK_APGD_T ? "apgd_t" : "apgd_ce";
    // APGD has no free step size or start, and apgd_t picks its own targets.
    if (!isnan(o->step_size))
        return rr_error_set(err, RR_EINVAL, "step_size",
                            "%s takes no step_size: it starts at 2 epsilon and halves it "
                            "at its checkpoints",
                            an);
    if (o->random_start == 0)
        return rr_error_set(err, RR_EINVAL, "random_start", "%s always starts at a random point",
                            an);
    DEF(epsilon, l2 ? 1.0 : 0.3);
    DEFI(steps, 100);
    DEFI(restarts, 1);
    o->random_start = 1;
    return RR_OK;
}

static rr_status resolve_autoattack(rr_attack_params *o, rr_error *err)
{
    // The stages take steps / restarts / queries when given (0 leaves each its own default);
    // nothing else is an option of the ensemble.
    DEF(epsilon, o->norm == RR_NORM_L2 ? 1.0 : 0.3);
    if (!isnan(o->step_size))
        return rr_error_set(err, RR_EINVAL, "step_size",
                            "autoattack takes no step_size (APGD sets its own)");
    if (o->random_start == 0)
        return rr_error_set(err, RR_EINVAL, "random_start",
                            "autoattack's APGD stages always start at random");
    if (o->suite != RR_SUITE_STANDARD && o->suite != RR_SUITE_FAST)
        return rr_error_set(err, RR_EINVAL, "suite", "suite must be standard or fast");
    return RR_OK;
}

// The attack's defaults for the options left unset (and its refusals).
static rr_status resolve_defaults(rr_attack_params *o, int K, rr_error *err)
{
    const bool l2 = o->norm == RR_NORM_L2;
    switch (o->name) {
        case RR_ATTACK_FGSM:
            DEF(epsilon, l2 ? 1.0 : 0.3);
            return RR_OK;
        case RR_ATTACK_PGD:
        case RR_ATTACK_BIM:
            return resolve_pgd(o, err);
        case RR_ATTACK_DEEPFOOL:
            DEF(overshoot, 0.02);
            DEFI(max_iter, 50);
            DEFI(candidates, 10);
            if (o->candidates > K)
                o->candidates = K;
            return RR_OK;
        case RR_ATTACK_CW_L2:
        case RR_ATTACK_EAD:
            DEFI(binary_search_steps, 9);
            DEF(learning_rate, 1e-2);
            DEF(c, 1e-3);
            DEF(confidence, 0.0);
            DEFI(max_iter, 1000);
            if (o->name == RR_ATTACK_EAD)
                DEF(beta, 1e-2);
            return RR_OK;
        case RR_ATTACK_JSMA:
            DEF(theta, 1.0);
            DEF(gamma, 0.1);
            return RR_OK;
        case RR_ATTACK_APGD_CE:
        case RR_ATTACK_APGD_T:
            return resolve_apgd(o, err);
        case RR_ATTACK_ZOO:
            DEF(h, 1e-4);
            DEFI(max_iter, 10);
            DEFI(binary_search_steps, 1);
            DEF(learning_rate, 1e-2);
            DEF(c, 1e-3);
            DEF(confidence, 0.0);
            return RR_OK;
        case RR_ATTACK_FAB_T:
            // Minimum-norm unless given a bound (math.md "Attacks"; api.md /robustness).
            DEF(epsilon, INFINITY);
            DEFI(steps, 100);
            DEFI(restarts, 1);
            return RR_OK;
        case RR_ATTACK_SQUARE:
            DEF(epsilon, l2 ? 1.0 : 0.3);
            // The default budget is capped by max_steps (a daemon's --max-steps) rather than
            // rejected; the answer echoes what ran. Explicit values are checked below.
            DEFI(queries, 5000 < o->max_steps ? 5000 : o->max_steps);
            DEF(p_init, 0.8);
            DEFI(restarts, 1);
            return RR_OK;
        case RR_ATTACK_AUTOATTACK:
            return resolve_autoattack(o, err);
    }
    return rr_error_set(err, RR_EINVAL, "attack", "unknown attack %d", (int)o->name);
}

// The ranges of the options given (in) as resolved (o), in the order of the options' table:
// its numbers (math.md "Ranges", when given), then its counts ([1, max_steps], when set).
static rr_status check_ranges(const rr_attack_params *in, const rr_attack_params *o, rr_error *err)
{
    const rr_attack_option *opts;
    const size_t n = rr_attack_options(&opts);
    for (size_t i = 0; i < n; i++) {
        const rr_attack_option *op = &opts[i];
        rr_status st = RR_OK;
        if (op->type == RR_ATTACK_OPTION_NUMBER) {
            const double given = *(const double *)((const char *)in + op->offset);
            const double v = *(const double *)((const char *)o + op->offset);
            // fab_t's resolved default is +inf (unbounded), which a second resolve must accept.
            const bool unbounded = o->name == RR_ATTACK_FAB_T &&
                                   op->offset == offsetof(rr_attack_params, epsilon) &&
                                   v == INFINITY;
            if (!isnan(given) && !unbounded)
                st = check_double(v, op->lo, op->lo_open, op->hi, op->name, op->range, err);
        } else if (op->type == RR_ATTACK_OPTION_COUNT) {
            const int v = *(const int *)((const char *)o + op->offset);
            if (v > 0)
                st = check_int(v, o->max_steps, op->name, err);
        }
        if (st != RR_OK)
            return st;
    }
    return RR_OK;
}

// Targets the attack cannot take.
static rr_status check_combinations(const rr_attack_params *o, rr_error *err)
{
    // Untargeted attacks, and those that choose their own targets, take neither targeted nor
    // target_labels (attack.h, rr_attack_targets); deepfool ignores target_labels without
    // targeted.
    const rr_attack_info *a = rr_attack_info_of(o->name);
    const rr_attack_targets t = a ? a->targets : RR_ATTACK_TARGETS_GIVEN;
    if (t != RR_ATTACK_TARGETS_GIVEN &&
        (o->targeted || (o->target_labels && o->name != RR_ATTACK_DEEPFOOL)))
        return rr_error_set(err, RR_EINVAL, o->targeted ? "targeted" : "target_labels",
                            t == RR_ATTACK_TARGETS_OWN
                                ? "%s chooses its own targets (the classes ranked 2nd to (n+1)th "
                                  "by the clean logits, n = min(9, K - 1))"
                                : "%s is untargeted",
                            a->name);
    if (o->targeted && !o->target_labels)
        return rr_error_set(err, RR_EINVAL, "target_labels", "targeted requires target_labels");
    return RR_OK;
}

rr_status rr_attack_resolve(const rr_attack_params *in, int K, rr_attack_params *o, rr_error *err)
{
    *o = *in;
    if (o->max_steps <= 0)
        o->max_steps = 10000;
    rr_status st = resolve_defaults(o, K, err);
    if (st != RR_OK)
        return st;
    if (o->norm != RR_NORM_LINF && o->norm != RR_NORM_L2)
        return rr_error_set(err, RR_EINVAL, "norm", "norm must be linf or l2");
    if ((st = check_ranges(in, o, err)) != RR_OK)
        return st;
    return check_combinations(o, err);
}
#undef DEF
#undef DEFI

float *rr__atk_alloc(rr__atk *a, size_t n)
{
    float *p = rr_aligned_alloc((n ? n : 1) * sizeof(float));
    if (!p)
        rr_error_set(a->err, RR_ENOMEM, NULL, "out of memory for scratch (%zu floats)", n);
    return p;
}

size_t rr__atk_active(const bool *live, bool want, size_t B, size_t *act)
{
    size_t n = 0;
    for (size_t b = 0; b < B; b++)
        if (live[b] == want)
            act[n++] = b;
    return n;
}

void rr__atk_gather(const float *src, const size_t *act, size_t n, size_t D, float *dst)
{
    for (size_t j = 0; j < n; j++)
        memcpy(dst + j * D, src + act[j] * D, D * sizeof(float));
}

void rr__atk_scatter(const float *src, const size_t *act, size_t n, size_t D, float *dst)
{
    for (size_t j = 0; j < n; j++)
        memcpy(dst + act[j] * D, src + j * D, D * sizeof(float));
}

rr_status rr__atk_logits_at(rr__atk *a, const size_t *act, size_t n, float *xs, float *tmp,
                            float *z)
{
    rr__atk_gather(a->out->adversarial, act, n, a->D, xs);
    rr_status st = rr__atk_forward(a, xs, n, tmp);
    if (st == RR_OK)
        rr__atk_scatter(tmp, act, n, (size_t)a->K, z);
    return st;
}

void rr__atk_rank(const float *z, int K, int *order)
{
    // Insertion sort, descending, ties by index (K is small).
    for (int k = 0; k < K; k++) {
        int p = k;
        while (p > 0 && z[k] > z[order[p - 1]]) {
            order[p] = order[p - 1];
            p--;
        }
        order[p] = k;
    }
}

double rr__atk_margin(const rr__atk *a, size_t b, const float *z, int *jo)
{
    const int64_t t = rr__atk_class(a, b);
    int o = -1;
    for (int k = 0; k < a->K; k++)
        if (k != t && (o < 0 || z[k] > z[o]))
            o = k;
    if (jo)
        *jo = o;
    const double real = z[t], other = z[o];
    return a->targets ? other - real + a->p.confidence : real - other + a->p.confidence;
}

void rr__atk_csearch(bool found, double *lower, double *upper, double *c)
{
    if (found) {
        *upper = fmin(*upper, *c);
        if (*upper < 1e9)
            *c = (*lower + *upper) / 2;
    } else {
        *lower = fmax(*lower, *c);
        *c = *upper < 1e9 ? (*lower + *upper) / 2 : *c * 10;
    }
}

rr_status rr__atk_forward(rr__atk *a, const float *x, size_t n, float *logits)
{
    a->out->forward_calls++;
    return rr_forward(a->m, a->ws, x, n, logits, NULL, NULL, a->err);
}

rr_status rr__atk_ce_grad(rr__atk *a, const float *x, const int64_t *cls, size_t n, float *g,
                          float *logits)
{
    a->out->gradient_calls++;
    a->out->forward_calls++;
    return rr_cross_entropy_input_gradient(a->m, a->ws, x, cls, n, g, logits, a->err);
}

rr_status rr__atk_vjp(rr__atk *a, const float *x, size_t n, const float *seed, float *g_x)
{
    a->out->gradient_calls++;
    a->out->forward_calls++;
    return rr_vjp(a->m, a->ws, x, n, seed, g_x, NULL, a->err);
}

rr_status rr__atk_jacobian(rr__atk *a, const float *x, size_t n, float *J, float *logits)
{
    a->out->gradient_calls++;
    a->out->forward_calls++;
    return rr_jacobian(a->m, a->ws, x, n, RR_JACOBIAN_LOGITS, J, logits, a->err);
}

void rr__atk_clip(const rr__atk *a, float *v, size_t n)
{
    if (!a->has_range)
        return;
    const float lo = a->lo, hi = a->hi;
    for (size_t i = 0; i < n; i++)
        v[i] = v[i] < lo ? lo : (v[i] > hi ? hi : v[i]);
}

int64_t rr__atk_argmax(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best])
            best = k;
    return best;
}

rr_status rr__atk_poll(rr__atk *a, double units_done)
{
    a->progress_done += units_done;
    if (a->p.control.progress && a->progress_total > 0) {
        double f = a->progress_done / a->progress_total;
        a->p.control.progress(a->p.control.progress_ctx, f > 1 ? 1 : f);
    }
    if (a->p.control.abort && a->p.control.abort(a->p.control.abort_ctx))
        return rr_error_set(a->err, RR_ECANCELLED, NULL, "the attack was cancelled");
    return RR_OK;
}

rr_status rr__atk_finalize(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    rr_attack_result *r = a->out;
    if (!rr_all_finite(r->adversarial, B * D))
        return rr_error_set(a->err, RR_EINTERNAL, NULL, "the attack produced non-finite inputs");
    float *z = rr__atk_alloc(a, B * K);
    if (!z)
        return RR_ENOMEM;
    rr_status st = rr__atk_forward(a, r->adversarial, B, z);
    if (st == RR_OK) {
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < B; b++) {
            const float *xa = r->adversarial + b * D, *x = a->x0 + b * D;
            double s2 = 0.0, mx = 0.0;
            for (size_t i = 0; i < D; i++) {
                const double d = (double)xa[i] - (double)x[i];
                s2 += d * d;
                mx = fabs(d) > mx ? fabs(d) : mx;
            }
            r->l2[b] = (float)sqrt(s2);
            r->linf[b] = (float)mx;
            r->predictions[b] = rr__atk_argmax(z + b * K, (int)K);
            r->success[b] = rr__atk_hit(a, b, r->predictions[b]);
        }
    }
    rr_aligned_free(z);
    return st;
}

rr_status rr_attack(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                    size_t B, const rr_attack_params *p, rr_attack_result *out, rr_error *err)
{
    return rr__attack_hooked(m, ws, x, labels, B, p, NULL, out, err);
}

// The hooks the resolved attack o can take.
static rr_status check_hooks(const rr_attack_params *o, const rr__attack_hooks *h, rr_error *err)
{
    if (h->trace && o->restarts > 1 && o->name == RR_ATTACK_SQUARE)
        return rr_error_set(err, RR_EINVAL, "trace", "a square trace needs restarts = 1");
    if (h->start && o->restarts > 1)
        return rr_error_set(err, RR_EINVAL, "start", "a start point needs restarts = 1");
    return RR_OK;
}

rr_status rr__attack_hooked(const rr_model *m, rr_workspace *ws, const float *x,
                            const int64_t *labels, size_t B, const rr_attack_params *p,
                            const rr__attack_hooks *hooks, rr_attack_result *out, rr_error *err)
{
    rr__atk a = {.m = m, .ws = ws, .B = B, .x0 = x, .labels = labels, .out = out, .err = err};
    a.D = rr_model_input_size(m);
    a.K = rr_model_num_classes(m);
    if (hooks)
        a.hooks = *hooks;
    rr_status st = rr_attack_resolve(p, a.K, &a.p, err);
    if (st != RR_OK || (st = check_hooks(&a.p, &a.hooks, err)) != RR_OK)
        return st;
    out->gradient_calls = out->forward_calls = 0;
    if (B == 0)
        return RR_OK;
    if (!rr_all_finite(x, B * a.D))
        return rr_error_set(err, RR_ENONFINITE, "inputs", "inputs contain NaN or Inf");
    for (size_t b = 0; b < B; b++) {
        if (labels[b] < 0 || labels[b] >= a.K)
            return rr_error_set(err, RR_EINVAL, "labels",
                                "labels[%zu] = %lld is out of range [0, %d)", b,
                                (long long)labels[b], a.K);
        if (a.p.targeted && (a.p.target_labels[b] < 0 || a.p.target_labels[b] >= a.K))
            return rr_error_set(err, RR_EINVAL, "target_labels",
                                "target_labels[%zu] = %lld is out of range [0, %d)", b,
                                (long long)a.p.target_labels[b], a.K);
    }
    if (a.hooks.start && !rr_all_finite(a.hooks.start, B * a.D))
        return rr_error_set(err, RR_ENONFINITE, "start", "start contains NaN or Inf");
    a.targets = a.p.targeted ? a.p.target_labels : NULL;
    a.has_range = rr_model_input_range(m, &a.lo, &a.hi);
    switch (a.p.name) {
        case RR_ATTACK_FGSM:
            st = rr__attack_fgsm(&a);
            break;
        case RR_ATTACK_PGD:
        case RR_ATTACK_BIM:
            st = rr__attack_pgd(&a);
            break;
        case RR_ATTACK_DEEPFOOL:
            st = rr__attack_deepfool(&a);
            break;
        case RR_ATTACK_CW_L2:
            st = rr__attack_cw(&a);
            break;
        case RR_ATTACK_EAD:
            st = rr__attack_ead(&a);
            break;
        case RR_ATTACK_JSMA:
            st = rr__attack_jsma(&a);
            break;
        case RR_ATTACK_ZOO:
            st = rr__attack_zoo(&a);
            break;
        case RR_ATTACK_APGD_CE:
        case RR_ATTACK_APGD_T:
            st = rr__attack_apgd(&a);
            break;
        case RR_ATTACK_FAB_T:
            st = rr__attack_fab(&a);
            break;
        case RR_ATTACK_SQUARE:
            st = rr__attack_square(&a);
            break;
        case RR_ATTACK_AUTOATTACK:
            st = rr__attack_autoattack(&a);
            break;
    }
    if (st != RR_OK)
        return st;
    return rr__atk_finalize(&a);
}

rr_status rr__atk_grad_seeded(rr__atk *a, const float *x, size_t n, rr__atk_seed_fn fn, void *ctx,
                              float *g_x, float *logits)
{
    rr_status st = rr__check_call(a->m, a->ws, x, n, a->err);
    if (st != RR_OK)
        return st;
    a->out->gradient_calls++;
    a->out->forward_calls++;
    rr_workspace *ws = a->ws;
    const size_t D = a->D, K = (size_t)a->K;
    for (size_t b0 = 0; b0 < n; b0 += ws->nb) {
        const size_t nb = n - b0 < ws->nb ? n - b0 : ws->nb;
        const float *z = rr__forward_chunk(a->m, ws, x + b0 * D, nb);
        if (logits)
            memcpy(logits + b0 * K, z, nb * K * sizeof(float));
        fn(ctx, b0, nb, z, ws->seed);
        rr__backward_chunk(a->m, ws, nb, 1, ws->seed, g_x + b0 * D, NULL, NULL);
    }
    return RR_OK;
}
