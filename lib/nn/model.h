// A loaded model: architecture + float32 weights, immutable after load and reference counted
// (../shared/spec/model-format.md).
//
// rr_model_load checks the architecture document, infers every layer's shape, and checks that
// every tensor the layers need is present with the right shape and a supported dtype and that
// no tensor is left unused (num_batches_tracked excepted); the first mismatch is reported by
// name. Weights (converted to float32) live in one 64-byte-aligned block.
// Thread rules: a loaded model is never written again, so any number of threads may compute
// with it at once; mutable per-call state lives in rr_workspace. retain/release are atomic.
// The exceptions are training's rr_model_init and rr_train (train/train.h), which rewrite the
// weights of a model the caller holds exclusively (created, not shared).
#ifndef RR_NN_MODEL_H
#define RR_NN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_model rr_model;

// One model tensor that takes part in the computation (every tensor of the file except
// `num_batches_tracked`), in state_dict order. Gradients with respect to the parameters use
// the same layout: a float array of rr_model_param_array_size(m) elements in which parameter i
// occupies [offset, offset + numel).
typedef struct rr_param {
    const char *name; // "3.body.0.weight", borrowed from the model
    rr_shape shape;
    size_t numel;
    size_t offset;     // in floats, into the weight block and into gradient arrays
    const float *data; // borrowed: the model's float32 copy
} rr_param;

// Parses and validates a model file held in memory (`buf` is borrowed only for the call).
// Errors: RR_EFORMAT (not safetensors, architecture missing or malformed), RR_EUNSUPPORTED
// (layer option, size or format version relureg does not handle), RR_EDTYPE (a tensor that
// is not F32/F64/F16/BF16; field = its name), RR_ESHAPE (a missing, extra or mis-shaped
// tensor, or layers whose shapes do not chain; field = tensor name or layer path),
// RR_ENONFINITE (a weight is NaN/Inf, also after conversion to float32), RR_EINVAL (a
// batchnorm running_var + eps <= 0), RR_ENOMEM. On success *out is owned: the caller holds one
// reference (rr_model_release); on failure *out is left NULL.
rr_status rr_model_load(const uint8_t *buf, size_t len, rr_model **out, rr_error *err);
// Same, reading the file at `path` (RR_EIO when it cannot be read).
rr_status rr_model_load_file(const char *path, rr_model **out, rr_error *err);

// A model of the given architecture (JSON text, as in a model file) with all weights zero
// and batchnorm running_var 1: the starting point of training (lib/train). Errors as load.
rr_status rr_model_create(const char *architecture, rr_model **out, rr_error *err);

// Serialises the model as a model file: its current float32 weights, the architecture and
// the extra __metadata__ entries meta[0..2n) = key, value, ... (n pairs, borrowed; may be 0).
// *out (*len bytes) is owned by the caller (free()). Errors: RR_ENOMEM, RR_EINVAL (a metadata
// key or value that is not valid UTF-8).
rr_status rr_model_save(const rr_model *m, const char *const *meta, size_t n, uint8_t **out,
                        size_t *len, rr_error *err);

// Reference counting (C11 atomics; any thread). retain returns m; release frees the model
// when the count reaches zero. Both are no-ops on NULL.
rr_model *rr_model_retain(rr_model *m);
void rr_model_release(rr_model *m);

// ---- accessors (all borrowed, valid while the model lives) ----
const rr_shape *rr_model_input_shape(const rr_model *m); // [d] or [C, H, W]
size_t rr_model_input_size(const rr_model *m);           // D = product of input_shape
int rr_model_num_classes(const rr_model *m);             // K
// False when the model declares no input_range; else sets [lo, hi].
bool rr_model_input_range(const rr_model *m, float *lo, float *hi);
// Class name k, or NULL when the model has none.
const char *rr_model_class_name(const rr_model *m, int k);
// Number of top-level layers (a residual block counts once).
int rr_model_num_layers(const rr_model *m);

// ---- parameters ----
// Three counts, named by what they count:
//   rr_model_num_param_tensors   tensors: the indices i of rr_model_param(m, i);
//   rr_model_num_param_elements  their elements, sum of numel: what users call the parameter
//                                count (api.md's parameter_count);
//   rr_model_param_array_size    floats of an array laid out as the parameters (the weight
//                                block, a parameter gradient): the elements plus the padding
//                                that keeps every tensor 64-byte aligned. Allocate gradients
//                                with this one.
size_t rr_model_num_param_tensors(const rr_model *m);
size_t rr_model_num_param_elements(const rr_model *m);
size_t rr_model_param_array_size(const rr_model *m);
// Parameter i < rr_model_num_param_tensors(m), in state_dict order.
const rr_param *rr_model_param(const rr_model *m, size_t i);
// NULL when no parameter has that name.
const rr_param *rr_model_param_find(const rr_model *m, const char *name);
// Floating-point operations of one sample's forward pass (a multiply-add counts 2; elementwise
// layers count one per output). What a caller's cost model scales: a backward pass through the
// same layers costs about as much again, a parameter gradient about twice.
double rr_model_forward_flops(const rr_model *m);
// The architecture document as stored in the file (JSON text), and any __metadata__ entry.
const char *rr_model_architecture(const rr_model *m);
size_t rr_model_metadata_count(const rr_model *m);
const char *rr_model_metadata_key(const rr_model *m, size_t i);
const char *rr_model_metadata_value(const rr_model *m, size_t i);

// ---- activation pattern ----
// The activation pattern of a sample is, in layer order, one byte per unit of every relu /
// leaky_relu input (1 when the input is > 0, else 0) followed, for max-pool layers, by the
// arg-max index of every output (int32, little-endian, index h*W + w within its input
// channel plane, as torch's return_indices). Equal patterns <=> same linear region Q(x).
size_t rr_model_pattern_bytes(const rr_model *m);
// Number of pattern layers (relu, leaky_relu, maxpool2d) and, for layer j, its kind, its
// byte offset in the pattern, its unit count (inputs for relu, outputs for maxpool) and the
// shape of those units ([C, H, W] or [d]).
int rr_model_pattern_layers(const rr_model *m);
typedef struct rr_pattern_layer {
    bool is_maxpool;
    size_t offset; // bytes into a sample's pattern
    size_t units;  // relu: input units (1 byte each); maxpool: outputs (4 bytes each)
    rr_shape shape;
} rr_pattern_layer;
// j in [0, rr_model_pattern_layers(m)); *out is caller storage.
void rr_model_pattern_layer(const rr_model *m, int j, rr_pattern_layer *out);

#ifdef __cplusplus
}
#endif

#endif
