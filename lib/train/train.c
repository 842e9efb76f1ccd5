// Minibatch training on cross-entropy + lambda R (see train.h): each step one rr_reg_compute
// call gives both parameter gradients, which the optimizer combines and applies.
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/carve.h"
#include "core/rng.h"
#include "nn/forward.h"
#include "nn/loss.h"
#include "nn/model_impl.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

rr_status rr_model_init(rr_model *m, uint64_t seed, rr_error *err)
{
    float *w = rr__model_weights(m);
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        if (op->kind == RR_OP_LINEAR || op->kind == RR_OP_CONV2D) {
            const rr_param *pw = &m->params[op->p_weight];
            const double fan_in = (double)(pw->numel / (size_t)pw->shape.dim[0]);
            const double bound = 1.0 / sqrt(fan_in);
            rr_rng rng;
            rr_rng_init(&rng, seed, (uint64_t)op->p_weight);
            for (size_t j = 0; j < pw->numel; j++)
                w[pw->offset + j] = (float)((2 * rr_rng_uniform(&rng) - 1) * bound);
            if (op->p_bias >= 0) {
                const rr_param *pb = &m->params[op->p_bias];
                for (size_t j = 0; j < pb->numel; j++)
                    w[pb->offset + j] = (float)((2 * rr_rng_uniform(&rng) - 1) * bound);
            }
        } else if (op->kind == RR_OP_BATCHNORM) {
            const int slots[4] = {op->p_weight, op->p_bias, op->p_mean, op->p_var};
            const float vals[4] = {1, 0, 0, 1};
            for (int k = 0; k < 4; k++)
                if (slots[k] >= 0)
                    for (size_t j = 0; j < m->params[slots[k]].numel; j++)
                        w[m->params[slots[k]].offset + j] = vals[k];
        }
    }
    return rr__model_refresh(m, err);
}

// The state of one rr_train call: its buffers, the workspace and the optimizer, and the
// running sums of the current epoch.
typedef struct trainer {
    rr_model *m;
    const rr_dataset *data;
    const rr_train_params *p;
    size_t D, K, NP, B, steps;
    rr_workspace *ws;
    rr_optim *opt;
    size_t *perm;
    float *x, *gce, *greg, *gsum, *logits;
    int64_t *y;
    void *block;          // perm .. y, one allocation (core/carve.h)
    rr_reg_spec specs[2]; // cross-entropy, then the regularizer when there is one
    double loss_sum, reg_sum, t0;
    size_t correct, seen;
} trainer;

static void trainer_free(trainer *t)
{
    rr_optim_free(t->opt);
    rr_workspace_free(t->ws);
    rr_aligned_free(t->block);
}

static rr_status trainer_init(trainer *t, rr_model *m, const rr_dataset *data,
                              const rr_train_params *p, rr_error *err)
{
    *t = (trainer){.m = m, .data = data, .p = p};
    t->D = rr_model_input_size(m), t->K = (size_t)rr_model_num_classes(m);
    t->NP = rr_model_param_array_size(m);
    t->B = p->batch ? p->batch : 128;
    t->steps = (data->n + t->B - 1) / t->B;
    const rr__carve_part parts[] = {
        RR__CARVE_PART(t->perm, data->n), RR__CARVE_PART(t->x, t->B * t->D),
        RR__CARVE_PART(t->gce, t->NP),    RR__CARVE_PART(t->greg, t->NP),
        RR__CARVE_PART(t->gsum, t->NP),   RR__CARVE_PART(t->logits, t->B * t->K),
        RR__CARVE_PART(t->y, t->B)};
    if ((t->block = rr__carve(err, parts, sizeof parts / sizeof parts[0])) == NULL)
        return RR_ENOMEM;
    rr_workspace_params wp = {.max_batch = t->B, .rows_per_sample = t->K};
    rr_status st;
    if ((st = rr_workspace_new(m, &wp, &t->ws, err)) ||
        (st = rr_optim_new(t->NP, &p->optim, &t->opt, err)))
        return st;
    for (size_t i = 0; i < data->n; i++)
        t->perm[i] = i;
    t->specs[0] = (rr_reg_spec){.name = RR_REG_CROSS_ENTROPY};
    if (p->reg)
        t->specs[1] = *p->reg;
    return RR_OK;
}

// Fisher-Yates shuffle of perm [n] from the (seed, epoch) stream.
static void shuffle(size_t *perm, size_t n, uint64_t seed, int epoch)
{
    rr_rng rng;
    rr_rng_init(&rng, seed, (uint64_t)epoch);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rr_rng_uniform(&rng) * (double)(i + 1));
        size_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

// One optimizer step on samples perm[b0 .. b0 + nb): cross-entropy + lambda * regularizer,
// their parameter gradients, the batch's accuracy before the step, the step itself.
static rr_status train_step(trainer *t, size_t b0, size_t nb, rr_error *err)
{
    const rr_train_params *p = t->p;
    const size_t D = t->D, K = t->K;
    for (size_t i = 0; i < nb; i++) {
        memcpy(t->x + i * D, t->data->images + t->perm[b0 + i] * D, D * sizeof(float));
        t->y[i] = t->data->labels[t->perm[b0 + i]];
    }
    rr_reg_result res[2] = {{.grad_parameters = t->gce}, {.grad_parameters = t->greg}};
    rr_reg_params rp = {.regs = t->specs, .nregs = p->reg ? 2 : 1};
    rr_reg_loss lo = {.logits = t->logits};
    rr_status st = rr_reg_compute(t->m, t->ws, t->x, t->y, nb, &rp, res, &lo, err);
    if (st != RR_OK)
        return st;
    for (size_t j = 0; j < t->NP; j++)
        t->gsum[j] = t->gce[j] + (p->reg ? (float)p->lambda * t->greg[j] : 0.0f);
    // Accuracy on the batch before the step (the logits of this forward).
    for (size_t i = 0; i < nb; i++) {
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            best = t->logits[i * K + k] > t->logits[i * K + best] ? k : best;
        t->correct += (int64_t)best == t->y[i];
    }
    rr_optim_step(t->opt, rr__model_weights(t->m), t->gsum);
    if ((st = rr__model_refresh(t->m, err)))
        return st;
    t->loss_sum += res[0].value * (double)nb;
    t->reg_sum += (p->reg ? res[1].value : 0.0) * (double)nb;
    t->seen += nb;
    return RR_OK;
}

// Progress after step s of epoch e: the control's fraction, and every 20 steps the report.
static void report(const trainer *t, int e, size_t s)
{
    const rr_train_params *p = t->p;
    const double done = (double)(e - 1) * t->steps + (double)(s + 1);
    const double total = (double)p->epochs * t->steps;
    if (p->control.progress)
        p->control.progress(p->control.progress_ctx, done / total);
    if (p->report && (s % 20 == 19 || s + 1 == t->steps)) {
        const double el = now_s() - t->t0;
        rr_train_progress pr = {.epoch = e,
                                .epochs = p->epochs,
                                .step = s + 1,
                                .steps = t->steps,
                                .loss = t->loss_sum / (double)t->seen,
                                .reg = t->reg_sum / (double)t->seen,
                                .accuracy = (double)t->correct / (double)t->seen,
                                .elapsed_s = el,
                                .eta_s = el / done * (total - done)};
        p->report(p->report_ctx, &pr);
    }
}

rr_status rr_train(rr_model *m, const rr_dataset *data, const rr_train_params *p, rr_error *err)
{
    const size_t D = rr_model_input_size(m), n = data->n;
    if (data->rows * data->cols != D)
        return rr_error_set(err, RR_ESHAPE, "data", "images have %zu values, the model takes %zu",
                            data->rows * data->cols, D);
    if (p->epochs < 1 || n == 0)
        return rr_error_set(err, RR_EINVAL, "epochs", "need at least one epoch and one sample");
    trainer t;
    rr_status st = trainer_init(&t, m, data, p, err);
    t.t0 = now_s();
    for (int e = 1; e <= p->epochs && st == RR_OK; e++) {
        shuffle(t.perm, n, p->seed, e);
        t.loss_sum = t.reg_sum = 0;
        t.correct = t.seen = 0;
        for (size_t s = 0; s < t.steps && st == RR_OK; s++) {
            if (p->control.abort && p->control.abort(p->control.abort_ctx)) {
                st = rr_error_set(err, RR_ECANCELLED, "", "training cancelled");
                break;
            }
            const size_t b0 = s * t.B, nb = n - b0 < t.B ? n - b0 : t.B;
            if ((st = train_step(&t, b0, nb, err)) == RR_OK)
                report(&t, e, s);
        }
    }
    trainer_free(&t);
    return st;
}

rr_status rr_evaluate(const rr_model *m, const rr_dataset *d, size_t limit, double *accuracy,
                      double *loss, rr_error *err)
{
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const size_t n = limit && limit < d->n ? limit : d->n, B = 256;
    if (d->rows * d->cols != D)
        return rr_error_set(err, RR_ESHAPE, "data", "images have %zu values, the model takes %zu",
                            d->rows * d->cols, D);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B};
    rr_status st = rr_workspace_new(m, &wp, &ws, err);
    float *z = malloc(B * K * sizeof(float)), *l = malloc(B * sizeof(float));
    size_t correct = 0;
    double total = 0;
    if (st == RR_OK && (!z || !l))
        st = rr_error_set(err, RR_ENOMEM, "", "out of memory");
    for (size_t b0 = 0; st == RR_OK && b0 < n; b0 += B) {
        const size_t nb = n - b0 < B ? n - b0 : B;
        if ((st = rr_forward(m, ws, d->images + b0 * D, nb, z, NULL, NULL, err)) ||
            (st = rr_cross_entropy(z, d->labels + b0, nb, (int)K, l, NULL, NULL, NULL, err)))
            break;
        for (size_t i = 0; i < nb; i++) {
            size_t best = 0;
            for (size_t k = 1; k < K; k++)
                best = z[i * K + k] > z[i * K + best] ? k : best;
            correct += (int64_t)best == d->labels[b0 + i];
            total += l[i];
        }
    }
    if (st == RR_OK) {
        if (accuracy)
            *accuracy = n ? (double)correct / (double)n : 0;
        if (loss)
            *loss = n ? total / (double)n : 0;
    }
    free(l);
    free(z);
    rr_workspace_free(ws);
    return st;
}
