// FAB's projection: the sort-based one fab.c used before (tests/common/fab_projection_sorted.h)
// against rr__fab_project (lib/attack/fab_projection.c), microseconds per projection at
// D = 784 and 3072, linf and l2, box [0, 1] with half the inputs on its edge (as Fashion-MNIST
// and CIFAR-10 pixels), a random gradient, and the hyperplane a few percent of the box's reach
// away. Not a test; `make bench-fab-projection`.
//   bench-fab-projection [REPS]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "bench_util.h"
#include "core/rng.h"
#include "fab_projection_sorted.h"

#define CASES 64

int main(int argc, char **argv)
{
    const int reps = argc > 1 ? atoi(argv[1]) : 20;
    const size_t dims[] = {784, 3072};
    const size_t Dmax = 3072;
    float *t = malloc(CASES * Dmax * sizeof(float)), *w = malloc(CASES * Dmax * sizeof(float));
    double *c = malloc(CASES * sizeof(double)), *d = malloc(Dmax * sizeof(double));
    brk *s0 = malloc(Dmax * sizeof(brk));
    rr__fab_brk *s1 = malloc(Dmax * sizeof(rr__fab_brk));
    double sink = 0.0;
    for (int norm = 0; norm < 2; norm++)
        for (size_t di = 0; di < 2; di++) {
            const size_t D = dims[di];
            rr__atk a;
            memset(&a, 0, sizeof a);
            a.D = D;
            a.p.norm = norm ? RR_NORM_L2 : RR_NORM_LINF;
            a.has_range = true;
            a.lo = 0.0f;
            a.hi = 1.0f;
            rr_rng g;
            rr_rng_init(&g, 22, D);
            for (size_t k = 0; k < CASES; k++) {
                double h = 0.0;
                for (size_t i = 0; i < D; i++) {
                    const double u = rr_rng_uniform(&g);
                    t[k * D + i] = u < 0.5 ? 0.0f : (float)rr_rng_uniform(&g);
                    w[k * D + i] = (float)rr_rng_normal(&g);
                    h += fabs((double)w[k * D + i]);
                }
                c[k] = (k % 2 ? 1 : -1) * h * (0.01 + 0.1 * rr_rng_uniform(&g));
            }
            double best[2] = {INFINITY, INFINITY};
            for (int r = 0; r < reps; r++)
                for (int v = 0; v < 2; v++) {
                    const double t0 = now_ms();
                    for (size_t k = 0; k < CASES; k++)
                        sink += v ? rr__fab_project(&a, t + k * D, w + k * D, c[k], d, s1)
                                  : project_sorted(&a, t + k * D, w + k * D, c[k], d, s0);
                    const double us = (now_ms() - t0) * 1e3 / CASES;
                    best[v] = us < best[v] ? us : best[v];
                }
            printf(
                "{\"op\": \"fab_projection\", \"norm\": \"%s\", \"D\": %zu, \"us_sorted\": %.2f, "
                "\"us_select\": %.2f}\n",
                norm ? "l2" : "linf", D, best[0], best[1]);
        }
    fprintf(stderr, "(checksum %g)\n", sink);
    free(t);
    free(w);
    free(c);
    free(d);
    free(s0);
    free(s1);
    return 0;
}
