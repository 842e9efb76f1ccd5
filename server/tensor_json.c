// Request documents and answers, JSON and binary (see tensor_json.h).
#include "tensor_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "problem.h"

#define BIN_TYPE "application/vnd.safetensors"

static bool is_type(const char *ct, const char *type)
{
    size_t n = strlen(type);
    return ct && strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

bool rrd_doc_parse(rrd_doc *d, const rrd_request *r, rrd_out *out)
{
    memset(d, 0, sizeof *d);
    const char *ct = r->content_type;
    // curl -d sends application/x-www-form-urlencoded unless told otherwise: read it as JSON.
    if (ct == NULL || is_type(ct, "application/json") ||
        is_type(ct, "application/x-www-form-urlencoded")) {
        json_error_t je;
        if (r->body_len == 0) {
            rrd_problem_out(out, RRD_P_MALFORMED, NULL,
                            "the body is empty; send a JSON object with the request's members "
                            "(Content-Type: application/json), e.g. {\"inputs\": [[...]]}");
            return false;
        }
        d->root = json_loadb((const char *)r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
        if (d->root == NULL) {
            rrd_problem_out(out, RRD_P_MALFORMED, NULL,
                            "the body is not valid JSON: %s at line %d column %d (byte %d)",
                            je.text, je.line, je.column, je.position);
            return false;
        }
        if (!json_is_object(d->root)) {
            rrd_problem_out(out, RRD_P_MALFORMED, NULL, "the body must be a JSON object");
            rrd_doc_clear(d);
            return false;
        }
        return true;
    }
    if (is_type(ct, BIN_TYPE)) {
        rr_error err = {0};
        if (rr_safetensors_parse(r->body, r->body_len, 0, &d->st, &err) != RR_OK) {
            rrd_problem_out(out, RRD_P_MALFORMED, err.field, "binary body: %s", err.msg);
            return false;
        }
        const char *meta = rr_safetensors_metadata(d->st, "relureg.request");
        json_error_t je;
        d->root = meta ? json_loads(meta, JSON_REJECT_DUPLICATES, &je) : json_object();
        if (d->root == NULL || !json_is_object(d->root)) {
            rrd_problem_out(out, RRD_P_MALFORMED, "relureg.request",
                            "__metadata__[\"relureg.request\"] must be a JSON object");
            rrd_doc_clear(d);
            return false;
        }
        return true;
    }
    rrd_problem_out(out, RRD_P_MEDIA_TYPE, NULL,
                    "Content-Type %s is not supported; send application/json or %s", ct, BIN_TYPE);
    return false;
}

void rrd_doc_clear(rrd_doc *d)
{
    json_decref(d->root);
    rr_safetensors_free(d->st);
    memset(d, 0, sizeof *d);
}

// Infers the shape of nested arrays from their first elements.
static bool nested_shape(json_t *v, rr_shape *s)
{
    s->ndim = 0;
    while (json_is_array(v)) {
        if (s->ndim == RR_MAX_DIMS)
            return false;
        s->dim[s->ndim++] = (int64_t)json_array_size(v);
        if (json_array_size(v) == 0)
            break;
        v = json_array_get(v, 0);
    }
    return true;
}

// Fills out[] from nested arrays of the given shape (from dimension d); regular() has checked
// the nesting first.
static bool fill(json_t *v, const rr_shape *s, int d, float *out, size_t *k, const char *field,
                 rrd_out *o)
{
    if (d == s->ndim) {
        if (!json_is_number(v)) {
            rrd_problem_out(o, RRD_P_INVALID, field, "%s must hold numbers only", field);
            return false;
        }
        const double x = json_number_value(v);
        const float f = (float)x;
        if (!isfinite(f)) {
            rrd_problem_out(o, RRD_P_NONFINITE, field,
                            "%s holds %g, which is not finite in float32", field, x);
            return false;
        }
        out[(*k)++] = f;
        return true;
    }
    // regular() has checked the nesting: every array here has its dimension's length.
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!fill(json_array_get(v, i), s, d + 1, out, k, field, o))
            return false;
    return true;
}

// Checks that v is a regular nested array of shape s from dimension d on, reading no value.
// Run before anything is allocated: nested_shape() looks at first elements only, so an
// irregular array of a few bytes can claim billions of values; once this holds, the element
// count is the number of values actually sent (bounded by the body size).
static bool regular(json_t *v, const rr_shape *s, int d, const char *field, rrd_out *o)
{
    if (d == s->ndim)
        return true;
    if (!json_is_array(v) || (int64_t)json_array_size(v) != s->dim[d]) {
        rrd_problem_out(o, RRD_P_SHAPE, field,
                        "%s is not a regular nested array (a sub-array of dimension %d has a "
                        "different length)",
                        field, d);
        return false;
    }
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!regular(json_array_get(v, i), s, d + 1, field, o))
            return false;
    return true;
}

// The values of `v` (nested arrays, regular): their shape in *s and a malloc'd copy in *data.
// With `declared` (a KServe object's shape), the number of values sent must equal it.
static bool take_numbers(json_t *v, rr_shape *s, const rr_shape *declared, float **data,
                         const char *field, rrd_out *o)
{
    size_t n, want = 0;
    if (!nested_shape(v, s)) {
        rrd_problem_out(o, RRD_P_SHAPE, field, "%s nests too deep", field);
        return false;
    }
    if (!regular(v, s, 0, field, o))
        return false;
    if (!rr_shape_numel(s, &n) || n > ((size_t)1 << 31)) { // cannot overflow once regular
        rrd_problem_out(o, RRD_P_SHAPE, field, "%s is too large", field);
        return false;
    }
    if (declared && (!rr_shape_numel(declared, &want) || want != n)) {
        rrd_problem_out(o, RRD_P_SHAPE, field, "%s.data holds %zu values, its shape says %zu",
                        field, n, want);
        return false;
    }
    if ((*data = malloc((n ? n : 1) * sizeof(float))) == NULL) {
        rrd_problem_out(o, RRD_P_UNAVAILABLE, field, "out of memory");
        return false;
    }
    size_t k = 0;
    if (!fill(v, s, 0, *data, &k, field, o)) {
        free(*data);
        *data = NULL;
        return false;
    }
    return true;
}

bool rrd_json_tensor(json_t *v, const char *field, rr_shape *shape, float **data, rrd_out *o)
{
    *data = NULL;
    size_t n;
    if (json_is_object(v)) {
        json_t *sh = json_object_get(v, "shape"), *dt = json_object_get(v, "datatype"),
               *dv = json_object_get(v, "data");
        if (!json_is_array(sh) || dv == NULL) {
            rrd_problem_out(o, RRD_P_INVALID, field,
                            "%s must be nested arrays or {\"shape\", \"datatype\", \"data\"}",
                            field);
            return false;
        }
        if (dt && !(json_is_string(dt) && (strcmp(json_string_value(dt), "FP32") == 0 ||
                                           strcmp(json_string_value(dt), "FP64") == 0))) {
            rrd_problem_out(o, RRD_P_DTYPE, field, "unsupported datatype %s for %s (FP32 or FP64)",
                            json_is_string(dt) ? json_string_value(dt) : "(not a string)", field);
            return false;
        }
        shape->ndim = 0;
        if (json_array_size(sh) > RR_MAX_DIMS) {
            rrd_problem_out(o, RRD_P_SHAPE, field, "%s.shape has more than %d dimensions", field,
                            RR_MAX_DIMS);
            return false;
        }
        for (size_t i = 0; i < json_array_size(sh); i++) {
            json_t *e = json_array_get(sh, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0) {
                rrd_problem_out(o, RRD_P_SHAPE, field, "%s.shape must list non-negative integers",
                                field);
                return false;
            }
            shape->dim[shape->ndim++] = json_integer_value(e);
        }
        if (!rr_shape_numel(shape, &n) || n > ((size_t)1 << 31)) {
            rrd_problem_out(o, RRD_P_SHAPE, field, "%s.shape is too large", field);
            return false;
        }
        // KServe data: flat, or nested (the spec allows both); either way n values in order.
        // Counted against the declared shape before anything is allocated.
        rr_shape ds;
        return take_numbers(dv, &ds, shape, data, field, o);
    }
    if (!json_is_array(v)) {
        rrd_problem_out(o, RRD_P_INVALID, field,
                        "%s must be nested arrays or {\"shape\", \"datatype\", \"data\"}", field);
        return false;
    }
    return take_numbers(v, shape, NULL, data, field, o);
}

bool rrd_json_f32_overflow(json_t *v, const char *field, rrd_out *o)
{
    if (!json_is_number(v))
        return false;
    const double x = json_number_value(v);
    if (!isfinite(x) || isfinite((float)x))
        return false;
    rrd_problem_out(o, RRD_P_NONFINITE, field, "%s = %g is not finite in float32", field, x);
    return true;
}

static const rr_st_tensor *binary(const rrd_doc *d, const char *name)
{
    char ptr[128];
    snprintf(ptr, sizeof ptr, "/%s", name);
    return d->st ? rr_safetensors_find(d->st, ptr) : NULL;
}

// "missing required member": names a member sent beside it that looks like a typo of it
// ("input" for "inputs"), since that member is what the client meant.
static void missing(const rrd_doc *d, const char *name, rrd_out *o)
{
    const char *key;
    json_t *v;
    json_object_foreach(d->root, key, v)
    {
        size_t m;
        if (rrd_suggest(key, name, &m)) {
            rrd_problem_out(o, RRD_P_INVALID, name,
                            "missing required member '%s'; the request has an unknown member "
                            "'%.64s': did you mean '%s'?",
                            name, key, name);
            return;
        }
    }
    rrd_problem_out(o, RRD_P_INVALID, name, "missing required member '%s'", name);
}

bool rrd_doc_tensor(const rrd_doc *d, const char *name, bool required, rr_shape *shape,
                    float **data, rrd_out *o)
{
    *data = NULL;
    json_t *v = json_object_get(d->root, name);
    const rr_st_tensor *t = binary(d, name);
    if (v && t) {
        rrd_problem_out(o, RRD_P_MALFORMED, name, "%s is given both in JSON and as a binary tensor",
                        name);
        return false;
    }
    if (t) {
        rr_error err = {0};
        *shape = t->shape;
        // model-format.md: request float tensors are F32 or F64 (F16 & co. only for weights).
        if (t->dtype != RR_DTYPE_F32 && t->dtype != RR_DTYPE_F64) {
            rrd_problem_out(o, RRD_P_DTYPE, name,
                            "unsupported dtype %s for tensor %s (request tensors are F32 or F64)",
                            rr_dtype_name(t->dtype), t->name);
            return false;
        }
        if ((*data = malloc((t->numel ? t->numel : 1) * sizeof(float))) == NULL) {
            rrd_problem_out(o, RRD_P_UNAVAILABLE, name, "out of memory");
            return false;
        }
        if (rr_st_tensor_to_f32(t, *data, &err) != RR_OK) {
            rrd_problem_out(o, RRD_P_DTYPE, name, "%s", err.msg);
        } else if (!rr_all_finite(*data, t->numel)) {
            rrd_problem_out(o, RRD_P_NONFINITE, name, "%s holds NaN or Inf", name);
        } else {
            return true;
        }
        free(*data);
        *data = NULL;
        return false;
    }
    if (v == NULL) {
        if (required)
            missing(d, name, o);
        return !required;
    }
    return rrd_json_tensor(v, name, shape, data, o);
}

bool rrd_doc_labels(const rrd_doc *d, const char *name, bool required, size_t *n, int64_t **data,
                    rrd_out *o)
{
    *data = NULL;
    *n = 0;
    json_t *v = json_object_get(d->root, name);
    const rr_st_tensor *t = binary(d, name);
    if (v && t) {
        rrd_problem_out(o, RRD_P_MALFORMED, name, "%s is given both in JSON and as a binary tensor",
                        name);
        return false;
    }
    if (t) {
        rr_error err = {0};
        if (t->shape.ndim != 1) {
            rrd_problem_out(o, RRD_P_SHAPE, name, "%s must be a vector of integers", name);
            return false;
        }
        if ((*data = malloc((t->numel ? t->numel : 1) * sizeof(int64_t))) == NULL) {
            rrd_problem_out(o, RRD_P_UNAVAILABLE, name, "out of memory");
            return false;
        }
        if (rr_st_tensor_to_i64(t, *data, &err) != RR_OK) {
            rrd_problem_out(o, RRD_P_DTYPE, name, "%s", err.msg);
            free(*data);
            *data = NULL;
            return false;
        }
        *n = t->numel;
        return true;
    }
    if (v == NULL) {
        if (required)
            missing(d, name, o);
        return !required;
    }
    json_t *arr = v;
    if (json_is_object(v)) { // {"shape": [B], "datatype": "INT64"|"INT32", "data": [...]}
        json_t *dt = json_object_get(v, "datatype");
        if (dt && !(json_is_string(dt) && (strcmp(json_string_value(dt), "INT64") == 0 ||
                                           strcmp(json_string_value(dt), "INT32") == 0))) {
            rrd_problem_out(o, RRD_P_DTYPE, name, "unsupported datatype for %s (INT64 or INT32)",
                            name);
            return false;
        }
        arr = json_object_get(v, "data");
    }
    if (!json_is_array(arr)) {
        rrd_problem_out(o, RRD_P_INVALID, name, "%s must be an array of integers", name);
        return false;
    }
    *n = json_array_size(arr);
    if ((*data = malloc((*n ? *n : 1) * sizeof(int64_t))) == NULL) {
        rrd_problem_out(o, RRD_P_UNAVAILABLE, name, "out of memory");
        return false;
    }
    for (size_t i = 0; i < *n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_integer(e)) {
            rrd_problem_out(o, RRD_P_INVALID, name, "%s[%zu] is not an integer", name, i);
            free(*data);
            *data = NULL;
            return false;
        }
        (*data)[i] = json_integer_value(e);
    }
    return true;
}

// ---- answers ----

json_t *rrd_json_number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

void rrd_resp_init(rrd_resp *r, bool binary)
{
    memset(r, 0, sizeof *r);
    r->root = json_object();
    r->binary = binary;
}

void rrd_resp_tensor(rrd_resp *r, json_t *parent, const char *key, const char *pointer,
                     const rr_shape *shape, float *data, bool take)
{
    if (r->n == r->cap) {
        size_t ncap = r->cap ? 2 * r->cap : 8;
        rrd_resp_item *t = realloc(r->t, ncap * sizeof *t);
        if (t == NULL) {
            if (take)
                free(data);
            return; // rendered as a missing member; finish reports out of memory
        }
        r->t = t;
        r->cap = ncap;
    }
    rrd_resp_item *t = &r->t[r->n++];
    memset(t, 0, sizeof *t);
    t->parent = parent;
    snprintf(t->key, sizeof t->key, "%s", key);
    snprintf(t->pointer, sizeof t->pointer, "%s", pointer);
    t->shape = *shape;
    t->data = data;
    t->owned = take ? data : NULL;
    // A placeholder where the tensor goes in JSON; binary answers drop the member.
    if (!r->binary) {
        char ph[48];
        snprintf(ph, sizeof ph, "@@rrT%zu@@", r->n - 1);
        json_object_set_new(parent, key, json_string(ph));
    }
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *s, const char *str, size_t n)
{
    if (s->oom)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (p == NULL) {
            s->oom = true;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, str, n);
    s->len += n;
    s->p[s->len] = '\0';
}

// {"shape": [...], "datatype": "FP32", "data": [...]} with 9 significant digits.
static void put_tensor(sbuf *s, const rrd_resp_item *t)
{
    char num[48];
    sb_put(s, "{\"shape\":[", 10);
    for (int i = 0; i < t->shape.ndim; i++) {
        int k = snprintf(num, sizeof num, i ? ",%lld" : "%lld", (long long)t->shape.dim[i]);
        sb_put(s, num, (size_t)k);
    }
    sb_put(s, "],\"datatype\":\"FP32\",\"data\":[", 28);
    size_t n;
    rr_shape_numel(&t->shape, &n);
    for (size_t i = 0; i < n; i++) {
        const float v = t->data[i];
        int k = isfinite(v) ? snprintf(num, sizeof num, i ? ",%.9g" : "%.9g", (double)v)
                            : snprintf(num, sizeof num, i ? ",null" : "null");
        sb_put(s, num, (size_t)k);
    }
    sb_put(s, "]}", 2);
}

static void finish_json(rrd_resp *r, int status, rrd_out *out)
{
    char *doc = json_dumps(r->root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (doc == NULL) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory rendering the answer");
        return;
    }
    sbuf s = {0};
    // Copy the document, replacing each "@@rrT<i>@@" string with tensor i.
    const char *p = doc;
    for (;;) {
        const char *q = strstr(p, "\"@@rrT");
        if (q == NULL) {
            sb_put(&s, p, strlen(p));
            break;
        }
        sb_put(&s, p, (size_t)(q - p));
        char *end;
        unsigned long i = strtoul(q + 6, &end, 10);
        if (strncmp(end, "@@\"", 3) != 0 || i >= r->n) { // not ours: copy and go on
            sb_put(&s, q, 1);
            p = q + 1;
            continue;
        }
        put_tensor(&s, &r->t[i]);
        p = end + 3;
    }
    free(doc);
    if (s.oom || s.p == NULL) {
        free(s.p);
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory rendering the answer");
        return;
    }
    rrd_out_drop_body(out);
    out->body = s.p;
    out->len = s.len;
    out->status = status;
    out->retry_after = 0;
    snprintf(out->type, sizeof out->type, "application/json; charset=utf-8");
}

static void finish_binary(rrd_resp *r, int status, rrd_out *out)
{
    rr_error err = {0};
    rr_st_writer *w = rr_st_writer_new();
    char *doc = json_dumps(r->root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    rr_status st = w && doc ? RR_OK : RR_ENOMEM;
    if (st == RR_OK)
        st = rr_st_writer_set_metadata(w, "relureg.response", doc, &err);
    for (size_t i = 0; st == RR_OK && i < r->n; i++)
        st = rr_st_writer_add(w, r->t[i].pointer, RR_DTYPE_F32, r->t[i].shape.dim,
                              r->t[i].shape.ndim, r->t[i].data, &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (st == RR_OK)
        st = rr_st_writer_finish(w, &buf, &len, &err);
    rr_st_writer_free(w);
    free(doc);
    if (st != RR_OK) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "cannot render the binary answer: %s",
                        err.msg);
        return;
    }
    rrd_out_drop_body(out);
    out->body = (char *)buf;
    out->len = len;
    out->status = status;
    out->retry_after = 0;
    snprintf(out->type, sizeof out->type, BIN_TYPE);
}

void rrd_resp_finish(rrd_resp *r, int status, rrd_out *out)
{
    if (r->root == NULL)
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory rendering the answer");
    else if (r->binary)
        finish_binary(r, status, out);
    else
        finish_json(r, status, out);
    for (size_t i = 0; i < r->n; i++)
        free(r->t[i].owned);
    free(r->t);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}
