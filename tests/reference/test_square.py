"""Square Attack of librelureg against a torch float64 transcription of AutoAttack's
SquareAttack (per-sample draws replayed from lib/core/rng.c by rng_ref.py), and its properties.

Tolerances: the transcription computes in float64 and holds the iterate in float32 as the
library does (`store`), so every coordinate of every iteration's best point agrees to 2e-6
absolute (inputs in [-1, 1]; in practice to the last bit); the accept / stop decisions and
query counts must be identical. Norm bounds allow eps * (1 + 1e-6).
"""
import math
import unittest

import torch

import gen_core
from attack_common import logits64, probe, random_net, draw
from rng_ref import Rng, restart_seed

LO, HI = -1.0, 1.0
ATOL = 2e-6
# Margins this close (relative to max(1, |margin|)) are beyond float32 logits to order.
TIE = 1e-6


def store(v, x):
    """The float32 the library stores for v: rounded to nearest, then one ulp back toward x when
    that moved it away from x (square.c keeps ||x' - x|| within eps that way). The computation
    stays float64; only the iterate is held in float32, as in the library, so that the l2
    budget sqrt(eps^2 - ||delta||^2) sees the same ||delta|| on both sides (it amplifies a
    relative difference d of that norm to about sqrt(2 d) eps)."""
    f = v.float()
    x32 = x.float()
    back = (f.double() - x).abs() > (v - x).abs()
    f = torch.where(back, torch.nextafter(f, x32), f)
    return f.double()


def p_selection(it, p_init):
    """AutoAttack's schedule, resc_schedule=False."""
    if 10 < it <= 50:
        return p_init / 2
    if 50 < it <= 200:
        return p_init / 4
    if 200 < it <= 500:
        return p_init / 8
    if 500 < it <= 1000:
        return p_init / 16
    if 1000 < it <= 2000:
        return p_init / 32
    if 2000 < it <= 4000:
        return p_init / 64
    if 4000 < it <= 6000:
        return p_init / 128
    if 6000 < it <= 8000:
        return p_init / 256
    if 8000 < it:
        return p_init / 512
    return p_init


def eta_rectangles(x, y):
    delta = torch.zeros([x, y], dtype=torch.float64)
    x_c, y_c = x // 2 + 1, y // 2 + 1
    counter2 = [x_c - 1, y_c - 1]
    for counter in range(0, max(x_c, y_c)):
        delta[max(counter2[0], 0):min(counter2[0] + (2 * counter + 1), x),
              max(0, counter2[1]):min(counter2[1] + (2 * counter + 1), y)] += 1.0 / (counter + 1) ** 2
        counter2[0] -= 1
        counter2[1] -= 1
    n = (delta ** 2).sum().sqrt()
    return delta / n if n > 0 else delta


def eta(s, rng):
    delta = torch.zeros([s, s], dtype=torch.float64)
    delta[:s // 2] = eta_rectangles(s // 2, s)
    delta[s // 2:] = -1.0 * eta_rectangles(s - s // 2, s)
    delta /= (delta ** 2).sum().sqrt()
    if rng.uniform() > 0.5:
        delta = delta.t()
    return delta


def sign(rng):
    return float(torch.sign(torch.tensor(2 * rng.uniform() - 1)))


def pos(rng, n):
    return int(rng.uniform() * n)


class Square:
    """One sample's geometry: [C, H, W], or [d] as [1, 1, d] with squares as runs of s^2."""

    def __init__(self, shape, norm, eps, p_init):
        self.flat = len(shape) == 1
        self.D = math.prod(shape)
        self.C, self.H, self.W = (1, 1, self.D) if self.flat else shape
        self.norm, self.eps, self.p_init = norm, eps, p_init

    def view(self, v):
        return v.reshape(self.D) if self.flat else v.reshape(self.C, self.H, self.W)

    def win(self, vh, vw, s):
        """Index of a square (all channels)."""
        if self.flat:
            return slice(vw, vw + s * s)
        return (slice(None), slice(vh, vh + s), slice(vw, vw + s))

    def side(self, it):
        p = p_selection(it, self.p_init)
        s = int(round(math.sqrt(p * self.D / self.C)))
        if self.norm == "linf":
            s = max(s, 1)
        else:
            s = max(s, 3)
            if s % 2 == 0:
                s += 1
        cap = math.isqrt(self.D) if self.flat else min(self.H, self.W)
        return min(s, cap)

    def positions(self, rng, s):
        if self.flat:
            return 0, pos(rng, self.D - s * s)
        return pos(rng, self.H - s), pos(rng, self.W - s)

    def pattern(self, e, signs):
        """eta times a sign per channel, shaped like a window."""
        if self.flat:
            return e.reshape(-1) * signs[0]
        return e[None] * torch.tensor(signs, dtype=torch.float64)[:, None, None]

    def start(self, x, rng):
        eps = self.eps
        if self.norm == "linf":
            signs = torch.tensor([[sign(rng) for _ in range(self.W)] for _ in range(self.C)],
                                 dtype=torch.float64)
            return store((x + eps * self.view(signs[:, None, :].expand(self.C, self.H, self.W))).clamp(LO, HI), x)
        delta = torch.zeros_like(x)
        if self.flat:
            s = max(1, math.isqrt(self.D) // 5)
            S = s * s
            nr = min(25, self.D // S)
            sp = (self.D - nr * S) // 2
            for k in range(nr):
                e = eta(s, rng)
                delta[sp + k * S:sp + (k + 1) * S] += self.pattern(e, [sign(rng)])
        else:
            s = max(1, self.H // 5)
            sp = (self.H - s * 5) // 2
            vh = sp
            for _ in range(self.H // s):
                vw = sp
                for _ in range(self.W // s):
                    e = eta(s, rng)
                    signs = [sign(rng) for _ in range(self.C)]
                    if vh >= 0 and vw >= 0 and vh + s <= self.H and vw + s <= self.W:
                        delta[:, vh:vh + s, vw:vw + s] += self.pattern(e, signs)
                    vw += s
                vh += s
        return store((x + delta / (delta.norm() + 1e-12) * eps).clamp(LO, HI), x)

    def step(self, x, xb, rng, it):
        eps, s = self.eps, self.side(it)
        if self.norm == "linf":
            vh, vw = self.positions(rng, s)
            new = torch.zeros_like(x)
            new[self.win(vh, vw, s)] = self.pattern(torch.ones(s, s, dtype=torch.float64),
                                                    [2.0 * eps * sign(rng) for _ in range(self.C)])
            xn = torch.min(torch.max(xb + new, x - eps), x + eps)
            return store(xn.clamp(LO, HI), x)
        delta = xb - x
        vh, vw = self.positions(rng, s)
        vh2, vw2 = self.positions(rng, s)
        w1, w2 = self.win(vh, vw, s), self.win(vh2, vw2, s)
        if self.flat:
            nw1 = delta[w1].norm()
        else:
            nw1 = (delta[w1] ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
        mask = torch.zeros_like(x)
        mask[w1] = 1.0
        mask[w2] = 1.0
        ni = delta.norm()
        nws = (delta * mask).norm()
        e = eta(s, rng)
        new = self.pattern(e, [sign(rng) for _ in range(self.C)])
        new = new + delta[w1] / (1e-12 + nw1)
        if self.flat:
            nn_ = (new ** 2).sum().sqrt()
        else:
            nn_ = (new ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
        new = new / (1e-12 + nn_) * torch.sqrt(torch.clamp(eps ** 2 - ni ** 2, min=0) / self.C + nws ** 2)
        delta[w2] = 0.0
        delta[w1] = new
        return store((x + delta / (delta.norm() + 1e-12) * eps).clamp(LO, HI), x)


def margin(z, y):
    zc = z.clone()
    u = torch.arange(len(z))
    corr = zc[u, y].clone()
    zc[u, y] = -float("inf")
    return corr - zc.max(dim=-1)[0]


def square_ref(model, shape, x, y, norm, eps, queries, p_init, seed, c_trace=None):
    """AutoAttack's SquareAttack.perturb (one restart), draws per sample from (seed, b).

    An acceptance test whose two margins are within float32 resolution of each other (the
    library computes them from float32 logits, this transcription in float64) is too close to
    call: with `c_trace` it follows the library's decision there (read off its trace) and
    counts it in `ties`, so one rounding-sized difference does not send the two down
    different random paths."""
    B = len(x)
    g = Square(shape, norm, eps, p_init)
    xs = [g.view(x[b]) for b in range(B)]
    net = lambda v: logits64(model, torch.stack([t.reshape(shape) for t in v]))  # noqa: E731
    attacked = (net(xs).argmax(1) == y).tolist()
    rngs = [Rng(restart_seed(seed, 0), b) for b in range(B)]
    xb = [t.clone() for t in xs]
    iters = [0] * B
    mmin = [0.0] * B
    idx = [b for b in range(B) if attacked[b]]
    for b in idx:
        xb[b] = g.start(xs[b], rngs[b])
        iters[b] = 1
    if idx:
        m = margin(net([xb[b] for b in idx]), y[idx])
        for j, b in enumerate(idx):
            mmin[b] = float(m[j])
    trace, calls, ties = [], 2, 0
    for it in range(queries):
        act = [b for b in idx if mmin[b] > 0]
        if not act:
            break
        cand = [g.step(xs[b], xb[b], rngs[b], it) for b in act]
        m = margin(net(cand), y[act])
        calls += 1
        for j, b in enumerate(act):
            mj = float(m[j])
            take = mj < mmin[b] or mj <= 0
            # (Exact float64 equality is no tie: the candidate changed nothing the net sees.)
            close = (0 < abs(mj - mmin[b]) <= TIE * max(1.0, abs(mmin[b]))
                     or 0 < abs(mj) <= TIE)
            if close and c_trace is not None:
                take = bool((c_trace[it][b].double() - cand[j].reshape(-1)).abs().max() <= ATOL)
                ties += 1
            if take:
                mmin[b], xb[b] = mj, cand[j]
            iters[b] += 1
        trace.append(torch.stack([t.reshape(-1) for t in xb]))
    while len(trace) < queries:
        trace.append(torch.stack([t.reshape(-1) for t in xb]))
    adv = torch.stack([(xb[b] if attacked[b] and mmin[b] <= 0 else xs[b]).reshape(-1) for b in range(B)])
    square_ref.ties = ties
    return adv, torch.tensor(iters), torch.stack(trace), calls


def find_net(kind, ndim, start):
    """The first random net of gen_core's `kind` from seed `start` whose input has ndim dims."""
    for seed in range(start, start + 200):
        model, shape, K, path = random_net(seed, kind)
        if len(shape) == ndim:
            x = draw(model, shape, 8, seed)
            if x is not None:
                return model, shape, K, path, x
    raise AssertionError("no such net")


class Nets:
    cache = {}

    @classmethod
    def get(cls, name):
        if name not in cls.cache:
            kind, ndim, start = {"mlp1d": (gen_core.mlp, 1, 40), "cnn": (gen_core.cnn, 3, 60),
                                 "mlp3d": (gen_core.mlp, 3, 80)}[name]
            cls.cache[name] = find_net(kind, ndim, start)
        return cls.cache[name]


class TestSquareTranscription(unittest.TestCase):
    def check(self, name, norm, eps, queries, p_init=0.8, seed=3):
        model, shape, K, path, x = Nets.get(name)
        y = logits64(model, x).argmax(1)
        y[0] = (y[0] + 1) % K  # one sample misclassified at x: not attacked
        opts = {"attack": "square", "norm": norm, "epsilon": eps, "queries": queries,
                "p_init": p_init, "seed": seed, "trace": queries}
        out = probe(path, x, y, opts)
        B = len(x)
        adv, iters, trace, calls = square_ref(model, shape, x.reshape(B, -1), y, norm, eps, queries,
                                              p_init, seed, out["trace"])
        # Too-close-to-call acceptances are rare; every other decision is the transcription's.
        self.assertLessEqual(square_ref.ties, max(2, queries * B // 20), "too many near-ties")
        where = f"{name} {norm} eps={eps} shape={shape}"
        self.assertEqual(int(out["counts"][0]), 0, "square called the gradient")
        self.assertEqual(int(out["counts"][1]), calls + 1, where)  # + finalize's forward
        self.assertEqual(out["iterations"].tolist(), iters.tolist(), where)
        err = (out["trace"].double() - trace).abs().amax(dim=(1, 2))
        bad = torch.nonzero(err > ATOL).reshape(-1)
        self.assertEqual(bad.numel(), 0, f"{where}: first iteration off: {bad[:1].tolist()}, "
                                         f"error {float(err.max()):.3g}")
        self.assertLess(float((out["adversarial"].double() - adv).abs().max()), ATOL, where)
        self.assertEqual(int(iters[0]), 0)
        return out, iters

    def test_linf_vector_and_image_inputs(self):
        broken = 0
        for name, eps in (("mlp1d", 0.15), ("cnn", 0.1), ("mlp3d", 0.1)):
            out, iters = self.check(name, "linf", eps, 120)
            broken += int(out["success"][1:].sum())
        self.assertGreater(broken, 0, "no sample was broken: the comparison saw no stopping")

    def test_l2_vector_and_image_inputs(self):
        for name, eps in (("mlp1d", 0.6), ("cnn", 0.8), ("mlp3d", 0.6)):
            self.check(name, "l2", eps, 120, p_init=0.5)

    def test_schedule_past_200_iterations(self):
        # Unbreakable budget: every attacked sample runs all iterations across three p halvings.
        out, iters = self.check("cnn", "linf", 0.002, 230)
        self.assertEqual(sorted(set(iters.tolist())), [0, 231])


def big_batch(shape, B=96, seed=0):
    """B inputs in [-1, 1] (float32 values): with D >= 176 enough work per step for the
    attacks' OpenMP loops to run in parallel (PAR_MIN in square.c and fab.c)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand([B] + list(shape), generator=g) * 2 - 1).float().double()


class TestSquareProperties(unittest.TestCase):
    def test_bounds_truth_and_no_gradient(self):
        for name in ("mlp1d", "cnn"):
            model, shape, K, path, x = Nets.get(name)
            y = logits64(model, x).argmax(1)
            for norm, eps in (("linf", 0.03), ("linf", 0.4), ("l2", 0.2), ("l2", 3.0)):
                out = probe(path, x, y, {"attack": "square", "norm": norm, "epsilon": eps,
                                         "queries": 300, "seed": 1})
                d = out["adversarial"].double() - x.reshape(len(x), -1)
                n = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
                self.assertLessEqual(float(n.max()), eps * (1 + 1e-6), f"{name} {norm} {eps}")
                self.assertGreaterEqual(float(out["adversarial"].min()), LO)
                self.assertLessEqual(float(out["adversarial"].max()), HI)
                pred = logits64(model, out["adversarial"].double().reshape(x.shape)).argmax(1)
                self.assertTrue(torch.equal(out["predictions"], pred))
                self.assertTrue(torch.equal(out["success"].bool(), pred != y))
                self.assertEqual(int(out["counts"][0]), 0)
                # Failed samples return x; broken ones stopped early.
                failed = ~out["success"].bool()
                self.assertTrue(torch.equal(out["adversarial"][failed], x.reshape(len(x), -1)[failed].float()))
                self.assertTrue(bool((out["iterations"][~failed] <= 301).all()))

    def test_targeted_reaches_its_target_or_says_so(self):
        model, shape, K, path, x = Nets.get("cnn")
        y = logits64(model, x).argmax(1)
        tgt = (y + 1) % K
        out = probe(path, x, y, {"attack": "square", "epsilon": 0.3, "queries": 200, "seed": 2},
                    target=tgt)
        pred = logits64(model, out["adversarial"].double().reshape(x.shape)).argmax(1)
        self.assertTrue(torch.equal(out["success"].bool(), pred == tgt))
        self.assertLessEqual(float((out["adversarial"].double() - x.reshape(len(x), -1)).abs().max()),
                             0.3 * (1 + 1e-6))
        self.assertEqual(int(out["counts"][0]), 0)

    def test_same_seed_same_bits_at_one_and_two_threads(self):
        model, shape, K, path, x = Nets.get("cnn")
        x = big_batch(shape)
        y = logits64(model, x).argmax(1)
        for norm, eps in (("linf", 0.02), ("l2", 0.2)):
            o = {"attack": "square", "norm": norm, "epsilon": eps, "queries": 200, "seed": 7}
            a = probe(path, x, y, dict(o, threads=1))
            b = probe(path, x, y, dict(o, threads=2))
            self.assertTrue(torch.equal(a["adversarial"], b["adversarial"]))
            self.assertTrue(torch.equal(a["iterations"], b["iterations"]))
            # A sample's outcome does not depend on the other samples of the batch.
            x2, y2 = x.clone(), y.clone()
            x2[0], y2[0] = x[1], y[1]
            c = probe(path, x2, y2, dict(o, threads=2))
            self.assertTrue(torch.equal(c["adversarial"][2:], a["adversarial"][2:]))


if __name__ == "__main__":
    unittest.main()
