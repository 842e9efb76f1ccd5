// The sort-based FAB projection that rr__fab_project replaced (fab.c before issue 22), kept
// verbatim as the oracle of tests/unit/attack/test_fab_projection.c and the baseline of
// bench/bench_fab_projection.c.
#ifndef RR_TESTS_FAB_PROJECTION_SORTED_H
#define RR_TESTS_FAB_PROJECTION_SORTED_H

#include <math.h>
#include <stdlib.h>

#include "attack/attack_impl.h"

typedef struct brk {
    double r;
    double a;
} brk;

static inline int cmp_brk(const void *p, const void *q)
{
    const double a = ((const brk *)p)->r, b = ((const brk *)q)->r;
    return (a > b) - (a < b);
}

// The oracle: fab.c's projection before rr__fab_project (qsort of every breakpoint).
static inline double project_sorted(const rr__atk *a, const float *t, const float *w, double c,
                                    double *d, brk *scr)
{
    const size_t D = a->D;
    const bool linf = a->p.norm == RR_NORM_LINF;
    const double sg = c < 0 ? -1.0 : 1.0;
    const double tiny = linf ? 0.0 : 1e-8 / (a->has_range ? (double)a->hi - a->lo : 1.0);
    c = fabs(c);
    size_t m = 0;
    double A = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double wi = sg * (double)w[i];
        if (fabs(wi) <= tiny)
            continue;
        const double room =
            a->has_range ? (wi > 0 ? (double)t[i] - a->lo : a->hi - (double)t[i]) : INFINITY;
        const double wt = linf ? fabs(wi) : wi * wi;
        scr[m].r = linf ? room : room / fabs(wi);
        scr[m].a = wt;
        A += wt;
        m++;
    }
    double lam = INFINITY;
    if (m > 0) {
        qsort(scr, m, sizeof *scr, cmp_brk);
        double S = 0.0;
        for (size_t k = 0; k < m; k++) {
            if (c - S <= scr[k].r * A) {
                lam = (c - S) / A;
                break;
            }
            S += scr[k].a * scr[k].r;
            A -= scr[k].a;
        }
    }
    double n = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double wi = sg * (double)w[i];
        double di = 0.0;
        if (fabs(wi) > tiny) {
            const double room =
                a->has_range ? (wi > 0 ? (double)t[i] - a->lo : a->hi - (double)t[i]) : INFINITY;
            const double len = linf ? lam : lam * fabs(wi);
            di = (wi > 0 ? -1.0 : 1.0) * (len < room ? len : room);
        }
        d[i] = di;
        n = linf ? fmax(n, fabs(di)) : n + di * di;
    }
    return linf ? n : sqrt(n);
}

#endif
