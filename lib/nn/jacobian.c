// The exact input Jacobian in one backward pass with K seed rows per sample (jacobian.h).
//
// Seeds are the identity per sample, so the backward rows of sample b are e_1..e_K and the
// pass returns J_b row by row: one GEMM per layer with M = nb*K instead of K separate passes.
#include <math.h>
#include <string.h>

#include "nn/jacobian.h"
#include "nn/passes.h"

rr_status rr_jacobian(const rr_model *m, rr_workspace *ws, const float *x, size_t B,
                      rr_jacobian_of of, float *J, float *logits, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = m->D, K = (size_t)m->K;
    const size_t chunk = rr__ws_chunk_for(ws, K);
    if (chunk == 0)
        return rr_error_set(err, RR_EINVAL, "workspace",
                            "the workspace holds %zu rows, fewer than the K = %zu of one sample",
                            ws->rows, K);
    for (size_t b0 = 0; b0 < B; b0 += chunk) {
        const size_t nb = B - b0 < chunk ? B - b0 : chunk;
        const float *z = rr__forward_chunk(m, ws, x + b0 * D, nb);
        if (logits)
            memcpy(logits + b0 * K, z, nb * K * sizeof(float));
        // Seed row (s, k) is e_k; for log-probabilities it is e_k - p_s, since
        // d log p_k / dx = J_k - sum_j p_j J_j.
        for (size_t s = 0; s < nb; s++) {
            const float *zs = z + s * K;
            const bool logp = of == RR_JACOBIAN_LOG_PROBABILITIES;
            const double lse = logp ? rr__logsumexp(zs, K) : 0.0;
            for (size_t j = 0; j < K; j++) {
                const double p = logp ? exp(zs[j] - lse) : 0.0;
                for (size_t k = 0; k < K; k++)
                    ws->seed[(s * K + k) * K + j] = (float)((j == k) - p);
            }
        }
        rr__backward_chunk(m, ws, nb, K, ws->seed, J + b0 * K * D, NULL, NULL);
    }
    return RR_OK;
}
