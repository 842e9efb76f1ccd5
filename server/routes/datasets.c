// GET /v1/datasets/fashion-mnist/{train|test}?offset=&limit= (for dashboards): images
// [n, 1, 28, 28] in [0, 1] and labels; limit defaults to 16, at most 256 (more is 422).
// Any other dataset name is a 404 that lists the datasets there are.
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
    rr_dataset d = {0};
    rr_error err = {0};
    rr_status st =
        limit ? rr_fashion_mnist_load(r->srv->cfg.data_dir, train, offset, limit, &d, &err) : RR_OK;
    if (st == RR_EIO) {
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "the Fashion-MNIST files are not available: %s",
                    err.msg);
        return;
    }
    if (st != RR_OK) {
        rrd_problem_from(&r->out, st, &err);
        r->responded = true;
        return;
    }
    rrd_resp resp;
    rrd_resp_init(&resp, rrd_wants_binary(r));
    const rr_shape s = {.ndim = 4, .dim = {(int64_t)d.n, 1, 28, 28}};
    json_t *labels = json_array();
    for (size_t i = 0; i < d.n; i++)
        json_array_append_new(labels, json_integer(d.labels[i]));
    rrd_resp_tensor(&resp, resp.root, "images", "/images", &s, d.images, true);
    d.images = NULL;
    json_object_set_new(resp.root, "labels", labels);
    json_object_set_new(resp.root, "offset", json_integer((json_int_t)offset));
    json_t *names = json_array();
    for (int k = 0; k < 10; k++)
        json_array_append_new(names, json_string(rr_fashion_mnist_classes[k]));
    json_object_set_new(resp.root, "class_names", names);
    rrd_resp_finish(&resp, 200, &r->out);
    r->responded = true;
    rr_dataset_clear(&d);
}
