// FAB's projection onto a hyperplane inside the box (fab.c), in expected O(D) without a full
// sort and without allocation (the scratch comes from the caller).
//
// d [D] = the smallest step (linf or l2) from t with w . d = -c and t + d inside input_range:
// coordinates move against sign(c w_i), linf by min(lambda, room_i), l2 by min(lambda |w_i|,
// room_i) (room_i the distance to the box that way), with the lambda at which the constraint
// holds; h(lambda) = sum_i a_i min(lambda, r_i) is piecewise linear and increasing in lambda
// (a_i = |w_i| for linf, w_i^2 for l2; r_i the lambda at which coordinate i reaches the box).
// When the box does not let the hyperplane be reached, every coordinate goes to the box (the
// corner FAB's projections return). Coordinates with w_i = 0 stay, and for l2 also those with
// |w_i| (hi - lo) <= 1e-8: FAB's projection_l2 on the box [0, 1], where w is scaled by hi - lo.
//
// The multiplier is the one the sort-based scan gives, bit for bit: walk the breakpoints in
// increasing r (ties in coordinate order, as glibc's stable merge sort left them), with
// S = sum of a_k r_k and A = sum of the a_k of the coordinates not yet at the box, both
// accumulated in that order, and stop at the first k with c - S <= r_k A, lambda = (c - S) / A.
// Only the breakpoints up to that k need their order: a quickselect over the keys (r, i),
// testing the condition at each pivot with sums in any order, brackets k in expected O(D);
// the prefix up to the bracket is then sorted and scanned exactly as before. Should float
// rounding put the true stop beyond the bracket, the scan goes on over the next chunk of keys,
// selected and sorted the same way, so the result never depends on the estimate.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attack/attack_impl.h"

// Below this many keys a range is sorted by insertion.
#define SMALL 16

// c ? x : y without a branch (the signs of w are random: a branch mispredicts half the time).
static inline double pick(bool c, double x, double y)
{
    uint64_t a, b;
    memcpy(&a, &x, sizeof a);
    memcpy(&b, &y, sizeof b);
    const uint64_t m = (uint64_t)0 - (uint64_t)c, r = (a & m) | (b & ~m);
    double d;
    memcpy(&d, &r, sizeof d);
    return d;
}

static inline bool key_lt(const rr__fab_brk *p, const rr__fab_brk *q)
{
    return p->r < q->r || (p->r == q->r && p->i < q->i);
}

static inline void swap_brk(rr__fab_brk *p, rr__fab_brk *q)
{
    const rr__fab_brk t = *p;
    *p = *q;
    *q = t;
}

static void insertion_sort(rr__fab_brk *v, size_t n)
{
    for (size_t k = 1; k < n; k++) {
        const rr__fab_brk x = v[k];
        size_t j = k;
        for (; j > 0 && key_lt(&x, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

// Moves the median of v[0], v[n/2], v[n-1] to v[n-1] and partitions v[0 .. n-1) around it
// (keys are distinct: (r, i)); returns the pivot's final position.
static size_t partition(rr__fab_brk *v, size_t n)
{
    rr__fab_brk *p0 = v, *p1 = v + n / 2, *p2 = v + n - 1;
    if (key_lt(p1, p0))
        swap_brk(p1, p0);
    if (key_lt(p2, p1)) {
        swap_brk(p2, p1);
        if (key_lt(p1, p0))
            swap_brk(p1, p0);
    }
    swap_brk(p1, p2); // the median to the end
    const rr__fab_brk piv = v[n - 1];
    size_t s = 0;
    for (size_t k = 0; k + 1 < n; k++) {
        const rr__fab_brk x = v[k];
        const bool lt = key_lt(&x, &piv);
        v[k] = v[s];
        v[s] = x;
        s += lt;
    }
    swap_brk(&v[s], &v[n - 1]);
    return s;
}

// Sorts v [n] by key: quicksort on the larger side's loop, recursion on the smaller (depth
// O(log n)), heap-free; insertion below SMALL.
static void sort_brk(rr__fab_brk *v, size_t n)
{
    while (n > SMALL) {
        const size_t p = partition(v, n);
        if (p < n - 1 - p) {
            sort_brk(v, p);
            v += p + 1;
            n -= p + 1;
        } else {
            sort_brk(v + p + 1, n - 1 - p);
            n = p;
        }
    }
    insertion_sort(v, n);
}

// Rearranges v [n] so that its first k keys are the k smallest (any order among them).
static void select_brk(rr__fab_brk *v, size_t n, size_t k)
{
    while (n > SMALL && k > 0 && k < n) {
        const size_t p = partition(v, n);
        if (k <= p) {
            n = p;
        } else {
            v += p + 1;
            n -= p + 1;
            k -= p + 1;
        }
    }
    if (k > 0 && k < n)
        insertion_sort(v, n);
}

// The length of a prefix of keys (the smallest, left first in v) that holds the stop of the
// scan as estimated with sums in partition order; m when no stop is found.
static size_t bracket(rr__fab_brk *v, size_t m, double c, double A)
{
    size_t lo = 0, hi = m;
    double SL = 0.0, AL = 0.0; // sums over v[0 .. lo), all keys below v[lo ..]
    while (hi - lo > SMALL) {
        const size_t p = lo + partition(v + lo, hi - lo);
        double s = 0.0, aa = 0.0;
        for (size_t k = lo; k < p; k++) {
            s += v[k].a * v[k].r;
            aa += v[k].a;
        }
        if (c - (SL + s) <= v[p].r * (A - AL - aa)) {
            hi = p; // the stop is at p or before: keep p just past the range
            if (hi == lo)
                return hi + 1;
        } else {
            SL += s + v[p].a * v[p].r;
            AL += aa + v[p].a;
            lo = p + 1;
        }
    }
    return hi < m ? hi + 1 : m;
}

// lambda from the breakpoints: the z at r = 0 in v0 (in coordinate order, their sorted order
// already) and the n others in v1; A = the sum of all weights in coordinate order; +inf when
// the hyperplane is out of the box's reach.
static double multiplier(const rr__fab_brk *v0, size_t z, rr__fab_brk *v1, size_t n, double c,
                         double A)
{
    double S = 0.0; // sum of a_k r_k over the coordinates already at the box
    // The breakpoints at 0 leave S at 0 and stop the scan only when c = 0.
    for (size_t k = 0; k < z; k++) {
        if (c - S <= v0[k].r * A)
            return (c - S) / A;
        S += v0[k].a * v0[k].r;
        A -= v0[k].a;
    }
    size_t k = 0, end = bracket(v1, n, c - S, A);
    for (;;) {
        sort_brk(v1 + k, end - k);
        for (; k < end; k++) {
            if (c - S <= v1[k].r * A)
                return (c - S) / A;
            S += v1[k].a * v1[k].r;
            A -= v1[k].a;
        }
        if (end == n)
            return INFINITY;
        // Rounding put the stop past the estimate: the next chunk of keys, as large again.
        const size_t more = end < n - end ? (end > 0 ? end : 1) : n - end;
        select_brk(v1 + end, n - end, more);
        end += more;
    }
}

double rr__fab_project(const rr__atk *a, const float *t, const float *w, double c, double *d,
                       rr__fab_brk *scr)
{
    const size_t D = a->D;
    const bool linf = a->p.norm == RR_NORM_LINF, box = a->has_range;
    const double lo = box ? a->lo : -INFINITY, hi = box ? a->hi : INFINITY;
    const double sg = c < 0 ? -1.0 : 1.0;
    const double tiny = linf ? 0.0 : 1e-8 / (box ? hi - lo : 1.0);
    c = fabs(c);
    // The breakpoints at 0 (coordinates on the box already) go to the front in coordinate
    // order, the others to the back.
    size_t z = 0, top = D;
    double A = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double wi = sg * (double)w[i];
        if (fabs(wi) <= tiny)
            continue;
        const double room = pick(wi > 0, (double)t[i] - lo, hi - (double)t[i]);
        const double wt = linf ? fabs(wi) : wi * wi;
        const double r = linf ? room : room / fabs(wi);
        const bool at0 = r == 0.0;
        const size_t k = at0 ? z : top - 1;
        z += at0;
        top -= !at0;
        scr[k] = (rr__fab_brk){.r = r, .a = wt, .i = i};
        A += wt;
    }
    const double lam = z + (D - top) > 0 ? multiplier(scr, z, scr + top, D - top, c, A) : INFINITY;
    // d_i = -sign(w_i) min(len_i, room_i), 0 for the coordinates that stay.
    double n = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double wi = sg * (double)w[i];
        const double room = pick(wi > 0, (double)t[i] - lo, hi - (double)t[i]);
        const double len = linf ? lam : lam * fabs(wi);
        const double mv = len < room ? len : room;
        const double di = pick(fabs(wi) > tiny, pick(wi > 0, -mv, mv), 0.0);
        d[i] = di;
        if (linf)
            n = fabs(di) > n ? fabs(di) : n;
        else
            n += di * di;
    }
    return linf ? n : sqrt(n);
}
