// curvature (math.md; CURE, Moosavi-Dezfooli et al.), three methods, with u = sign(g)/
// ||sign(g)||_2 from g = grad_x l (a constant for gradients, as in CURE) and H = J^T S J:
//   trace:              R = tr H = sum_k p_k ||grad z_k||^2 - ||J^T p||^2 = tr(S G), G = J J^T
//   hessian:            R = h^2 ||H u||^2            (unsquared: h ||H u||)
//   finite_difference:  R = ||g(x + h u) - g(x)||^2  (unsquared: its norm)
// Gradients, exact inside linear regions (dJ/dx = 0, dS/dz from p):
//   trace:   dR/dz = S (diag G - 2 G p);  dR/dJ = 2 S J (rows of the Jacobian pass)
//   hessian: with w = J u, q = S w, Hu = J^T q, m = J Hu:
//            dR/dz = 2h^2 S (m.w - (p.w) m - (p.m) w);  dR/dJ = 2h^2 (q Hu^T + (S m) u^T)
//   finite difference: with d = 2(g' - g), primes at x' = x + h u:
//            grad_x R = (H' - H) d;  theta: S' J' d and -S J d as seeds at x' and x, and the
//            rank-one pairs (r', d) at x' and (r, -d) at x.
// The unsquared forms scale every gradient by 1/(2R) (0 where R = 0).
#include <math.h>
#include <omp.h>
#include <string.h>

#include "reg/reg_impl.h"

// This thread's per-sample scratch.
static double *thread_kd(const rr__reg_ctx *c)
{
    return c->kd + (size_t)omp_get_thread_num() * c->kd_stride;
}

static bool wants_grad(const rr_reg_result *o)
{
    return o->grad_inputs || o->grad_parameters;
}

static float *gx_rows(const rr__reg_ctx *c, rr_reg_result *o)
{
    return o->grad_inputs ? o->grad_inputs + c->b0 * c->D : NULL;
}

static rr_status trace(rr__reg_ctx *c, rr_reg_result *o)
{
    const size_t D = c->D, K = c->K, nb = c->nb;
    float *SJ = c->rows; // [nb, K, D]: rows of 2 scale S J for the parameter tangents
    const bool grad = wants_grad(o), params = o->grad_parameters != NULL;
#pragma omp parallel for schedule(static) if (nb * K * K * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        const float *J = c->J + i * K * D;
        const double *p = c->prob + i * K;
        // G = J J^T (K x K, symmetric), then tr(S G) = sum_k p_k G_kk - p^T G p.
        double *G = thread_kd(c), *dG = G + K * K, *Gp = dG + K, *t = Gp + K;
        double tr = 0.0, pGp = 0.0;
        for (size_t k = 0; k < K; k++) {
            for (size_t l = k; l < K; l++) {
                double s = 0.0;
                for (size_t j = 0; j < D; j++)
                    s += (double)J[k * D + j] * J[l * D + j];
                G[k * K + l] = G[l * K + k] = s;
            }
        }
        for (size_t k = 0; k < K; k++) {
            dG[k] = G[k * K + k];
            Gp[k] = 0.0;
            for (size_t l = 0; l < K; l++)
                Gp[k] += G[k * K + l] * p[l];
            tr += p[k] * dG[k];
            pGp += p[k] * Gp[k];
        }
        c->rs[i] = tr - pGp;
        if (!grad)
            continue;
        // dR/dz = S (diag G - 2 G p), S v = p.(v - p^T v)
        double pt = 0.0;
        for (size_t k = 0; k < K; k++) {
            t[k] = dG[k] - 2.0 * Gp[k];
            pt += p[k] * t[k];
        }
        for (size_t k = 0; k < K; k++)
            c->seed[i * K + k] = (float)(c->scale * p[k] * (t[k] - pt));
        if (params) {
            // (S J)_k = p_k (J_k - sum_l p_l J_l)
            for (size_t j = 0; j < D; j++) {
                double pj = 0.0;
                for (size_t l = 0; l < K; l++)
                    pj += p[l] * J[l * D + j];
                for (size_t k = 0; k < K; k++)
                    SJ[(i * K + k) * D + j] = (float)(2.0 * c->scale * p[k] * (J[k * D + j] - pj));
            }
        }
    }
    rr__reg_report(c, o);
    if (grad)
        rr__reg_vjp(c, c->ws, c->seed, 1, gx_rows(c, o), o->grad_parameters, NULL);
    if (o->grad_parameters)
        rr__reg_jvp(c, c->ws, SJ, K, NULL, &c->uJ, o->grad_parameters);
    return RR_OK;
}

// Per-sample factor of the gradients: 1 for the squared form, 1/(2R) for the unsquared one
// (R = sqrt of the squared value; 0 where it vanishes).
static double unsquare(bool unsquared, double Rsq, double *R)
{
    *R = unsquared ? sqrt(Rsq) : Rsq;
    if (!unsquared)
        return 1.0;
    return *R > 0.0 ? 1.0 / (2.0 * *R) : 0.0;
}

static rr_status hessian(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o)
{
    const size_t D = c->D, K = c->K, nb = c->nb;
    const double h = s->h > 0 ? s->h : RR_REG_DEFAULT_H;
    float *u = c->vd[0], *Hu = c->vd[1];
    float *w = c->vk[0], *q = c->vk[1], *mm = c->vk[2];
    for (size_t i = 0; i < nb; i++)
        rr__cure_direction(u + i * D, c->g + i * D, D);
    // w = J u, q = S w, Hu = J^T q (recording the rows: seeds q)
    rr__reg_jvp(c, c->ws, u, 1, w, NULL, NULL);
    for (size_t i = 0; i < nb; i++)
        rr__softmax_jvp(q + i * K, c->prob + i * K, w + i * K, K);
    rr__reg_vjp(c, c->ws, q, 1, Hu, NULL, o->grad_parameters ? &c->u2 : NULL);
#pragma omp parallel for schedule(static) if (nb * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        double n2 = 0.0;
        for (size_t j = 0; j < D; j++)
            n2 += (double)Hu[i * D + j] * Hu[i * D + j];
        unsquare(s->unsquared, h * h * n2, &c->rs[i]);
    }
    rr__reg_report(c, o);
    if (!wants_grad(o))
        return RR_OK;
    // m = J Hu
    rr__reg_jvp(c, c->ws, Hu, 1, mm, NULL, NULL);
#pragma omp parallel for schedule(static) if (nb * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        double n2 = 0.0, R;
        for (size_t j = 0; j < D; j++)
            n2 += (double)Hu[i * D + j] * Hu[i * D + j];
        const double a = 2.0 * h * h * c->scale * unsquare(s->unsquared, h * h * n2, &R);
        const double *p = c->prob + i * K;
        const float *wi = w + i * K, *mi = mm + i * K;
        double pw = 0.0, pm = 0.0;
        for (size_t k = 0; k < K; k++) {
            pw += p[k] * wi[k];
            pm += p[k] * mi[k];
        }
        // dR/dz = a S (m.w - (p.w) m - (p.m) w)
        double *t = thread_kd(c), pt = 0.0;
        for (size_t k = 0; k < K; k++) {
            t[k] = (double)mi[k] * wi[k] - pw * mi[k] - pm * wi[k];
            pt += p[k] * t[k];
        }
        for (size_t k = 0; k < K; k++)
            c->seed[i * K + k] = (float)(a * p[k] * (t[k] - pt));
        // Tangents of the two rank-one pairs: a Hu (seeds q, recorded) and a u (seeds S m).
        for (size_t j = 0; j < D; j++) {
            c->tan[i * D + j] = (float)(a * Hu[i * D + j]);
            c->rows[i * D + j] = (float)(a * u[i * D + j]);
        }
        rr__softmax_jvp(c->vk[3] + i * K, p, mi, K); // S m
    }
    rr__reg_vjp(c, c->ws, c->seed, 1, gx_rows(c, o), o->grad_parameters, NULL);
    if (o->grad_parameters) {
        rr__reg_jvp(c, c->ws, c->tan, 1, NULL, &c->u2, o->grad_parameters);
        rr__reg_vjp(c, c->ws, c->vk[3], 1, NULL, NULL, &c->u2);
        rr__reg_jvp(c, c->ws, c->rows, 1, NULL, &c->u2, o->grad_parameters);
    }
    return RR_OK;
}

static rr_status finite_difference(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o,
                                   rr_error *err)
{
    const size_t D = c->D, K = c->K, nb = c->nb;
    const double h = s->h > 0 ? s->h : RR_REG_DEFAULT_H;
    rr_workspace *ws2 = rr__ws_twin(c->ws, err);
    if (ws2 == NULL)
        return err ? err->code : RR_ENOMEM;
    float *u = c->vd[0], *delta = c->vd[1], *e = c->vd[2];
    // x' = x + h u, its forward pass, p', r' = p' - e_y and g' = J'^T r'.
#pragma omp parallel for schedule(static) if (nb * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        rr__cure_direction(u + i * D, c->g + i * D, D);
        for (size_t j = 0; j < D; j++)
            c->x2[i * D + j] = (float)(c->x[i * D + j] + h * u[i * D + j]);
    }
    if (!rr_all_finite(c->x2, nb * D))
        return rr_error_set(err, RR_ENONFINITE, "h", "x + h u overflows float32");
    const float *z2 = rr__forward_chunk(c->m, ws2, c->x2, nb);
    for (size_t i = 0; i < nb; i++) {
        rr__softmax(c->prob2 + i * K, z2 + i * K, K, c->y[i]);
        for (size_t k = 0; k < K; k++)
            c->r2[i * K + k] = (float)(c->prob2[i * K + k] - (k == (size_t)c->y[i]));
    }
    rr__reg_vjp(c, ws2, c->r2, 1, c->g2, NULL, o->grad_parameters ? &c->ur2 : NULL);
#pragma omp parallel for schedule(static) if (nb * D >= RR__REG_PAR_MIN)
    for (size_t i = 0; i < nb; i++) {
        double n2 = 0.0, R;
        for (size_t j = 0; j < D; j++) {
            const double d = (double)c->g2[i * D + j] - c->g[i * D + j];
            delta[i * D + j] = (float)d;
            n2 += d * d;
        }
        const double f = unsquare(s->unsquared, n2, &R);
        c->rs[i] = R;
        for (size_t j = 0; j < D; j++)
            e[i * D + j] = (float)(2.0 * f * c->scale * delta[i * D + j]);
    }
    rr__reg_report(c, o);
    if (!wants_grad(o))
        return RR_OK;
    float *Je = c->vk[0], *gx2 = c->rows;
    // At x': seed S' J' e (input gradient H' e and the parameter part through z'), and the
    // pair (r', e).
    rr__reg_jvp(c, ws2, e, 1, Je, NULL, NULL);
    for (size_t i = 0; i < nb; i++)
        rr__softmax_jvp(c->seed + i * K, c->prob2 + i * K, Je + i * K, K);
    rr__reg_vjp(c, ws2, c->seed, 1, o->grad_inputs ? gx2 : NULL, o->grad_parameters, NULL);
    if (o->grad_parameters)
        rr__reg_jvp(c, ws2, e, 1, NULL, &c->ur2, o->grad_parameters);
    // At x: seed -S J e and the pair (r, -e).
    rr__reg_jvp(c, c->ws, e, 1, Je, NULL, NULL);
    for (size_t i = 0; i < nb; i++) {
        rr__softmax_jvp(c->seed + i * K, c->prob + i * K, Je + i * K, K);
        for (size_t k = 0; k < K; k++)
            c->seed[i * K + k] = -c->seed[i * K + k];
    }
    float *gx = gx_rows(c, o);
    rr__reg_vjp(c, c->ws, c->seed, 1, gx, o->grad_parameters, NULL);
    if (gx)
        for (size_t j = 0; j < nb * D; j++)
            gx[j] += gx2[j];
    if (o->grad_parameters) {
        for (size_t j = 0; j < nb * D; j++)
            c->tan[j] = -e[j];
        rr__reg_jvp(c, c->ws, c->tan, 1, NULL, &c->ur, o->grad_parameters);
    }
    return RR_OK;
}

rr_status rr__reg_curvature(rr__reg_ctx *c, const rr_reg_spec *s, rr_reg_result *o, rr_error *err)
{
    switch (s->method) {
        case RR_REG_TRACE:
            return trace(c, o);
        case RR_REG_HESSIAN:
            return hessian(c, s, o);
        case RR_REG_FINITE_DIFFERENCE:
            return finite_difference(c, s, o, err);
    }
    return rr_error_set(err, RR_EINVAL, "method", "unknown curvature method");
}
