// The architecture document of a model file: `__metadata__["relureg.architecture"]`
// (../shared/spec/model-format.md, "Architecture"), parsed and checked field by field.
//
// rr_model_spec_parse validates the JSON document itself (format tag, shapes, every layer's
// fields with their defaults, nesting, unique names); shape inference and the weight tensors
// are checked later by rr_model_load, which turns a spec into an executable model.
// Ownership: rr_model_spec is caller storage; rr_model_spec_clear frees what parse allocated.
// Thread rules: pure, no global state.
#ifndef RR_IO_MODEL_SPEC_H
#define RR_IO_MODEL_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rr_layer_type {
    RR_LAYER_LINEAR,
    RR_LAYER_CONV2D,
    RR_LAYER_RELU,
    RR_LAYER_LEAKY_RELU,
    RR_LAYER_MAXPOOL2D,
    RR_LAYER_AVGPOOL2D,
    RR_LAYER_FLATTEN,
    RR_LAYER_BATCHNORM,
    RR_LAYER_RESIDUAL
} rr_layer_type;

// The spec's name for a layer type ("conv2d"); static storage.
const char *rr_layer_type_name(rr_layer_type t);

// Limits that keep a hostile document from asking for absurd work before any weight is read.
#define RR_SPEC_MAX_LAYERS  4096      // layers in total, nested ones included
#define RR_SPEC_MAX_DEPTH   16        // residual nesting
#define RR_SPEC_MAX_DIM     (1 << 20) // any single size field (features, channels, H, W, ...)
#define RR_SPEC_MAX_NAME    200       // bytes in a layer name
#define RR_SPEC_MAX_CLASSES 100000

typedef struct rr_layer_spec {
    rr_layer_type type;
    char *name;    // linear, conv2d, batchnorm: state_dict prefix (owned); else NULL
    char path[96]; // where it sits in the document, "layers[3].layers[0]"
    // linear
    int in_features, out_features;
    bool bias; // linear, conv2d (default true)
    // conv2d
    int in_channels, out_channels;
    // conv2d, maxpool2d, avgpool2d: [h, w] pairs
    int kernel[2], stride[2], padding[2];
    bool ceil_mode, count_include_pad; // pools (defaults false, true)
    double negative_slope;             // leaky_relu (default 0.01)
    // batchnorm
    int num_features;
    double eps;  // default 1e-5
    bool affine; // default true
    // residual
    struct rr_layer_spec *layers; // owned
    int nlayers;
} rr_layer_spec;

typedef struct rr_model_spec {
    rr_shape input_shape; // [d] or [C, H, W]
    int num_classes;
    bool has_range;
    double range_lo, range_hi;
    char **class_names;    // owned, num_classes entries or NULL
    rr_layer_spec *layers; // owned
    int nlayers;
} rr_model_spec;

// Parses `len` bytes of JSON. Errors: RR_EFORMAT for JSON that is malformed or of the wrong
// type/shape (field names the member: "layers[2].kernel_size"), RR_EUNSUPPORTED for a format
// tag, layer type or option relureg does not implement, RR_EINVAL for values out of range.
// On failure *out is left cleared.
rr_status rr_model_spec_parse(const char *json, size_t len, rr_model_spec *out, rr_error *err);
void rr_model_spec_clear(rr_model_spec *s);

#ifdef __cplusplus
}
#endif

#endif
