// Internal layout of a loaded model: the architecture flattened into a list of ops that the
// kernels execute in order (residual blocks become RES_BEGIN ... RES_END brackets).
//
// Activations: buffer 0 is the input; op i reads buffer ops[i].in and writes ops[i].out.
// flatten and RES_BEGIN write nothing (out == in); RES_END adds buffer ops[partner].in (the
// block's input) to the body's output. Per sample, buffer a holds act_size[a] floats.
// Everything here is immutable after rr_model_load.
#ifndef RR_NN_MODEL_IMPL_H
#define RR_NN_MODEL_IMPL_H

#include <stdatomic.h>

#include "io/model_spec.h"
#include "nn/model.h"

typedef enum rr_op_kind {
    RR_OP_LINEAR,
    RR_OP_CONV2D,
    RR_OP_RELU, // relu and leaky_relu (slope 0 for relu)
    RR_OP_MAXPOOL,
    RR_OP_AVGPOOL,
    RR_OP_FLATTEN,
    RR_OP_BATCHNORM,
    RR_OP_RES_BEGIN,
    RR_OP_RES_END
} rr_op_kind;

typedef struct rr_op {
    rr_op_kind kind;
    const rr_layer_spec *spec; // borrowed from the model's spec (RES_END: the residual layer)
    int in, out;               // activation buffer indices
    bool flat_in, flat_out;    // per-sample input / output is a vector [d]
    int c, h, w;               // input shape per sample (flat inputs: c = d, h = w = 1)
    int oc, oh, ow;            // output shape per sample
    size_t n_in, n_out;        // c*h*w, oc*oh*ow
    // conv2d and pools
    int kh, kw, sh, sw, ph, pw;
    bool ceil_mode, count_include_pad;
    float slope; // relu: 0, leaky_relu: negative_slope
    // parameter indices into m->params, -1 when absent
    int p_weight, p_bias, p_mean, p_var;
    // batchnorm, derived at load (double precision, then rounded): y = x * scale + shift,
    // scale = w / sqrt(var + eps), shift = b - mean * scale; inv_std = 1 / sqrt(var + eps).
    float *bn_scale, *bn_shift, *bn_inv_std; // borrowed from m->derived, oc entries each
    int partner;                             // RES_BEGIN <-> RES_END
    int depth;                               // residual nesting depth of a RES_* op (0 = outermost)
    int pattern;                             // index among pattern layers, -1 when not one
    size_t pattern_off;                      // bytes into a sample's pattern
    size_t idx_off; // maxpool: int32 offset per sample into the index store
} rr_op;

struct rr_model {
    atomic_int refs;
    rr_model_spec spec;
    size_t D; // input size per sample
    int K;    // classes
    rr_op *ops;
    int nops;
    int nacts;        // activation buffers, including the input (0)
    size_t *act_size; // floats per sample for each buffer
    size_t max_act;   // max over act_size
    size_t act_total; // sum of act_size over buffers 1.. (the input is the caller's)
    size_t idx_total; // int32 max-pool indices per sample
    int res_depth;    // deepest residual nesting + 1 (0 when there is none)
    size_t pattern_bytes;
    int npattern;
    int *pattern_ops; // op index of each pattern layer
    rr_param *params;
    size_t nparams;
    char **param_names; // owned, one per param
    float *weights;     // 64-byte aligned block, param_size floats
    size_t param_size;
    size_t param_count;
    float *derived;                  // batchnorm scale/shift/inv_std
    char *arch_json;                 // owned copy of the architecture text
    char **meta_keys, **meta_values; // owned copies of __metadata__
    size_t nmeta;
    int ntop; // top-level layers
};

// Training only: the weight block of a model the caller owns exclusively (one reference, not
// shared with other threads), and the refresh of what load derives from the weights
// (batchnorm folding) after they changed. RR_EINVAL when running_var + eps <= 0.
float *rr__model_weights(rr_model *m);
rr_status rr__model_refresh(rr_model *m, rr_error *err);

#endif
