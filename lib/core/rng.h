// Counter-based random streams: every random draw in librelureg comes from a stream keyed by
// (seed, stream index) — the stream being the sample's index in the batch — so results never
// depend on how samples are spread over threads or chunks (api.md, "Determinism").
// Thread rules: an rr_rng is plain caller state; no globals.
#ifndef RR_CORE_RNG_H
#define RR_CORE_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_rng {
    uint64_t state;
} rr_rng;

// A stream for (seed, stream); different pairs give independent-looking streams.
void rr_rng_init(rr_rng *r, uint64_t seed, uint64_t stream);
// splitmix64 output.
uint64_t rr_rng_next(rr_rng *r);
// Uniform in [0, 1) with 53 random bits.
double rr_rng_uniform(rr_rng *r);
// Standard normal (Box-Muller, one value per call).
double rr_rng_normal(rr_rng *r);

#ifdef __cplusplus
}
#endif

#endif
