// Internals shared by the regularizer files: the per-chunk context the driver (reg.c) fills
// and each regularizer reads, and small per-sample helpers in K dimensions.
#ifndef RR_REG_REG_IMPL_H
#define RR_REG_REG_IMPL_H

#include "nn/passes.h"
#include "reg/reg.h"

typedef struct rr__reg_ctx {
    const rr_model *m;
    rr_workspace *ws; // holds the forward state of x for the current chunk
    const rr_reg_params *p;
    size_t D, K, B;
    size_t b0, nb;    // current chunk: samples [b0, b0 + nb)
    size_t max_rows;  // rows per sample the scratch below was sized for
    double scale;     // 1/B for "mean", 1 for "sum"
    bool params;      // at least one grad_parameters array was requested
    const float *x;   // chunk inputs [nb, D]
    const int64_t *y; // chunk labels [nb]
    // filled by the driver for every chunk
    float *z;      // logits [nb, K]
    double *prob;  // softmax p [nb, K]
    double *ce;    // cross-entropy l [nb]
    float *r;      // p - e_y [nb, K]
    float *J;      // Jacobian [nb, K, D] when a regularizer needs it, else NULL
    rr__ustore uJ; // backward rows of the J pass (identity seeds), when needed
    bool have_uJ;
    float *g;      // grad_x l = J^T r [nb, D] when needed, else NULL
    rr__ustore ur; // backward rows of the g pass (seed r), when needed
    bool have_ur;
    // scratch for the regularizers, sized for nb * max_rows rows
    float *seed;      // [nb * max_rows, K]
    float *tan;       // [nb * max_rows, D]
    float *rows;      // [nb * max_rows, D]
    float *vd[3];     // [nb, D] each
    float *vk[4];     // [nb, K] each
    double *kd;       // per OpenMP thread, kd_stride doubles of per-sample scratch (K*K + 8*K):
    size_t kd_stride; // a thread's is kd + omp_get_thread_num() * kd_stride
    double *rs;       // [nb] the per-sample values of the regularizer at work (rr__reg_report)
    rr__ustore u2;    // a second store of nb * max_rows rows
    // curvature by finite difference: the displaced point x' = x + h u
    float *x2;      // [nb, D]
    float *r2;      // [nb, K]
    double *prob2;  // [nb, K]
    float *g2;      // [nb, D]
    rr__ustore ur2; // backward rows of the g' pass at x'
} rr__reg_ctx;

// ---- K-dimensional helpers (per sample) ----
// out = S v with S = diag(p) - p p^T (the softmax Jacobian; symmetric). out may alias v.
void rr__softmax_jvp(float *out, const double *p, const float *v, size_t K);
// Softmax and cross-entropy of one sample in double: p [K], returns l = logsumexp(z) - z_y.
double rr__softmax(double *p, const float *z, size_t K, int64_t y);

// ---- passes on the context's chunk (workspace `ws`: c->ws or the displaced one) ----
// Backward with seeds [nb*R, K]: gx [nb*R, D] (overwritten, may be NULL), dparams
// (accumulated, R = 1 only, may be NULL), rows recorded in us (may be NULL).
void rr__reg_vjp(const rr__reg_ctx *c, rr_workspace *ws, const float *seeds, size_t R, float *gx,
                 float *dparams, rr__ustore *us);
// Tangents v [nb*T, D]: out [nb*T, K] (may be NULL); with us and dparams, accumulates the
// parameter gradient of sum_r a_r^T J v_r, a_r the seeds of the pass recorded in us.
void rr__reg_jvp(const rr__reg_ctx *c, rr_workspace *ws, const float *v, size_t T, float *out,
                 const rr__ustore *us, float *dparams);

// Per-sample loops run under OpenMP (each sample's arithmetic on one thread, so results do not
// depend on the thread count) when the chunk holds at least this many values.
#define RR__REG_PAR_MIN 32768

// The chunk's per-sample values c->rs into o: per_sample, and their sum into value in sample
// order (so that it too is independent of the thread count).
void rr__reg_report(const rr__reg_ctx *c, rr_reg_result *o);

// Writes zeros to the chunk's rows of grad_inputs (regularizers constant in x a.e.).
void rr__reg_zero_inputs(const rr__reg_ctx *c, rr_reg_result *o);

// ---- the regularizers (one file each); each fills o->per_sample for the chunk, adds the
// chunk's per-sample sum to o->value (the driver scales it), writes the chunk's rows of
// o->grad_inputs and accumulates o->grad_parameters ----
rr_status rr__reg_cross_entropy(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o);
rr_status rr__reg_input_gradient(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o);
rr_status rr__reg_jacobian(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o);
rr_status rr__reg_cross_lipschitz(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o);
rr_status rr__reg_curvature(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o, rr_error *err);
// Whole-batch, not per chunk: value and grad_parameters (grad_inputs zero).
void rr__reg_weight_decay(const rr_model *m, rr_reg_result *o, size_t B, size_t D);

// Per-sample CURE direction u = sign(g)/||sign(g)||_2 (0 when g = 0), [D].
void rr__cure_direction(float *u, const float *g, size_t D);

#endif
