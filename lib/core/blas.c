// BLAS calls and the threading policy (see blas.h). The only file that includes cblas.h.
#include "core/blas.h"
#include "core/blas_impl.h"

#include <cblas.h>
#include <cpuid.h>
#include <limits.h>
#include <math.h>
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

// ---- the deterministic parallel product ----
//
// OpenBLAS's threaded sgemm splits its work by the thread count, and its edge tiles then
// round differently: results change in the last bit between 1 and 2 threads (measured on
// this machine's Haswell kernels). relureg promises thread-independent answers, so the
// threading happens here instead. The product is cut into tasks by a plan that depends on
// (M, N, K) only (rr__sgemm_plan): a grid of output tiles, and for products whose output is
// too small to give enough tiles, a split of K into chunks. Each task is one serial sgemm;
// tasks are claimed dynamically by the OpenMP threads; the K chunks' partial products are
// added in chunk order. Every element of C is then computed by the same operations whatever
// the thread count, and as many threads as the plan has tasks take part.

// Tasks a product is cut into when its work allows: enough for 64 threads, claimed
// dynamically so that uneven thread speeds even out. Larger products get more tasks, so that
// none exceeds TASK_MAX_FLOPS; smaller ones fewer, so that none is under TASK_MIN_FLOPS
// (about 160 us on one core: a task's packing of its panels of A and B costs a share that
// grows as tasks shrink; at 4 MFLOP the MLP's forward ran 12 % slower on one thread).
#define PAR_TASKS      64
#define TASK_MIN_FLOPS (16.0 * 1024 * 1024)
#define TASK_MAX_FLOPS (256.0 * 1024 * 1024)
// Tile sides are multiples of this (the micro-kernels' widths), so interior tiles never run
// the kernels' edge cases.
#define TILE_ALIGN 16
// K chunks are at least this long.
#define KC_MIN 128

static size_t cdiv(size_t a, size_t b)
{
    return (a + b - 1) / b;
}

static size_t round_up(size_t a, size_t b)
{
    return cdiv(a, b) * b;
}

// Tile side for g tiles along a dimension of n, and the tile count it gives.
static size_t tile_side(size_t n, size_t g, size_t *count)
{
    size_t t = g <= 1 ? n : round_up(cdiv(n, g), TILE_ALIGN);
    if (t > n)
        t = n;
    *count = cdiv(n, t);
    return t;
}

void rr__sgemm_plan(size_t M, size_t N, size_t K, rr__gemm_plan *p)
{
    *p = (rr__gemm_plan){.gm = 1, .gn = 1, .ks = 1, .tm = M, .tn = N, .kc = K};
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    double want = flops / TASK_MAX_FLOPS > PAR_TASKS ? ceil(flops / TASK_MAX_FLOPS) : PAR_TASKS;
    if (want > floor(flops / TASK_MIN_FLOPS))
        want = floor(flops / TASK_MIN_FLOPS);
    if (M == 0 || N == 0 || want < 2)
        return;
    const size_t w = (size_t)want;
    // The grid with the most tiles up to `w`, then the least repacking: each row of tiles
    // packs its part of B once per tile, each column of tiles its part of A, so the packed
    // elements are (gm N + gn M) K.
    const size_t mmax = cdiv(M, TILE_ALIGN), nmax = cdiv(N, TILE_ALIGN);
    size_t best_tiles = 0;
    double best_cost = 0.0;
    for (size_t gm = 1; gm <= mmax && gm <= w; gm++) {
        size_t gn = cdiv(w, gm);
        gn = gn > nmax ? nmax : gn;
        size_t cm, cn;
        const size_t tm = tile_side(M, gm, &cm), tn = tile_side(N, gn, &cn);
        const size_t tiles = cm * cn < w ? cm * cn : w;
        const double cost = (double)cm * (double)N + (double)cn * (double)M;
        if (tiles > best_tiles || (tiles == best_tiles && cost < best_cost)) {
            best_tiles = tiles;
            best_cost = cost;
            p->gm = cm, p->gn = cn, p->tm = tm, p->tn = tn;
        }
    }
    // Too few tiles for the work: split K, within the partials' scratch.
    const size_t tiles = p->gm * p->gn;
    if (tiles < w && K >= 2 * KC_MIN) {
        size_t ks = cdiv(w, tiles);
        const size_t by_k = K / KC_MIN, by_mem = RR__GEMM_SPLIT_FLOATS / (M * N) + 1;
        ks = ks > by_k ? by_k : ks;
        ks = ks > by_mem ? by_mem : ks;
        if (ks >= 2) {
            p->kc = round_up(cdiv(K, ks), TILE_ALIGN);
            p->ks = cdiv(K, p->kc);
        }
    }
}

size_t rr__sgemm_tasks(const rr__gemm_plan *p)
{
    return p->gm * p->gn * p->ks;
}

void rr__sgemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
               size_t ldc, float *split)
{
    RR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
              ldc <= INT_MAX);
    if (M == 0 || N == 0)
        return;
    rr__gemm_plan p;
    rr__sgemm_plan(M, N, K, &p);
    const size_t tasks = rr__sgemm_tasks(&p);
    if (tasks == 1) {
        gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    RR_ASSERT(p.ks == 1 || split != NULL);
    const size_t tiles = p.gm * p.gn;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t t = 0; t < tasks; t++) {
        const size_t s = t / tiles, i = t % tiles % p.gm, j = t % tiles / p.gm;
        const size_t m0 = i * p.tm, n0 = j * p.tn, k0 = s * p.kc;
        const size_t m = M - m0 < p.tm ? M - m0 : p.tm, n = N - n0 < p.tn ? N - n0 : p.tn;
        const size_t k = K - k0 < p.kc ? K - k0 : p.kc;
        // Row i of op(A) is row i of A, or column i of A when transposed; column k of op(A) is
        // column k of A, or row k. Likewise for op(B) with rows k and columns j.
        const float *Ap = trans_a ? A + k0 * lda + m0 : A + m0 * lda + k0;
        const float *Bp = trans_b ? B + n0 * ldb + k0 : B + k0 * ldb + n0;
        if (s == 0)
            gemm_serial(trans_a, trans_b, m, n, k, alpha, Ap, lda, Bp, ldb, beta, C + m0 * ldc + n0,
                        ldc);
        else
            gemm_serial(trans_a, trans_b, m, n, k, alpha, Ap, lda, Bp, ldb, 0.0f,
                        split + (s - 1) * M * N + m0 * N + n0, N);
    }
    if (p.ks == 1)
        return;
        // C += partial 1, then partial 2, ...: each element in chunk order.
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < M; i++)
        for (size_t s = 1; s < p.ks; s++) {
            const float *P = split + (s - 1) * M * N + i * N;
            float *c = C + i * ldc;
            for (size_t j = 0; j < N; j++)
                c[j] += P[j];
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
