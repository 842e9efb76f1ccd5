"""lib/core/rng.c replayed in Python: the splitmix64 streams keyed by (seed, stream) that every
random draw of librelureg comes from, so that torch transcriptions can use the same draws."""
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class Rng:
    """rr_rng: rr_rng_init(seed, stream), rr_rng_next, rr_rng_uniform."""

    def __init__(self, seed, stream):
        self.state = _mix((seed + GOLDEN) & MASK) ^ _mix(((~stream) & MASK) * 0xD1B54A32D192ED03 & MASK)

    def next(self):
        self.state = (self.state + GOLDEN) & MASK
        return _mix(self.state)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


def restart_seed(seed, r):
    """The seed of restart r (pgd.c, square.c): seed + r * golden, modulo 2^64."""
    return (seed + GOLDEN * r) & MASK
