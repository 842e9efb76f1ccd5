// Softmax cross-entropy with its gradient (loss.h), in double from float32 logits.
#include "nn/loss.h"

#include <math.h>
#include <string.h>

#include "nn/passes.h"

double rr__logsumexp(const float *z, size_t K)
{
    double mx = z[0], sum = 0.0;
    for (size_t k = 1; k < K; k++)
        mx = z[k] > mx ? z[k] : mx;
    for (size_t k = 0; k < K; k++)
        sum += exp(z[k] - mx);
    return mx + log(sum);
}

void rr_softmax(const float *logits, size_t B, size_t K, float *probs)
{
    for (size_t b = 0; b < B; b++) {
        const double lse = rr__logsumexp(logits + b * K, K);
        for (size_t k = 0; k < K; k++)
            probs[b * K + k] = (float)exp(logits[b * K + k] - lse);
    }
}

rr_status rr_cross_entropy(const float *logits, const int64_t *labels, size_t B, int K, float *loss,
                           float *probs, float *g_logits, double *loss_mean, rr_error *err)
{
    for (size_t b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= K)
            return rr_error_set(err, RR_EINVAL, "labels",
                                "labels[%zu] = %lld is out of range [0, %d)", b,
                                (long long)labels[b], K);
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *z = logits + b * (size_t)K;
        for (int k = 0; k < K; k++)
            if (!isfinite(z[k]))
                return rr_error_set(err, RR_ENONFINITE, "logits",
                                    "logits of sample %zu are not finite", b);
        const double lse = rr__logsumexp(z, (size_t)K);
        const double l = lse - z[labels[b]];
        total += l;
        if (loss)
            loss[b] = (float)l;
        for (int k = 0; k < K; k++) {
            const double p = exp(z[k] - lse);
            if (probs)
                probs[b * (size_t)K + k] = (float)p;
            if (g_logits)
                g_logits[b * (size_t)K + k] = (float)(p - (k == labels[b]));
        }
    }
    if (loss_mean)
        *loss_mean = B ? total / (double)B : 0.0;
    return RR_OK;
}

rr_status rr_cross_entropy_backward(const rr_model *m, rr_workspace *ws, const float *x,
                                    const int64_t *labels, size_t B, double *loss_mean, float *loss,
                                    float *g_x, float *g_params, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = m->D, K = (size_t)m->K;
    for (size_t b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= m->K)
            return rr_error_set(err, RR_EINVAL, "labels",
                                "labels[%zu] = %lld is out of range [0, %d)", b,
                                (long long)labels[b], m->K);
    if (g_params)
        memset(g_params, 0, m->param_size * sizeof(float));
    double total = 0.0;
    for (size_t b0 = 0; b0 < B; b0 += ws->nb) {
        const size_t nb = B - b0 < ws->nb ? B - b0 : ws->nb;
        const float *z = rr__forward_chunk(m, ws, x + b0 * D, nb);
        double chunk_mean = 0.0;
        // d mean / d z_b = (p_b - e_y) / B: seeds in the workspace's seed rows.
        st = rr_cross_entropy(z, labels + b0, nb, m->K, loss ? loss + b0 : NULL, NULL, ws->seed,
                              &chunk_mean, err);
        if (st != RR_OK)
            return st;
        total += chunk_mean * (double)nb;
        for (size_t i = 0; i < nb * K; i++)
            ws->seed[i] /= (float)B;
        rr__backward_chunk(m, ws, nb, 1, ws->seed, g_x ? g_x + b0 * D : NULL, g_params, NULL);
    }
    if (loss_mean)
        *loss_mean = B ? total / (double)B : 0.0;
    return RR_OK;
}

rr_status rr_cross_entropy_input_gradient(const rr_model *m, rr_workspace *ws, const float *x,
                                          const int64_t *labels, size_t B, float *g_x,
                                          float *logits, rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    const size_t D = m->D, K = (size_t)m->K;
    for (size_t b0 = 0; b0 < B; b0 += ws->nb) {
        const size_t nb = B - b0 < ws->nb ? B - b0 : ws->nb;
        const float *z = rr__forward_chunk(m, ws, x + b0 * D, nb);
        if (logits)
            memcpy(logits + b0 * K, z, nb * K * sizeof(float));
        st = rr_cross_entropy(z, labels + b0, nb, m->K, NULL, NULL, ws->seed, NULL, err);
        if (st != RR_OK)
            return st;
        rr__backward_chunk(m, ws, nb, 1, ws->seed, g_x + b0 * D, NULL, NULL);
    }
    return RR_OK;
}
