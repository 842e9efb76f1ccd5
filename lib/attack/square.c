// Square Attack (math.md, "Attacks"; Andriushchenko et al., ECCV 2020) as AutoAttack runs it
// (fra31/auto-attack `SquareAttack`, resc_schedule=False): score-based and black-box, forward
// passes only, linf and l2, margin loss z_y - max_{j != y} z_j (targeted: the margin
// max_{j != t} z_j - z_t, loss CE(z, t), as AutoAttack).
//
// Geometry. An input [C, H, W] is attacked as an image; an input [d] is treated as [1, 1, d] and
// a "square" of side s is a run of s^2 consecutive features holding the s x s pattern in
// row-major order. s follows the published p schedule (p_init halved after iterations 10, 50,
// 200, 500, 1000, 2000, 4000, 6000, 8000, not rescaled to the budget), and is clamped so that
// a square fits (s <= min(H, W); s^2 <= d), as the original Square code clamps it.
//
// Randomness. Sample b of the batch draws everything from its own stream rr_rng(seed + r *
// 0x9E37.., b) (r the restart), in this order, so that its outcome depends on nothing else
// (and tests/reference replays the stream in Python). u is rr_rng_uniform, sign(u) is the sign
// of 2u - 1 and pos(n) = floor(u * n):
//   linf start: C * W signs (channel-major), the vertical stripes x + eps * sign[c][w];
//        1-d: d signs, one per feature.
//   linf step:  pos(H - s), pos(W - s) (1-d: pos(d - s^2)), then C signs.
//   l2 start:   per square of AutoAttack's grid (row-major), the transpose draw (u > 0.5) of
//        eta, then C signs; 1-d: min(25, d / S) runs of S = s^2, s = max(1, isqrt(d) / 5),
//        centred, the same two draws each.
//   l2 step:    pos(H - s), pos(W - s), pos(H - s), pos(W - s) (1-d: pos(d - S) twice), the
//        transpose draw, then C signs.
// Per iteration only the samples whose margin is still > 0 are queried (one batched forward
// pass); a sample stops once broken. Samples misclassified at x (targeted: already at the
// target) are not attacked. Results: the best point of a broken sample, x otherwise
// (AutoAttack's perturb), always inside input_range and the epsilon-ball (rounded toward x).
// iterations = queries used per sample (the start included, so at most queries + 1 per
// restart); gradient_calls stays 0. No allocation inside the iteration loop.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

// Below this much work (rows x features) a step runs on the calling thread: OpenMP's fork and
// barrier would cost more than the loop (results do not depend on it).
#define PAR_MIN 16384

typedef struct sq {
    rr__atk *a;
    int C, H, W; // W = d and H = C = 1 for a vector input
    bool flat;   // vector input: squares are runs of s^2 features
    int side;    // 1-d: isqrt(d), the largest s whose square fits
    double eps;
    const double *eta; // [s * s] the l2 pattern of the current side (row-major)
    int eta_s;
    double *scratch; // per thread: [2 D + C] doubles (l2)
    size_t scratch_n;
    // Scratch, carved from one block.
    float *xb, *xs;      // [B, D] best point per sample, candidates of the running rows
    float *z;            // [B, K] logits of the rows
    double *mmin, *lmin; // [B] margin and loss at the best point
    double *eta_buf;     // [max(D, (H / 5)^2)] the l2 pattern
    rr_rng *rng;         // [B] the samples' streams
    size_t *act;         // [B] sample of each running row
    bool *run;           // [B] attacked (classified right at x, not broken yet)
} sq;

static int isqrt_sz(size_t n)
{
    size_t r = (size_t)sqrt((double)n);
    while (r * r > n)
        r--;
    while ((r + 1) * (r + 1) <= n)
        r++;
    return (int)r;
}

static double sgn(rr_rng *rng)
{
    const double t = 2.0 * rr_rng_uniform(rng) - 1.0;
    return t > 0 ? 1.0 : (t < 0 ? -1.0 : 0.0);
}

static int pos(rr_rng *rng, int n)
{
    return (int)(rr_rng_uniform(rng) * (double)n);
}

// AutoAttack's p_selection without rescaling: p_init / 2^(breakpoints passed).
static double p_selection(int it, double p_init)
{
    static const int BR[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
    int m = 0;
    for (size_t k = 0; k < sizeof BR / sizeof BR[0]; k++)
        m += it > BR[k];
    return m ? p_init / (double)(1 << m) : p_init;
}

// Side of the square at iteration it: linf max(round(sqrt(p D / C)), 1); l2 at least 3 and
// odd; both clamped to fit (Python's round is half-to-even, as nearbyint).
static int side_at(const sq *q, int it)
{
    const double p = p_selection(it, q->a->p.p_init);
    int s = (int)nearbyint(sqrt(p * (double)q->a->D / (double)q->C));
    if (q->a->p.norm == RR_NORM_LINF) {
        s = s < 1 ? 1 : s;
    } else {
        s = s < 3 ? 3 : s;
        s += s % 2 == 0;
    }
    const int cap = q->flat ? q->side : (q->H < q->W ? q->H : q->W);
    return s > cap ? cap : s;
}

// ---- the l2 pattern (AutoAttack's eta_rectangles / eta) ----

// Adds into d (X x Y, row-major, row stride Y) the nested rectangles of weight 1/(k+1)^2
// around the centre, then normalises them to unit Frobenius norm; sign flips the block.
static void eta_rect(double *d, int X, int Y, double sign)
{
    const int xc = X / 2 + 1, yc = Y / 2 + 1;
    int c0 = xc - 1, c1 = yc - 1;
    const int n = xc > yc ? xc : yc;
    for (int k = 0; k < n; k++, c0--, c1--) {
        const int r0 = c0 > 0 ? c0 : 0, r1 = c0 + 2 * k + 1 < X ? c0 + 2 * k + 1 : X;
        const int q0 = c1 > 0 ? c1 : 0, q1 = c1 + 2 * k + 1 < Y ? c1 + 2 * k + 1 : Y;
        const double v = 1.0 / ((double)(k + 1) * (k + 1));
        for (int r = r0; r < r1; r++)
            for (int c = q0; c < q1; c++)
                d[r * Y + c] += v;
    }
    double n2 = 0.0;
    for (int i = 0; i < X * Y; i++)
        n2 += d[i] * d[i];
    const double f = n2 > 0 ? sign / sqrt(n2) : 0.0;
    for (int i = 0; i < X * Y; i++)
        d[i] *= f;
}

// eta(s): the upper s/2 rows a positive block, the rest a negative one, unit norm.
static void eta_fill(double *e, int s)
{
    memset(e, 0, (size_t)s * s * sizeof(double));
    eta_rect(e, s / 2, s, 1.0);
    eta_rect(e + (size_t)(s / 2) * s, s - s / 2, s, -1.0);
    double n2 = 0.0;
    for (int i = 0; i < s * s; i++)
        n2 += e[i] * e[i];
    for (int i = 0; i < s * s; i++)
        e[i] /= sqrt(n2);
}

// Feature index of cell (i, j) of the square at (vh, vw) in channel c (1-d: run start vw).
static inline size_t cell(const sq *q, int c, int vh, int vw, int s, int i, int j)
{
    if (q->flat)
        return (size_t)vw + (size_t)i * s + (size_t)j;
    return ((size_t)c * q->H + (size_t)(vh + i)) * q->W + (size_t)(vw + j);
}

static inline float boxed(const rr__atk *a, double t, float x)
{
    if (a->has_range)
        t = t < a->lo ? a->lo : (t > a->hi ? a->hi : t);
    return rr__atk_toward(t, x);
}

// ---- linf ----

static void linf_start(const sq *q, rr_rng *rng, const float *x, float *xb)
{
    const rr__atk *a = q->a;
    for (int c = 0; c < q->C; c++)
        for (int w = 0; w < q->W; w++) {
            const double d = q->eps * sgn(rng);
            for (int h = 0; h < q->H; h++) {
                const size_t i = ((size_t)c * q->H + h) * q->W + w;
                xb[i] = boxed(a, (double)x[i] + d, x[i]);
            }
        }
}

static void linf_step(const sq *q, int s, rr_rng *rng, const float *x, const float *xb, float *xn)
{
    const rr__atk *a = q->a;
    const double eps = q->eps;
    memcpy(xn, xb, a->D * sizeof(float));
    int vh = 0, vw;
    if (q->flat) {
        vw = pos(rng, (int)a->D - s * s);
    } else {
        vh = pos(rng, q->H - s);
        vw = pos(rng, q->W - s);
    }
    for (int c = 0; c < q->C; c++) {
        const double d = 2.0 * eps * sgn(rng);
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                const size_t k = cell(q, c, vh, vw, s, i, j);
                double t = (double)xb[k] + d;
                t = t > (double)x[k] - eps ? t : (double)x[k] - eps;
                t = t < (double)x[k] + eps ? t : (double)x[k] + eps;
                xn[k] = boxed(a, t, x[k]);
            }
    }
}

// ---- l2 ----

// x_new = clip(x + eps * delta / (||delta||_2 + 1e-12)), rounded toward x.
static void l2_place(const sq *q, const double *delta, const float *x, float *xn)
{
    const size_t D = q->a->D;
    double n2 = 0.0;
    for (size_t i = 0; i < D; i++)
        n2 += delta[i] * delta[i];
    const double f = q->eps / (sqrt(n2) + 1e-12);
    for (size_t i = 0; i < D; i++)
        xn[i] = boxed(q->a, (double)x[i] + delta[i] * f, x[i]);
}

static double eta_at(const sq *q, int s, bool tr, int i, int j)
{
    return tr ? q->eta[j * s + i] : q->eta[i * s + j];
}

// The published start: AutoAttack's grid of squares of side H/5 (1-d: runs, see the top),
// each the pattern eta with a random sign per channel; squares not wholly inside are skipped.
static void l2_start(const sq *q, int s, rr_rng *rng, double *delta, const float *x, float *xb)
{
    const size_t D = q->a->D;
    memset(delta, 0, D * sizeof(double));
    int ny, nx, sp;
    if (q->flat) {
        const int S = s * s;
        ny = 1;
        nx = (int)(D / (size_t)S) < 25 ? (int)(D / (size_t)S) : 25;
        sp = ((int)D - nx * S) / 2;
    } else {
        ny = q->H / s;
        nx = q->W / s;
        const int t = q->H - 5 * s; // Python's floor division
        sp = t >= 0 ? t / 2 : -((-t + 1) / 2);
    }
    for (int iy = 0; iy < ny; iy++)
        for (int ix = 0; ix < nx; ix++) {
            const bool tr = rr_rng_uniform(rng) > 0.5;
            const int vh = q->flat ? 0 : sp + iy * s;
            const int vw = q->flat ? sp + ix * s * s : sp + ix * s;
            const bool inside = q->flat || (vh >= 0 && vw >= 0 && vh + s <= q->H && vw + s <= q->W);
            for (int c = 0; c < q->C; c++) {
                const double sg = sgn(rng);
                if (!inside)
                    continue;
                for (int i = 0; i < s; i++)
                    for (int j = 0; j < s; j++)
                        delta[cell(q, c, vh, vw, s, i, j)] += eta_at(q, s, tr, i, j) * sg;
            }
        }
    l2_place(q, delta, x, xb);
}

static void l2_step(const sq *q, int s, rr_rng *rng, double *scr, const float *x, const float *xb,
                    float *xn)
{
    const size_t D = q->a->D;
    const int C = q->C;
    const double eps = q->eps;
    double *delta = scr, *nb = scr + D, *nw1 = scr + 2 * D; // nb: [C, s, s]
    int vh = 0, vw, vh2 = 0, vw2;
    if (q->flat) {
        vw = pos(rng, (int)D - s * s);
        vw2 = pos(rng, (int)D - s * s);
    } else {
        vh = pos(rng, q->H - s);
        vw = pos(rng, q->W - s);
        vh2 = pos(rng, q->H - s);
        vw2 = pos(rng, q->W - s);
    }
    double ni = 0.0;
    for (size_t i = 0; i < D; i++) {
        delta[i] = (double)xb[i] - (double)x[i];
        ni += delta[i] * delta[i];
    }
    ni = sqrt(ni);
    // ||delta||_2 over both windows (their union, all channels) and per channel over the first.
    double nws = 0.0;
    for (int c = 0; c < C; c++) {
        double s1 = 0.0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                const double d = delta[cell(q, c, vh, vw, s, i, j)];
                s1 += d * d;
            }
        nw1[c] = sqrt(s1);
        nws += s1;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                const size_t k = cell(q, c, vh2, vw2, s, i, j);
                const bool in1 = q->flat ? (k >= (size_t)vw && k < (size_t)vw + (size_t)s * s)
                                         : (vh2 + i >= vh && vh2 + i < vh + s && vw2 + j >= vw &&
                                            vw2 + j < vw + s);
                if (!in1)
                    nws += delta[k] * delta[k];
            }
    }
    nws = sqrt(nws);
    const bool tr = rr_rng_uniform(rng) > 0.5;
    const double budget = sqrt(fmax(eps * eps - ni * ni, 0.0) / C + nws * nws);
    for (int c = 0; c < C; c++) {
        const double sg = sgn(rng);
        double *n = nb + (size_t)c * s * s, n2 = 0.0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                const double v = eta_at(q, s, tr, i, j) * sg +
                                 delta[cell(q, c, vh, vw, s, i, j)] / (1e-12 + nw1[c]);
                n[i * s + j] = v;
                n2 += v * v;
            }
        const double f = budget / (1e-12 + sqrt(n2));
        for (int i = 0; i < s * s; i++)
            n[i] *= f;
    }
    for (int c = 0; c < C; c++)
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++)
                delta[cell(q, c, vh2, vw2, s, i, j)] = 0.0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++)
                delta[cell(q, c, vh, vw, s, i, j)] = nb[((size_t)c * s + i) * s + j];
    l2_place(q, delta, x, xn);
}

// ---- the attack ----

// Margin and loss of one row of logits (AutoAttack's margin_and_loss with loss = 'margin').
static void margin_loss(const rr__atk *a, size_t b, const float *z, double *margin, double *loss)
{
    const int K = a->K;
    const int64_t y = rr__atk_class(a, b);
    double other = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != y && (double)z[k] > other)
            other = z[k];
    if (!a->targets) {
        *margin = *loss = (double)z[y] - other;
        return;
    }
    *margin = other - (double)z[y];
    double mx = z[0];
    for (int k = 1; k < K; k++)
        mx = z[k] > mx ? z[k] : mx;
    double se = 0.0;
    for (int k = 0; k < K; k++)
        se += exp((double)z[k] - mx);
    *loss = mx + log(se) - (double)z[y];
}

static void *carve(sq *q, size_t B, size_t D, size_t K, bool l2)
{
    // eta holds s^2 <= D values while stepping, and (H / 5)^2 at an l2 start.
    const size_t s0 = (size_t)(q->H / 5 > 0 ? q->H / 5 : 1);
    const size_t T = (size_t)omp_get_max_threads();
    const rr__carve_part parts[] = {
        RR__CARVE_PART(q->xb, B * D), RR__CARVE_PART(q->xs, B * D),
        RR__CARVE_PART(q->z, B * K),  RR__CARVE_PART(q->mmin, B),
        RR__CARVE_PART(q->lmin, B),   RR__CARVE_PART(q->eta_buf, D > s0 * s0 ? D : s0 * s0),
        RR__CARVE_PART(q->rng, B),    RR__CARVE_PART(q->act, B),
        RR__CARVE_PART(q->run, B),    RR__CARVE_PART(q->scratch, l2 ? T * q->scratch_n : 0)};
    return rr__carve(q->a->err, parts, sizeof parts / sizeof parts[0]);
}

// Restart r's start (stripes for linf, the grid of eta squares for l2) on the n running
// samples, one query: their best points, margins and losses.
static rr_status restart_start(sq *q, size_t n, int r)
{
    rr__atk *a = q->a;
    const size_t D = a->D, K = (size_t)a->K;
    const bool l2 = a->p.norm == RR_NORM_L2;
    if (l2) {
        q->eta_s = q->flat ? isqrt_sz(D) / 5 : q->H / 5;
        q->eta_s = q->eta_s < 1 ? 1 : q->eta_s;
        eta_fill(q->eta_buf, q->eta_s);
    }
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
    for (size_t j = 0; j < n; j++) {
        const size_t b = q->act[j];
        rr_rng_init(&q->rng[b], a->p.seed + 0x9E3779B97F4A7C15ull * (uint64_t)r,
                    rr__atk_stream(a, b));
        if (l2)
            l2_start(q, q->eta_s, &q->rng[b],
                     q->scratch + (size_t)omp_get_thread_num() * q->scratch_n, a->x0 + b * D,
                     q->xs + j * D);
        else
            linf_start(q, &q->rng[b], a->x0 + b * D, q->xs + j * D);
    }
    rr_status st = rr__atk_forward(a, q->xs, n, q->z);
    if (st != RR_OK)
        return st;
    rr__atk_scatter(q->xs, q->act, n, D, q->xb);
    for (size_t j = 0; j < n; j++) {
        const size_t b = q->act[j];
        margin_loss(a, b, q->z + j * K, &q->mmin[b], &q->lmin[b]);
        a->out->iterations[b]++;
    }
    return RR_OK;
}

// Query it on the samples still unbroken; *n gets their number (0: nothing left to query).
static rr_status query(sq *q, int it, size_t *n_out)
{
    rr__atk *a = q->a;
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const bool l2 = a->p.norm == RR_NORM_L2;
    size_t n = 0;
    for (size_t b = 0; b < B; b++)
        if (q->run[b] && q->mmin[b] > 0.0)
            q->act[n++] = b;
    *n_out = n;
    if (n == 0)
        return RR_OK;
    const int s = side_at(q, it);
    if (l2 && s != q->eta_s) {
        q->eta_s = s;
        eta_fill(q->eta_buf, s);
    }
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
    for (size_t j = 0; j < n; j++) {
        const size_t b = q->act[j];
        if (l2)
            l2_step(q, s, &q->rng[b], q->scratch + (size_t)omp_get_thread_num() * q->scratch_n,
                    a->x0 + b * D, q->xb + b * D, q->xs + j * D);
        else
            linf_step(q, s, &q->rng[b], a->x0 + b * D, q->xb + b * D, q->xs + j * D);
    }
    rr_status st = rr__atk_forward(a, q->xs, n, q->z);
    if (st != RR_OK)
        return st;
        // Keep the candidate when the loss improved or the sample is broken.
#pragma omp parallel for schedule(static) if (n * D >= PAR_MIN)
    for (size_t j = 0; j < n; j++) {
        const size_t b = q->act[j];
        double m, l;
        margin_loss(a, b, q->z + j * K, &m, &l);
        const bool better = l < q->lmin[b];
        if (better)
            q->lmin[b] = l;
        if (better || m <= 0.0) {
            q->mmin[b] = m;
            memcpy(q->xb + b * D, q->xs + j * D, D * sizeof(float));
        }
        a->out->iterations[b]++;
    }
    if (a->hooks.trace)
        memcpy(a->hooks.trace + (size_t)it * B * D, q->xb, B * D * sizeof(float));
    return rr__atk_poll(a, 1.0);
}

// Restart r: the start, then up to Q queries.
static rr_status restart(sq *q, size_t n, int r)
{
    rr__atk *a = q->a;
    const size_t B = a->B, D = a->D;
    const int Q = a->p.queries;
    rr_status st = restart_start(q, n, r);
    int it = 0;
    for (; it < Q && st == RR_OK; it++) {
        if ((st = query(q, it, &n)) != RR_OK || n == 0)
            break;
    }
    if (st != RR_OK)
        return st;
    if (a->hooks.trace)
        for (int t = it; t < Q; t++)
            memcpy(a->hooks.trace + (size_t)t * B * D, q->xb, B * D * sizeof(float));
    a->progress_done += (double)(Q - it);
    // A broken sample keeps its point and leaves the later restarts.
    for (size_t b = 0; b < B; b++)
        if (q->run[b] && q->mmin[b] <= 0.0) {
            memcpy(a->out->adversarial + b * D, q->xb + b * D, D * sizeof(float));
            q->run[b] = false;
        }
    return RR_OK;
}

rr_status rr__attack_square(rr__atk *a)
{
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    const bool l2 = a->p.norm == RR_NORM_L2;
    sq q = {.a = a, .eps = a->p.epsilon, .C = 1, .H = 1, .W = (int)D, .flat = true};
    const rr_shape *shp = rr_model_input_shape(a->m);
    if (shp->ndim == 3) {
        q.C = (int)shp->dim[0];
        q.H = (int)shp->dim[1];
        q.W = (int)shp->dim[2];
        q.flat = false;
    }
    q.side = isqrt_sz(D);
    q.scratch_n = 2 * D + (size_t)q.C;
    void *block = carve(&q, B, D, K, l2);
    if (!block)
        return RR_ENOMEM;
    q.eta = q.eta_buf;
    memcpy(a->out->adversarial, a->x0, B * D * sizeof(float));
    memcpy(q.xb, a->x0, B * D * sizeof(float));
    // Only the samples the model gets right at x are attacked (AutoAttack's perturb).
    rr_status st = rr__atk_forward(a, a->x0, B, q.z);
    if (st == RR_OK)
        for (size_t b = 0; b < B; b++) {
            q.run[b] = !rr__atk_hit(a, b, rr__atk_argmax(q.z + b * K, (int)K));
            a->out->iterations[b] = 0;
        }
    a->progress_total = (double)a->p.queries * a->p.restarts;
    for (int r = 0; r < a->p.restarts && st == RR_OK; r++) {
        const size_t n = rr__atk_active(q.run, true, B, q.act);
        if (n == 0)
            break;
        st = restart(&q, n, r);
    }
    rr_aligned_free(block);
    return st;
}
