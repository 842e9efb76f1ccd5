// KServe / Open Inference Protocol v2 for predictions (api.md; serving.md §1.1-1.2): server
// and model metadata, health, and infer with the binary tensor data extension, so that stock
// KServe / Triton HTTP clients work unchanged. The input tensor is named "input"; outputs are
// "logits" and "probabilities". Only the current version exists: another {v} is 404.
#include <math.h>
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

// The entry, checking the optional /versions/{v} segment (parameter 1).
static rrd_loaded *entry_at_version(rrd_request *r)
{
    rrd_loaded *l = rrd_route_entry(r);
    if (l && r->params[1][0]) {
        char v[16];
        snprintf(v, sizeof v, "%d", l->version);
        if (strcmp(v, r->params[1]) != 0) {
            rrd_problem(r, RRD_P_NOT_FOUND, "version",
                        "model '%s' has only version %d (asked for %.16s)", l->name, l->version,
                        r->params[1]);
            rrd_loaded_release(l);
            return NULL;
        }
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

typedef struct infer_task {
    rrd_task base;
    rrd_loaded *entry;
    float *x;
    size_t B;
    json_t *id;   // echoed
    bool want[2]; // logits, probabilities
    bool binary_out[2];
} infer_task;

static void infer_free(rrd_task *t)
{
    infer_task *it = (infer_task *)t;
    json_decref(it->id);
    free(it->x);
    rrd_loaded_release(it->entry);
    free(it);
}

static void infer_run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    infer_task *it = (infer_task *)t;
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
    for (size_t b = 0; b < B; b++) {
        const float *z = res[0] + b * K;
        double mx = z[0], s = 0;
        for (size_t k = 1; k < K; k++)
            mx = z[k] > mx ? z[k] : mx;
        for (size_t k = 0; k < K; k++)
            s += exp(z[k] - mx);
        for (size_t k = 0; k < K; k++)
            res[1][b * K + k] = (float)(exp(z[k] - mx) / s);
    }
    char v[16];
    snprintf(v, sizeof v, "%d", it->entry->version);
    json_t *doc = json_pack("{s:s, s:s}", "model_name", it->entry->name, "model_version", v);
    if (it->id)
        json_object_set(doc, "id", it->id);
    json_t *outs = json_array();
    json_object_set_new(doc, "outputs", outs);
    static const char *names[2] = {"logits", "probabilities"};
    size_t bin_bytes = 0;
    for (int o = 0; o < 2; o++) {
        if (!it->want[o])
            continue;
        json_t *e = json_pack("{s:s, s:[I, I], s:s}", "name", names[o], "shape", (json_int_t)B,
                              (json_int_t)K, "datatype", "FP32");
        if (it->binary_out[o]) {
            json_object_set_new(
                e, "parameters",
                json_pack("{s:I}", "binary_data_size", (json_int_t)(B * K * sizeof(float))));
            bin_bytes += B * K * sizeof(float);
        } else {
            json_t *data = json_array();
            for (size_t i = 0; i < B * K; i++)
                json_array_append_new(data, rrd_json_number(res[o][i]));
            json_object_set_new(e, "data", data);
        }
        json_array_append_new(outs, e);
    }
    if (bin_bytes == 0) {
        rrd_out_json(out, 200, doc);
    } else {
        char *head = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9));
        json_decref(doc);
        const size_t hl = head ? strlen(head) : 0;
        char *body = head ? malloc(hl + bin_bytes) : NULL;
        if (body == NULL) {
            free(head);
            rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        } else {
            memcpy(body, head, hl);
            size_t off = hl;
            for (int o = 0; o < 2; o++)
                if (it->want[o] && it->binary_out[o]) {
                    memcpy(body + off, res[o], B * K * sizeof(float));
                    off += B * K * sizeof(float);
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
    }
    free(res[0]);
    free(res[1]);
}

static bool fail(rrd_request *r, infer_task *it)
{
    r->responded = true;
    infer_free(&it->base);
    return false;
}

void rrd_route_v2_infer(rrd_request *r)
{
    rrd_loaded *l = entry_at_version(r);
    if (l == NULL)
        return;
    infer_task *it = calloc(1, sizeof *it);
    if (it == NULL) {
        rrd_loaded_release(l);
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    it->entry = l;
    it->base.run = infer_run;
    it->base.free = infer_free;
    it->base.model = l->model;
    rrd_out *o = &r->out;
    // The JSON header is the whole body, or its first Inference-Header-Content-Length bytes.
    const char *hlen =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    size_t json_len = r->body_len;
    if (hlen) {
        char *end;
        unsigned long long v = strtoull(hlen, &end, 10);
        if (*hlen == '\0' || *end || v > r->body_len) {
            rrd_problem_out(o, RRD_P_MALFORMED, "Inference-Header-Content-Length",
                            "Inference-Header-Content-Length must be at most the body length");
            fail(r, it);
            return;
        }
        json_len = (size_t)v;
    }
    json_error_t je;
    json_t *doc = json_loadb((const char *)r->body, json_len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL || !json_is_object(doc)) {
        rrd_problem_out(o, RRD_P_MALFORMED, NULL, "the inference request is not a JSON object%s%s",
                        doc ? "" : ": ", doc ? "" : je.text);
        json_decref(doc);
        fail(r, it);
        return;
    }
    it->id = json_incref(json_object_get(doc, "id"));
    json_t *inputs = json_object_get(doc, "inputs");
    json_t *in = json_array_get(inputs, 0);
    const rr_shape *ms = rr_model_input_shape(l->model);
    rr_shape s = {0};
    bool ok = false;
    if (!json_is_array(inputs) || json_array_size(inputs) != 1 || !json_is_object(in) ||
        !json_is_string(json_object_get(in, "name")) ||
        strcmp(json_string_value(json_object_get(in, "name")), "input") != 0) {
        rrd_problem_out(o, RRD_P_INVALID, "inputs", "inputs must hold one tensor named \"input\"");
    } else {
        json_t *bds = json_object_get(json_object_get(in, "parameters"), "binary_data_size");
        if (bds) { // binary input: shape and datatype from JSON, bytes after the header
            const char *dt = json_string_value(json_object_get(in, "datatype"));
            json_t *sh = json_object_get(in, "shape");
            size_t n = 1;
            bool shape_ok = json_is_array(sh) && json_array_size(sh) <= RR_MAX_DIMS;
            for (size_t i = 0; shape_ok && i < json_array_size(sh); i++) {
                json_t *e = json_array_get(sh, i);
                shape_ok = json_is_integer(e) && json_integer_value(e) >= 0 &&
                           rr_size_mul(n, (size_t)json_integer_value(e), &n);
                s.dim[s.ndim++] = shape_ok ? json_integer_value(e) : 0;
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
            } else if ((it->x = malloc((n ? n : 1) * sizeof(float))) == NULL) {
                rrd_problem_out(o, RRD_P_UNAVAILABLE, NULL, "out of memory");
            } else {
                rr_convert_to_f32(it->x, r->body + json_len, es == 8 ? RR_DTYPE_F64 : RR_DTYPE_F32,
                                  n);
                ok = rr_all_finite(it->x, n);
                if (!ok)
                    rrd_problem_out(o, RRD_P_NONFINITE, "inputs", "input holds NaN or Inf");
            }
        } else if (json_len != r->body_len) {
            rrd_problem_out(o, RRD_P_MALFORMED, NULL,
                            "binary bytes follow the header but no "
                            "input has binary_data_size");
        } else {
            json_t *t =
                json_pack("{s:O, s:O, s:O}", "shape", json_object_get(in, "shape"), "datatype",
                          json_object_get(in, "datatype"), "data", json_object_get(in, "data"));
            ok = t && rrd_json_tensor(t, "inputs", &s, &it->x, o);
            if (t == NULL)
                rrd_problem_out(o, RRD_P_INVALID, "inputs",
                                "the input needs shape, datatype and data");
            json_decref(t);
        }
    }
    if (ok) { // [B, ...input_shape]
        bool match = s.ndim == ms->ndim + 1;
        for (int i = 0; match && i < ms->ndim; i++)
            match = s.dim[i + 1] == ms->dim[i];
        if (!match || s.dim[0] < 1) {
            char want[96];
            rr_shape_format(ms, want, sizeof want);
            rrd_problem_out(o, RRD_P_SHAPE, "inputs", "input must have shape [B, %s", want + 1);
            ok = false;
        } else if ((size_t)s.dim[0] > r->srv->cfg.max_batch) {
            rrd_problem_out(o, RRD_P_BATCH_SIZE, "inputs", "batch over --max-batch (%zu)",
                            r->srv->cfg.max_batch);
            ok = false;
        }
        it->B = ok ? (size_t)s.dim[0] : 0;
    }
    // Requested outputs (all when absent), binary per output or for all.
    const bool all_binary =
        json_is_true(json_object_get(json_object_get(doc, "parameters"), "binary_data_output"));
    json_t *outs = json_object_get(doc, "outputs");
    static const char *names[2] = {"logits", "probabilities"};
    for (int k = 0; ok && k < 2; k++) {
        it->want[k] = outs == NULL;
        it->binary_out[k] = all_binary;
    }
    for (size_t i = 0; ok && json_is_array(outs) && i < json_array_size(outs); i++) {
        json_t *e = json_array_get(outs, i);
        const char *n = json_string_value(json_object_get(e, "name"));
        int k = n && strcmp(n, "logits") == 0 ? 0 : n && strcmp(n, "probabilities") == 0 ? 1 : -1;
        if (k < 0) {
            rrd_problem_out(o, RRD_P_INVALID, "outputs",
                            "unknown output '%.40s' (logits, probabilities)", n ? n : "");
            ok = false;
            break;
        }
        it->want[k] = true;
        json_t *bd = json_object_get(json_object_get(e, "parameters"), "binary_data");
        if (json_is_boolean(bd)) // a per-output value wins only when present
            it->binary_out[k] = json_is_true(bd);
    }
    (void)names;
    json_decref(doc);
    if (!ok) {
        fail(r, it);
        return;
    }
    it->base.out_values = 2.0 * (double)it->B * rr_model_num_classes(it->base.model);
    rrd_task_estimate(r->srv, &it->base, "v2_infer", 1, it->B);
    rrd_submit(r, &it->base);
}
