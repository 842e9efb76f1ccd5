// The per-sample quantities that connect the regularizers (../shared/spec/math.md, "The
// connections"; what POST /v1/models/{name}/connections reports).
//
// All come from the exact Jacobian J, p = softmax(z) and r = p - e_y, plus one forward and one
// backward pass at the displaced point x' = x + h u of CURE (u = sign(g)/||sign(g)||).
// Spectral quantities use a Jacobi eigen-solver on K x K Gram matrices: the nonzero spectrum
// of J^T S J (D x D) is that of S^1/2 J J^T S^1/2.
// Threads and errors as reg.h; outputs are caller-owned double arrays of B entries.
#ifndef RR_REG_CONNECTIONS_H
#define RR_REG_CONNECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/model.h"
#include "nn/workspace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_connections {
    double *jacobian_fro2;          // ||J||_F^2
    double *centered_jacobian_fro2; // ||J_c||_F^2
    double *input_gradient_norm2;   // ||grad_x l||^2
    double *input_gradient_bound;   // ||p - e_y||^2 ||J_c||_2^2 (spectral norm)
    double *hessian_trace;          // tr H
    double *hessian_max_eigenvalue; // lambda_max(H)
    double *residual_norm2;         // ||p - e_y||^2
    double *curvature_fd;           // ||g(x + h u) - g(x)||^2
    double *curvature_hessian;      // h^2 ||H u||^2
    double *curvature_ratio;        // curvature_fd / curvature_hessian (Inf or NaN when 0)
    bool *left_region;              // the activation pattern at x + h u differs from x's
} rr_connections;

// Fills every array of *out (all must be non-NULL) for the B samples x [B, D] with labels y
// (borrowed).
// h > 0 (RR_EINVAL otherwise; the API default is 1.5). Plan ws with rows_per_sample >= K.
rr_status rr_connections_compute(const rr_model *m, rr_workspace *ws, const float *x,
                                 const int64_t *y, size_t B, double h, rr_connections *out,
                                 rr_error *err);

// Eigenvalues of the symmetric n x n matrix a (row-major; destroyed) into w, ascending, by
// cyclic Jacobi rotations; v (n x n, may be NULL) receives the eigenvectors as columns.
void rr_eigen_symmetric(double *a, size_t n, double *w, double *v);

#ifdef __cplusplus
}
#endif

#endif
