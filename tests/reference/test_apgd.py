"""APGD-CE and APGD-T of librelureg against a torch float64 transcription of the published
algorithm (AutoAttack autopgd_base.py, APGDAttack.attack_single_run and APGDAttack_targeted),
step by step from the same start point, plus the properties every attack must have.

The transcription follows the published code except where math.md "Attacks" is precise and
says otherwise (and the C code follows math.md): checkpoints are ceil(p_j * steps) (equal to
the code's integer intervals at steps = 100, test_checkpoints), the oscillation test is strict
(the code halves when the count is <= rho * k), and the first step's loss is compared with the
start's (the code reads an unwritten zero, loss_steps[-1]).

Teacher forcing: at step i the reference takes librelureg's iterates up to i (its trace), makes
its own decisions from float64 losses at them (loss increases, the best point, the checkpoint
tests) and predicts iterate i + 1, which must equal the C one; its step size must equal the
C step size (trace_eta). A float32 / float64 loss comparison closer than LOSS_TOL is
ambiguous: that sample is not checked further in the run (either decision is right).

Tolerances: float32 iterates against float64 on the same float32 weights and inputs. linf:
2e-6 absolute on the coordinates whose |gradient| >= 1e-4 x the largest (float32 may round the
sign of the others differently); l2: 2e-6 + 1e-5 x eta absolute (the direction g / ||g|| in
float32). Norm bounds allow eps * (1 + 1e-6)."""
import math
import unittest
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

import gen_core
from attack_common import TMP, draw, logits64, probe, random_net, trained_mlp
from relureg import export

LO, HI = -1.0, 1.0
LINF_TOL = 2e-6
L2_TOL, L2_RTOL = 2e-6, 1e-5
LOSS_TOL = 1e-6  # relative: losses from float32 logits agree to about 1e-7
STEPS = 40  # checkpoint intervals 9, 8, 6, 5, 4, 3, 3, 2: "fewer than 0.75" meets equality at 8 and 4
GRAD_FLOOR = 1e-7  # ||g|| below it is float noise (float64 sees 1e-12 where the math is 0)


# ---- the transcription ----

def checkpoints_spec(steps):
    """math.md: w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), exact fractions."""
    p_prev, p, out = Fraction(0), Fraction(22, 100), []
    while math.ceil(p * steps) <= steps:
        w = math.ceil(p * steps)
        if not out or w > out[-1]:
            out.append(w)
        p_prev, p = p, p + max(p - p_prev - Fraction(3, 100), Fraction(6, 100))
    return out


def checkpoints_code(steps):
    """AutoAttack: k = max(int(0.22 n), 1), then k = max(k - max(int(0.03 n), 1), max(int(0.06 n), 1))."""
    k, decr, kmin = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, c = [], 0
    for i in range(steps):
        c += 1
        if c == k:
            out.append(i + 1)
            c, k = 0, max(k - decr, kmin)
    return out


def dlr_targeted(z, y, t):
    """APGDAttack_targeted.dlr_loss_targeted; math.md's rules for K = 3 and K = 2."""
    u = torch.arange(len(z))
    K = z.shape[1]
    if K == 2:
        return z[u, t] - z[u, y]
    zs, _ = z.sort(dim=1)
    den = zs[:, -1] - zs[:, -3] if K == 3 else zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4])
    return -(z[u, y] - z[u, t]) / (den + 1e-12)


def loss_grad(model, shape, x, y, t):
    """Per-sample loss, its input gradient and the logits at x [n, D], float64."""
    xr = x.double().clone().requires_grad_(True)
    z = model(xr.reshape([len(x)] + list(shape)))
    loss = F.cross_entropy(z, y, reduction="none") if t is None else dlr_targeted(z, y, t)
    g = torch.autograd.grad(loss.sum(), xr)[0]
    return loss.detach(), g, z.detach()


def apgd_run(model, shape, x, y, t, start, eps, norm, steps, follow, follow_eta, report):
    """One run of attack_single_run, float64, on x [n, D] from `start`, teacher-forced by the C
    iterates follow [steps, n, D]. report(i, want, got, g, eta_ref, eta_c, live) checks step i
    on the samples `live` (not ambiguous so far)."""
    n = len(x)

    def normalize(v):
        return v / (v.norm(dim=1, keepdim=True) + 1e-12)

    def proj(v):
        if norm == "linf":
            return torch.clamp(torch.min(torch.max(v, x - eps), x + eps), LO, HI)
        d = v - x
        return torch.clamp(x + normalize(d) * torch.clamp(d.norm(dim=1, keepdim=True), max=eps), LO, HI)

    def close(a, b):
        # Equal float64 losses come from equal float32 points, where C sees equal losses too.
        d = (a - b).abs()
        return (d > 0) & (d <= LOSS_TOL * (1 + torch.max(a.abs(), b.abs())))

    x_adv = start.double().clamp(LO, HI)
    loss, grad, _ = loss_grad(model, shape, x_adv, y, t)
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss.clone()
    prev, last_best = loss.clone(), loss.clone()
    step = torch.full((n, 1), 2.0 * eps, dtype=torch.float64)
    x_old = x_adv.clone()
    ups = torch.zeros(n, dtype=torch.int64)
    reduced = torch.ones(n, dtype=torch.bool)
    live = torch.ones(n, dtype=torch.bool)
    checks, last_w, halvings = checkpoints_spec(steps), 0, 0
    for i in range(steps):
        grad2 = x_adv - x_old
        x_old = x_adv.clone()
        a = 0.75 if i > 0 else 1.0
        if norm == "linf":
            x1 = proj(x_adv + step * grad.sign())
        else:
            x1 = proj(x_adv + step * normalize(grad))
        x1 = proj(x_adv + (x1 - x_adv) * a + grad2 * (1 - a))
        # A gradient that is rounding noise (the K = 3 DLR loss is -1 on a whole region when
        # the target ranks 3rd) has no direction to agree on.
        live &= grad.norm(dim=1) > GRAD_FLOOR
        report(i, x1, follow[i].double(), grad, step[:, 0], follow_eta[i].double(), live.clone())
        x_adv = follow[i].double().clone()
        loss, grad, _ = loss_grad(model, shape, x_adv, y, t)
        live &= ~close(loss, prev) & ~close(loss, loss_best)
        ups += (loss > prev).long()
        prev = loss.clone()
        ind = loss > loss_best
        x_best[ind], grad_best[ind], loss_best[ind] = x_adv[ind], grad[ind], loss[ind]
        if i + 1 in checks:
            k = i + 1 - last_w
            last_w = i + 1
            osc = ups.double() < 0.75 * k
            grew = loss_best - last_best
            live &= ~close(loss_best, last_best)
            stall = ~reduced & (last_best >= loss_best)
            red = osc | stall
            reduced, last_best = red, loss_best.clone()
            ups.zero_()
            step[red] /= 2.0
            x_adv[red], grad[red] = x_best[red], grad_best[red]
            halvings += int((red & live).sum())
    return live, halvings


class Nets:
    cache = {}

    @classmethod
    def get(cls, seed, kind):
        key = (seed, kind)
        if key not in cls.cache:
            if kind == "k2":
                model, shape, K, path = k2_net(seed)
            else:
                model, shape, K, path = random_net(seed, gen_core.cnn if kind == "cnn" else None)
            x = draw(model, shape, 8, seed)
            assert x is not None
            y = logits64(model, x).argmax(1)
            cls.cache[key] = (model, shape, K, path, x, y)
        return cls.cache[key]


def k2_net(seed):
    """A two-class MLP (gen_core's nets have K >= 3 here): the DLR loss is the margin."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 2))
    gen_core.round_to(model.double(), "F32")
    path = f"{TMP}/k2_{seed}.safetensors"
    export(model.float(), [10], path, input_range=[LO, HI])
    return model.double().eval(), [10], 2, path


# MLP K = 6, MLP K = 3 (DLR's K = 3 rule), CNN with max-pool K = 9, CNN with max-pool K = 4,
# and a K = 2 MLP.
NETS = [(23, "any"), (37, "any"), (11, "cnn"), (13, "any"), (5, "k2")]


def start_point(x, eps, norm, seed):
    """A start inside the ball and input_range, float32 values."""
    B, D = x.shape
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(B, D, generator=g) * 2 - 1
    if norm == "linf":
        s = x + 0.9 * eps * t
    else:
        s = x + 0.9 * eps * t / t.norm(dim=1, keepdim=True)
    return s.clamp(LO, HI).float().double()


class TestStepwise(unittest.TestCase):
    def run_case(self, seed, kind, name, norm, eps, stats):
        model, shape, K, path, x, y = Nets.get(seed, kind)
        B, D = len(x), x[0].numel()
        xf = x.reshape(B, D)
        n_t = min(9, K - 1) if name == "apgd_t" else 1
        start = start_point(xf, eps, norm, seed)
        out = probe(path, x, y, {"attack": name, "norm": norm, "epsilon": eps, "steps": STEPS,
                                 "trace": n_t * STEPS}, start=start)
        tr, te = out["trace"], out["trace_eta"]
        order = torch.argsort(logits64(model, x), dim=1, descending=True)
        broken = torch.zeros(B, dtype=torch.bool)
        amb = torch.zeros(B, dtype=torch.bool)
        tag = f"{name} {norm} net {seed}/{kind}"

        def report(i, want, got, g, eta_ref, eta_c, live):
            lv = live.nonzero().reshape(-1)
            if len(lv) == 0:
                return
            self.assertTrue(torch.equal(eta_c[lv], eta_ref[lv].float().double()),
                            f"{tag} step {i}: step sizes {eta_c[lv].tolist()} vs {eta_ref[lv].tolist()}")
            err = (got[lv] - want[lv]).abs()
            if norm == "linf":
                m = g[lv].abs() >= 1e-4 * g[lv].abs().amax(dim=1, keepdim=True)
                e = float(err[m].max()) if m.any() else 0.0
                self.assertLess(e, LINF_TOL, f"{tag} step {i}")
            else:
                e = float(err.max())
                self.assertLess(e, L2_TOL + L2_RTOL * float(eta_ref[lv].max()), f"{tag} step {i}")
            stats["max_err_" + norm] = max(stats.get("max_err_" + norm, 0.0), e)
            stats["steps"] = stats.get("steps", 0) + len(lv)

        for tg in range(n_t):
            rows = slice(tg * STEPS, (tg + 1) * STEPS)
            active = te[rows][0] > 0
            # A run attacks exactly the samples no earlier run broke (float64 predictions at the
            # C start and iterates; where a logit margin was below 1e-5 C's call stands).
            ok = ~amb
            self.assertTrue(torch.equal(active[ok], ~broken[ok]), f"{tag} run {tg}: {active} vs {~broken}")
            broken[amb] = ~active[amb]
            idx = active.nonzero().reshape(-1)
            if len(idx) == 0:
                continue
            t = order[idx, tg + 1] if name == "apgd_t" else None
            live, halv = apgd_run(model, shape, xf[idx], y[idx], t, start[idx], eps, norm, STEPS,
                                  tr[rows][:, idx], te[rows][:, idx], report)
            stats["halvings"] = stats.get("halvings", 0) + halv
            stats["live"] = stats.get("live", 0) + int(live.sum())
            stats["runs"] = stats.get("runs", 0) + len(idx)
            pts = torch.cat([start[idx].unsqueeze(0), tr[rows][:, idx].double()], 0)
            z = logits64(model, pts.reshape([-1] + list(shape))).reshape(STEPS + 1, len(idx), K)
            top2 = z.topk(2, dim=2).values
            amb[idx] |= ((top2[..., 0] - top2[..., 1]) < 1e-5).any(0)
            broken[idx] |= (z.argmax(2) != y[idx]).any(0)
        # The answer: success exactly for the samples some iterate broke.
        self.assertTrue(torch.equal(out["success"].bool()[~amb], broken[~amb]), tag)
        self.assertTrue(bool((out["iterations"] == STEPS * (te > 0).reshape(n_t, STEPS, B)[:, 0].sum(0)).all()))

    def test_steps_equal_the_transcription(self):
        stats = {}
        for seed, kind in NETS:
            for name in ("apgd_ce", "apgd_t"):
                for norm, eps in (("linf", 0.06), ("l2", 0.4)):
                    self.run_case(seed, kind, name, norm, eps, stats)
        print(f"\n  apgd stepwise: {stats}")
        # Enough was checked for the comparison to mean something: most sample-steps (an l2
        # iterate on the sphere with a small step sees losses within LOSS_TOL), many halvings.
        self.assertGreater(stats["steps"], 0.6 * STEPS * stats["runs"])
        self.assertGreater(stats["halvings"], 300)

    def test_checkpoints(self):
        self.assertEqual(checkpoints_spec(100), [22, 41, 57, 70, 80, 87, 93, 99])
        self.assertEqual(checkpoints_spec(100), checkpoints_code(100))
        # Where they differ (small step counts), math.md's rule is the one implemented.
        self.assertEqual(checkpoints_spec(10), [3, 5, 6, 7, 8, 9, 10])
        self.assertNotEqual(checkpoints_spec(10), checkpoints_code(10))

    def test_halvings_happen_only_at_the_checkpoints(self):
        model, shape, K, path, x, y = Nets.get(11, "cnn")
        for steps in (10, 100):
            out = probe(path, x, y, {"attack": "apgd_ce", "epsilon": 0.05, "steps": steps,
                                     "trace": steps, "seed": 3})
            te = out["trace_eta"].double()
            self.assertTrue(torch.equal(te[0], torch.full_like(te[0], float(torch.tensor(0.1).float()))))
            ratio = te[1:] / te[:-1]
            changed = sorted({i + 1 for i in (ratio != 1).any(1).nonzero().reshape(-1).tolist()})
            self.assertTrue(set(changed) <= set(checkpoints_spec(steps)), f"{steps}: {changed}")
            self.assertTrue(bool(((ratio == 1) | (ratio == 0.5)).all()))


class TestProperties(unittest.TestCase):
    def test_bounds_range_and_reported_truth(self):
        for seed, kind in NETS[:3]:
            model, shape, K, path, x, y = Nets.get(seed, kind)
            B = len(x)
            for name in ("apgd_ce", "apgd_t"):
                for norm, eps in (("linf", 0.004), ("linf", 0.3), ("l2", 0.01), ("l2", 2.0)):
                    out = probe(path, x, y, {"attack": name, "norm": norm, "epsilon": eps,
                                             "steps": 12, "seed": seed, "restarts": 2})
                    bound = out["linf"] if norm == "linf" else out["l2"]
                    self.assertLessEqual(float(bound.max()), eps * (1 + 1e-6), f"{name} {norm} {eps}")
                    xa = out["adversarial"].double().reshape(x.shape)
                    d = (xa - x).reshape(B, -1)
                    nd = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
                    self.assertLessEqual(float(nd.max()), eps * (1 + 1e-6))
                    self.assertGreaterEqual(float(xa.min()), LO)
                    self.assertLessEqual(float(xa.max()), HI)
                    pred = logits64(model, xa).argmax(1)
                    self.assertTrue(torch.equal(out["predictions"], pred))
                    self.assertTrue(torch.equal(out["success"].bool(), pred != y))

    def test_calls_counted(self):
        model, shape, K, path, x, y = Nets.get(23, "any")
        out = probe(path, x, y, {"attack": "apgd_ce", "epsilon": 0.01, "steps": 7})
        # One clean forward, the start's gradient and one per step, the final forward.
        self.assertEqual(out["counts"].tolist(), [8, 10])

    def test_deterministic_across_threads_and_batches(self):
        model, shape, K, path, x, y = Nets.get(13, "any")  # a CNN with max-pool, K = 4
        for name in ("apgd_ce", "apgd_t"):
            o = {"attack": name, "epsilon": 0.05, "steps": 8, "seed": 4}
            a = probe(path, x, y, dict(o, threads=1))
            b = probe(path, x, y, dict(o, threads=2))
            self.assertTrue(torch.equal(a["adversarial"], b["adversarial"]), name)
            self.assertTrue(torch.equal(a["success"], b["success"]), name)
            # A sample's outcome does not depend on which others are attacked alongside it (its
            # random stream is its own): mislabel samples 0..2, so that they are skipped.
            y2 = y.clone()
            y2[:3] = (y[:3] + 1) % K
            c = probe(path, x, y2, dict(o, threads=2))
            self.assertTrue(torch.equal(c["adversarial"][3:], a["adversarial"][3:]), name)
            self.assertTrue(torch.equal(c["success"][3:], a["success"][3:]))
            self.assertTrue(torch.equal(c["adversarial"][:3], x[:3].reshape(3, -1).float()))
            # A subset run with the samples' original indices (what /robustness passes).
            e = probe(path, x[3:6], y[3:6], dict(o, sample_index=[3, 4, 5]))
            self.assertTrue(torch.equal(e["adversarial"], a["adversarial"][3:6]), name)
            d = probe(path, x, y, dict(o, seed=5))
            self.assertFalse(torch.equal(a["adversarial"], d["adversarial"]), "the seed matters")

    def test_apgd_ce_breaks_at_least_what_pgd_breaks(self):
        model, path, xt, yt = trained_mlp()
        pred = logits64(model, xt).argmax(1)
        idx = torch.nonzero(pred == yt).reshape(-1)[:500]
        x, y = xt[idx], yt[idx]
        B = len(x)
        for norm, eps in (("linf", 0.03), ("linf", 0.06), ("l2", 0.5)):
            pgd = probe(path, x, y, {"attack": "pgd", "norm": norm, "epsilon": eps, "steps": 40, "seed": 1})
            apgd = probe(path, x, y, {"attack": "apgd_ce", "norm": norm, "epsilon": eps, "seed": 1})
            n_pgd, n_apgd = int(pgd["success"].sum()), int(apgd["success"].sum())
            print(f"\n  trained MLP {norm} eps {eps}: PGD-40 breaks {n_pgd}/{B}, APGD-CE {n_apgd}/{B}")
            self.assertGreaterEqual(n_apgd, n_pgd - 0.01 * B)
            self.assertGreater(n_pgd, 0.1 * B)


if __name__ == "__main__":
    unittest.main()
