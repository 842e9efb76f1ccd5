// KServe / Open Inference Protocol v2 for predictions (api.md; serving.md §1.1-1.2): server
// and model metadata, health, and infer with the binary tensor data extension, so that stock
// KServe / Triton HTTP clients work unchanged. The input tensor is named "input"; outputs are
// "logits" and "probabilities". Only the current version exists: another {v} is 404.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pool.h"
#include "routes.h"

void rrd_route_v2_server(rrd_request *r)
{
    rrd_respond_json(r, 200,
                     json_pack("{s:s, s:s, s:[s]}", "name", "reluregd", "version", "1.0.0",
                               "extensions", "binary_tensor_data"));
}

void rrd_route_v2_live(rrd_request *r)
{
    rrd_respond_json(r, 200, json_pack("{s:b}", "live", 1));
}

void rrd_route_v2_ready(rrd_request *r)
{
    if (atomic_load(&r->srv->ready))
        rrd_respond_json(r, 200, json_pack("{s:b}", "ready", 1));
    else
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "starting or draining");
}

// False, with 404 in out, when the optional /versions/{v} segment (parameter 1) names another
// version than the entry's.
static bool at_version(const rrd_request *r, const rrd_loaded *l, rrd_out *out)
{
    char v[16];
    snprintf(v, sizeof v, "%d", l->version);
    if (r->params[1][0] == '\0' || strcmp(v, r->params[1]) == 0)
        return true;
    rrd_problem_out(out, RRD_P_NOT_FOUND, "version",
                    "model '%s' has only version %d (asked for %.16s)", l->name, l->version,
                    r->params[1]);
    return false;
}

// The entry at the path's version, retained; NULL after answering 422 or 404.
static rrd_loaded *entry_at_version(rrd_request *r)
{
    rrd_loaded *l = rrd_route_entry(r);
    if (l && !at_version(r, l, &r->out)) {
        r->responded = true;
        rrd_loaded_release(l);
        return NULL;
    }
    return l;
}

void rrd_route_v2_model(rrd_request *r)
{
    rrd_loaded *l = entry_at_version(r);
    if (l == NULL)
        return;
    const rr_model *m = l->model;
    const rr_shape *in = rr_model_input_shape(m);
    json_t *ishape = json_pack("[i]", -1);
    for (int i = 0; i < in->ndim; i++)
        json_array_append_new(ishape, json_integer(in->dim[i]));
    char v[16];
    snprintf(v, sizeof v, "%d", l->version);
    const int K = rr_model_num_classes(m);
    json_t *doc = json_pack(
        "{s:s, s:[s], s:s, s:[{s:s, s:s, s:o}], s:[{s:s, s:s, s:[i, i]}, {s:s, s:s, s:[i, i]}]}",
        "name", l->name, "versions", v, "platform", "relureg", "inputs", "name", "input",
        "datatype", "FP32", "shape", ishape, "outputs", "name", "logits", "datatype", "FP32",
        "shape", -1, K, "name", "probabilities", "datatype", "FP32", "shape", -1, K);
    rrd_respond_json(r, 200, doc);
    rrd_loaded_release(l);
}

void rrd_route_v2_model_ready(rrd_request *r)
{
    rrd_loaded *l = entry_at_version(r);
    if (l == NULL)
        return;
    rrd_respond_json(r, 200, json_pack("{s:s, s:b}", "name", l->name, "ready", 1));
    rrd_loaded_release(l);
}

// ---- infer ----

// What an infer request asks for besides its input (the task is an rrd_compute).
typedef struct v2_opts {
    json_t *id;   // echoed
    bool want[2]; // logits, probabilities
    bool binary_out[2];
} v2_opts;

static void v2_opts_free(void *p)
{
    v2_opts *o = p;
    if (o == NULL)
        return;
    json_decref(o->id);
    free(o);
}

// The binary tensor data extension's answer: the JSON header `doc` (stolen), then the bytes of
// each output asked for in binary.
static void binary_answer(json_t *doc, const v2_opts *io, float *const res[2], size_t n,
                          rrd_out *out)
{
    char *head = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(doc);
    const size_t hl = head ? strlen(head) : 0, bytes = n * sizeof(float);
    const int nbin = (io->want[0] && io->binary_out[0]) + (io->want[1] && io->binary_out[1]);
    char *body = head ? malloc(hl + (size_t)nbin * bytes) : NULL;
    if (body == NULL) {
        free(head);
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    memcpy(body, head, hl);
    size_t off = hl;
    for (int o = 0; o < 2; o++)
        if (io->want[o] && io->binary_out[o]) {
            memcpy(body + off, res[o], bytes);
            off += bytes;
        }
    free(head);
    rrd_out_drop_body(out);
    out->body = body;
    out->len = off;
    out->status = 200;
    snprintf(out->type, sizeof out->type, "application/octet-stream");
    out->retry_after = 0;
    out->header_len = hl; // sent as Inference-Header-Content-Length
}

static void infer_run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *it = (rrd_compute *)t;
    const v2_opts *io = it->extra;
    const rr_model *m = it->entry->model;
    const size_t B = it->B, K = (size_t)rr_model_num_classes(m);
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, it->entry->model, B, 1, &err);
    float *res[2] = {malloc(B * K * sizeof(float)), malloc(B * K * sizeof(float))};
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!res[0] || !res[1]))
        st = rr_error_set(&err, RR_ENOMEM, "", "out of memory");
    if (st == RR_OK)
        st = rr_forward(m, ws, it->x, B, res[0], NULL, NULL, &err);
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        free(res[0]);
        free(res[1]);
        return;
    }
    rr_softmax(res[0], B, K, res[1]);
    char v[16];
    snprintf(v, sizeof v, "%d", it->entry->version);
    json_t *doc = json_pack("{s:s, s:s}", "model_name", it->entry->name, "model_version", v);
    if (io->id)
        json_object_set(doc, "id", io->id);
    json_t *outs = json_array();
    json_object_set_new(doc, "outputs", outs);
    static const char *names[2] = {"logits", "probabilities"};
    bool binary = false;
    for (int o = 0; o < 2; o++) {
        if (!io->want[o])
            continue;
        json_t *e = json_pack("{s:s, s:[I, I], s:s}", "name", names[o], "shape", (json_int_t)B,
                              (json_int_t)K, "datatype", "FP32");
        if (io->binary_out[o]) {
            json_object_set_new(
                e, "parameters",
                json_pack("{s:I}", "binary_data_size", (json_int_t)(B * K * sizeof(float))));
            binary = true;
        } else {
            json_t *data = json_array();
            for (size_t i = 0; i < B * K; i++)
                json_array_append_new(data, rrd_json_number(res[o][i]));
            json_object_set_new(e, "data", data);
        }
        json_array_append_new(outs, e);
    }
    if (binary)
        binary_answer(doc, io, res, B * K, out);
    else
        rrd_out_json(out, 200, doc);
    free(res[0]);
    free(res[1]);
}

// The binary input: shape and datatype from the JSON header, the bytes after it.
static bool binary_input(rrd_compute *c, const rrd_request *r, json_t *in, json_t *bds,
                         size_t json_len, rr_shape *s, rrd_out *o)
{
    const char *dt = json_string_value(json_object_get(in, "datatype"));
    json_t *sh = json_object_get(in, "shape");
    size_t n = 1;
    bool shape_ok = json_is_array(sh) && json_array_size(sh) <= RR_MAX_DIMS;
    for (size_t i = 0; shape_ok && i < json_array_size(sh); i++) {
        json_t *e = json_array_get(sh, i);
        shape_ok = json_is_integer(e) && json_integer_value(e) >= 0 &&
                   rr_size_mul(n, (size_t)json_integer_value(e), &n);
        s->dim[s->ndim++] = shape_ok ? json_integer_value(e) : 0;
    }
    const size_t es = dt && strcmp(dt, "FP64") == 0 ? 8 : 4;
    if (!dt || (strcmp(dt, "FP32") != 0 && strcmp(dt, "FP64") != 0)) {
        rrd_problem_out(o, RRD_P_DTYPE, "inputs", "input datatype must be FP32 or FP64");
    } else if (!shape_ok) {
        rrd_problem_out(o, RRD_P_SHAPE, "inputs", "input shape is invalid");
    } else if (!json_is_integer(bds) || (size_t)json_integer_value(bds) != n * es ||
               json_len + n * es != r->body_len) {
        rrd_problem_out(o, RRD_P_MALFORMED, "inputs",
                        "binary_data_size does not match the shape, or the body holds "
                        "another number of bytes");
    } else if ((c->x = malloc((n ? n : 1) * sizeof(float))) == NULL) {
        rrd_problem_out(o, RRD_P_UNAVAILABLE, NULL, "out of memory");
    } else {
        rr_convert_to_f32(c->x, r->body + json_len, es == 8 ? RR_DTYPE_F64 : RR_DTYPE_F32, n);
        if (rr_all_finite(c->x, n))
            return true;
        rrd_problem_out(o, RRD_P_NONFINITE, "inputs", "input holds NaN or Inf");
    }
    return false;
}

// The one input tensor, named "input", of shape [B, ...input_shape]: in the JSON (shape,
// datatype, data) or, with binary_data_size, in binary after it.
static bool read_input(rrd_compute *c, const rrd_request *r, json_t *doc, size_t json_len,
                       rrd_out *o)
{
    json_t *inputs = json_object_get(doc, "inputs");
    json_t *in = json_array_get(inputs, 0);
    rr_shape s = {0};
    bool ok = false;
    if (!json_is_array(inputs) || json_array_size(inputs) != 1 || !json_is_object(in) ||
        !json_is_string(json_object_get(in, "name")) ||
        strcmp(json_string_value(json_object_get(in, "name")), "input") != 0) {
        rrd_problem_out(o, RRD_P_INVALID, "inputs", "inputs must hold one tensor named \"input\"");
        return false;
    }
    json_t *bds = json_object_get(json_object_get(in, "parameters"), "binary_data_size");
    if (bds) {
        ok = binary_input(c, r, in, bds, json_len, &s, o);
    } else if (json_len != r->body_len) {
        rrd_problem_out(o, RRD_P_MALFORMED, NULL,
                        "binary bytes follow the header but no "
                        "input has binary_data_size");
    } else {
        json_t *t = json_pack("{s:O, s:O, s:O}", "shape", json_object_get(in, "shape"), "datatype",
                              json_object_get(in, "datatype"), "data", json_object_get(in, "data"));
        ok = t && rrd_json_tensor(t, "inputs", &s, &c->x, o);
        if (t == NULL)
            rrd_problem_out(o, RRD_P_INVALID, "inputs", "the input needs shape, datatype and data");
        json_decref(t);
    }
    if (!ok)
        return false;
    const rr_shape *ms = rr_model_input_shape(c->entry->model);
    const size_t max_batch = r->srv->cfg.max_batch;
    switch (rrd_compute_batch(&s, ms, false, max_batch, &c->B, &c->single)) {
        case RRD_BATCH_OK:
            return true;
        case RRD_BATCH_SHAPE:
        case RRD_BATCH_EMPTY: {
            char want[96];
            rr_shape_format(ms, want, sizeof want);
            rrd_problem_out(o, RRD_P_SHAPE, "inputs", "input must have shape [B, %s", want + 1);
            return false;
        }
        case RRD_BATCH_OVER:
            rrd_problem_out(o, RRD_P_BATCH_SIZE, "inputs", "batch over --max-batch (%zu)",
                            max_batch);
            return false;
    }
    return false;
}

// Requested outputs (all when absent), binary per output or for all.
static bool read_outputs(json_t *doc, v2_opts *io, rrd_out *o)
{
    const bool all_binary =
        json_is_true(json_object_get(json_object_get(doc, "parameters"), "binary_data_output"));
    json_t *outs = json_object_get(doc, "outputs");
    for (int k = 0; k < 2; k++) {
        io->want[k] = outs == NULL;
        io->binary_out[k] = all_binary;
    }
    for (size_t i = 0; json_is_array(outs) && i < json_array_size(outs); i++) {
        json_t *e = json_array_get(outs, i);
        const char *n = json_string_value(json_object_get(e, "name"));
        int k = n && strcmp(n, "logits") == 0 ? 0 : n && strcmp(n, "probabilities") == 0 ? 1 : -1;
        if (k < 0) {
            rrd_problem_out(o, RRD_P_INVALID, "outputs",
                            "unknown output '%.40s' (logits, probabilities)", n ? n : "");
            return false;
        }
        io->want[k] = true;
        json_t *bd = json_object_get(json_object_get(e, "parameters"), "binary_data");
        if (json_is_boolean(bd)) // a per-output value wins only when present
            io->binary_out[k] = json_is_true(bd);
    }
    return true;
}

// The request: the version segment, then the JSON header (the whole body, or its first
// Inference-Header-Content-Length bytes), its input and the outputs asked for.
static bool infer_read(rrd_compute *c, rrd_request *r, rrd_out *o)
{
    if (!at_version(r, c->entry, o))
        return false;
    const char *hlen =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    size_t json_len = r->body_len;
    if (hlen) {
        char *end;
        unsigned long long v = strtoull(hlen, &end, 10);
        if (*hlen == '\0' || *end || v > r->body_len) {
            rrd_problem_out(o, RRD_P_MALFORMED, "Inference-Header-Content-Length",
                            "Inference-Header-Content-Length must be at most the body length");
            return false;
        }
        json_len = (size_t)v;
    }
    json_error_t je;
    json_t *doc = json_loadb((const char *)r->body, json_len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL || !json_is_object(doc)) {
        rrd_problem_out(o, RRD_P_MALFORMED, NULL, "the inference request is not a JSON object%s%s",
                        doc ? "" : ": ", doc ? "" : je.text);
        json_decref(doc);
        return false;
    }
    v2_opts *io = c->extra;
    io->id = json_incref(json_object_get(doc, "id"));
    const bool ok = read_input(c, r, doc, json_len, o) && read_outputs(doc, io, o);
    json_decref(doc);
    return ok;
}

static void infer_cost(const rrd_compute *c, rrd_route_cost *q)
{
    q->out_values = 2.0 * (double)c->B * rr_model_num_classes(c->base.model);
}

const rrd_compute_route rrd_route_v2_infer = {
    .name = "v2_infer",
    .opts_size = sizeof(v2_opts),
    .opts_free = v2_opts_free,
    .read = infer_read,
    .cost = infer_cost,
    .run = infer_run,
};
