// splitmix64 streams keyed by (seed, stream) (see rng.h).
#include "core/rng.h"

#include <math.h>

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rr_rng_init(rr_rng *r, uint64_t seed, uint64_t stream)
{
    r->state = mix(seed + 0x9e3779b97f4a7c15ull) ^ mix(~stream * 0xd1b54a32d192ed03ull);
}

uint64_t rr_rng_next(rr_rng *r)
{
    return mix(r->state += 0x9e3779b97f4a7c15ull);
}

double rr_rng_uniform(rr_rng *r)
{
    return (double)(rr_rng_next(r) >> 11) * 0x1.0p-53;
}

double rr_rng_normal(rr_rng *r)
{
    double u1 = rr_rng_uniform(r), u2 = rr_rng_uniform(r);
    if (u1 <= 0.0)
        u1 = 0x1.0p-53; // log(0) guard
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}
