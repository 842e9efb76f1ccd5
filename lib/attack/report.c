// Robustness report (report.h): per block of samples, named steps (the clean pass, the attack
// runs, DeepFool, the certificate) that fill the per-sample outcomes; then the summary of all
// outcomes, which is also what a merge of shards calls.
#include "attack/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_impl.h" // rr__carve
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

static rr_status check_epsilons(const double *eps, size_t E, rr_error *err)
{
    if (E < 1 || E > 64)
        return rr_error_set(err, RR_EINVAL, "epsilons", "epsilons must hold 1 to 64 values");
    for (size_t e = 0; e < E; e++)
        if (!(eps[e] >= 0) || !isfinite(eps[e]))
            return rr_error_set(err, RR_EINVAL, "epsilons", "epsilons[%zu] must be a number >= 0",
                                e);
    return RR_OK;
}

// The state of one report: the batch, the outcomes being filled and the scratch.
typedef struct report {
    const rr_model *m;
    rr_workspace *ws;
    const float *x;
    const int64_t *labels;
    size_t B, D, K, E; // B: the rows of the block being reported
    size_t first;      // global index of the block's row 0
    const rr_robustness_params *p;
    rr_robustness_result *out;
    rr_error *err;
    rr_attack_params ap; // the attack, norm and epsilon set per run
    stage sg;
    rr_robustness_sample *s; // [B] the block's outcomes (in out->samples or owned)
    size_t n;                // correctly classified samples, gathered into xs / ys
    float *adv, *l2, *linf, *xs, *g;
    bool *succ, *exact;
    int64_t *pred, *ys;
    int *iters, *bb;
    size_t *idx, *ids; // [n] their rows, and their global indices (RNG streams)
    double *cd, *cr;
    void *block; // the scratch above, one allocation
} report;

static void report_free(report *r)
{
    rr_aligned_free(r->block);
}

// The block's scratch, carved from one allocation (attack_impl.h, rr__carve).
static rr_status report_alloc(report *r)
{
    const size_t B = r->B, D = r->D, K = r->K;
    const rr__carve_part parts[] = {RR__CARVE_PART(r->adv, B * D),
                                    RR__CARVE_PART(r->xs, B * D),
                                    RR__CARVE_PART(r->g, B * (D > K ? D : K)),
                                    RR__CARVE_PART(r->l2, B),
                                    RR__CARVE_PART(r->linf, B),
                                    RR__CARVE_PART(r->succ, B),
                                    RR__CARVE_PART(r->exact, B),
                                    RR__CARVE_PART(r->pred, B),
                                    RR__CARVE_PART(r->ys, B),
                                    RR__CARVE_PART(r->iters, B),
                                    RR__CARVE_PART(r->bb, B),
                                    RR__CARVE_PART(r->idx, B),
                                    RR__CARVE_PART(r->ids, B),
                                    RR__CARVE_PART(r->cd, 3 * B),
                                    RR__CARVE_PART(r->cr, B)};
    r->block = rr__carve(r->err, parts, sizeof parts / sizeof parts[0]);
    return r->block ? RR_OK : RR_ENOMEM;
}

// Clean predictions and input gradients (the flags); gathers the correctly classified samples.
static rr_status clean_pass(report *r)
{
    const size_t B = r->B, D = r->D, K = r->K;
    const uint64_t all = r->E == 64 ? ~0ull : (1ull << r->E) - 1;
    rr_status st =
        rr_cross_entropy_input_gradient(r->m, r->ws, r->x, r->labels, B, r->adv, r->g, r->err);
    if (st != RR_OK)
        return st;
    r->out->forward_calls++;
    r->out->gradient_calls++;
    r->n = 0;
    for (size_t i = 0; i < B; i++) {
        const float *z = r->g + i * K;
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            if (z[k] > z[best])
                best = k;
        rr_robustness_sample *s = &r->s[i];
        *s = (rr_robustness_sample){
            .correct = (int64_t)best == r->labels[i], .deepfool_rho = NAN, .broken_by = -1};
        bool allzero = true, finite = true;
        for (size_t d = 0; d < D; d++) {
            const float v = r->adv[i * D + d];
            allzero = allzero && v == 0.0f;
            finite = finite && isfinite(v);
        }
        s->zero_gradient = allzero;
        s->nonfinite_gradient = !finite;
        if (!s->correct) {
            s->broken = all;
            continue;
        }
        r->idx[r->n] = i;
        r->ids[r->n] = r->first + i;
        memcpy(r->xs + r->n * D, r->x + i * D, D * sizeof(float));
        r->ys[r->n] = r->labels[i];
        r->n++;
    }
    return RR_OK;
}

// The attack at every epsilon (a minimum-norm attack once): the broken bits, and for
// autoattack who broke each sample at the largest epsilon.
static rr_status attack_runs(report *r)
{
    const rr_robustness_params *p = r->p;
    const bool mn = min_norm(r->ap.name);
    size_t e_max = 0;
    for (size_t e = 1; e < r->E; e++)
        if (p->epsilons[e] > p->epsilons[e_max])
            e_max = e;
    rr_attack_result ar = {r->adv, r->succ, r->l2, r->linf, r->pred, r->iters, 0, 0, NULL};
    r->ap.sample_ids = r->ids; // streams of the original samples (attack.h)
    for (size_t e = 0; e < (mn ? 1 : r->E) && r->n > 0; e++) {
        r->ap.epsilon = mn ? RR_ATTACK_DEFAULT : p->epsilons[e];
        ar.broken_by = r->ap.name == RR_ATTACK_AUTOATTACK && e == e_max ? r->bb : NULL;
        rr_status st = rr_attack(r->m, r->ws, r->xs, r->ys, r->n, &r->ap, &ar, r->err);
        r->out->gradient_calls += ar.gradient_calls;
        r->out->forward_calls += ar.forward_calls;
        if (st != RR_OK)
            return st;
        for (size_t j = 0; j < r->n; j++) {
            rr_robustness_sample *s = &r->s[r->idx[j]];
            const double nrm = p->norm == RR_NORM_L2 ? r->l2[j] : r->linf[j];
            if (ar.broken_by)
                s->broken_by = r->bb[j];
            if (!mn) {
                s->broken |= (uint64_t)r->succ[j] << e;
            } else {
                for (size_t f = 0; f < r->E; f++)
                    s->broken |= (uint64_t)(r->succ[j] && nrm <= p->epsilons[f]) << f;
            }
        }
        r->sg.base += r->sg.width;
    }
    return RR_OK;
}

// DeepFool rho (l2, defaults) of each correctly classified sample it broke.
static rr_status deepfool_pass(report *r)
{
    if (r->n == 0)
        return RR_OK;
    rr_attack_params df;
    rr_attack_params_init(&df, RR_ATTACK_DEEPFOOL);
    df.norm = RR_NORM_L2;
    df.control.abort = r->p->control.abort;
    df.control.abort_ctx = r->p->control.abort_ctx;
    df.control.progress = r->ap.control.progress;
    df.control.progress_ctx = &r->sg;
    rr_attack_result ar = {r->adv, r->succ, r->l2, r->linf, r->pred, r->iters, 0, 0, NULL};
    rr_status st = rr_attack(r->m, r->ws, r->xs, r->ys, r->n, &df, &ar, r->err);
    r->out->gradient_calls += ar.gradient_calls;
    r->out->forward_calls += ar.forward_calls;
    if (st != RR_OK)
        return st;
    const size_t D = r->D;
    for (size_t j = 0; j < r->n; j++) {
        double nx = 0.0;
        for (size_t d = 0; d < D; d++)
            nx += (double)r->xs[j * D + d] * r->xs[j * D + d];
        if (r->succ[j] && nx > 0)
            r->s[r->idx[j]].deepfool_rho = r->l2[j] / sqrt(nx);
    }
    return RR_OK;
}

// The certified radius of every sample about its label.
static rr_status certify_pass(report *r)
{
    const size_t B = r->B;
    rr_certify_params cp = {.norm = r->p->norm,
                            .labels = r->labels,
                            .control.abort = r->p->control.abort,
                            .control.abort_ctx = r->p->control.abort_ctx,
                            .control.progress = r->ap.control.progress,
                            .control.progress_ctx = &r->sg};
    rr_certify_result cr = {r->pred, r->cd, r->cd + B, r->cr, r->exact,
                            r->adv,  NULL,  NULL,      NULL,  NULL};
    rr_status st = rr_certify(r->m, r->ws, r->x, B, &cp, &cr, r->err);
    if (st != RR_OK)
        return st;
    for (size_t i = 0; i < B; i++)
        r->s[i].certified_radius = r->cr[i];
    return RR_OK;
}

// The outcomes of one block: its rows x [B, D] from global index r->first, into r->s [B].
static rr_status report_block(report *r, size_t nblocks, size_t blk, size_t runs)
{
    const double unit = 1.0 / ((double)nblocks * (double)runs);
    r->sg.base = (double)(blk * runs) * unit;
    r->sg.width = unit;
    rr_status st = clean_pass(r);
    if (st == RR_OK)
        st = attack_runs(r);
    r->sg.base = (double)(blk * runs + runs - 2) * unit;
    if (st == RR_OK)
        st = deepfool_pass(r);
    r->sg.base += unit;
    if (st == RR_OK)
        st = certify_pass(r);
    return st;
}

rr_status rr_robustness(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                        size_t B, const rr_robustness_params *p, rr_robustness_result *out,
                        rr_error *err)
{
    report r = {.m = m,
                .ws = ws,
                .D = rr_model_input_size(m),
                .K = (size_t)rr_model_num_classes(m),
                .E = p->n_eps,
                .p = p,
                .out = out,
                .err = err};
    rr_status st = check_epsilons(p->epsilons, p->n_eps, err);
    if (st != RR_OK)
        return st;
    rr_attack_params chk;
    r.ap = p->attack;
    r.ap.norm = p->norm;
    r.ap.epsilon = p->epsilons[0];
    r.ap.targeted = false;
    r.ap.target_labels = NULL;
    r.ap.sample_ids = NULL;
    r.ap.control.abort = p->control.abort;
    r.ap.control.abort_ctx = p->control.abort_ctx;
    st = rr_attack_resolve(&r.ap, (int)r.K, &chk, err);
    if (st != RR_OK)
        return st;
    memset(out->robust_accuracy, 0, r.E * sizeof(double));
    out->gradient_calls = out->forward_calls = 0;
    out->flags = (rr_robustness_flags){0};
    if (B == 0)
        return RR_OK;
    // Blocks: rows whose global indices share index / G, G = p->block or the default.
    const size_t G = p->block ? p->block : RR_ROBUSTNESS_BLOCK, off = p->sample_offset;
    const size_t nblocks = (off + B - 1) / G - off / G + 1;
    const size_t runs = (min_norm(r.ap.name) ? 1 : r.E) + 2; // attack runs, DeepFool, certificate
    r.sg = (stage){.p = p};
    r.ap.control.progress = p->control.progress ? stage_progress : NULL;
    r.ap.control.progress_ctx = &r.sg;
    rr_robustness_sample *s = out->samples ? out->samples : malloc(B * sizeof(*s));
    r.B = B < G ? B : G;
    if (!s)
        st = rr_error_set(err, RR_ENOMEM, NULL, "out of memory for the robustness report");
    else
        st = report_alloc(&r);
    for (size_t i0 = 0, blk = 0; st == RR_OK && i0 < B; blk++) {
        size_t i1 = ((off + i0) / G + 1) * G - off;
        i1 = i1 < B ? i1 : B;
        r.B = i1 - i0;
        r.first = off + i0;
        r.x = x + i0 * r.D;
        r.labels = labels + i0;
        r.s = s + i0;
        st = report_block(&r, nblocks, blk, runs);
        i0 = i1;
    }
    if (st == RR_OK)
        st = rr_robustness_summarize(s, B, p->epsilons, r.E, out, err);
    if (st == RR_OK && p->control.progress)
        p->control.progress(p->control.progress_ctx, 1.0);
    report_free(&r);
    if (s != out->samples)
        free(s);
    return st;
}

rr_status rr_robustness_summarize(const rr_robustness_sample *s, size_t B, const double *epsilons,
                                  size_t n_eps, rr_robustness_result *out, rr_error *err)
{
    const size_t E = n_eps;
    rr_status st = check_epsilons(epsilons, E, err);
    if (st != RR_OK)
        return st;
    size_t correct = 0, zero = 0, nonfinite = 0, rho_n = 0;
    double rho_sum = 0.0, rsum = 0.0;
    rr_robustness_flags *fl = &out->flags;
    *fl = (rr_robustness_flags){0};
    memset(out->robust_accuracy, 0, E * sizeof(double));
    for (size_t i = 0; i < B; i++) {
        const rr_robustness_sample *si = &s[i];
        correct += si->correct;
        zero += si->zero_gradient;
        nonfinite += si->nonfinite_gradient;
        if (si->correct && !isnan(si->deepfool_rho)) {
            rho_sum += si->deepfool_rho;
            rho_n++;
        }
        rsum += isfinite(si->certified_radius) ? si->certified_radius : 0.0;
        fl->black_box_only += si->broken_by == (int)RR_ATTACK_SQUARE;
        if (out->broken_by)
            out->broken_by[i] = si->broken_by;
        double mine = si->correct ? NAN : 0.0;
        for (size_t e = 0; e < E; e++) {
            const bool br = !si->correct || (si->broken >> e & 1);
            if (!br)
                out->robust_accuracy[e] += 1.0;
            if (si->correct && br) {
                if (isnan(mine) || epsilons[e] < mine)
                    mine = epsilons[e];
                if (epsilons[e] < si->certified_radius * (1.0 - 1e-4))
                    fl->certified_broken++;
            }
        }
        out->per_sample_min_epsilon[i] = mine;
    }
    const double n = (double)B;
    out->clean_accuracy = B ? (double)correct / n : 0.0;
    fl->zero_gradient_fraction = B ? (double)zero / n : 0.0;
    fl->nonfinite_gradient_fraction = B ? (double)nonfinite / n : 0.0;
    out->deepfool_rho = rho_n ? rho_sum / (double)rho_n : NAN;
    out->mean_certified_radius = B ? rsum / n : NAN;
    for (size_t e = 0; e < E; e++)
        out->robust_accuracy[e] = B ? out->robust_accuracy[e] / n : 0.0;
    for (size_t e = 0; e < E; e++)
        for (size_t f = 0; f < E; f++)
            if (epsilons[f] > epsilons[e] && out->robust_accuracy[f] > out->robust_accuracy[e])
                fl->non_monotone = true;
    fl->flagged = fl->zero_gradient_fraction > 0.1 || fl->nonfinite_gradient_fraction > 0.1 ||
                  fl->black_box_only > 0.002 * n || fl->non_monotone || fl->certified_broken > 0;
    return RR_OK;
}
