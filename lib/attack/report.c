// Robustness report (report.h).
#include "attack/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "nn/forward.h"
#include "nn/loss.h"

typedef struct stage {
    const rr_robustness_params *p;
    double base, width; // this run's share of the whole
} stage;

static void stage_progress(void *ctx, double f)
{
    const stage *s = ctx;
    if (s->p->control.progress)
        s->p->control.progress(s->p->control.progress_ctx, s->base + s->width * f);
}

static bool min_norm(rr_attack_name n)
{
    return n == RR_ATTACK_DEEPFOOL || n == RR_ATTACK_CW_L2 || n == RR_ATTACK_EAD ||
           n == RR_ATTACK_JSMA || n == RR_ATTACK_ZOO || n == RR_ATTACK_FAB_T;
}

typedef struct bufs {
    float *adv, *l2, *linf, *xs, *g;
    bool *succ, *ok;
    int64_t *pred, *ys;
    int *iters, *bb;
    size_t *idx;
    double *cd, *cr;
} bufs;

rr_status rr_robustness(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                        size_t B, const rr_robustness_params *p, rr_robustness_result *out,
                        rr_error *err)
{
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m), E = p->n_eps;
    if (E < 1 || E > 64)
        return rr_error_set(err, RR_EINVAL, "epsilons", "epsilons must hold 1 to 64 values");
    for (size_t e = 0; e < E; e++)
        if (!(p->epsilons[e] >= 0) || !isfinite(p->epsilons[e]))
            return rr_error_set(err, RR_EINVAL, "epsilons", "epsilons[%zu] must be a number >= 0",
                                e);
    rr_attack_params ap = p->attack, chk;
    ap.norm = p->norm;
    ap.epsilon = p->epsilons[0];
    ap.targeted = false;
    ap.target_labels = NULL;
    ap.sample_ids = NULL;
    ap.control.abort = p->control.abort;
    ap.control.abort_ctx = p->control.abort_ctx;
    rr_status st = rr_attack_resolve(&ap, (int)K, &chk, err);
    if (st != RR_OK)
        return st;
    memset(out->robust_accuracy, 0, E * sizeof(double));
    out->gradient_calls = out->forward_calls = 0;
    out->flags = (rr_robustness_flags){0};
    if (B == 0)
        return RR_OK;
    bufs b = {0};
    b.adv = malloc(B * D * sizeof(float));
    b.xs = malloc(B * D * sizeof(float));
    b.g = malloc(B * (D > K ? D : K) * sizeof(float));
    b.l2 = malloc(B * sizeof(float));
    b.linf = malloc(B * sizeof(float));
    b.succ = malloc(B * sizeof(bool));
    b.ok = malloc(B * sizeof(bool));
    b.pred = malloc(B * sizeof(int64_t));
    b.ys = malloc(B * sizeof(int64_t));
    b.iters = malloc(B * sizeof(int));
    b.bb = malloc(B * sizeof(int));
    b.idx = malloc(B * sizeof(size_t));
    b.cd = malloc(3 * B * sizeof(double));
    b.cr = malloc(B * sizeof(double));
    bool *exact = malloc(B * sizeof(bool));
    uint8_t *broken = calloc(E * B, 1);
    if (!b.adv || !b.xs || !b.g || !b.l2 || !b.linf || !b.succ || !b.ok || !b.pred || !b.ys ||
        !b.iters || !b.bb || !b.idx || !b.cd || !b.cr || !exact || !broken) {
        st = rr_error_set(err, RR_ENOMEM, NULL, "out of memory for the robustness report");
        goto done;
    }
    // Clean accuracy and the clean input gradients (flags).
    st = rr_cross_entropy_input_gradient(m, ws, x, labels, B, b.adv, b.g, err);
    if (st != RR_OK)
        goto done;
    out->forward_calls++;
    out->gradient_calls++;
    size_t correct = 0, zero = 0, nonfinite = 0, n = 0;
    for (size_t i = 0; i < B; i++) {
        const float *z = b.g + i * K;
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            if (z[k] > z[best])
                best = k;
        b.ok[i] = (int64_t)best == labels[i];
        correct += b.ok[i];
        bool allzero = true, finite = true;
        for (size_t d = 0; d < D; d++) {
            const float v = b.adv[i * D + d];
            allzero = allzero && v == 0.0f;
            finite = finite && isfinite(v);
        }
        zero += allzero;
        nonfinite += !finite;
        if (b.ok[i]) {
            b.idx[n] = i;
            memcpy(b.xs + n * D, x + i * D, D * sizeof(float));
            b.ys[n] = labels[i];
            n++;
        }
    }
    out->clean_accuracy = (double)correct / (double)B;
    out->flags.zero_gradient_fraction = (double)zero / (double)B;
    out->flags.nonfinite_gradient_fraction = (double)nonfinite / (double)B;
    const bool mn = min_norm(ap.name);
    const size_t runs = (mn ? 1 : E) + 2; // the attack runs, DeepFool, the certificate
    stage sg = {.p = p, .base = 0, .width = 1.0 / (double)runs};
    ap.control.progress = p->control.progress ? stage_progress : NULL;
    ap.control.progress_ctx = &sg;
    rr_attack_result ar = {b.adv, b.succ, b.l2, b.linf, b.pred, b.iters, 0, 0, NULL};
    // autoattack: who broke each sample, kept from the run at the largest epsilon.
    size_t e_max = 0;
    for (size_t e = 1; e < E; e++)
        if (p->epsilons[e] > p->epsilons[e_max])
            e_max = e;
    if (out->broken_by)
        for (size_t i = 0; i < B; i++)
            out->broken_by[i] = -1;
    ap.sample_ids = b.idx; // streams of the original samples (attack.h)
    for (size_t e = 0; e < (mn ? 1 : E) && n > 0; e++) {
        ap.epsilon = mn ? RR_ATTACK_DEFAULT : p->epsilons[e];
        ar.broken_by = ap.name == RR_ATTACK_AUTOATTACK && e == e_max ? b.bb : NULL;
        st = rr_attack(m, ws, b.xs, b.ys, n, &ap, &ar, err);
        out->gradient_calls += ar.gradient_calls;
        out->forward_calls += ar.forward_calls;
        if (st != RR_OK)
            goto done;
        for (size_t j = 0; j < n; j++) {
            const double nrm = p->norm == RR_NORM_L2 ? b.l2[j] : b.linf[j];
            if (ar.broken_by) {
                if (out->broken_by)
                    out->broken_by[b.idx[j]] = b.bb[j];
                out->flags.black_box_only += b.bb[j] == (int)RR_ATTACK_SQUARE;
            }
            if (!mn) {
                broken[e * B + b.idx[j]] = b.succ[j];
            } else {
                for (size_t f = 0; f < E; f++)
                    broken[f * B + b.idx[j]] = b.succ[j] && nrm <= p->epsilons[f];
            }
        }
        sg.base += sg.width;
    }
    sg.base = (double)(runs - 2) / (double)runs;
    // DeepFool rho (l2, defaults).
    out->deepfool_rho = NAN;
    if (n > 0) {
        rr_attack_params df;
        rr_attack_params_init(&df, RR_ATTACK_DEEPFOOL);
        df.norm = RR_NORM_L2;
        df.control.abort = p->control.abort;
        df.control.abort_ctx = p->control.abort_ctx;
        df.control.progress = ap.control.progress;
        df.control.progress_ctx = &sg;
        st = rr_attack(m, ws, b.xs, b.ys, n, &df, &ar, err);
        out->gradient_calls += ar.gradient_calls;
        out->forward_calls += ar.forward_calls;
        if (st != RR_OK)
            goto done;
        double s = 0.0;
        size_t cnt = 0;
        for (size_t j = 0; j < n; j++) {
            double nx = 0.0;
            for (size_t d = 0; d < D; d++)
                nx += (double)b.xs[j * D + d] * b.xs[j * D + d];
            if (b.succ[j] && nx > 0) {
                s += b.l2[j] / sqrt(nx);
                cnt++;
            }
        }
        out->deepfool_rho = cnt ? s / (double)cnt : NAN;
    }
    sg.base += sg.width;
    // Certified radius about the labels.
    rr_certify_params cp = {.norm = p->norm,
                            .labels = labels,
                            .control.abort = p->control.abort,
                            .control.abort_ctx = p->control.abort_ctx,
                            .control.progress = ap.control.progress,
                            .control.progress_ctx = &sg};
    rr_certify_result cr = {b.pred, b.cd, b.cd + B, b.cr, exact, b.adv, NULL, NULL, NULL, NULL};
    st = rr_certify(m, ws, x, B, &cp, &cr, err);
    if (st != RR_OK)
        goto done;
    double rsum = 0.0;
    for (size_t i = 0; i < B; i++)
        rsum += isfinite(b.cr[i]) ? b.cr[i] : 0.0;
    out->mean_certified_radius = rsum / (double)B;
    // Accuracies, per-sample minimum epsilon, flags.
    for (size_t i = 0; i < B; i++) {
        double mine = NAN;
        if (!b.ok[i])
            mine = 0.0;
        for (size_t e = 0; e < E; e++) {
            const bool br = !b.ok[i] || broken[e * B + i];
            if (!br)
                out->robust_accuracy[e] += 1.0;
            if (b.ok[i] && broken[e * B + i]) {
                if (isnan(mine) || p->epsilons[e] < mine)
                    mine = p->epsilons[e];
                if (p->epsilons[e] < b.cr[i] * (1.0 - 1e-4))
                    out->flags.certified_broken++;
            }
        }
        out->per_sample_min_epsilon[i] = mine;
    }
    for (size_t e = 0; e < E; e++)
        out->robust_accuracy[e] /= (double)B;
    for (size_t e = 0; e < E; e++)
        for (size_t f = 0; f < E; f++)
            if (p->epsilons[f] > p->epsilons[e] &&
                out->robust_accuracy[f] > out->robust_accuracy[e])
                out->flags.non_monotone = true;
    const rr_robustness_flags *fl = &out->flags;
    out->flags.flagged =
        fl->zero_gradient_fraction > 0.1 || fl->nonfinite_gradient_fraction > 0.1 ||
        fl->black_box_only > 0.002 * (double)B || fl->non_monotone || fl->certified_broken > 0;
    if (p->control.progress)
        p->control.progress(p->control.progress_ctx, 1.0);
done:
    free(b.adv);
    free(b.xs);
    free(b.g);
    free(b.l2);
    free(b.linf);
    free(b.succ);
    free(b.ok);
    free(b.pred);
    free(b.ys);
    free(b.iters);
    free(b.bb);
    free(b.idx);
    free(b.cd);
    free(b.cr);
    free(exact);
    free(broken);
    return st;
}
