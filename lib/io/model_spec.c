// Parser for the architecture document (see model_spec.h and model-format.md).
//
// Every member is checked for type and range, unknown members are rejected (a misspelt
// "strides" must not silently become the default), and errors name the member by its path in
// the document so users can find it: "layers[3].kernel_size".
#include "io/model_spec.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rr_layer_type_name(rr_layer_type t)
{
    switch (t) {
        case RR_LAYER_LINEAR:
            return "linear";
        case RR_LAYER_CONV2D:
            return "conv2d";
        case RR_LAYER_RELU:
            return "relu";
        case RR_LAYER_LEAKY_RELU:
            return "leaky_relu";
        case RR_LAYER_MAXPOOL2D:
            return "maxpool2d";
        case RR_LAYER_AVGPOOL2D:
            return "avgpool2d";
        case RR_LAYER_FLATTEN:
            return "flatten";
        case RR_LAYER_BATCHNORM:
            return "batchnorm";
        case RR_LAYER_RESIDUAL:
            return "residual";
    }
    return "?";
}

static const struct {
    const char *name;
    rr_layer_type type;
    const char *fields; // allowed members besides "type", space separated
} layer_kinds[] = {
    {"linear", RR_LAYER_LINEAR, "name in_features out_features bias"},
    {"conv2d", RR_LAYER_CONV2D,
     "name in_channels out_channels kernel_size stride padding bias dilation groups"},
    {"relu", RR_LAYER_RELU, ""},
    {"leaky_relu", RR_LAYER_LEAKY_RELU, "negative_slope"},
    {"maxpool2d", RR_LAYER_MAXPOOL2D, "kernel_size stride padding ceil_mode dilation"},
    {"avgpool2d", RR_LAYER_AVGPOOL2D,
     "kernel_size stride padding ceil_mode count_include_pad divisor_override"},
    {"flatten", RR_LAYER_FLATTEN, ""},
    {"batchnorm", RR_LAYER_BATCHNORM, "name num_features eps affine"},
    {"residual", RR_LAYER_RESIDUAL, "layers"},
};

// ---- member readers ----
// Each returns RR_OK and leaves *out at `def` when the member is absent and not required.

static bool is_word_in(const char *word, const char *list)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *q = p;
        while (*q && *q != ' ')
            q++;
        if ((size_t)(q - p) == n && n > 0 && memcmp(p, word, n) == 0)
            return true;
        p = q;
    }
    return false;
}

static rr_status get_int(json_t *obj, const char *key, const char *path, bool required, long def,
                         long lo, long hi, int *out, rr_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            return rr_error_set(err, RR_EFORMAT, key, "%s: missing required member '%s'", path,
                                key);
        *out = (int)def;
        return RR_OK;
    }
    if (!json_is_integer(v))
        return rr_error_set(err, RR_EFORMAT, key, "%s.%s must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return rr_error_set(err, RR_EINVAL, key, "%s.%s = %lld is out of range [%ld, %ld]", path,
                            key, (long long)x, lo, hi);
    *out = (int)x;
    return RR_OK;
}

// An int or a two-element array [h, w], as PyTorch accepts both.
static rr_status get_pair(json_t *obj, const char *key, const char *path, bool required,
                          const int def[2], long lo, long hi, int out[2], rr_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            return rr_error_set(err, RR_EFORMAT, key, "%s: missing required member '%s'", path,
                                key);
        out[0] = def[0];
        out[1] = def[1];
        return RR_OK;
    }
    json_int_t a, b;
    if (json_is_integer(v)) {
        a = b = json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
        a = json_integer_value(json_array_get(v, 0));
        b = json_integer_value(json_array_get(v, 1));
    } else {
        return rr_error_set(err, RR_EFORMAT, key,
                            "%s.%s must be an integer or an array of two integers", path, key);
    }
    if (a < lo || a > hi || b < lo || b > hi)
        return rr_error_set(err, RR_EINVAL, key, "%s.%s = [%lld, %lld] is out of range [%ld, %ld]",
                            path, key, (long long)a, (long long)b, lo, hi);
    out[0] = (int)a;
    out[1] = (int)b;
    return RR_OK;
}

static rr_status get_bool(json_t *obj, const char *key, const char *path, bool def, bool *out,
                          rr_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        *out = def;
        return RR_OK;
    }
    if (!json_is_boolean(v))
        return rr_error_set(err, RR_EFORMAT, key, "%s.%s must be true or false", path, key);
    *out = json_is_true(v);
    return RR_OK;
}

static rr_status get_number(json_t *obj, const char *key, const char *path, double def, double *out,
                            rr_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        *out = def;
        return RR_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return rr_error_set(err, RR_EFORMAT, key, "%s.%s must be a finite number", path, key);
    *out = json_number_value(v);
    return RR_OK;
}

// ---- layers ----

static rr_status parse_layers(json_t *arr, const char *path, int depth, int *budget,
                              rr_layer_spec **out, int *nout, rr_error *err);

static void clear_layers(rr_layer_spec *layers, int n)
{
    for (int i = 0; i < n; i++) {
        free(layers[i].name);
        clear_layers(layers[i].layers, layers[i].nlayers);
    }
    free(layers);
}

static rr_status parse_name(json_t *obj, const char *path, rr_layer_spec *l, rr_error *err)
{
    json_t *v = json_object_get(obj, "name");
    if (v == NULL)
        return rr_error_set(err, RR_EFORMAT, "name", "%s: missing required member 'name'", path);
    if (!json_is_string(v))
        return rr_error_set(err, RR_EFORMAT, "name", "%s.name must be a string", path);
    size_t n = json_string_length(v);
    if (n == 0 || n > RR_SPEC_MAX_NAME)
        return rr_error_set(err, RR_EINVAL, "name", "%s.name must have 1 to %d bytes", path,
                            RR_SPEC_MAX_NAME);
    l->name = strdup(json_string_value(v));
    if (l->name == NULL)
        return rr_error_set(err, RR_ENOMEM, "name", "out of memory");
    return RR_OK;
}

// The row of layer_kinds that obj's "type" names, in *kind; every other member must be one of
// that kind's fields.
static rr_status layer_kind(json_t *obj, const char *path, int *kind_out, rr_error *err)
{
    json_t *tv = json_object_get(obj, "type");
    if (!json_is_string(tv))
        return rr_error_set(err, RR_EFORMAT, "type", "%s.type must be a string", path);
    const char *tname = json_string_value(tv);
    int kind = -1;
    for (size_t i = 0; i < sizeof layer_kinds / sizeof layer_kinds[0]; i++)
        if (strcmp(layer_kinds[i].name, tname) == 0)
            kind = (int)i;
    if (kind < 0)
        return rr_error_set(err, RR_EUNSUPPORTED, "type",
                            "%s: unknown layer type '%.40s' (expected linear, conv2d, relu, "
                            "leaky_relu, maxpool2d, avgpool2d, flatten, batchnorm or residual)",
                            path, tname);

    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (strcmp(key, "type") != 0 && !is_word_in(key, layer_kinds[kind].fields))
            return rr_error_set(err, RR_EFORMAT, key, "%s: unknown member '%.40s' for a %s layer",
                                path, key, tname);
    }
    *kind_out = kind;
    return RR_OK;
}

static rr_status parse_conv(json_t *obj, const char *path, rr_layer_spec *l, rr_error *err)
{
    static const int one[2] = {1, 1}, zero[2] = {0, 0};
    rr_status st;
    int dil[2], groups;
    if ((st = parse_name(obj, path, l, err)) ||
        (st = get_int(obj, "in_channels", path, true, 0, 1, RR_SPEC_MAX_DIM, &l->in_channels,
                      err)) ||
        (st = get_int(obj, "out_channels", path, true, 0, 1, RR_SPEC_MAX_DIM, &l->out_channels,
                      err)) ||
        (st = get_pair(obj, "kernel_size", path, true, one, 1, RR_SPEC_MAX_DIM, l->kernel, err)) ||
        (st = get_pair(obj, "stride", path, false, one, 1, RR_SPEC_MAX_DIM, l->stride, err)) ||
        (st = get_pair(obj, "padding", path, false, zero, 0, RR_SPEC_MAX_DIM, l->padding, err)) ||
        (st = get_bool(obj, "bias", path, true, &l->bias, err)) ||
        (st = get_pair(obj, "dilation", path, false, one, 0, RR_SPEC_MAX_DIM, dil, err)) ||
        (st = get_int(obj, "groups", path, false, 1, 0, RR_SPEC_MAX_DIM, &groups, err)))
        return st;
    if (dil[0] != 1 || dil[1] != 1)
        return rr_error_set(err, RR_EUNSUPPORTED, "dilation", "%s: conv2d dilation must be 1",
                            path);
    if (groups != 1)
        return rr_error_set(err, RR_EUNSUPPORTED, "groups", "%s: conv2d groups must be 1", path);
    return RR_OK;
}

static rr_status parse_pool(json_t *obj, const char *path, rr_layer_spec *l, rr_error *err)
{
    static const int one[2] = {1, 1}, zero[2] = {0, 0};
    rr_status st;
    int dil[2];
    if ((st = get_pair(obj, "kernel_size", path, true, one, 1, RR_SPEC_MAX_DIM, l->kernel, err)) ||
        (st =
             get_pair(obj, "stride", path, false, l->kernel, 1, RR_SPEC_MAX_DIM, l->stride, err)) ||
        (st = get_pair(obj, "padding", path, false, zero, 0, RR_SPEC_MAX_DIM, l->padding, err)) ||
        (st = get_bool(obj, "ceil_mode", path, false, &l->ceil_mode, err)) ||
        (st = get_bool(obj, "count_include_pad", path, true, &l->count_include_pad, err)))
        return st;
    if (l->type == RR_LAYER_MAXPOOL2D) {
        if ((st = get_pair(obj, "dilation", path, false, one, 0, RR_SPEC_MAX_DIM, dil, err)))
            return st;
        if (dil[0] != 1 || dil[1] != 1)
            return rr_error_set(err, RR_EUNSUPPORTED, "dilation",
                                "%s: maxpool2d dilation must be 1", path);
    } else if (json_object_get(obj, "divisor_override") != NULL &&
               !json_is_null(json_object_get(obj, "divisor_override"))) {
        return rr_error_set(err, RR_EUNSUPPORTED, "divisor_override",
                            "%s: avgpool2d divisor_override is not supported", path);
    }
    // PyTorch's own rule: "pad should be at most half of effective kernel size".
    if (2 * l->padding[0] > l->kernel[0] || 2 * l->padding[1] > l->kernel[1])
        return rr_error_set(err, RR_EINVAL, "padding",
                            "%s: padding [%d, %d] must be at most half of kernel_size "
                            "[%d, %d]",
                            path, l->padding[0], l->padding[1], l->kernel[0], l->kernel[1]);
    return RR_OK;
}

static rr_status parse_layer(json_t *obj, const char *path, int depth, int *budget,
                             rr_layer_spec *l, rr_error *err)
{
    rr_status st;

    snprintf(l->path, sizeof l->path, "%s", path);
    if (!json_is_object(obj))
        return rr_error_set(err, RR_EFORMAT, "layers", "%s must be an object", path);
    int kind = 0;
    if ((st = layer_kind(obj, path, &kind, err)))
        return st;
    l->type = layer_kinds[kind].type;

    switch (l->type) {
        case RR_LAYER_LINEAR:
            if ((st = parse_name(obj, path, l, err)) ||
                (st = get_int(obj, "in_features", path, true, 0, 1, RR_SPEC_MAX_DIM,
                              &l->in_features, err)) ||
                (st = get_int(obj, "out_features", path, true, 0, 1, RR_SPEC_MAX_DIM,
                              &l->out_features, err)) ||
                (st = get_bool(obj, "bias", path, true, &l->bias, err)))
                return st;
            break;
        case RR_LAYER_CONV2D:
            return parse_conv(obj, path, l, err);
        case RR_LAYER_RELU:
        case RR_LAYER_FLATTEN:
            break;
        case RR_LAYER_LEAKY_RELU:
            if ((st = get_number(obj, "negative_slope", path, 0.01, &l->negative_slope, err)))
                return st;
            break;
        case RR_LAYER_MAXPOOL2D:
        case RR_LAYER_AVGPOOL2D:
            return parse_pool(obj, path, l, err);
        case RR_LAYER_BATCHNORM:
            if ((st = parse_name(obj, path, l, err)) ||
                (st = get_int(obj, "num_features", path, true, 0, 1, RR_SPEC_MAX_DIM,
                              &l->num_features, err)) ||
                (st = get_number(obj, "eps", path, 1e-5, &l->eps, err)) ||
                (st = get_bool(obj, "affine", path, true, &l->affine, err)))
                return st;
            if (l->eps < 0)
                return rr_error_set(err, RR_EINVAL, "eps", "%s.eps must be >= 0", path);
            break;
        case RR_LAYER_RESIDUAL: {
            json_t *inner = json_object_get(obj, "layers");
            if (depth + 1 > RR_SPEC_MAX_DEPTH)
                return rr_error_set(err, RR_EUNSUPPORTED, "layers",
                                    "%s: residual blocks nest deeper than %d", path,
                                    RR_SPEC_MAX_DEPTH);
            char sub[96];
            snprintf(sub, sizeof sub, "%.80s.layers", path);
            return parse_layers(inner, sub, depth + 1, budget, &l->layers, &l->nlayers, err);
        }
    }
    return RR_OK;
}

static rr_status parse_layers(json_t *arr, const char *path, int depth, int *budget,
                              rr_layer_spec **out, int *nout, rr_error *err)
{
    *out = NULL;
    *nout = 0;
    if (!json_is_array(arr))
        return rr_error_set(err, RR_EFORMAT, "layers", "%s must be an array of layers", path);
    size_t n = json_array_size(arr);
    if (n == 0)
        return rr_error_set(err, RR_EINVAL, "layers", "%s is empty", path);
    if (n > (size_t)*budget)
        return rr_error_set(err, RR_EUNSUPPORTED, "layers", "more than %d layers",
                            RR_SPEC_MAX_LAYERS);
    *budget -= (int)n;
    rr_layer_spec *layers = calloc(n, sizeof *layers);
    if (layers == NULL)
        return rr_error_set(err, RR_ENOMEM, "layers", "out of memory");
    for (size_t i = 0; i < n; i++) {
        char sub[96];
        snprintf(sub, sizeof sub, "%.70s[%zu]", path, i);
        rr_status st = parse_layer(json_array_get(arr, i), sub, depth, budget, &layers[i], err);
        if (st != RR_OK) {
            clear_layers(layers, (int)n);
            return st;
        }
    }
    *out = layers;
    *nout = (int)n;
    return RR_OK;
}

// Layer names are state_dict prefixes and must be unique in the model.
static rr_status check_names(const rr_layer_spec *layers, int n, const rr_layer_spec **seen,
                             int *nseen, rr_error *err)
{
    for (int i = 0; i < n; i++) {
        const rr_layer_spec *l = &layers[i];
        if (l->name) {
            for (int j = 0; j < *nseen; j++)
                if (strcmp(seen[j]->name, l->name) == 0)
                    return rr_error_set(err, RR_EINVAL, "name",
                                        "%s: layer name '%s' is already used by %s", l->path,
                                        l->name, seen[j]->path);
            seen[(*nseen)++] = l;
        }
        rr_status st = check_names(l->layers, l->nlayers, seen, nseen, err);
        if (st != RR_OK)
            return st;
    }
    return RR_OK;
}

// ---- document ----

// "format": the string "relureg/1".
static rr_status parse_format(json_t *root, rr_error *err)
{
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt))
        return rr_error_set(err, RR_EFORMAT, "format",
                            "relureg.architecture.format must be the string \"relureg/1\"");
    if (strcmp(json_string_value(fmt), "relureg/1") != 0)
        return rr_error_set(err, RR_EUNSUPPORTED, "format",
                            "unsupported model format '%.40s' (this build reads relureg/1)",
                            json_string_value(fmt));
    return RR_OK;
}

// "input_shape": [d] or [C, H, W] of integers in [1, RR_SPEC_MAX_DIM].
static rr_status parse_input_shape(json_t *root, rr_model_spec *out, rr_error *err)
{
    json_t *shape = json_object_get(root, "input_shape");
    size_t nd = json_array_size(shape);
    if (!json_is_array(shape) || (nd != 1 && nd != 3))
        return rr_error_set(err, RR_EFORMAT, "input_shape", "input_shape must be [d] or [C, H, W]");
    out->input_shape.ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 1 ||
            json_integer_value(d) > RR_SPEC_MAX_DIM)
            return rr_error_set(err, RR_EINVAL, "input_shape",
                                "input_shape entries must be integers in [1, %d]", RR_SPEC_MAX_DIM);
        out->input_shape.dim[i] = json_integer_value(d);
    }
    return RR_OK;
}

// "input_range" (optional): [low, high], finite and ordered in float32.
static rr_status parse_input_range(json_t *root, rr_model_spec *out, rr_error *err)
{
    json_t *range = json_object_get(root, "input_range");
    if (range == NULL || json_is_null(range))
        return RR_OK;
    if (!json_is_array(range) || json_array_size(range) != 2 ||
        !json_is_number(json_array_get(range, 0)) || !json_is_number(json_array_get(range, 1)))
        return rr_error_set(err, RR_EFORMAT, "input_range",
                            "input_range must be [low, high] (two numbers)");
    out->range_lo = json_number_value(json_array_get(range, 0));
    out->range_hi = json_number_value(json_array_get(range, 1));
    // Attacks clip in float32: the bounds must stay finite and ordered there (1e39 is a
    // finite double but +Inf as a float).
    const float lo = (float)out->range_lo, hi = (float)out->range_hi;
    if (!(out->range_lo < out->range_hi) || !isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return rr_error_set(err, RR_EINVAL, "input_range",
                            "input_range [%g, %g] must be finite in float32 with low < high",
                            out->range_lo, out->range_hi);
    out->has_range = true;
    return RR_OK;
}

// "class_names" (optional): num_classes strings, copied.
static rr_status parse_class_names(json_t *root, rr_model_spec *out, rr_error *err)
{
    json_t *names = json_object_get(root, "class_names");
    if (names == NULL || json_is_null(names))
        return RR_OK;
    if (!json_is_array(names) || json_array_size(names) != (size_t)out->num_classes)
        return rr_error_set(err, RR_EFORMAT, "class_names",
                            "class_names must be an array of num_classes (%d) strings",
                            out->num_classes);
    out->class_names = calloc((size_t)out->num_classes, sizeof(char *));
    if (out->class_names == NULL)
        return rr_error_set(err, RR_ENOMEM, "class_names", "out of memory");
    for (int k = 0; k < out->num_classes; k++) {
        json_t *s = json_array_get(names, (size_t)k);
        if (!json_is_string(s))
            return rr_error_set(err, RR_EFORMAT, "class_names", "class_names[%d] must be a string",
                                k);
        if ((out->class_names[k] = strdup(json_string_value(s))) == NULL)
            return rr_error_set(err, RR_ENOMEM, "class_names", "out of memory");
    }
    return RR_OK;
}

// The members of the architecture object, in order; the caller clears *out on failure.
static rr_status parse_root(json_t *root, rr_model_spec *out, rr_error *err)
{
    rr_status st;
    if (!json_is_object(root))
        return rr_error_set(err, RR_EFORMAT, "relureg.architecture",
                            "relureg.architecture must be a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (!is_word_in(key, "format input_shape num_classes input_range class_names layers"))
            return rr_error_set(err, RR_EFORMAT, key,
                                "relureg.architecture: unknown member '%.40s'", key);
    }
    int budget = RR_SPEC_MAX_LAYERS, nseen = 0;
    const rr_layer_spec *seen[RR_SPEC_MAX_LAYERS];
    if ((st = parse_format(root, err)) || (st = parse_input_shape(root, out, err)) ||
        (st = get_int(root, "num_classes", "relureg.architecture", true, 0, 2, RR_SPEC_MAX_CLASSES,
                      &out->num_classes, err)) ||
        (st = parse_input_range(root, out, err)) || (st = parse_class_names(root, out, err)) ||
        (st = parse_layers(json_object_get(root, "layers"), "layers", 0, &budget, &out->layers,
                           &out->nlayers, err)) ||
        (st = check_names(out->layers, out->nlayers, seen, &nseen, err)))
        return st;
    return RR_OK;
}

rr_status rr_model_spec_parse(const char *json, size_t len, rr_model_spec *out, rr_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return rr_error_set(err, RR_EFORMAT, "relureg.architecture",
                            "relureg.architecture is not valid JSON: %s at line %d column %d",
                            jerr.text, jerr.line, jerr.column);
    rr_status st = parse_root(root, out, err);
    json_decref(root);
    if (st != RR_OK)
        rr_model_spec_clear(out);
    return st;
}

void rr_model_spec_clear(rr_model_spec *s)
{
    if (s == NULL)
        return;
    if (s->class_names) {
        for (int k = 0; k < s->num_classes; k++)
            free(s->class_names[k]);
        free(s->class_names);
    }
    clear_layers(s->layers, s->nlayers);
    memset(s, 0, sizeof *s);
}
