// rr__gemm_uniform: equal columns of B give bit-equal columns of C at every position (the
// property sgemm lacks, lib/nn/uniform_gemm.c), and C = A B to float32 accuracy, with every
// kernel this CPU can run; the AVX2 and AVX-512 kernels give the same bits.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "nn/layers.h"

// Shapes around the kernels' 4 x 24 and 4 x 64 tiles and OpenBLAS's (M = 8, N = 784 broke it
// at column 320), with K from 1 to a conv's 32 * 9.
static const size_t SHAPES[][3] = {{8, 784, 9}, {4, 196, 36}, {16, 3136, 144}, {3, 49, 27},
                                   {1, 1, 1},   {5, 23, 1},   {7, 25, 17},     {32, 100, 288},
                                   {2, 24, 5},  {6, 48, 3},   {4, 64, 10},     {5, 130, 7},
                                   {9, 79, 2}};

static void check(rr__isa isa)
{
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t M = SHAPES[s][0], N = SHAPES[s][1], K = SHAPES[s][2], ldb = N + 3;
        float *A = malloc(M * K * sizeof(float)), *B = malloc(K * ldb * sizeof(float));
        float *C = malloc(M * (N + 1) * sizeof(float)), col[288];
        rr_rng r;
        rr_rng_init(&r, 7, s);
        for (size_t i = 0; i < M * K; i++)
            A[i] = (float)(rr_rng_uniform(&r) - 0.5);
        for (size_t k = 0; k < K; k++)
            col[k] = (float)rr_rng_uniform(&r);
        // Every column equal but the last, which is random (a real product to check).
        for (size_t k = 0; k < K; k++)
            for (size_t j = 0; j < N; j++)
                B[k * ldb + j] = j + 1 == N && N > 1 ? (float)rr_rng_uniform(&r) : col[k];
        rr__gemm_uniform_isa(isa, M, N, K, A, K, B, ldb, C, N + 1);
        for (size_t i = 0; i < M; i++) {
            for (size_t j = 1; j + 1 < N; j++)
                cr_assert(C[i * (N + 1) + j] == C[i * (N + 1)],
                          "isa %d M %zu N %zu K %zu: C[%zu][%zu] = %.9g, C[%zu][0] = %.9g",
                          (int)isa, M, N, K, i, j, C[i * (N + 1) + j], i, C[i * (N + 1)]);
            for (size_t j = 0; j<N; j += N> 1 ? N - 1 : 1) {
                double want = 0.0, mag = 0.0;
                for (size_t k = 0; k < K; k++) {
                    want += (double)A[i * K + k] * B[k * ldb + j];
                    mag += fabs((double)A[i * K + k] * B[k * ldb + j]);
                }
                // float32 sum of K products: |error| <= K * 2^-24 * sum |terms| (with margin)
                cr_assert(fabs(C[i * (N + 1) + j] - want) <= 1e-7 * (double)K * mag + 1e-30,
                          "M %zu N %zu K %zu: C[%zu][%zu] = %.9g, want %.9g", M, N, K, i, j,
                          C[i * (N + 1) + j], want);
            }
        }
        free(A);
        free(B);
        free(C);
    }
}

Test(uniform_gemm, equal_columns_give_equal_outputs_and_the_product)
{
    for (rr__isa isa = RR__ISA_PLAIN; isa <= rr__gemm_uniform_best_isa(); isa++)
        check(isa);
}

Test(uniform_gemm, avx2_and_avx512_kernels_agree_bit_for_bit)
{
    if (rr__gemm_uniform_best_isa() < RR__ISA_AVX512) {
        cr_log_warn("this CPU has no AVX-512: only the AVX2 kernel runs here");
        return;
    }
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t M = SHAPES[s][0], N = SHAPES[s][1], K = SHAPES[s][2];
        float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
        float *C2 = malloc(M * N * sizeof(float)), *C5 = malloc(M * N * sizeof(float));
        rr_rng r;
        rr_rng_init(&r, 11, s);
        for (size_t i = 0; i < M * K; i++)
            A[i] = (float)(rr_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < K * N; i++)
            B[i] = (float)(rr_rng_uniform(&r) - 0.5);
        rr__gemm_uniform_isa(RR__ISA_AVX2, M, N, K, A, K, B, N, C2, N);
        rr__gemm_uniform_isa(RR__ISA_AVX512, M, N, K, A, K, B, N, C5, N);
        for (size_t i = 0; i < M * N; i++)
            cr_assert(C2[i] == C5[i], "M %zu N %zu K %zu: element %zu: %.9g (AVX2) %.9g", M, N, K,
                      i, C2[i], C5[i]);
        free(A);
        free(B);
        free(C2);
        free(C5);
    }
}
