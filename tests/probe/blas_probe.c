// blas-probe: what a program that links librelureg ends up running, for the kernel-choice
// tests (tests/unit/core/test_blas.c) and the Makefile's second unit run.
//
//   blas-probe           prints "LOADED BEST" (BEST is "-" when the CPU has no known core)
//   blas-probe --weaker  prints a core weaker than this CPU's best (Prescott when none is)
//
// With RR_PROBE_FORGET_CORETYPE=1 it unsets OPENBLAS_CORETYPE (and that variable) after
// OpenBLAS has loaded and before choosing: a program in which OpenBLAS fell back to the core the
// variable named, by itself, with nothing set by the user; so the restart path runs on any CPU.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"

int main(int argc, char **argv)
{
    if (getenv("RR_PROBE_FORGET_CORETYPE")) {
        unsetenv("RR_PROBE_FORGET_CORETYPE");
        unsetenv("OPENBLAS_CORETYPE");
    }
    rr_blas_use_fitting_kernels(argv); // as every shipped binary's main does
    const char *best = rr_blas_best_core();
    if (argc == 2 && !strcmp(argv[1], "--weaker")) {
        const int r = rr_blas_core_rank(best);
        puts(r == 3 ? "Haswell" : r == 2 ? "Sandybridge" : "Prescott");
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: blas-probe [--weaker]\n");
        return 2;
    }
    printf("%s %s\n", rr_blas_core(), best ? best : "-");
    return 0;
}
