// The AutoAttack ensemble (Croce & Hein 2020; math.md "Attacks"): suite `standard` runs
// apgd_ce -> apgd_t -> fab_t -> square, suite `fast` apgd_ce -> apgd_t (relureg's own), each
// stage only on the samples still robust (classified correctly and not broken by an earlier
// stage). A sample's adversarial input is the first stage's point that misclassifies it
// within epsilon; the samples no stage broke keep their clean input (AutoAttack's x_adv).
// Every stage draws from (seed, original sample index) (attack.h, sample_ids), so which
// samples are still robust does not change any sample's outcome.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

static const rr_attack_name suite_standard[] = {RR_ATTACK_APGD_CE, RR_ATTACK_APGD_T,
                                                RR_ATTACK_FAB_T, RR_ATTACK_SQUARE};
static const rr_attack_name suite_fast[] = {RR_ATTACK_APGD_CE, RR_ATTACK_APGD_T};

size_t rr_autoattack_stages(rr_autoattack_suite s, const rr_attack_name **stages)
{
    if (s == RR_SUITE_FAST) {
        *stages = suite_fast;
        return sizeof suite_fast / sizeof suite_fast[0];
    }
    *stages = suite_standard;
    return sizeof suite_standard / sizeof suite_standard[0];
}

typedef struct aa_progress {
    const rr__atk *a;
    double base, width;
} aa_progress;

static void stage_progress(void *ctx, double f)
{
    const aa_progress *s = ctx;
    s->a->p.control.progress(s->a->p.control.progress_ctx, s->base + s->width * f);
}

// Scratch, carved from one block: the stage's rows and its answers.
typedef struct aa {
    rr__atk *a;
    float *z;            // [B, K] clean logits
    float *xs, *adv;     // [B, D] the stage's inputs and adversarials
    float *l2, *linf;    // [B]
    int64_t *ys, *pred;  // [B]
    size_t *idx, *ids;   // [B] sample and its stream id per row
    bool *robust, *succ; // [B]
    int *iters;          // [B]
} aa;

static void *carve(aa *s, size_t B, size_t D, size_t K)
{
    const rr__carve_part parts[] = {
        RR__CARVE_PART(s->z, B * K),  RR__CARVE_PART(s->xs, B * D), RR__CARVE_PART(s->adv, B * D),
        RR__CARVE_PART(s->l2, B),     RR__CARVE_PART(s->linf, B),   RR__CARVE_PART(s->ys, B),
        RR__CARVE_PART(s->pred, B),   RR__CARVE_PART(s->idx, B),    RR__CARVE_PART(s->ids, B),
        RR__CARVE_PART(s->robust, B), RR__CARVE_PART(s->succ, B),   RR__CARVE_PART(s->iters, B)};
    return rr__carve(s->a->err, parts, sizeof parts / sizeof parts[0]);
}

// Runs stage `name` on the n rows gathered in s (progress through pg).
static rr_status run_stage(aa *s, rr_attack_name name, size_t n, aa_progress *pg)
{
    rr__atk *a = s->a;
    rr_attack_params sp;
    rr_attack_params_init(&sp, name);
    sp.norm = a->p.norm;
    sp.epsilon = a->p.epsilon;
    sp.seed = a->p.seed;
    sp.sample_ids = s->ids;
    sp.max_steps = a->p.max_steps;
    sp.control.abort = a->p.control.abort;
    sp.control.abort_ctx = a->p.control.abort_ctx;
    sp.control.progress = a->p.control.progress ? stage_progress : NULL;
    sp.control.progress_ctx = pg;
    rr_attack_result r = {.adversarial = s->adv,
                          .success = s->succ,
                          .l2 = s->l2,
                          .linf = s->linf,
                          .predictions = s->pred,
                          .iterations = s->iters};
    const rr_status st = rr_attack(a->m, a->ws, s->xs, s->ys, n, &sp, &r, a->err);
    a->out->gradient_calls += r.gradient_calls;
    a->out->forward_calls += r.forward_calls;
    return st;
}

// The stage's answers: a row broken within epsilon gives its sample's adversarial.
static void keep_stage(aa *s, rr_attack_name name, size_t n)
{
    rr__atk *a = s->a;
    rr_attack_result *out = a->out;
    const size_t D = a->D;
    const double bound = a->p.epsilon * (1.0 + 1e-6);
    for (size_t j = 0; j < n; j++) {
        const size_t b = s->idx[j];
        out->iterations[b] += s->iters[j];
        const double nrm = a->p.norm == RR_NORM_L2 ? s->l2[j] : s->linf[j];
        if (!s->succ[j] || !(nrm <= bound))
            continue;
        memcpy(out->adversarial + b * D, s->adv + j * D, D * sizeof(float));
        s->robust[b] = false;
        if (out->broken_by)
            out->broken_by[b] = (int)name;
    }
}

rr_status rr__attack_autoattack(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    rr_attack_result *out = a->out;
    const rr_attack_name *stages;
    const size_t S = rr_autoattack_stages(a->p.suite, &stages);
    memcpy(out->adversarial, a->x0, B * D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        out->iterations[b] = 0;
        if (out->broken_by)
            out->broken_by[b] = -1;
    }
    aa s = {.a = a};
    void *block = carve(&s, B, D, K);
    if (!block)
        return RR_ENOMEM;
    rr_status st = rr__atk_forward(a, a->x0, B, s.z);
    if (st != RR_OK)
        goto done;
    for (size_t b = 0; b < B; b++)
        s.robust[b] = rr__atk_argmax(s.z + b * K, (int)K) == a->labels[b];
    aa_progress pg = {.a = a, .base = 0.0, .width = 1.0 / (double)S};
    for (size_t k = 0; k < S; k++, pg.base += pg.width) {
        const size_t n = rr__atk_active(s.robust, true, B, s.idx);
        if (n == 0)
            break;
        rr__atk_gather(a->x0, s.idx, n, D, s.xs);
        for (size_t j = 0; j < n; j++) {
            s.ids[j] = (size_t)rr__atk_stream(a, s.idx[j]);
            s.ys[j] = a->labels[s.idx[j]];
        }
        if ((st = run_stage(&s, stages[k], n, &pg)) != RR_OK)
            goto done;
        keep_stage(&s, stages[k], n);
    }
    if (a->p.control.progress)
        a->p.control.progress(a->p.control.progress_ctx, 1.0);
done:
    rr_aligned_free(block);
    return st;
}
