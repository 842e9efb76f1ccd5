// Kernel declarations: one file per layer type, each holding its forward, VJP (input and
// parameters) and JVP. All kernels work on `rows` rows of one op's per-sample size, row-major
// ([rows, n_in] in, [rows, n_out] out). Backward and tangent passes carry R rows per sample
// (R = K for the Jacobian, T tangents for a JVP): row r belongs to sample r / R, whose forward
// state (relu input, max-pool index) decides the mask. Kernels never allocate.
//
// `affine`: true for the primal map (bias / shift included); false for its linear part, which
// is what tangents and Jacobian rows go through. `_vjp_params` kernels ACCUMULATE into
// dparams (the model's parameter-gradient layout) with `in` = the op's input for each row
// (the primal activation, or a tangent for parameter gradients of functions of J); other
// kernels OVERWRITE their output. Reductions over rows run in a fixed order, so results do
// not depend on the thread count.
#ifndef RR_NN_LAYERS_H
#define RR_NN_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/workspace_impl.h"

// ---- linear (linear.c) ----
void rr__linear_forward(const rr_model *m, const rr_op *op, float *out, const float *in,
                        size_t rows, bool affine, const rr__scratch *s);
void rr__linear_vjp(const rr_model *m, const rr_op *op, float *gin, const float *gout, size_t rows,
                    const rr__scratch *s);
void rr__linear_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                           const float *in, size_t rows, bool affine, const rr__scratch *s);

// ---- conv2d (conv2d.c), im2col + sgemm: per row, or per chunk of rows for parameters ----
void rr__conv2d_forward(const rr_model *m, const rr_op *op, float *out, const float *in,
                        size_t rows, bool affine, const rr__scratch *s);
void rr__conv2d_vjp(const rr_model *m, const rr_op *op, float *gin, const float *gout, size_t rows,
                    const rr__scratch *s);
void rr__conv2d_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                           const float *in, size_t rows, bool affine, const rr__scratch *s);
// Scratch the op needs: floats per thread (row), and per partial-sum group the floats of
// dW (part) and doubles of db (bpart). Used to plan workspaces.
void rr__conv2d_scratch_need(const rr_op *op, size_t *row, size_t *part, size_t *bpart);

// C [M, N] (ldc) = A [M, K] (lda) B [K, N] (ldb), each element by the same chain of operations
// wherever it sits (uniform_gemm.c): equal columns of B give equal columns of C. Serial.
void rr__gemm_uniform(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                      size_t ldb, float *C, size_t ldc);
// The same with a chosen instruction set, no better than the CPU's (for tests: the AVX2 and
// AVX-512 kernels give the same bits; the plain one, without FMA, other bits).
typedef enum rr__isa { RR__ISA_PLAIN, RR__ISA_AVX2, RR__ISA_AVX512 } rr__isa;
rr__isa rr__gemm_uniform_best_isa(void);
void rr__gemm_uniform_isa(rr__isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                          const float *B, size_t ldb, float *C, size_t ldc);

// ---- relu and leaky_relu (relu.c) ----
void rr__relu_forward(const rr_op *op, float *out, const float *in, size_t rows);
// out may alias t. x: the primal input of the op, [rows / R, n].
void rr__relu_jvp(const rr_op *op, float *out, const float *t, const float *x, size_t rows,
                  size_t R);
#define rr__relu_vjp rr__relu_jvp // the mask is diagonal: VJP and JVP coincide
// Pattern bytes (1 when the input is > 0) of nb samples into pattern rows of `stride` bytes.
void rr__relu_pattern(const rr_op *op, uint8_t *pattern, size_t stride, const float *x, size_t nb);

// ---- pooling (pool.c) ----
// idx: [nb, n_out] arg-max indices within each input plane (h * W + w), PyTorch's tie rule.
void rr__maxpool_forward(const rr_op *op, float *out, int32_t *idx, const float *in, size_t nb);
void rr__maxpool_jvp(const rr_op *op, float *out, const float *t, const int32_t *idx, size_t rows,
                     size_t R);
void rr__maxpool_vjp(const rr_op *op, float *gin, const float *gout, const int32_t *idx,
                     size_t rows, size_t R);
void rr__maxpool_pattern(const rr_op *op, uint8_t *pattern, size_t stride, const int32_t *idx,
                         size_t nb);
void rr__avgpool_forward(const rr_op *op, float *out, const float *in, size_t rows);
#define rr__avgpool_jvp rr__avgpool_forward // linear: the tangent map is the map itself
void rr__avgpool_vjp(const rr_op *op, float *gin, const float *gout, size_t rows);

// ---- batchnorm, inference mode (batchnorm.c); out may alias in ----
void rr__batchnorm_forward(const rr_op *op, float *out, const float *in, size_t rows, bool affine);
void rr__batchnorm_vjp(const rr_op *op, float *gin, const float *gout, size_t rows);
void rr__batchnorm_vjp_params(const rr_model *m, const rr_op *op, float *dparams, const float *gout,
                              const float *in, size_t rows, bool affine);

// ---- residual add (residual.c): out = a + b, elementwise over n floats; out may alias a ----
void rr__residual_add(float *out, const float *a, const float *b, size_t n);

#endif
