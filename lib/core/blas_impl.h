// Library-internal BLAS entry points (rr__, not exported from librelureg.so): the row-major
// sgemm wrappers the layer kernels call. Policy and the public BLAS functions: core/blas.h.
// Thread rules: as blas.h says for each.
#ifndef RR_CORE_BLAS_IMPL_H
#define RR_CORE_BLAS_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/blas.h"

// C = alpha * op(A) * op(B) + beta * C, row-major, op(A) is M x K, op(B) is K x N.
// Overwrites C when beta == 0 (C may then be uninitialised), accumulates otherwise.
// Threaded over tasks whose layout depends on (M, N, K) only (rr__sgemm_plan), so results
// are bit-identical at any thread count. `split`: RR__GEMM_SPLIT_FLOATS floats of scratch
// for the partial products of a K split; may be NULL only when the plan has ks == 1.
// Call it outside OpenMP regions (inside one it runs on the calling thread only).
// Dimensions must fit a 32-bit BLAS int (callers chunk their work so that they do).
void rr__sgemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
               size_t ldc, float *split);

// Scratch floats a K split may use: (ks - 1) M N never exceeds this.
#define RR__GEMM_SPLIT_FLOATS ((size_t)1 << 20)

// How rr__sgemm cuts a product: a grid of gm x gn output tiles of tm x tn (edge tiles
// smaller), times ks chunks of K of kc (the last one shorter). Depends on the shape only.
typedef struct rr__gemm_plan {
    size_t gm, gn, ks;
    size_t tm, tn, kc;
} rr__gemm_plan;
void rr__sgemm_plan(size_t M, size_t N, size_t K, rr__gemm_plan *p);
// Its tasks (gm * gn * ks): as many threads as this can work on the product at once.
size_t rr__sgemm_tasks(const rr__gemm_plan *p);

// The same product on the calling thread only: for per-row GEMMs inside OpenMP loops, where
// each row's result must not depend on how rows are spread over threads.
void rr__sgemm_serial(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
                      const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                      size_t ldc);

// OpenBLAS's own threaded sgemm on plain row-major C = A B (A is M x K, B is K x N), for
// benchmarks only: its results depend on the thread count, which rr__sgemm's do not.
void rr__sgemm_native(size_t M, size_t N, size_t K, const float *A, const float *B, float *C);

#endif
