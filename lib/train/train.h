// Training with cross-entropy + lambda * any regularizer (reg.h), minibatch by minibatch,
// on a model the caller owns exclusively (its weights are updated in place). Deterministic
// for a seed: initialisation and shuffling draw from rr_rng streams, gradients are
// thread-independent. Batchnorm layers keep their running statistics (inference-mode
// batchnorm is what relureg computes), so train architectures without batchnorm.
#ifndef RR_TRAIN_TRAIN_H
#define RR_TRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/model.h"
#include "reg/reg.h"
#include "train/idx.h"
#include "train/optim.h"

typedef struct rr_train_progress {
    int epoch, epochs;  // 1-based epoch
    size_t step, steps; // step within the epoch
    double loss;        // mean cross-entropy over the epoch so far
    double reg;         // mean regularizer value over the epoch so far
    double accuracy;    // training accuracy over the epoch so far
    double elapsed_s, eta_s;
} rr_train_progress;

typedef void (*rr_train_progress_fn)(void *ctx, const rr_train_progress *p);

typedef struct rr_train_params {
    const rr_dataset *data; // training set; images must have the model's input size
    size_t batch;           // minibatch size (0 = 128)
    int epochs;             // >= 1
    uint64_t seed;          // shuffling
    const rr_reg_spec *reg; // NULL: cross-entropy only
    double lambda;          // weight of the regularizer
    rr_optim_params optim;
    rr_train_progress_fn progress; // called every few steps and at each epoch's end; may be NULL
    void *progress_ctx;
    rr_abort_fn abort; // may be NULL
    void *abort_ctx;
} rr_train_params;

// PyTorch's default initialisation (kaiming-uniform weights, bounds 1/sqrt(fan_in) for weights
// and biases; batchnorm weight 1, bias 0, mean 0, var 1), drawn from (seed, tensor index).
rr_status rr_model_init(rr_model *m, uint64_t seed, rr_error *err);

// Trains m in place. Errors: RR_EINVAL (bad parameters, shapes), RR_ENOMEM, RR_ECANCELLED.
rr_status rr_train(rr_model *m, const rr_train_params *p, rr_error *err);

// Accuracy and mean cross-entropy of m on the first `limit` samples of d (0 = all).
rr_status rr_evaluate(const rr_model *m, const rr_dataset *d, size_t limit, double *accuracy,
                      double *loss, rr_error *err);

#endif
