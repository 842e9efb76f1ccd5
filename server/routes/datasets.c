// GET /v1/datasets/fashion-mnist/{train|test}?offset=&limit= (for dashboards): images
// [n, 1, 28, 28] in [0, 1] and labels; limit defaults to 16, at most 256 (more is 422).
// Any other dataset name is a 404 that lists the datasets there are.
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

static bool query_size(rrd_request *r, const char *key, size_t def, size_t max, size_t *out)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
    *out = def;
    if (v == NULL)
        return true;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end || x < 0 || (unsigned long long)x > max) {
        rrd_problem(r, RRD_P_INVALID, key, "%s must be an integer in [0, %zu]", key, max);
        return false;
    }
    *out = (size_t)x;
    return true;
}

// Each split is decompressed once, on a worker, and kept as bytes (47 MB train, 8 MB test):
// Fashion-MNIST pixels are k / 255, so the bytes give back the exact floats.
typedef struct split_cache {
    pthread_mutex_t mu;
    bool loaded;
    size_t n;
    uint8_t *pixels; // [n, 784]
    uint8_t *labels; // [n]
} split_cache;

static split_cache caches[2] = {{.mu = PTHREAD_MUTEX_INITIALIZER},
                                {.mu = PTHREAD_MUTEX_INITIALIZER}};

static bool cached(bool train)
{
    split_cache *c = &caches[train];
    pthread_mutex_lock(&c->mu);
    const bool ok = c->loaded;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

// Loads the split into its cache when it is not there yet (under its mutex, so concurrent
// first requests load it once).
static rr_status load_split(const char *dir, bool train, rr_error *err)
{
    split_cache *c = &caches[train];
    pthread_mutex_lock(&c->mu);
    rr_status st = RR_OK;
    if (!c->loaded) {
        rr_dataset d = {0};
        st = rr_fashion_mnist_load(dir, train, 0, 0, &d, err);
        if (st == RR_OK) {
            c->pixels = malloc(d.n * 784);
            c->labels = malloc(d.n);
            if (!c->pixels || !c->labels || d.rows * d.cols != 784) {
                free(c->pixels);
                free(c->labels);
                c->pixels = c->labels = NULL;
                st = rr_error_set(err, RR_ENOMEM, NULL, "out of memory caching the dataset");
            } else {
                for (size_t i = 0; i < d.n * 784; i++)
                    c->pixels[i] = (uint8_t)lrintf(d.images[i] * 255.0f);
                for (size_t i = 0; i < d.n; i++)
                    c->labels[i] = (uint8_t)d.labels[i];
                c->n = d.n;
                c->loaded = true;
            }
        }
        rr_dataset_clear(&d);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

typedef struct dataset_task {
    rrd_task base;
    const char *dir;
    bool train;
    size_t offset, limit;
} dataset_task;

static void dataset_free(rrd_task *t)
{
    free(t);
}

static void dataset_run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    (void)w;
    dataset_task *q = (dataset_task *)t;
    rr_error err = {0};
    rr_status st = load_split(q->dir, q->train, &err);
    if (st == RR_EIO) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL,
                        "the Fashion-MNIST files are not available: %s", err.msg);
        return;
    }
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        return;
    }
    const split_cache *c = &caches[q->train]; // immutable once loaded
    const size_t n =
        q->offset < c->n ? (c->n - q->offset < q->limit ? c->n - q->offset : q->limit) : 0;
    float *images = malloc((n ? n : 1) * 784 * sizeof(float));
    if (images == NULL) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    const uint8_t *px = c->pixels + q->offset * 784;
    for (size_t i = 0; i < n * 784; i++)
        images[i] = (float)px[i] / 255.0f;
    rrd_resp resp;
    rrd_resp_init(&resp, t->binary);
    const rr_shape s = {.ndim = 4, .dim = {(int64_t)n, 1, 28, 28}};
    json_t *labels = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(labels, json_integer(c->labels[q->offset + i]));
    rrd_resp_tensor(&resp, resp.root, "images", "/images", &s, images, true);
    json_object_set_new(resp.root, "labels", labels);
    json_object_set_new(resp.root, "offset", json_integer((json_int_t)q->offset));
    json_t *names = json_array();
    for (int k = 0; k < 10; k++)
        json_array_append_new(names, json_string(rr_fashion_mnist_class_name(k)));
    json_object_set_new(resp.root, "class_names", names);
    rrd_resp_finish(&resp, 200, out);
}

void rrd_route_dataset(rrd_request *r)
{
    const char *name = r->params[0], *split = r->params[1];
    if (strcmp(name, "fashion-mnist") != 0) {
        rrd_problem(r, RRD_P_NOT_FOUND, "name",
                    "no dataset named '%.64s'; the datasets are: fashion-mnist (splits train and "
                    "test)",
                    name);
        return;
    }
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0) {
        rrd_problem(r, RRD_P_NOT_FOUND, "split",
                    "fashion-mnist has no split '%.64s'; its splits are train and test", split);
        return;
    }
    size_t offset, limit;
    const bool train = split[1] == 'r';
    if (!query_size(r, "offset", 0, train ? 59999 : 9999, &offset) ||
        !query_size(r, "limit", 16, 256, &limit))
        return;
    dataset_task *t = calloc(1, sizeof *t);
    if (t == NULL) {
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    t->base.run = dataset_run;
    t->base.free = dataset_free;
    t->base.binary = rrd_wants_binary(r);
    t->dir = r->srv->cfg.data_dir;
    t->train = train;
    t->offset = offset;
    t->limit = limit;
    // Decompressing a split takes a fraction of a second (on a worker, once); rendering costs
    // about 60 ns a pixel as JSON, 2 as binary: small answers from the cache run inline.
    rrd_task_cost(r->srv, &t->base, "dataset",
                  (cached(train) ? 0
                   : train       ? 2.0
                                 : 0.3) +
                      (double)limit * 784 * (t->base.binary ? 2e-9 : 60e-9));
    rrd_submit(r, &t->base);
}
