// Models: GET /v1/models, PUT / GET / DELETE /v1/models/{name}, GET .../weights.
// PUT and DELETE need the bearer token when --token-file is set.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "routes.h"

// Whether a header value holds no NUL byte: "Bearer <token>\0junk" must not pass as the
// token. The length MHD reports must match the C string; and since libmicrohttpd 0.9.75 keeps
// values as C strings in its line buffer (the reported length is strlen's), a line that ends
// at the value's end has its CR LF there as two NUL bytes: a byte that is not NUL right after
// the string means the line went on past a NUL byte (or ended in a bare LF; clients sending
// credentials use CR LF). A value that starts its junk with NUL bytes again is beyond what
// this can see; the connection layer is the place to refuse any NUL in the header block.
static bool whole_value(const char *v, size_t len)
{
    return strlen(v) == len && v[len + 1] == '\0';
}

static bool authorized(rrd_request *r)
{
    const char *token = r->srv->cfg.token;
    if (token[0] == '\0')
        return true;
    const char *h = NULL;
    size_t hlen = 0;
    if (MHD_lookup_connection_value_n(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION,
                                      strlen(MHD_HTTP_HEADER_AUTHORIZATION), &h, &hlen) != MHD_YES)
        h = NULL;
    const size_t n = strlen(token);
    // RFC 9110 §11.1: the scheme is case-insensitive, then one or more spaces.
    if (h && whole_value(h, hlen) && strncasecmp(h, "Bearer ", 7) == 0) {
        size_t at = 7;
        while (h[at] == ' ')
            at++;
        // Compare in constant time.
        unsigned char diff = 0;
        for (size_t i = 0; hlen - at == n && i < n; i++)
            diff |= (unsigned char)(h[at + i] ^ token[i]);
        if (hlen - at == n && diff == 0)
            return true;
    }
    rrd_problem(r, RRD_P_UNAUTHORIZED, "Authorization",
                h ? "the bearer token is not valid"
                  : "this server requires a bearer token for "
                    "PUT and DELETE of models");
    rrd_add_header(r, "WWW-Authenticate", "Bearer realm=\"relureg\"");
    return false;
}

static json_t *shape_json(const rr_shape *s)
{
    json_t *a = json_array();
    for (int i = 0; i < s->ndim; i++)
        json_array_append_new(a, json_integer(s->dim[i]));
    return a;
}

// The summary every model listing shows.
static json_t *summary(const rrd_loaded *l)
{
    const rr_model *m = l->model;
    return json_pack("{s:s, s:i, s:o, s:i, s:I, s:i, s:s}", "name", l->name, "version", l->version,
                     "input_shape", shape_json(rr_model_input_shape(m)), "num_classes",
                     rr_model_num_classes(m), "parameter_count",
                     (json_int_t)rr_model_num_param_elements(m), "layers", rr_model_num_layers(m),
                     "loaded_at", l->loaded_at);
}

void rrd_route_models_list(rrd_request *r)
{
    rrd_loaded **items;
    size_t n = rrd_registry_list(r->srv->models, &items);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, summary(items[i]));
        rrd_loaded_release(items[i]);
    }
    free(items);
    rrd_respond_json(r, 200, json_pack("{s:o}", "models", arr));
}

void rrd_route_model_get(rrd_request *r)
{
    rrd_loaded *l = rrd_route_entry(r);
    if (l == NULL)
        return;
    const rr_model *m = l->model;
    json_t *doc = summary(l);
    float lo, hi;
    if (rr_model_input_range(m, &lo, &hi))
        json_object_set_new(doc, "input_range", json_pack("[f, f]", (double)lo, (double)hi));
    if (rr_model_class_name(m, 0)) {
        json_t *names = json_array();
        for (int k = 0; k < rr_model_num_classes(m); k++)
            json_array_append_new(names, json_string(rr_model_class_name(m, k)));
        json_object_set_new(doc, "class_names", names);
    }
    json_object_set_new(doc, "architecture", json_loads(rr_model_architecture(m), 0, NULL));
    json_t *meta = json_object();
    for (size_t i = 0; i < rr_model_metadata_count(m); i++) {
        const char *k = rr_model_metadata_key(m, i), *v = rr_model_metadata_value(m, i);
        if (strcmp(k, "relureg.architecture") == 0)
            continue;
        json_t *parsed = strcmp(k, "relureg.training") == 0 ? json_loads(v, 0, NULL) : NULL;
        json_object_set_new(meta, k, parsed ? parsed : json_string(v));
    }
    json_object_set_new(doc, "metadata", meta);
    json_t *params = json_array();
    for (size_t i = 0; i < rr_model_num_param_tensors(m); i++) {
        const rr_param *p = rr_model_param(m, i);
        json_array_append_new(
            params, json_pack("{s:s, s:o}", "name", p->name, "shape", shape_json(&p->shape)));
    }
    json_object_set_new(doc, "parameters", params);
    char hash[40];
    snprintf(hash, sizeof hash, "fnv1a64:%016llx", (unsigned long long)l->hash);
    rrd_add_header(r, "ETag", l->etag);
    json_object_set_new(doc, "content_hash", json_string(hash));
    json_object_set_new(doc, "bytes", json_integer((json_int_t)l->len));
    rrd_respond_json(r, 200, doc);
    rrd_loaded_release(l);
}

static void release_entry(void *l)
{
    rrd_loaded_release(l);
}

// The file as uploaded, straight from the registry entry (no copy: the entry stays retained
// until the answer is sent), with its entity tag; 304 when the client has it already.
void rrd_route_model_weights(rrd_request *r)
{
    rrd_loaded *l = rrd_route_entry(r);
    if (l == NULL)
        return;
    rrd_add_header(r, "ETag", l->etag);
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    if (inm && (strstr(inm, l->etag) || strcmp(inm, "*") == 0)) {
        rrd_respond(r, 304, "application/vnd.safetensors", "", 0);
        rrd_loaded_release(l);
        return;
    }
    rrd_respond_borrow(r, 200, "application/vnd.safetensors", l->bytes, l->len, release_entry, l);
}

typedef struct put_task {
    rrd_task base;
    rrd_server *srv;
    char name[128];
    uint8_t *bytes; // the file (owned until the registry takes it)
    size_t len;
} put_task;

static void put_free(rrd_task *t)
{
    put_task *p = (put_task *)t;
    free(p->bytes);
    free(p);
}

// Loads, checks and registers the uploaded file (on a worker, or inline when small).
static void put_run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    (void)w;
    put_task *p = (put_task *)t;
    rr_model *m = NULL;
    rr_error err = {0};
    rr_status st = rrd_model_load(p->bytes, p->len, &m, &err);
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        return;
    }
    bool created = false;
    uint8_t *bytes = p->bytes;
    p->bytes = NULL;
    int version = rrd_registry_put(p->srv->models, p->name, m, bytes, p->len, &created);
    if (version < 0) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory registering the model");
        return;
    }
    rrd_loaded *l = rrd_registry_get(p->srv->models, p->name);
    json_t *doc = l ? summary(l) : json_pack("{s:s, s:i}", "name", p->name, "version", version);
    json_object_set_new(doc, "version", json_integer(version));
    json_object_set_new(doc, "created", json_boolean(created));
    rrd_loaded_release(l);
    rrd_out_json(out, created ? 201 : 200, doc);
}

// A safetensors file opens with its header's length N (8 bytes, little-endian), then N bytes
// of JSON that start with '{'. A body that does not is some other file (a torch.save zip or
// pickle, a README): say so and point at the exporter, rather than report an absurd header
// length.
static bool looks_like_safetensors(rrd_request *r)
{
    // Only the opening is checked here; a truncated or inconsistent file gets the model
    // loader's precise message.
    const uint8_t *b = r->body;
    const size_t n = r->body_len;
    size_t j = 8;
    while (j < n && j < 16 && (b[j] == ' ' || b[j] == '\n' || b[j] == '\t'))
        j++;
    if (n > 8 && j < n && b[j] == '{')
        return true;
    const char *what = "it does not open with an 8-byte header length and a JSON header";
    if (n == 0)
        what = "the body is empty";
    else if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
        what = "it is a zip archive, as torch.save writes";
    else if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        what = "it is a Python pickle, as torch.save writes";
    rrd_problem(r, RRD_P_MALFORMED, "body",
                "the body is not a safetensors model file (%s). Write one from a PyTorch "
                "nn.Sequential with relureg.export(model, input_shape, path) or upload it with "
                "relureg.Client.put_model(name, model, input_shape=...) (clients/python)",
                what);
    return false;
}

void rrd_route_model_put(rrd_request *r)
{
    const char *name = r->params[0];
    if (!authorized(r))
        return;
    if (!rrd_valid_model_name(name)) {
        rrd_problem(r, RRD_P_INVALID, "name",
                    "model name '%.64s' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}", name);
        return;
    }
    const char *ct = r->content_type;
    if (ct == NULL || (strncmp(ct, "application/vnd.safetensors", 27) != 0 &&
                       strncmp(ct, "application/octet-stream", 24) != 0)) {
        rrd_problem(r, RRD_P_MEDIA_TYPE, "Content-Type",
                    "upload a model file as application/vnd.safetensors or "
                    "application/octet-stream (got %s)",
                    ct ? ct : "none");
        return;
    }
    if (!looks_like_safetensors(r))
        return;
    put_task *t = calloc(1, sizeof *t);
    if (t == NULL) {
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    t->base.run = put_run;
    t->base.free = put_free;
    t->srv = r->srv;
    snprintf(t->name, sizeof t->name, "%s", name);
    // The registry keeps the bytes exactly as uploaded: taken from the request.
    t->bytes = r->body ? r->body : malloc(1);
    t->len = r->body_len;
    r->body = NULL;
    r->body_cap = 0;
    // Parsing, checking and hashing the file runs at about a gigabyte a second: small files
    // inline, large ones on a worker, never a large one on an I/O thread.
    rrd_task_cost(r->srv, &t->base, "model_put", 20e-6 + (double)t->len / 1e9);
    rrd_submit(r, &t->base);
}

void rrd_route_model_delete(rrd_request *r)
{
    if (!authorized(r))
        return;
    const char *name = r->params[0];
    if (!rrd_valid_model_name(name)) {
        rrd_problem(r, RRD_P_INVALID, "name",
                    "model name '%.64s' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}", name);
        return;
    }
    if (!rrd_registry_delete(r->srv->models, name)) {
        rrd_problem_no_model(r, name);
        return;
    }
    rrd_respond(r, 204, "text/plain", "", 0);
}
