// Residual blocks: y = x + body(x). The drivers (forward.c, vjp.c, jvp.c) bracket the body
// with RES_BEGIN / RES_END ops; the only arithmetic is this elementwise add, used forward
// (skip + body output) and backward (gradient through the body + gradient through the skip).
#include "nn/layers.h"

void rr__residual_add(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}
