// rr__gemm_uniform: equal columns of B give bit-equal columns of C at every position (the
// property sgemm lacks, lib/nn/uniform_gemm.c), and C = A B to float32 accuracy.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "nn/layers.h"

// Shapes around the kernel's 4 x 24 tile and OpenBLAS's (M = 8, N = 784 broke it at column
// 320), with K from 1 to a conv's 16 * 9.
static const size_t SHAPES[][3] = {{8, 784, 9}, {4, 196, 36}, {16, 3136, 144}, {3, 49, 27},
                                   {1, 1, 1},   {5, 23, 1},   {7, 25, 17},     {32, 100, 288},
                                   {2, 24, 5},  {6, 48, 3}};

Test(uniform_gemm, equal_columns_give_equal_outputs_and_the_product)
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
        rr__gemm_uniform(M, N, K, A, K, B, ldb, C, N + 1);
        for (size_t i = 0; i < M; i++) {
            for (size_t j = 1; j + 1 < N; j++)
                cr_assert(C[i * (N + 1) + j] == C[i * (N + 1)],
                          "M %zu N %zu K %zu: C[%zu][%zu] = %.9g, C[%zu][0] = %.9g", M, N, K, i, j,
                          C[i * (N + 1) + j], i, C[i * (N + 1)]);
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
