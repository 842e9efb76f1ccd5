// Minibatch training on cross-entropy + lambda R (see train.h): each step one rr_reg_compute
// call gives both parameter gradients, which the optimizer combines and applies.
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

rr_status rr_train(rr_model *m, const rr_dataset *data, const rr_train_params *p, rr_error *err)
{
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const size_t NP = rr_model_param_array_size(m), n = data->n;
    const size_t B = p->batch ? p->batch : 128;
    if (data->rows * data->cols != D)
        return rr_error_set(err, RR_ESHAPE, "data", "images have %zu values, the model takes %zu",
                            data->rows * data->cols, D);
    if (p->epochs < 1 || n == 0)
        return rr_error_set(err, RR_EINVAL, "epochs", "need at least one epoch and one sample");
    rr_status st = RR_OK;
    rr_workspace *ws = NULL;
    rr_optim *opt = NULL;
    size_t *perm = malloc(n * sizeof(size_t));
    float *x = malloc(B * D * sizeof(float)), *gce = malloc(NP * sizeof(float));
    float *greg = malloc(NP * sizeof(float)), *gsum = malloc(NP * sizeof(float));
    float *logits = malloc(B * K * sizeof(float));
    int64_t *y = malloc(B * sizeof(int64_t));
    if (!perm || !x || !gce || !greg || !gsum || !logits || !y) {
        st = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto out;
    }
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    if ((st = rr_workspace_new(m, &wp, &ws, err)) || (st = rr_optim_new(NP, &p->optim, &opt, err)))
        goto out;
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    rr_reg_spec specs[2] = {{.name = RR_REG_CROSS_ENTROPY}};
    const size_t nspecs = p->reg ? 2 : 1;
    if (p->reg)
        specs[1] = *p->reg;
    const size_t steps = (n + B - 1) / B;
    const double t0 = now_s();
    for (int e = 1; e <= p->epochs; e++) {
        // Fisher-Yates shuffle from the (seed, epoch) stream.
        rr_rng rng;
        rr_rng_init(&rng, p->seed, (uint64_t)e);
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)(rr_rng_uniform(&rng) * (double)(i + 1));
            size_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double loss_sum = 0, reg_sum = 0;
        size_t correct = 0, seen = 0;
        for (size_t s = 0; s < steps; s++) {
            if (p->control.abort && p->control.abort(p->control.abort_ctx)) {
                st = rr_error_set(err, RR_ECANCELLED, "", "training cancelled");
                goto out;
            }
            const size_t b0 = s * B, nb = n - b0 < B ? n - b0 : B;
            for (size_t i = 0; i < nb; i++) {
                memcpy(x + i * D, data->images + perm[b0 + i] * D, D * sizeof(float));
                y[i] = data->labels[perm[b0 + i]];
            }
            rr_reg_result res[2] = {{.grad_parameters = gce}, {.grad_parameters = greg}};
            rr_reg_params rp = {.regs = specs, .nregs = nspecs};
            rr_reg_loss lo = {.logits = logits};
            if ((st = rr_reg_compute(m, ws, x, y, nb, &rp, res, &lo, err)))
                goto out;
            for (size_t j = 0; j < NP; j++)
                gsum[j] = gce[j] + (p->reg ? (float)p->lambda * greg[j] : 0.0f);
            // Accuracy on the batch before the step (the logits of this forward).
            for (size_t i = 0; i < nb; i++) {
                size_t best = 0;
                for (size_t k = 1; k < K; k++)
                    best = logits[i * K + k] > logits[i * K + best] ? k : best;
                correct += (int64_t)best == y[i];
            }
            rr_optim_step(opt, rr__model_weights(m), gsum);
            if ((st = rr__model_refresh(m, err)))
                goto out;
            loss_sum += res[0].value * (double)nb;
            reg_sum += (p->reg ? res[1].value : 0.0) * (double)nb;
            seen += nb;
            const double done = (double)(e - 1) * steps + (double)(s + 1);
            if (p->control.progress)
                p->control.progress(p->control.progress_ctx, done / ((double)p->epochs * steps));
            if (p->report && (s % 20 == 19 || s + 1 == steps)) {
                const double el = now_s() - t0;
                rr_train_progress pr = {.epoch = e,
                                        .epochs = p->epochs,
                                        .step = s + 1,
                                        .steps = steps,
                                        .loss = loss_sum / (double)seen,
                                        .reg = reg_sum / (double)seen,
                                        .accuracy = (double)correct / (double)seen,
                                        .elapsed_s = el,
                                        .eta_s = el / done * ((double)p->epochs * steps - done)};
                p->report(p->report_ctx, &pr);
            }
        }
    }
out:
    rr_optim_free(opt);
    rr_workspace_free(ws);
    free(y);
    free(logits);
    free(gsum);
    free(greg);
    free(gce);
    free(x);
    free(perm);
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
