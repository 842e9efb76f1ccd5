// The connection quantities of math.md (see connections.h), per sample from J, p and r:
//   ||J||_F^2, ||J_c||_F^2 = ||J||_F^2 - ||J^T 1||^2 / K, g = J^T r, ||g||^2,
//   bound ||r||^2 lambda_max(J_c J_c^T), tr H = tr(S G) with G = J J^T,
//   lambda_max(H) = lambda_max(S^1/2 G S^1/2), h^2 ||J^T S J u||^2,
//   and at x' = x + h u: g' = J'^T r', ||g' - g||^2, and whether x' left Q(x).
#include <math.h>
#include <string.h>

#include "nn/passes.h"
#include "reg/connections.h"
#include "reg/reg_impl.h"

void rr_eigen_symmetric(double *a, size_t n, double *w, double *v)
{
    if (v)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                v[i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, tot = 0.0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                tot += a[i * n + j] * a[i * n + j];
                if (i != j)
                    off += a[i * n + j] * a[i * n + j];
            }
        if (off <= 1e-30 * tot || off == 0.0)
            break;
        for (size_t p = 0; p < n; p++)
            for (size_t q = p + 1; q < n; q++) {
                const double apq = a[p * n + q];
                if (apq == 0.0)
                    continue;
                // The rotation that zeroes a[p][q] (Golub & Van Loan, symmetric Schur).
                const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                const double t =
                    (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                const double c = 1.0 / sqrt(t * t + 1), s = t * c;
                for (size_t k = 0; k < n; k++) {
                    const double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (size_t k = 0; k < n; k++) {
                    const double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                if (v)
                    for (size_t k = 0; k < n; k++) {
                        const double vkp = v[k * n + p], vkq = v[k * n + q];
                        v[k * n + p] = c * vkp - s * vkq;
                        v[k * n + q] = s * vkp + c * vkq;
                    }
            }
    }
    for (size_t i = 0; i < n; i++)
        w[i] = a[i * n + i];
    // ascending order (selection sort, with the eigenvector columns)
    for (size_t i = 0; i < n; i++) {
        size_t mn = i;
        for (size_t j = i + 1; j < n; j++)
            mn = w[j] < w[mn] ? j : mn;
        if (mn == i)
            continue;
        const double t = w[i];
        w[i] = w[mn];
        w[mn] = t;
        if (v)
            for (size_t k = 0; k < n; k++) {
                const double tv = v[k * n + i];
                v[k * n + i] = v[k * n + mn];
                v[k * n + mn] = tv;
            }
    }
}

static double max_eigenvalue(double *a, size_t K, double *w)
{
    rr_eigen_symmetric(a, K, w, NULL);
    return w[K - 1];
}

// Per sample, from J [K, D], p [K], r [K]: everything but the displaced-point quantities.
// scratch: 4*K*K + 2*K doubles.
static void from_jacobian(const float *J, const double *p, const float *r, size_t K, size_t D,
                          double *scratch, rr_connections *o, size_t b)
{
    double *G = scratch, *Gc = G + K * K, *M = Gc + K * K, *V = M + K * K, *w = V + K * K;
    double *rs = w + K;
    double fro = 0.0, col1 = 0.0;
    for (size_t k = 0; k < K; k++)
        for (size_t l = k; l < K; l++) {
            double s = 0.0;
            for (size_t j = 0; j < D; j++)
                s += (double)J[k * D + j] * J[l * D + j];
            G[k * K + l] = G[l * K + k] = s;
        }
    for (size_t k = 0; k < K; k++) {
        fro += G[k * K + k];
        for (size_t l = 0; l < K; l++)
            col1 += G[k * K + l]; // ||J^T 1||^2 = 1^T G 1
    }
    // G_c = C G C with C = I - 11^T/K: subtract row and column means.
    double mean_all = col1 / ((double)K * K);
    for (size_t k = 0; k < K; k++) {
        double rk = 0.0, rl;
        for (size_t l = 0; l < K; l++)
            rk += G[k * K + l];
        rk /= (double)K;
        for (size_t l = 0; l < K; l++) {
            rl = 0.0;
            for (size_t i = 0; i < K; i++)
                rl += G[i * K + l];
            rl /= (double)K;
            Gc[k * K + l] = G[k * K + l] - rk - rl + mean_all;
        }
    }
    double rr2 = 0.0, gg = 0.0, tr = 0.0, pGp = 0.0;
    for (size_t k = 0; k < K; k++)
        rr2 += (double)r[k] * r[k];
    for (size_t k = 0; k < K; k++)
        for (size_t l = 0; l < K; l++) {
            gg += (double)r[k] * G[k * K + l] * r[l]; // ||J^T r||^2
            pGp += p[k] * G[k * K + l] * p[l];
        }
    for (size_t k = 0; k < K; k++)
        tr += p[k] * G[k * K + k];
    o->jacobian_fro2[b] = fro;
    o->centered_jacobian_fro2[b] = fro - col1 / (double)K;
    o->input_gradient_norm2[b] = gg;
    o->residual_norm2[b] = rr2;
    o->hessian_trace[b] = tr - pGp;
    memcpy(M, Gc, K * K * sizeof(double));
    o->input_gradient_bound[b] = rr2 * fmax(0.0, max_eigenvalue(M, K, w));
    // S^1/2 from S = diag(p) - p p^T (PSD), then lambda_max(S^1/2 G S^1/2).
    for (size_t k = 0; k < K; k++)
        for (size_t l = 0; l < K; l++)
            M[k * K + l] = (k == l ? p[k] : 0.0) - p[k] * p[l];
    rr_eigen_symmetric(M, K, w, V);
    for (size_t k = 0; k < K; k++)
        rs[k] = sqrt(fmax(0.0, w[k]));
    for (size_t k = 0; k < K; k++) // M = V diag(sqrt w) V^T
        for (size_t l = 0; l < K; l++) {
            double s = 0.0;
            for (size_t i = 0; i < K; i++)
                s += V[k * K + i] * rs[i] * V[l * K + i];
            M[k * K + l] = s;
        }
    // Gc (reused) = S^1/2 G S^1/2
    for (size_t k = 0; k < K; k++)
        for (size_t l = 0; l < K; l++) {
            double s = 0.0;
            for (size_t i = 0; i < K; i++)
                for (size_t j = 0; j < K; j++)
                    s += M[k * K + i] * G[i * K + j] * M[j * K + l];
            Gc[k * K + l] = s;
        }
    o->hessian_max_eigenvalue[b] = fmax(0.0, max_eigenvalue(Gc, K, w));
}

// p [nb, K] = softmax(z), r = p - e_y (the cross-entropy's gradient in the logits).
static void softmax_residuals(double *p, float *r, const float *z, const int64_t *y, size_t nb,
                              size_t K)
{
    for (size_t s = 0; s < nb; s++) {
        rr__softmax(p + s * K, z + s * K, K, y[s]);
        for (size_t k = 0; k < K; k++)
            r[s * K + k] = (float)(p[s * K + k] - (k == (size_t)y[s]));
    }
}

// One sample's CURE step from its Jacobian Js [K, D]: g = J^T r, u = sign(g)/||sign(g)||,
// w = J u, sw = S w, Hu = J^T S J u, x2 = x + h u. Returns h^2 ||Hu||^2.
static double cure_step(const float *Js, const double *p, const float *r, const float *x, size_t K,
                        size_t D, double h, float *g, float *u, float *w, float *sw, float *Hu,
                        float *x2)
{
    for (size_t j = 0; j < D; j++) {
        double a = 0.0;
        for (size_t k = 0; k < K; k++)
            a += (double)r[k] * Js[k * D + j];
        g[j] = (float)a;
    }
    rr__cure_direction(u, g, D);
    for (size_t k = 0; k < K; k++) {
        double a = 0.0;
        for (size_t j = 0; j < D; j++)
            a += (double)Js[k * D + j] * u[j];
        w[k] = (float)a;
    }
    rr__softmax_jvp(sw, p, w, K);
    double hu2 = 0.0;
    for (size_t j = 0; j < D; j++) {
        double a = 0.0;
        for (size_t k = 0; k < K; k++)
            a += (double)sw[k] * Js[k * D + j];
        Hu[j] = (float)a;
        hu2 += a * a;
    }
    for (size_t j = 0; j < D; j++)
        x2[j] = (float)(x[j] + h * u[j]);
    return h * h * hu2;
}

rr_status rr_connections_compute(const rr_model *m, rr_workspace *ws, const float *x,
                                 const int64_t *y, size_t B, double h, rr_connections *o,
                                 rr_error *err)
{
    rr_status st = rr__check_call(m, ws, x, B, err);
    if (st != RR_OK)
        return st;
    if (!(h > 0) || !isfinite(h))
        return rr_error_set(err, RR_EINVAL, "h", "h must be > 0, got %g", h);
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    for (size_t b = 0; b < B; b++)
        if (y[b] < 0 || y[b] >= (int64_t)K)
            return rr_error_set(err, RR_EINVAL, "labels",
                                "labels[%zu] = %lld is out of range [0, %zu)", b, (long long)y[b],
                                K);
    const size_t chunk = rr__ws_chunk_for(ws, K);
    if (chunk == 0)
        return rr_error_set(err, RR_EINVAL, "workspace", "plan the workspace with rows >= K");
    rr_workspace *ws2 = rr__ws_twin(ws, err);
    if (ws2 == NULL)
        return err ? err->code : RR_ENOMEM;
    // Scratch: J [n,K,D], seeds [n*K,K], g, g', u, x', Hu [n,D], r, r', w [n,K], p, p' [n,K]
    // doubles, eigen scratch, hashes.
    const size_t n = chunk;
    const size_t floats = n * K * D + n * K * K + 6 * n * D + 4 * n * K + 4 * n * K +
                          2 * (4 * K * K + 2 * K) + 4 * n + 16 * 16;
    double *p = rr__ws_ext(ws, floats * sizeof(float), err);
    if (p == NULL)
        return RR_ENOMEM;
    // 8-byte members first, then floats.
    double *p2 = p + n * K, *eig = p2 + n * K;
    uint64_t *h1 = (uint64_t *)(eig + 4 * K * K + 2 * K), *h2 = h1 + n;
    float *J = (float *)(h2 + n), *seed = J + n * K * D, *g = seed + n * K * K, *g2 = g + n * D;
    float *u = g2 + n * D, *x2 = u + n * D, *Hu = x2 + n * D, *w = Hu + n * D, *r = w + n * D;
    float *r2 = r + n * K, *sw = r2 + n * K;

    for (size_t b0 = 0; b0 < B; b0 += n) {
        const size_t nb = B - b0 < n ? B - b0 : n;
        const float *xc = x + b0 * D;
        const float *z = rr__forward_chunk(m, ws, xc, nb);
        softmax_residuals(p, r, z, y + b0, nb, K);
        rr__pattern_hash_chunk(m, ws, nb, h1);
        memset(seed, 0, nb * K * K * sizeof(float));
        for (size_t i = 0; i < nb * K; i++)
            seed[i * K + i % K] = 1.0f;
        rr__backward_chunk(m, ws, nb, K, seed, J, NULL, NULL);
        for (size_t s = 0; s < nb; s++) {
            const float *Js = J + s * K * D;
            from_jacobian(Js, p + s * K, r + s * K, K, D, eig, o, b0 + s);
            o->curvature_hessian[b0 + s] =
                cure_step(Js, p + s * K, r + s * K, xc + s * D, K, D, h, g + s * D, u + s * D,
                          w + s * K, sw + s * K, Hu + s * D, x2 + s * D);
        }
        if (!rr_all_finite(x2, nb * D))
            return rr_error_set(err, RR_ENONFINITE, "h", "x + h u overflows float32");
        // g' at x' = x + h u
        const float *z2 = rr__forward_chunk(m, ws2, x2, nb);
        softmax_residuals(p2, r2, z2, y + b0, nb, K);
        rr__pattern_hash_chunk(m, ws2, nb, h2);
        rr__backward_chunk(m, ws2, nb, 1, r2, g2, NULL, NULL);
        for (size_t s = 0; s < nb; s++) {
            double d2 = 0.0;
            for (size_t j = 0; j < D; j++) {
                const double d = (double)g2[s * D + j] - g[s * D + j];
                d2 += d * d;
            }
            o->curvature_fd[b0 + s] = d2;
            o->curvature_ratio[b0 + s] = d2 / o->curvature_hessian[b0 + s];
            o->left_region[b0 + s] = h1[s] != h2[s];
        }
    }
    return RR_OK;
}
