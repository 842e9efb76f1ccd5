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
// Threaded over fixed output panels, so results are bit-identical at any thread count.
// Call it outside OpenMP regions (inside one it runs on the calling thread only).
// Dimensions must fit a 32-bit BLAS int (callers chunk their work so that they do).
void rr__sgemm(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
               size_t ldc);

// The same product on the calling thread only: for per-row GEMMs inside OpenMP loops, where
// each row's result must not depend on how rows are spread over threads.
void rr__sgemm_serial(bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha,
                      const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                      size_t ldc);

// OpenBLAS's own threaded sgemm on plain row-major C = A B (A is M x K, B is K x N), for
// benchmarks only: its results depend on the thread count, which rr__sgemm's do not.
void rr__sgemm_native(size_t M, size_t N, size_t K, const float *A, const float *B, float *C);

#endif
