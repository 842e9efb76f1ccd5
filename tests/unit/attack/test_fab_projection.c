// rr__fab_project (lib/attack/fab_projection.c, quickselect bracketing) against the sort-based
// projection FAB used before, kept here verbatim as the oracle: the step d and its norm must be
// bit-identical on random cases with ties (inputs on a few levels, many at the box, equal
// weights), zero and tiny weights, every breakpoint equal, no box, and hyperplanes out of the
// box's reach (every coordinate to the box).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/rng.h"
#include "fab_projection_sorted.h"

// The kinds of random case.
enum { PLAIN, LEVELS, AT_BOX, EQUAL, ZERO_W, TINY_W, NKINDS };

static void draw(rr_rng *g, int kind, size_t D, float lo, float hi, float *t, float *w)
{
    for (size_t i = 0; i < D; i++) {
        const double u = rr_rng_uniform(g);
        switch (kind) {
            case LEVELS: // a few levels of t and of |w|: ties in r for linf and l2
                t[i] = lo + (hi - lo) * (float)(rr_rng_uniform(g) < 0.5 ? 0.25 : 0.75);
                w[i] = (u < 0.5 ? -1.0f : 1.0f) * (rr_rng_uniform(g) < 0.5 ? 0.5f : 0.125f);
                break;
            case AT_BOX: // half the coordinates on the box (Fashion-MNIST's zeros)
                t[i] = u < 0.5 ? lo : (u < 0.6 ? hi : lo + (hi - lo) * (float)rr_rng_uniform(g));
                w[i] = (float)(rr_rng_uniform(g) - 0.5);
                break;
            case EQUAL: // every breakpoint equal
                t[i] = 0.5f * (lo + hi);
                w[i] = u < 0.5 ? -0.25f : 0.25f;
                break;
            case ZERO_W:
                t[i] = lo + (hi - lo) * (float)rr_rng_uniform(g);
                w[i] = u < 0.7 ? 0.0f : (float)(rr_rng_uniform(g) - 0.5);
                break;
            case TINY_W: // below and about l2's 1e-8 cut
                t[i] = lo + (hi - lo) * (float)rr_rng_uniform(g);
                w[i] = (float)((rr_rng_uniform(g) - 0.5) * (u < 0.5 ? 4e-8 : 1.0));
                break;
            default:
                t[i] = lo + (hi - lo) * (float)rr_rng_uniform(g);
                w[i] = (float)(rr_rng_uniform(g) - 0.5);
        }
    }
}

static const size_t DIMS[] = {1, 2, 3, 7, 16, 17, 33, 100, 784, 3072};

Test(fab_projection, bit_identical_to_the_sort)
{
    const size_t Dmax = 3072;
    float *t = malloc(Dmax * sizeof(float)), *w = malloc(Dmax * sizeof(float));
    double *d0 = malloc(Dmax * sizeof(double)), *d1 = malloc(Dmax * sizeof(double));
    brk *s0 = malloc(Dmax * sizeof(brk));
    rr__fab_brk *s1 = malloc(Dmax * sizeof(rr__fab_brk));
    rr_rng g;
    rr_rng_init(&g, 2026, 22);
    size_t cases = 0, reach = 0, out = 0;
    for (size_t di = 0; di < sizeof DIMS / sizeof DIMS[0]; di++)
        for (int kind = 0; kind < NKINDS; kind++)
            for (int rep = 0; rep < 40; rep++) {
                const size_t D = DIMS[di];
                rr__atk a;
                memset(&a, 0, sizeof a);
                a.D = D;
                a.p.norm = rep % 2 ? RR_NORM_L2 : RR_NORM_LINF;
                a.has_range = rep % 5 != 4;
                a.lo = rep % 3 ? -1.0f : 0.0f;
                a.hi = 1.0f;
                draw(&g, kind, D, a.lo, a.hi, t, w);
                // c from a sliver of the way to the box to far past it, either sign, or 0.
                double h = 0.0;
                for (size_t i = 0; i < D; i++)
                    h += fabs((double)w[i]) * (a.hi - a.lo);
                const double f = rep % 8 == 7 ? 0.0 : exp(log(1e-4) + rr_rng_uniform(&g) * 12);
                const double c = (rep % 4 < 2 ? 1.0 : -1.0) * f * (h > 0 ? h : 1.0) * 0.1;
                const double n0 = project_sorted(&a, t, w, c, d0, s0);
                const double n1 = rr__fab_project(&a, t, w, c, d1, s1);
                cr_assert(memcmp(&n0, &n1, sizeof n0) == 0,
                          "D %zu kind %d rep %d: norm %.17g, sorted %.17g", D, kind, rep, n1, n0);
                cr_assert(memcmp(d0, d1, D * sizeof(double)) == 0,
                          "D %zu kind %d rep %d: the steps differ", D, kind, rep);
                cases++;
                bool at_box = true;
                for (size_t i = 0; i < D && at_box; i++)
                    at_box = d0[i] == 0.0 || fabs(t[i] + d0[i] - (d0[i] < 0 ? a.lo : a.hi)) < 1e-12;
                at_box ? out++ : reach++;
            }
    // Both regimes were reached: within the box's reach, and every coordinate to the box.
    cr_expect(reach > cases / 4 && out > cases / 20, "reach %zu, out of reach %zu of %zu", reach,
              out, cases);
    free(t);
    free(w);
    free(d0);
    free(d1);
    free(s0);
    free(s1);
}
