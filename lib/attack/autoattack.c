// The AutoAttack ensemble (Croce & Hein 2020; math.md "Attacks"): suite `standard` runs
// apgd_ce -> apgd_t -> fab_t -> square, suite `fast` apgd_ce -> apgd_t (relureg's own), each
// stage only on the samples still robust (classified correctly and not broken by an earlier
// stage). A sample's adversarial input is the first stage's point that misclassifies it
// within epsilon; the samples no stage broke keep their clean input (AutoAttack's x_adv).
// Every stage draws from (seed, original sample index) (attack.h, sample_ids), so which
// samples are still robust does not change any sample's outcome.
#include <math.h>
#include <stdlib.h>
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
    rr_status st = RR_OK;
    float *z = malloc(B * K * sizeof(float));
    float *xs = malloc(B * D * sizeof(float));
    float *adv = malloc(B * D * sizeof(float));
    float *l2 = malloc(B * sizeof(float)), *linf = malloc(B * sizeof(float));
    int64_t *ys = malloc(B * sizeof(int64_t)), *pred = malloc(B * sizeof(int64_t));
    size_t *idx = malloc(B * sizeof(size_t)), *ids = malloc(B * sizeof(size_t));
    bool *robust = malloc(B * sizeof(bool)), *succ = malloc(B * sizeof(bool));
    int *iters = malloc(B * sizeof(int));
    if (!z || !xs || !adv || !l2 || !linf || !ys || !pred || !idx || !ids || !robust || !succ ||
        !iters) {
        st = rr_error_set(a->err, RR_ENOMEM, NULL, "out of memory for autoattack");
        goto done;
    }
    st = rr__atk_forward(a, a->x0, B, z);
    if (st != RR_OK)
        goto done;
    for (size_t b = 0; b < B; b++)
        robust[b] = rr__atk_argmax(z + b * K, (int)K) == a->labels[b];
    const double bound = a->p.epsilon * (1.0 + 1e-6);
    aa_progress pg = {.a = a, .base = 0.0, .width = 1.0 / (double)S};
    for (size_t s = 0; s < S; s++, pg.base += pg.width) {
        size_t n = 0;
        for (size_t b = 0; b < B; b++) {
            if (!robust[b])
                continue;
            idx[n] = b;
            ids[n] = (size_t)rr__atk_stream(a, b);
            memcpy(xs + n * D, a->x0 + b * D, D * sizeof(float));
            ys[n] = a->labels[b];
            n++;
        }
        if (n == 0)
            break;
        rr_attack_params sp;
        rr_attack_params_init(&sp, stages[s]);
        sp.norm = a->p.norm;
        sp.epsilon = a->p.epsilon;
        sp.seed = a->p.seed;
        sp.sample_ids = ids;
        sp.max_steps = a->p.max_steps;
        sp.control.abort = a->p.control.abort;
        sp.control.abort_ctx = a->p.control.abort_ctx;
        sp.control.progress = a->p.control.progress ? stage_progress : NULL;
        sp.control.progress_ctx = &pg;
        rr_attack_result r = {.adversarial = adv,
                              .success = succ,
                              .l2 = l2,
                              .linf = linf,
                              .predictions = pred,
                              .iterations = iters};
        st = rr_attack(a->m, a->ws, xs, ys, n, &sp, &r, a->err);
        out->gradient_calls += r.gradient_calls;
        out->forward_calls += r.forward_calls;
        if (st != RR_OK)
            goto done;
        for (size_t j = 0; j < n; j++) {
            const size_t b = idx[j];
            out->iterations[b] += iters[j];
            const double nrm = a->p.norm == RR_NORM_L2 ? l2[j] : linf[j];
            if (!succ[j] || !(nrm <= bound))
                continue;
            memcpy(out->adversarial + b * D, adv + j * D, D * sizeof(float));
            robust[b] = false;
            if (out->broken_by)
                out->broken_by[b] = (int)stages[s];
        }
    }
    if (a->p.control.progress)
        a->p.control.progress(a->p.control.progress_ctx, 1.0);
done:
    free(z);
    free(xs);
    free(adv);
    free(l2);
    free(linf);
    free(ys);
    free(pred);
    free(idx);
    free(ids);
    free(robust);
    free(succ);
    free(iters);
    return st;
}
