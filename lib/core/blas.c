// BLAS calls and the threading policy (see blas.h). The only file that includes cblas.h.
#include "core/blas.h"
#include "core/blas_impl.h"

#include <cblas.h>
#include <cpuid.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void gemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
                 const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                 size_t ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                (int)ldb, beta, C, (int)ldc);
}

// One sgemm on the calling thread only. Inside an active parallel region the OpenMP build of
// OpenBLAS is serial by itself; elsewhere (no region, or a team of one) it would use the
// thread's nthreads ICV, so that is set to 1 for the call and restored.
static void gemm_serial(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc)
{
    const int n = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (n > 1)
        omp_set_num_threads(1);
    gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (n > 1)
        omp_set_num_threads(n);
}

void rr__sgemm_serial(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
                      const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                      size_t ldc)
{
    RR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
              ldc <= INT_MAX);
    if (M == 0 || N == 0)
        return;
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Output panels: at most MAX_PANELS, each at least MIN_PANEL rows or columns.
#define MAX_PANELS 4
#define MIN_PANEL  64

// OpenBLAS's threaded sgemm splits its work by the thread count, and its edge tiles then
// round differently: results change in the last bit between 1 and 2 threads (measured on
// this machine's Haswell kernels). relureg promises thread-independent answers, so the
// threading happens here instead: C is cut into panels whose layout depends only on the
// shapes, each panel is one serial sgemm, and the panels are spread over the OpenMP threads.
// Each output element is then computed by the same call with the same operands whatever the
// thread count. Splitting the rows of C repacks B once per panel and splitting its columns
// repacks A, so the split runs along the dimension whose other operand is smaller, into few
// panels (the repacking stays a few percent of the work).
void rr__sgemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
               size_t ldc)
{
    RR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
              ldc <= INT_MAX);
    if (M == 0 || N == 0)
        return;
    const bool split_m = M >= N;
    const size_t dim = split_m ? M : N;
    size_t np = dim / MIN_PANEL;
    np = np < 1 ? 1 : np > MAX_PANELS ? MAX_PANELS : np;
    const size_t panel = (dim + np - 1) / np;
    // The region is entered even for a single panel, so that sgemm never runs threaded.
#pragma omp parallel for schedule(static, 1)
    for (size_t p = 0; p < np; p++) {
        const size_t o = p * panel, n = dim - o < panel ? dim - o : panel;
        if (split_m) {
            // Row i of op(A) is row i of A, or column i of A when transposed.
            const float *Ap = trans_a ? A + o : A + o * lda;
            gemm_serial(trans_a, trans_b, n, N, K, alpha, Ap, lda, B, ldb, beta, C + o * ldc, ldc);
        } else {
            // Column j of op(B) is column j of B, or row j of B when transposed.
            const float *Bp = trans_b ? B + o * ldb : B + o;
            gemm_serial(trans_a, trans_b, M, n, K, alpha, A, lda, Bp, ldb, beta, C + o, ldc);
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

// ---- kernel choice ----
//
// OpenBLAS (DYNAMIC_ARCH) picks its kernels when it loads, from the CPU's family and model, or
// from OPENBLAS_CORETYPE when that is set. Debian's 0.3.21 does not know recent Xeon models and
// falls back to its Prescott (SSE3) kernels: on this project's 2-core machines (AVX-512) sgemm
// 1024^3 runs at 60 GFLOP/s with them against 265 with the SkylakeX kernels. Since the choice
// is made before any code of ours runs, the only remedy is to set the variable and start the
// program again. The library never does that by itself (nothing here runs at load time); it
// tells what it sees, and rr_blas_use_fitting_kernels is there for a program's main to call.

const char *rr_blas_core(void)
{
    return openblas_get_corename();
}

int rr_blas_core_rank(const char *name)
{
    static const char *const r3[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const r2[] = {"Haswell", "Zen", "Excavator"};
    static const char *const r1[] = {"Sandybridge", "Bulldozer", "Piledriver", "Steamroller"};
    for (size_t i = 0; name && i < sizeof r3 / sizeof *r3; i++)
        if (!strcasecmp(name, r3[i]))
            return 3;
    for (size_t i = 0; name && i < sizeof r2 / sizeof *r2; i++)
        if (!strcasecmp(name, r2[i]))
            return 2;
    for (size_t i = 0; name && i < sizeof r1 / sizeof *r1; i++)
        if (!strcasecmp(name, r1[i]))
            return 1;
    return 0;
}

// From cpuid, and XCR0 for the register state the OS enables.
const char *rr_blas_best_core(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return NULL;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const bool ymm = (lo & 0x6) == 0x6, zmm = (lo & 0xe6) == 0xe6;
    __builtin_cpu_init();
    if (zmm && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (ymm && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    if (ymm && __builtin_cpu_supports("avx"))
        return "Sandybridge";
    return NULL;
}

bool rr_blas_core_fits_cpu(void)
{
    const char *best = rr_blas_best_core();
    return best == NULL || rr_blas_core_rank(rr_blas_core()) >= rr_blas_core_rank(best);
}

const char *rr_blas_core_to_request(const char *env, const char *loaded, const char *best)
{
    if ((env != NULL && env[0] != '\0') || best == NULL)
        return NULL;
    return rr_blas_core_rank(loaded) >= rr_blas_core_rank(best) ? NULL : best;
}

void rr_blas_use_fitting_kernels(char **argv)
{
    if (argv == NULL || argv[0] == NULL)
        return;
    const char *core =
        rr_blas_core_to_request(getenv("OPENBLAS_CORETYPE"), rr_blas_core(), rr_blas_best_core());
    if (core != NULL && setenv("OPENBLAS_CORETYPE", core, 1) == 0) {
        execv("/proc/self/exe", argv);
        unsetenv("OPENBLAS_CORETYPE"); // exec failed: carry on with the kernels loaded
    }
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
