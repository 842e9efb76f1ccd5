// ZOO (math.md, "Attacks"): black-box, after ART's ZooAttack with its defaults (max_iter 10,
// binary_search_steps 1, learning_rate 1e-2, initial_const 1e-3, variable_h 1e-4,
// nb_parallel 128, abort early): the C&W loss ||x' - x||^2 + c * max(0, z_y - max z_j + kappa)
// in input space, estimated per coordinate by symmetric finite differences
// (f(x + h e_i) - f(x - h e_i)) / 2h on nb_parallel coordinates per iteration, each updated by
// coordinate-wise ADAM, then clipped to input_range. Only forward passes: the model's gradient
// is never called. Coordinates are drawn uniformly without replacement from the sample's
// (seed, index) stream; ART's resizing and importance sampling (for large images) are not
// used. The binary search over c and the kept smallest successful perturbation are C&W's.
#include <math.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/tensor.h"

#define ZOO_PARALLEL 128

// Scratch, carved from one block, and the constants of the attack.
typedef struct zoo {
    rr__atk *a;
    size_t P, R, sb; // coordinates per iteration, evaluation rows per sample, samples per block
    float *cur, *m1, *m2; // [B, D] iterates and the coordinates' Adam m, v
    float *ev, *z;        // [sb R, D] evaluation rows and [max(sb R, B), K] their logits
    int *coords;          // [sb, P] the block's coordinates
    int *tcount;          // [B, D] Adam steps per coordinate
    double *cc, *lower, *upper, *obest, *prev; // [B]
    bool *run, *found;                         // [B]
} zoo;

static void *carve(zoo *s, size_t B, size_t D, size_t K)
{
    const size_t rows = s->sb * s->R;
    const rr__carve_part parts[] = {RR__CARVE_PART(s->cur, B * D),
                                    RR__CARVE_PART(s->m1, B * D),
                                    RR__CARVE_PART(s->m2, B * D),
                                    RR__CARVE_PART(s->ev, rows * D),
                                    RR__CARVE_PART(s->z, (rows > B ? rows : B) * K),
                                    RR__CARVE_PART(s->coords, s->sb * s->P),
                                    RR__CARVE_PART(s->tcount, B * D),
                                    RR__CARVE_PART(s->cc, B),
                                    RR__CARVE_PART(s->lower, B),
                                    RR__CARVE_PART(s->upper, B),
                                    RR__CARVE_PART(s->obest, B),
                                    RR__CARVE_PART(s->prev, B),
                                    RR__CARVE_PART(s->run, B),
                                    RR__CARVE_PART(s->found, B)};
    return rr__carve(s->a->err, parts, sizeof parts / sizeof parts[0]);
}

static double zoo_loss(const rr__atk *a, size_t b, const float *z, double l2, double c)
{
    const double h = rr__atk_margin(a, b, z, NULL);
    return l2 + c * (h > 0 ? h : 0);
}

static bool zoo_hit(const rr__atk *a, size_t b, const float *z)
{
    return rr__atk_hit(a, b, rr__atk_argmax(z, a->K));
}

static double l2_from(const float *x, const float *x0, size_t D)
{
    double l2 = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double d = (double)x[i] - x0[i];
        l2 += d * d;
    }
    return l2;
}

// Sample b's P distinct coordinates of iteration (bs, it) into cj, repeats rejected, and its
// evaluation rows into e [R, D]: x, then x + h e_i, x - h e_i per coordinate.
static void eval_rows(const zoo *s, size_t b, int bs, int it, int *cj, float *e)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, P = s->P;
    const double h = a->p.h;
    rr_rng rng;
    rr_rng_init(&rng, a->p.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(bs * a->p.max_iter + it + 1)),
                rr__atk_stream(a, b));
    for (size_t q = 0; q < P; q++) {
        for (;;) {
            const int c = (int)(rr_rng_next(&rng) % D);
            bool dup = false;
            for (size_t r = 0; r < q && !dup; r++)
                dup = cj[r] == c;
            if (!dup) {
                cj[q] = c;
                break;
            }
        }
    }
    const float *xb = s->cur + b * D;
    memcpy(e, xb, D * sizeof(float));
    for (size_t q = 0; q < P; q++) {
        float *ep = e + (1 + 2 * q) * D, *em = ep + D;
        memcpy(ep, xb, D * sizeof(float));
        memcpy(em, xb, D * sizeof(float));
        ep[cj[q]] = (float)(xb[cj[q]] + h);
        em[cj[q]] = (float)(xb[cj[q]] - h);
    }
}

// Coordinate ADAM (ART: beta1 0.9, beta2 0.999, eps 1e-8) on sample b's coordinates cj from
// its evaluation rows e and their logits zr, at loss offset l2.
static void adam(zoo *s, size_t b, const int *cj, const float *e, const float *zr, double l2)
{
    const rr__atk *a = s->a;
    const size_t D = a->D, K = (size_t)a->K;
    const double h = a->p.h;
    const float *x0 = a->x0 + b * D;
    float *xb = s->cur + b * D;
    for (size_t q = 0; q < s->P; q++) {
        const int i = cj[q];
        const float *ep = e + (1 + 2 * q) * D, *em = ep + D;
        double l2p = l2, l2m = l2;
        const double dp = (double)ep[i] - x0[i], dm = (double)em[i] - x0[i],
                     d0 = (double)xb[i] - x0[i];
        l2p += dp * dp - d0 * d0;
        l2m += dm * dm - d0 * d0;
        const double fp = zoo_loss(a, b, zr + (1 + 2 * q) * K, l2p, s->cc[b]);
        const double fm = zoo_loss(a, b, zr + (2 + 2 * q) * K, l2m, s->cc[b]);
        const double g = (fp - fm) / (2.0 * h);
        const size_t k = b * D + (size_t)i;
        s->m1[k] = (float)(0.9 * s->m1[k] + 0.1 * g);
        s->m2[k] = (float)(0.999 * s->m2[k] + 0.001 * g * g);
        const int t = ++s->tcount[k];
        const double mh = s->m1[k] / (1.0 - pow(0.9, t));
        const double vh = s->m2[k] / (1.0 - pow(0.999, t));
        double v = (double)xb[i] - a->p.learning_rate * mh / (sqrt(vh) + 1e-8);
        if (a->has_range)
            v = v < a->lo ? a->lo : (v > a->hi ? a->hi : v);
        xb[i] = (float)v;
    }
}

// Sample b after the forward pass of its evaluation rows e (logits zr): abort early, the
// smallest success, then the coordinates' step.
static void update(zoo *s, size_t b, int it, const int *cj, const float *e, const float *zr)
{
    rr__atk *a = s->a;
    const size_t D = a->D;
    const int steps = a->p.max_iter, every = steps / 10 > 0 ? steps / 10 : 1;
    float *xb = s->cur + b * D;
    const double l2 = l2_from(xb, a->x0 + b * D, D);
    const double loss = zoo_loss(a, b, zr, l2, s->cc[b]);
    if (it % every == 0) {
        if (loss > s->prev[b] * 0.9999) {
            s->run[b] = false;
            return;
        }
        s->prev[b] = loss;
    }
    a->out->iterations[b]++;
    if (zoo_hit(a, b, zr)) {
        s->found[b] = true;
        if (l2 < s->obest[b]) {
            s->obest[b] = l2;
            memcpy(a->out->adversarial + b * D, xb, D * sizeof(float));
        }
    }
    adam(s, b, cj, e, zr, l2);
}

// One iteration on the running samples of the block s0 .. s0 + ns.
static rr_status block_iter(zoo *s, size_t s0, size_t ns, int bs, int it)
{
    rr__atk *a = s->a;
    const size_t D = a->D, K = (size_t)a->K, R = s->R;
    size_t rows = 0;
    for (size_t j = 0; j < ns; j++)
        if (s->run[s0 + j]) {
            eval_rows(s, s0 + j, bs, it, s->coords + j * s->P, s->ev + rows * D);
            rows += R;
        }
    if (rows == 0)
        return RR_OK;
    rr_status st = rr__atk_forward(a, s->ev, rows, s->z);
    if (st != RR_OK)
        return st;
    size_t r0 = 0;
    for (size_t j = 0; j < ns; j++)
        if (s->run[s0 + j]) {
            update(s, s0 + j, it, s->coords + j * s->P, s->ev + r0 * D, s->z + r0 * K);
            r0 += R;
        }
    return RR_OK;
}

// The end of a binary step: the final iterate counts too, then the search over c.
static rr_status binary_end(zoo *s)
{
    rr__atk *a = s->a;
    const size_t B = a->B, D = a->D, K = (size_t)a->K;
    rr_status st = rr__atk_forward(a, s->cur, B, s->z);
    if (st != RR_OK)
        return st;
    for (size_t b = 0; b < B; b++) {
        const double l2 = l2_from(s->cur + b * D, a->x0 + b * D, D);
        if (zoo_hit(a, b, s->z + b * K)) {
            s->found[b] = true;
            if (l2 < s->obest[b]) {
                s->obest[b] = l2;
                memcpy(a->out->adversarial + b * D, s->cur + b * D, D * sizeof(float));
            }
        }
        rr__atk_csearch(s->found[b], &s->lower[b], &s->upper[b], &s->cc[b]);
    }
    return RR_OK;
}

static void binary_reset(zoo *s)
{
    const rr__atk *a = s->a;
    const size_t B = a->B, D = a->D;
    memcpy(s->cur, a->x0, B * D * sizeof(float));
    memset(s->m1, 0, B * D * sizeof(float));
    memset(s->m2, 0, B * D * sizeof(float));
    memset(s->tcount, 0, B * D * sizeof(int));
    for (size_t b = 0; b < B; b++) {
        s->run[b] = true;
        s->found[b] = false;
        s->prev[b] = 1e30;
    }
}

rr_status rr__attack_zoo(rr__atk *a)
{
    const size_t B = a->B, D = a->D;
    const int steps = a->p.max_iter, bsteps = a->p.binary_search_steps;
    zoo s = {.a = a, .P = D < ZOO_PARALLEL ? D : ZOO_PARALLEL};
    s.R = 2 * s.P + 1;
    // Samples per evaluation block: bounded so that the block stays within ~64 MiB.
    s.sb = ((size_t)16 << 20) / (s.R * D + 1);
    s.sb = s.sb < 1 ? 1 : (s.sb > B ? B : s.sb);
    void *block = carve(&s, B, D, (size_t)a->K);
    if (!block)
        return RR_ENOMEM;
    memcpy(a->out->adversarial, a->x0, B * D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        s.cc[b] = a->p.c;
        s.lower[b] = 0;
        s.upper[b] = 1e10;
        s.obest[b] = 1e10;
        a->out->iterations[b] = 0;
    }
    a->progress_total = (double)bsteps * steps;
    rr_status st = RR_OK;
    for (int bs = 0; bs < bsteps && st == RR_OK; bs++) {
        binary_reset(&s);
        for (int it = 0; it < steps && st == RR_OK; it++) {
            for (size_t s0 = 0; s0 < B && st == RR_OK; s0 += s.sb)
                st = block_iter(&s, s0, B - s0 < s.sb ? B - s0 : s.sb, bs, it);
            if (st == RR_OK)
                st = rr__atk_poll(a, 1.0);
        }
        if (st == RR_OK)
            st = binary_end(&s);
    }
    rr_aligned_free(block);
    return st;
}
