// C = A B with every element computed by the same chain of floating-point operations, whatever
// its position: c = 0, then c = fma(A[i,k], B[k,j], c) for k = 0 .. K-1 in order (or, on a CPU
// without FMA, c = c + A[i,k] * B[k,j] in that order). Two outputs whose columns of B are equal
// are therefore equal, bit for bit, as they are in PyTorch's arithmetic.
//
// Why not sgemm: OpenBLAS computes an element with a kernel chosen by its tile (main tiles,
// N edge tiles, the packing panel it falls in), and those kernels accumulate in different
// orders: measured here (Haswell and SkylakeX kernels alike), C = W col with all columns of col
// equal gives unequal outputs from column 320 on at M = 8, K = 9, N = 784, and in the last
// tile at N = 196. A convolution on an image with a flat background then gives unequal values
// at positions whose inputs are the same, and a max-pool window of those picks another entry
// than PyTorch's first maximum.
//
// The kernels: 4 rows x 64 columns of C in 16 AVX-512 registers where the CPU has them (the
// speed of sgemm's own AVX-512 kernels: a convolution's forward pass runs here), else 4 x 24 in
// 12 AVX2 registers. B is read once per column tile while all row tiles of A pass over it
// (the tile of B, K x 64 floats, stays in L1 or L2); the last partial column tile goes
// through the same instructions with masked loads and stores, so it rounds the same way. Both
// kernels compute each element by the same chain of FMAs, so they give the same bits.
#include <stdbool.h>
#include <string.h>

#include "nn/layers.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RR_HAVE_X86 1
#endif

// Portable path: the loop over j is the same sequence of IEEE operations for every column
// (-ffp-contract is off in ISO C mode), so its vectorised and scalar iterations agree.
static void gemm_uniform_plain(size_t M, size_t N, size_t K, const float *A, size_t lda,
                               const float *B, size_t ldb, float *C, size_t ldc)
{
    for (size_t i = 0; i < M; i++) {
        float *restrict c = C + i * ldc;
        memset(c, 0, N * sizeof(float));
        for (size_t k = 0; k < K; k++) {
            const float a = A[i * lda + k];
            const float *restrict b = B + k * ldb;
            for (size_t j = 0; j < N; j++)
                c[j] = c[j] + a * b[j];
        }
    }
}

#ifdef RR_HAVE_X86
#define MR 4
#define NR 24

// One MR x NR tile (mr <= MR rows; columns masked when `masked`), as a compile-time shape.
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile(int mr, bool masked, size_t K, const float *A, size_t lda, const float *B, size_t ldb,
     float *C, size_t ldc, const __m256i *mask)
{
    __m256 c[MR][3];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < 3; v++)
            c[i][v] = _mm256_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        __m256 bv[3];
        for (int v = 0; v < 3; v++)
            bv[v] = masked ? _mm256_maskload_ps(b + 8 * v, mask[v]) : _mm256_loadu_ps(b + 8 * v);
        for (int i = 0; i < mr; i++) {
            const __m256 a = _mm256_broadcast_ss(A + (size_t)i * lda + k);
            for (int v = 0; v < 3; v++)
                c[i][v] = _mm256_fmadd_ps(a, bv[v], c[i][v]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 3; v++) {
            float *o = C + (size_t)i * ldc + 8 * v;
            if (masked)
                _mm256_maskstore_ps(o, mask[v], c[i][v]);
            else
                _mm256_storeu_ps(o, c[i][v]);
        }
}

// The row tiles of one column tile: whole MR-row tiles, then the rest (3, 2 or 1 rows), each a
// compile-time shape of the kernel TILE (target TARGET, mask type MASK).
#define COLUMN_TILE(NAME, TARGET, TILE, MASK)                                                      \
    __attribute__((target(TARGET))) static void NAME(                                              \
        bool masked, size_t M, size_t K, const float *A, size_t lda, const float *B, size_t ldb,   \
        float *C, size_t ldc, const MASK *mask)                                                    \
    {                                                                                              \
        size_t i = 0;                                                                              \
        for (; i + MR <= M; i += MR)                                                               \
            if (masked)                                                                            \
                TILE(MR, true, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc, mask);               \
            else                                                                                   \
                TILE(MR, false, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc, mask);              \
        const size_t rest = M - i;                                                                 \
        const float *Ai = A + i * lda;                                                             \
        float *Ci = C + i * ldc;                                                                   \
        if (rest == 3)                                                                             \
            masked ? TILE(3, true, K, Ai, lda, B, ldb, Ci, ldc, mask)                              \
                   : TILE(3, false, K, Ai, lda, B, ldb, Ci, ldc, mask);                            \
        else if (rest == 2)                                                                        \
            masked ? TILE(2, true, K, Ai, lda, B, ldb, Ci, ldc, mask)                              \
                   : TILE(2, false, K, Ai, lda, B, ldb, Ci, ldc, mask);                            \
        else if (rest == 1)                                                                        \
            masked ? TILE(1, true, K, Ai, lda, B, ldb, Ci, ldc, mask)                              \
                   : TILE(1, false, K, Ai, lda, B, ldb, Ci, ldc, mask);                            \
    }

COLUMN_TILE(column_tile, "avx2,fma", tile, __m256i)

__attribute__((target("avx2,fma"))) static void gemm_uniform_fma(size_t M, size_t N, size_t K,
                                                                 const float *A, size_t lda,
                                                                 const float *B, size_t ldb,
                                                                 float *C, size_t ldc)
{
    __m256i full[3];
    for (int v = 0; v < 3; v++)
        full[v] = _mm256_set1_epi32(-1);
    size_t j = 0;
    for (; j + NR <= N; j += NR)
        column_tile(false, M, K, A, lda, B + j, ldb, C + j, ldc, full);
    if (j < N) {
        const int n = (int)(N - j);
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask[3];
        for (int v = 0; v < 3; v++)
            mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * v), lane);
        column_tile(true, M, K, A, lda, B + j, ldb, C + j, ldc, mask);
    }
}

// ---- AVX-512: the same chain of FMAs, 4 rows x 64 columns a tile ----
#define NR16 64

__attribute__((target("avx512f"), always_inline)) static inline void
tile16(int mr, bool masked, size_t K, const float *A, size_t lda, const float *B, size_t ldb,
       float *C, size_t ldc, const __mmask16 *mask)
{
    __m512 c[MR][4];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < 4; v++)
            c[i][v] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        __m512 bv[4];
        for (int v = 0; v < 4; v++)
            bv[v] =
                masked ? _mm512_maskz_loadu_ps(mask[v], b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(A[(size_t)i * lda + k]);
            for (int v = 0; v < 4; v++)
                c[i][v] = _mm512_fmadd_ps(a, bv[v], c[i][v]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) {
            float *o = C + (size_t)i * ldc + 16 * v;
            if (masked)
                _mm512_mask_storeu_ps(o, mask[v], c[i][v]);
            else
                _mm512_storeu_ps(o, c[i][v]);
        }
}

COLUMN_TILE(column_tile16, "avx512f", tile16, __mmask16)

__attribute__((target("avx512f"))) static void gemm_uniform_avx512(size_t M, size_t N, size_t K,
                                                                   const float *A, size_t lda,
                                                                   const float *B, size_t ldb,
                                                                   float *C, size_t ldc)
{
    const __mmask16 full[4] = {0xffff, 0xffff, 0xffff, 0xffff};
    size_t j = 0;
    for (; j + NR16 <= N; j += NR16)
        column_tile16(false, M, K, A, lda, B + j, ldb, C + j, ldc, full);
    if (j < N) {
        const int n = (int)(N - j);
        __mmask16 mask[4];
        for (int v = 0; v < 4; v++) {
            const int r = n - 16 * v;
            mask[v] = r >= 16 ? 0xffff : r <= 0 ? 0 : (__mmask16)((1u << r) - 1);
        }
        column_tile16(true, M, K, A, lda, B + j, ldb, C + j, ldc, mask);
    }
}

#endif

rr__isa rr__gemm_uniform_best_isa(void)
{
#ifdef RR_HAVE_X86
    // __builtin_cpu_supports also checks that the OS saves the registers (XCR0).
    if (__builtin_cpu_supports("avx512f"))
        return RR__ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return RR__ISA_AVX2;
#endif
    return RR__ISA_PLAIN;
}

void rr__gemm_uniform_isa(rr__isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                          const float *B, size_t ldb, float *C, size_t ldc)
{
    if (M == 0 || N == 0)
        return;
    RR_ASSERT(isa <= rr__gemm_uniform_best_isa());
    switch (isa) {
#ifdef RR_HAVE_X86
        case RR__ISA_AVX512:
            gemm_uniform_avx512(M, N, K, A, lda, B, ldb, C, ldc);
            return;
        case RR__ISA_AVX2:
            gemm_uniform_fma(M, N, K, A, lda, B, ldb, C, ldc);
            return;
#endif
        default:
            gemm_uniform_plain(M, N, K, A, lda, B, ldb, C, ldc);
    }
}

void rr__gemm_uniform(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                      size_t ldb, float *C, size_t ldc)
{
    rr__gemm_uniform_isa(rr__gemm_uniform_best_isa(), M, N, K, A, lda, B, ldb, C, ldc);
}
