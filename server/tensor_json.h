// The one place JSON meets tensors (style.md §1): request documents in JSON or binary
// (application/vnd.safetensors: tensors keyed by JSON Pointer, the rest of the document in
// __metadata__["relureg.request"], model-format.md) and answers rendered the same two ways.
//
// Request tensors come as nested arrays or KServe-v2 objects {"shape", "datatype", "data"}
// (api.md "Tensors in JSON"); values that overflow float32 and NaN/Inf in binary tensors are
// 422 /problems/non-finite; a field given both in JSON and as a binary tensor is 400. Answer
// tensors are KServe objects in JSON (9 significant digits, non-finite as null) and raw
// IEEE values in binary answers.
#ifndef RRD_TENSOR_JSON_H
#define RRD_TENSOR_JSON_H

#include <jansson.h>
#include <stdbool.h>

#include "server.h"

typedef struct rrd_doc {
    json_t *root;       // the JSON document (owned)
    rr_safetensors *st; // binary tensors (owned) pointing into the request body, or NULL
} rrd_doc;

// Parses the request body as JSON (Content-Type application/json or absent) or safetensors.
// On failure renders the problem (400, 415) into out and returns false.
bool rrd_doc_parse(rrd_doc *d, const rrd_request *r, rrd_out *out);
void rrd_doc_clear(rrd_doc *d);

// The float tensor member `name` of the document: *data malloc'd (caller frees). Absent and
// not required: true with *data NULL.
bool rrd_doc_tensor(const rrd_doc *d, const char *name, bool required, rr_shape *shape,
                    float **data, rrd_out *out);
// The integer array member `name` (labels): n values, *data malloc'd.
bool rrd_doc_labels(const rrd_doc *d, const char *name, bool required, size_t *n, int64_t **data,
                    rrd_out *out);

// Tensor parsing of a JSON value (nested arrays or a KServe object), for /v2 inputs too.
bool rrd_json_tensor(json_t *v, const char *field, rr_shape *shape, float **data, rrd_out *out);

// True, with 422 /problems/non-finite naming `field` rendered into out, when v is a JSON number
// that is finite as a double but not in float32 (1e39): float options (epsilon, step_size, h,
// ...) are used as float32 (api.md "Numbers"). False for anything else, left to the caller.
bool rrd_json_f32_overflow(json_t *v, const char *field, rrd_out *out);

// ---- answers ----
typedef struct rrd_resp_item {
    json_t *parent; // where the tensor goes in JSON answers
    char key[64];
    char pointer[256];
    rr_shape shape;
    const float *data;
    float *owned; // freed by rrd_resp_finish, or NULL when data is borrowed
} rrd_resp_item;

typedef struct rrd_resp {
    json_t *root;
    bool binary;
    rrd_resp_item *t;
    size_t n, cap;
} rrd_resp;

void rrd_resp_init(rrd_resp *r, bool binary);
// Puts the float tensor (shape, data) at parent[key], whose JSON Pointer is `pointer`. With
// take, data is malloc'd and freed at finish; else it must live until finish.
void rrd_resp_tensor(rrd_resp *r, json_t *parent, const char *key, const char *pointer,
                     const rr_shape *shape, float *data, bool take);
// Renders the answer (JSON or safetensors) into out with `status`, and frees the builder.
void rrd_resp_finish(rrd_resp *r, int status, rrd_out *out);

// A JSON number for a float result, or null when it is not finite (api.md "Numbers").
json_t *rrd_json_number(double v);

#endif
