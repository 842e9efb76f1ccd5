// Model loading: accessors on a good file, and every validation error reported by name
// (model-format.md: missing / extra / mis-shaped tensors, dtypes, layer options, shapes).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"

typedef struct spec_tensor {
    const char *name;
    rr_dtype dtype;
    int ndim;
    int64_t shape[4];
    double fill; // every element
} spec_tensor;

#define END                                                                                        \
    {                                                                                              \
        NULL, 0, 0, {0}, 0                                                                         \
    }

// Builds a model file from an architecture string (NULL: no metadata) and tensors.
static uint8_t *make_file(const char *arch, const spec_tensor *ts, size_t *len)
{
    rr_error err = {0};
    rr_st_writer *w = rr_st_writer_new();
    void *bufs[32];
    int n = 0;
    for (; ts[n].name; n++) {
        rr_shape s = {.ndim = ts[n].ndim};
        memcpy(s.dim, ts[n].shape, sizeof ts[n].shape);
        size_t numel;
        cr_assert(rr_shape_numel(&s, &numel));
        size_t es = rr_dtype_bits(ts[n].dtype) / 8;
        unsigned char *b = malloc(numel * es + 1);
        for (size_t i = 0; i < numel; i++) {
            if (ts[n].dtype == RR_DTYPE_F32) {
                float f = (float)ts[n].fill;
                memcpy(b + 4 * i, &f, 4);
            } else if (ts[n].dtype == RR_DTYPE_F64) {
                memcpy(b + 8 * i, &ts[n].fill, 8);
            } else if (ts[n].dtype == RR_DTYPE_I64) {
                int64_t v = (int64_t)ts[n].fill;
                memcpy(b + 8 * i, &v, 8);
            } else if (ts[n].dtype == RR_DTYPE_I32) {
                int32_t v = (int32_t)ts[n].fill;
                memcpy(b + 4 * i, &v, 4);
            } else {
                memset(b + es * i, 0, es);
            }
        }
        bufs[n] = b;
        cr_assert(rr_st_writer_add(w, ts[n].name, ts[n].dtype, ts[n].shape, ts[n].ndim, b, &err) ==
                  RR_OK);
    }
    if (arch)
        rr_st_writer_set_metadata(w, "relureg.architecture", arch, &err);
    rr_st_writer_set_metadata(w, "note", "kept", &err);
    uint8_t *out = NULL;
    cr_assert(rr_st_writer_finish(w, &out, len, &err) == RR_OK, "%s", err.msg);
    rr_st_writer_free(w);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    return out;
}

static rr_status load(const char *arch, const spec_tensor *ts, rr_model **m, rr_error *err)
{
    size_t len;
    uint8_t *buf = make_file(arch, ts, &len);
    rr_status st = rr_model_load(buf, len, m, err);
    free(buf);
    return st;
}

// Expects a failure with the given status whose message contains `needle`.
static void expect_error(const char *arch, const spec_tensor *ts, rr_status code,
                         const char *needle)
{
    rr_model *m = NULL;
    rr_error err = {0};
    rr_status st = load(arch, ts, &m, &err);
    cr_expect_eq(st, code, "expected %s, got %s: %s", rr_status_str(code), rr_status_str(st),
                 err.msg);
    cr_expect(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    cr_expect_null(m);
    rr_model_release(m);
}

#define MLP_ARCH(extra_layers)                                                                     \
    "{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, "                       \
    "\"input_range\": [0, 1], \"class_names\": [\"a\", \"b\", \"c\"], \"layers\": ["               \
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 4, \"out_features\": 5},"            \
    "{\"type\": \"relu\"}, " extra_layers                                                          \
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 5, \"out_features\": 3}]}"

static const spec_tensor mlp_tensors[] = {{"0.weight", RR_DTYPE_F32, 2, {5, 4}, 0.1},
                                          {"0.bias", RR_DTYPE_F32, 1, {5}, 0.0},
                                          {"2.weight", RR_DTYPE_F32, 2, {3, 5}, 0.2},
                                          {"2.bias", RR_DTYPE_F32, 1, {3}, 0.0},
                                          END};

Test(model, loads_an_mlp_with_its_metadata)
{
    rr_model *m = NULL;
    rr_error err = {0};
    cr_assert_eq(load(MLP_ARCH(""), mlp_tensors, &m, &err), RR_OK, "%s", err.msg);
    cr_expect_eq(rr_model_input_size(m), 4);
    cr_expect_eq(rr_model_num_classes(m), 3);
    cr_expect_eq(rr_model_num_layers(m), 3);
    cr_expect_eq(rr_model_num_param_tensors(m), 4);
    cr_expect_eq(rr_model_num_param_elements(m), 20 + 5 + 15 + 3);
    cr_expect_str_eq(rr_model_param(m, 0)->name, "0.weight");
    cr_expect_str_eq(rr_model_param(m, 3)->name, "2.bias");
    cr_expect_eq(rr_model_param(m, 1)->offset % 16, 0, "parameters are 64-byte aligned");
    cr_expect_float_eq(rr_model_param_find(m, "2.weight")->data[7], 0.2f, 1e-7);
    float lo, hi;
    cr_expect(rr_model_input_range(m, &lo, &hi) && lo == 0.0f && hi == 1.0f);
    cr_expect_str_eq(rr_model_class_name(m, 2), "c");
    cr_expect_null(rr_model_class_name(m, 3));
    cr_expect_eq(rr_model_pattern_layers(m), 1);
    cr_expect_eq(rr_model_pattern_bytes(m), 5);
    bool found = false;
    for (size_t i = 0; i < rr_model_metadata_count(m); i++)
        found |= strcmp(rr_model_metadata_key(m, i), "note") == 0 &&
                 strcmp(rr_model_metadata_value(m, i), "kept") == 0;
    cr_expect(found, "other __metadata__ entries are kept");
    cr_expect(strstr(rr_model_architecture(m), "relureg/1") != NULL);
    // Reference counting: the model survives one release of two references.
    rr_model_retain(m);
    rr_model_release(m);
    cr_expect_eq(rr_model_num_classes(m), 3);
    rr_model_release(m);
}

Test(model, rejects_a_file_without_architecture)
{
    expect_error(NULL, mlp_tensors, RR_EFORMAT, "relureg.architecture");
}

Test(model, rejects_bytes_that_are_not_safetensors)
{
    rr_model *m = NULL;
    rr_error err = {0};
    const uint8_t junk[] = "not a model at all";
    cr_expect_eq(rr_model_load(junk, sizeof junk, &m, &err), RR_EFORMAT);
    cr_expect_null(m);
}

Test(model, names_a_missing_tensor)
{
    spec_tensor ts[] = {mlp_tensors[0], mlp_tensors[1], mlp_tensors[2], END};
    expect_error(MLP_ARCH(""), ts, RR_ESHAPE, "missing tensor '2.bias'");
}

Test(model, names_an_extra_tensor)
{
    spec_tensor ts[] = {mlp_tensors[0],
                        mlp_tensors[1],
                        mlp_tensors[2],
                        mlp_tensors[3],
                        {"stray", RR_DTYPE_F32, 1, {2}, 0},
                        END};
    expect_error(MLP_ARCH(""), ts, RR_ESHAPE, "'stray' is not used");
}

Test(model, names_a_misshaped_tensor)
{
    spec_tensor ts[] = {{"0.weight", RR_DTYPE_F32, 2, {4, 5}, 0},
                        mlp_tensors[1],
                        mlp_tensors[2],
                        mlp_tensors[3],
                        END};
    expect_error(MLP_ARCH(""), ts, RR_ESHAPE, "tensor '0.weight' has shape [4, 5]");
}

Test(model, rejects_integer_weights_by_dtype)
{
    spec_tensor ts[] = {
        mlp_tensors[0], {"0.bias", RR_DTYPE_I32, 1, {5}, 0}, mlp_tensors[2], mlp_tensors[3], END};
    expect_error(MLP_ARCH(""), ts, RR_EDTYPE, "unsupported dtype I32 for tensor 0.bias");
}

Test(model, rejects_non_finite_weights)
{
    spec_tensor ts[] = {mlp_tensors[0],
                        mlp_tensors[1],
                        {"2.weight", RR_DTYPE_F32, 2, {3, 5}, NAN},
                        mlp_tensors[3],
                        END};
    expect_error(MLP_ARCH(""), ts, RR_ENONFINITE, "2.weight");
    // F64 values beyond float32 become Inf on conversion.
    spec_tensor big[] = {mlp_tensors[0],
                         mlp_tensors[1],
                         {"2.weight", RR_DTYPE_F64, 2, {3, 5}, 1e300},
                         mlp_tensors[3],
                         END};
    expect_error(MLP_ARCH(""), big, RR_ENONFINITE, "2.weight");
}

#define BN_ARCH(affine)                                                                            \
    "{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 4, \"layers\": ["          \
    "{\"type\": \"batchnorm\", \"name\": \"bn\", \"num_features\": 4, \"affine\": " affine "}]}"

Test(model, batchnorm_num_batches_tracked_is_optional_int64)
{
    spec_tensor ts[] = {{"bn.weight", RR_DTYPE_F32, 1, {4}, 1},
                        {"bn.bias", RR_DTYPE_F32, 1, {4}, 0},
                        {"bn.running_mean", RR_DTYPE_F32, 1, {4}, 0},
                        {"bn.running_var", RR_DTYPE_F32, 1, {4}, 1},
                        {"bn.num_batches_tracked", RR_DTYPE_I64, 0, {0}, 7},
                        END};
    rr_model *m = NULL;
    rr_error err = {0};
    cr_assert_eq(load(BN_ARCH("true"), ts, &m, &err), RR_OK, "%s", err.msg);
    cr_expect_eq(rr_model_num_param_tensors(m), 4, "num_batches_tracked is not a parameter");
    cr_expect_null(rr_model_param_find(m, "bn.num_batches_tracked"));
    rr_model_release(m);

    ts[4].dtype = RR_DTYPE_F32;
    expect_error(BN_ARCH("true"), ts, RR_EDTYPE,
                 "unsupported dtype F32 for tensor bn.num_batches_tracked");
    ts[4] = (spec_tensor)END;
    spec_tensor noaffine[] = {ts[2], ts[3], END};
    cr_assert_eq(load(BN_ARCH("false"), noaffine, &m, &err), RR_OK, "%s", err.msg);
    rr_model_release(m);
    // With affine false, weight and bias are extra tensors (the first in file order is named).
    expect_error(BN_ARCH("false"), ts, RR_ESHAPE, "'bn.bias' is not used");
}

Test(model, rejects_non_positive_variance)
{
    spec_tensor ts[] = {{"bn.running_mean", RR_DTYPE_F32, 1, {4}, 0},
                        {"bn.running_var", RR_DTYPE_F32, 1, {4}, -1},
                        END};
    expect_error(BN_ARCH("false"), ts, RR_EINVAL, "running_var + eps must be > 0");
}

static void expect_arch_error(const char *arch, rr_status code, const char *needle)
{
    expect_error(arch, mlp_tensors, code, needle);
}

#define DOC(shape, layers)                                                                         \
    "{\"format\": \"relureg/1\", \"input_shape\": " shape                                          \
    ", \"num_classes\": 3, \"layers\": [" layers "]}"

Test(model, architecture_errors_are_named)
{
    expect_arch_error("{\"format\": \"relureg/2\", \"input_shape\": [4], \"num_classes\": 3, "
                      "\"layers\": [{\"type\": \"relu\"}]}",
                      RR_EUNSUPPORTED, "unsupported model format 'relureg/2'");
    expect_arch_error("[1, 2]", RR_EFORMAT, "must be a JSON object");
    expect_arch_error("{\"format\": ", RR_EFORMAT, "not valid JSON");
    expect_arch_error(DOC("[4]", "{\"type\": \"softmax\"}"), RR_EUNSUPPORTED,
                      "layers[0]: unknown layer type 'softmax'");
    expect_arch_error(DOC("[3, 4, 4]", "{\"type\": \"maxpool2d\", \"kernel_size\": 2, "
                                       "\"strides\": 2}"),
                      RR_EFORMAT, "unknown member 'strides'");
    expect_arch_error(DOC("[3, 4, 4]", "{\"type\": \"maxpool2d\", \"kernel_size\": 2, "
                                       "\"padding\": 2}"),
                      RR_EINVAL, "at most half of kernel_size");
    expect_arch_error(DOC("[3, 4, 4]", "{\"type\": \"conv2d\", \"name\": \"c\", "
                                       "\"in_channels\": 3, \"out_channels\": 3, "
                                       "\"kernel_size\": 3, \"dilation\": 2}"),
                      RR_EUNSUPPORTED, "dilation must be 1");
    expect_arch_error(DOC("[3, 4, 4]", "{\"type\": \"avgpool2d\", \"kernel_size\": 2, "
                                       "\"divisor_override\": 3}"),
                      RR_EUNSUPPORTED, "divisor_override");
    expect_arch_error(DOC("[2, 3, 3]", "{\"type\": \"linear\", \"name\": \"0\", "
                                       "\"in_features\": 18, \"out_features\": 3}"),
                      RR_ESHAPE, "layers[0]: linear needs a flat input but gets [2, 3, 3]");
    expect_arch_error(DOC("[4]", "{\"type\": \"conv2d\", \"name\": \"c\", \"in_channels\": 1, "
                                 "\"out_channels\": 1, \"kernel_size\": 1}"),
                      RR_ESHAPE, "conv2d needs a [C, H, W] input");
    expect_arch_error(DOC("[4]", "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 5, "
                                 "\"out_features\": 3}"),
                      RR_ESHAPE, "in_features 5 but its input is [4]");
    expect_arch_error(DOC("[4]", "{\"type\": \"residual\", \"layers\": [{\"type\": \"linear\", "
                                 "\"name\": \"0\", \"in_features\": 4, \"out_features\": 3}]}"),
                      RR_ESHAPE, "residual body maps [4] to [3]");
    expect_arch_error(DOC("[4]", "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 4, "
                                 "\"out_features\": 5}"),
                      RR_ESHAPE, "num_classes is 3");
    expect_arch_error(DOC("[4]", "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 4, "
                                 "\"out_features\": 4}, {\"type\": \"linear\", \"name\": \"0\", "
                                 "\"in_features\": 4, \"out_features\": 3}"),
                      RR_EINVAL, "layer name '0' is already used");
    expect_arch_error(DOC("[4]", "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 4.5, "
                                 "\"out_features\": 3}"),
                      RR_EFORMAT, "in_features must be an integer");
    expect_arch_error(DOC("[1, 2, 2]", "{\"type\": \"maxpool2d\", \"kernel_size\": 3}"), RR_ESHAPE,
                      "does not fit its padded input");
    expect_arch_error(DOC("[4]", ""), RR_EINVAL, "layers is empty");
    expect_arch_error("{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, "
                      "\"class_names\": [\"a\"], \"layers\": [{\"type\": \"relu\"}]}",
                      RR_EFORMAT, "class_names must be an array of num_classes");
    expect_arch_error("{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, "
                      "\"input_range\": [1, 0], \"layers\": [{\"type\": \"relu\"}]}",
                      RR_EINVAL, "low < high");
    // Finite as doubles, not in float32 (attacks clip in float32): refused at load.
    expect_arch_error("{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, "
                      "\"input_range\": [0, 1e39], \"layers\": [{\"type\": \"relu\"}]}",
                      RR_EINVAL, "finite in float32");
    expect_arch_error("{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, "
                      "\"input_range\": [-1e39, 0], \"layers\": [{\"type\": \"relu\"}]}",
                      RR_EINVAL, "finite in float32");
    // Ordered as doubles, equal once rounded to float32.
    expect_arch_error("{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, "
                      "\"input_range\": [1, 1.00000001], \"layers\": [{\"type\": \"relu\"}]}",
                      RR_EINVAL, "low < high");
    expect_arch_error("{\"format\": \"relureg/1\", \"input_shape\": [4, 4], \"num_classes\": 3, "
                      "\"layers\": [{\"type\": \"relu\"}]}",
                      RR_EFORMAT, "input_shape must be [d] or [C, H, W]");
}

Test(model, rejects_absurd_sizes_before_reading_weights)
{
    // A 1x1 conv on a huge image asks for 2^20 * 2^20 outputs per sample.
    expect_arch_error(DOC("[1, 1048576, 1048576]", "{\"type\": \"flatten\"}"), RR_EUNSUPPORTED,
                      "too large");
}
