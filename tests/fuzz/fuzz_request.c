// libFuzzer harness: request bodies through reluregd's parsing (server/tensor_json.c): the
// first input byte picks the Content-Type (JSON, safetensors, form-encoded, other), the rest
// is the body; then the "inputs" tensor, the "labels" and, for JSON, every member parsed as a
// tensor, and the answer rendered back in both forms. Nothing a client sends may crash or
// leak.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/problem.h"
#include "../../server/tensor_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *types[] = {"application/json", "application/vnd.safetensors",
                                  "application/x-www-form-urlencoded", "text/plain"};
    rrd_request r;
    memset(&r, 0, sizeof r);
    r.content_type = types[data[0] % 4];
    r.body = malloc(size);
    memcpy(r.body, data + 1, size - 1);
    r.body_len = size - 1;
    rrd_out out = {0};
    rrd_doc d;
    if (rrd_doc_parse(&d, &r, &out)) {
        rr_shape s;
        float *x = NULL;
        if (rrd_doc_tensor(&d, "inputs", false, &s, &x, &out) && x) {
            for (int binary = 0; binary < 2; binary++) {
                rrd_resp resp;
                rrd_resp_init(&resp, binary);
                rrd_resp_tensor(&resp, resp.root, "x", "/x", &s, x, false);
                rrd_resp_finish(&resp, 200, &out);
            }
        }
        free(x);
        size_t n;
        int64_t *y = NULL;
        rrd_doc_labels(&d, "labels", false, &n, &y, &out);
        free(y);
        const char *key;
        json_t *v;
        json_object_foreach(d.root, key, v)
        {
            float *t = NULL;
            rrd_json_tensor(v, key, &s, &t, &out);
            free(t);
        }
        rrd_doc_clear(&d);
    }
    free(out.body);
    free(r.body);
    return 0;
}
