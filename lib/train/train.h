// Training with cross-entropy + lambda * any regularizer (reg.h), minibatch by minibatch,
// on a model the caller owns exclusively (its weights are updated in place). Deterministic
// for a seed: initialisation and shuffling draw from rr_rng streams, gradients are
// thread-independent. Batchnorm layers keep their running statistics (inference-mode
// batchnorm is what relureg computes), so train architectures without batchnorm.
// Thread rules: rr_model_init and rr_train write the model, so no other thread may use it
// meanwhile (a model from rr_model_create is not shared until the caller shares it); the
// computation uses the calling thread's OpenMP / BLAS threads. rr_evaluate only reads.
#ifndef RR_TRAIN_TRAIN_H
#define RR_TRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/control.h"
#include "core/status.h"
#include "nn/model.h"
#include "reg/reg.h"
#include "train/idx.h"
#include "train/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    size_t batch;           // minibatch size (0 = 128)
    int epochs;             // >= 1
    uint64_t seed;          // shuffling
    const rr_reg_spec *reg; // NULL: cross-entropy only (borrowed)
    double lambda;          // weight of the regularizer
    rr_optim_params optim;
    rr_control control; // abort polled every step; progress: fraction of all steps done
    // Training statistics every 20 steps and at each epoch's end (may be NULL), on the calling
    // thread like the control callbacks.
    rr_train_progress_fn report;
    void *report_ctx;
} rr_train_params;

// PyTorch's default initialisation (kaiming-uniform weights, bounds 1/sqrt(fan_in) for weights
// and biases; batchnorm weight 1, bias 0, mean 0, var 1), drawn from (seed, tensor index),
// written into m. Errors: RR_ENOMEM (batchnorm's derived scales).
rr_status rr_model_init(rr_model *m, uint64_t seed, rr_error *err);

// Trains m in place on `data` (borrowed; its images must have the model's input size).
// Errors: RR_ESHAPE (field "data": images of another size), RR_EINVAL (bad parameters),
// RR_ENOMEM, RR_ECANCELLED (m then holds the weights of the last step taken).
rr_status rr_train(rr_model *m, const rr_dataset *data, const rr_train_params *p, rr_error *err);

// Accuracy and mean cross-entropy of m on the first `limit` samples of d (0 = all); either
// output may be NULL. Errors: RR_ESHAPE (field "data": images of another size), RR_ENOMEM.
rr_status rr_evaluate(const rr_model *m, const rr_dataset *d, size_t limit, double *accuracy,
                      double *loss, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
