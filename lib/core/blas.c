// BLAS calls and the threading policy (see blas.h). The only file that includes cblas.h.
#include "core/blas.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>

static void gemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
                 const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                 size_t ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                (int)ldb, beta, C, (int)ldc);
}

// Panels of the output: rows of C in blocks of PANEL_M, or columns in blocks of PANEL_N.
#define PANEL_M 64
#define PANEL_N 256

// OpenBLAS's threaded sgemm splits its work by the thread count, and its edge tiles then
// round differently: results change in the last bit between 1 and 2 threads (measured on
// this machine's Haswell kernels). relureg promises thread-independent answers, so the
// threading happens here instead: C is cut into panels whose layout depends only on the
// shapes, each panel is one single-threaded sgemm (OpenBLAS's OpenMP build runs serially
// inside a parallel region), and the panels are spread over the OpenMP threads. Each output
// element is computed by the same call with the same operands whatever the thread count.
// The parallel region is entered even for a single panel, so that sgemm never runs threaded.
void rr__sgemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
               size_t ldc)
{
    RR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
              ldc <= INT_MAX);
    if (M == 0 || N == 0)
        return;
    if (M / PANEL_M >= N / PANEL_N) {
        const size_t np = (M + PANEL_M - 1) / PANEL_M;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t p = 0; p < np; p++) {
            const size_t i0 = p * PANEL_M, m = M - i0 < PANEL_M ? M - i0 : PANEL_M;
            // Row i of op(A) is row i of A, or column i of A when transposed.
            const float *Ap = trans_a ? A + i0 : A + i0 * lda;
            gemm(trans_a, trans_b, m, N, K, alpha, Ap, lda, B, ldb, beta, C + i0 * ldc, ldc);
        }
    } else {
        const size_t np = (N + PANEL_N - 1) / PANEL_N;
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t p = 0; p < np; p++) {
            const size_t j0 = p * PANEL_N, n = N - j0 < PANEL_N ? N - j0 : PANEL_N;
            // Column j of op(B) is column j of B, or row j of B when transposed.
            const float *Bp = trans_b ? B + j0 * ldb : B + j0;
            gemm(trans_a, trans_b, M, n, K, alpha, A, lda, Bp, ldb, beta, C + j0, ldc);
        }
    }
}

void rr__sgemm_native(size_t M, size_t N, size_t K, const float *A, const float *B, float *C)
{
    RR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
    gemm(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
}

rr_status rr_blas_check(rr_error *err)
{
    int par = openblas_get_parallel();
    if (par != 2)
        return rr_error_set(err, RR_EINTERNAL, "blas",
                            "linked OpenBLAS is the %s build; relureg needs the OpenMP build "
                            "(libopenblas-openmp-dev)",
                            par == 0   ? "sequential"
                            : par == 1 ? "pthread"
                                       : "unknown");
    return RR_OK;
}

const char *rr_blas_config(void)
{
    return openblas_get_config();
}

void rr_set_num_threads(int n)
{
    omp_set_num_threads(n < 1 ? 1 : n);
}

int rr_get_num_threads(void)
{
    return omp_get_max_threads();
}
