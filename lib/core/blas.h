// The one door to BLAS (OpenBLAS, OpenMP build) and the library's threading policy.
//
// Policy: librelureg runs one level of parallelism per step. Large dense algebra is a single
// sgemm with the batch as a GEMM dimension, called OUTSIDE any OpenMP region, where OpenBLAS
// (OpenMP build) uses omp_get_max_threads() of the calling thread; per-row work (im2col,
// pooling, masks) is an `omp parallel for` that never calls threaded BLAS (and inside a
// region the OpenMP build of OpenBLAS runs single-threaded by itself). The caller sets the
// thread count of a computation with rr_set_num_threads on its own thread (the daemon gives
// each worker max(1, threads / workers)). The pthread build of OpenBLAS fights OpenMP loops
// (shared/notes/serving.md §6), so the Makefile links the OpenMP build by explicit path and
// rr_blas_check verifies it at start-up. The sgemm wrappers the kernels call are library
// internals (core/blas_impl.h); this header is the public part.
#ifndef RR_CORE_BLAS_H
#define RR_CORE_BLAS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

// RR_OK when the linked OpenBLAS is the OpenMP build (openblas_get_parallel() == 2), else
// RR_EINTERNAL with a message naming the variant found.
rr_status rr_blas_check(rr_error *err);
// ---- OpenBLAS kernel choice ----
// OpenBLAS picks its kernels once, when it is loaded: from OPENBLAS_CORETYPE when that is set,
// else from the CPU model, and Debian's 0.3.21 falls back to slow Prescott kernels on models it
// does not know (4.4x slower sgemm on AVX-512 machines). The library changes nothing at load
// time; these functions tell, and a program may act on them at the top of its main.
//
// The loaded core ("Haswell", "SkylakeX", "Prescott", ...; static storage).
const char *rr_blas_core(void);
// The core this CPU deserves from its features (cpuid, and XCR0 for the OS-enabled register
// state): "SkylakeX", "Haswell", "Sandybridge", or NULL for none of those.
const char *rr_blas_best_core(void);
// A core's rank by vector width: 3 (AVX-512), 2 (AVX2 + FMA), 1 (AVX), 0 (older or unknown).
int rr_blas_core_rank(const char *name);
// True when the loaded kernels rank at least as high as the best core (or no best is known).
bool rr_blas_core_fits_cpu(void);
// The decision, as a pure function: the OPENBLAS_CORETYPE a program should restart with, given
// the variable's current value `env` (NULL: unset), the loaded core and the best core; NULL
// when nothing should change: a value the user set (non-empty) is always respected.
const char *rr_blas_core_to_request(const char *env, const char *loaded, const char *best);
// For a program's main, first thing, while it has one thread: when rr_blas_core_to_request
// names a core, sets OPENBLAS_CORETYPE and re-executes /proc/self/exe with argv (so it does
// not return). Returns having changed nothing when no restart is needed or the exec failed.
// Every binary the project ships calls it; the library itself never does.
void rr_blas_use_fitting_kernels(char **argv);
// openblas_get_config(): build options and the kernel core chosen at run time. Static storage.
const char *rr_blas_config(void);

// Threads used by librelureg computations started from the calling thread (OpenMP loops and
// BLAS alike). n < 1 means 1.
void rr_set_num_threads(int n);
int rr_get_num_threads(void);

#ifdef __cplusplus
}
#endif

#endif
