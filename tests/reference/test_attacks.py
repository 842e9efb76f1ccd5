"""Attacks of librelureg against straightforward torch implementations (float64 autograd on
the same float32 weights), step by step, plus the properties every attack must have.

Tolerances: iterates are float32, so coordinates agree to 2e-6 absolute (inputs are in
[-1, 1] or [0, 1]); sign steps leave out coordinates whose |gradient| is below 1e-4 x the
largest |gradient| (float64), where float32 and float64 may disagree on the sign. DeepFool
steps agree to 1e-4 relative of ||r||; steps whose two best candidate distances are within
1e-4 relative of each other are skipped (either choice is right). Norm bounds allow
eps * (1 + 1e-6)."""
import math
import unittest

import torch
import torch.nn.functional as F

from attack_common import ce_grad64, draw, logits64, probe, random_net, trained_mlp

LO, HI = -1.0, 1.0


def clip(x):
    return x.clamp(LO, HI)


def sign_mask(g):
    """Coordinates whose gradient is large enough for its float32 sign to be trusted."""
    return g.abs() >= 1e-4 * g.abs().amax(dim=1, keepdim=True)


def step_ref(model, x_t, x0, y, norm, eps, alpha, targeted=False, tgt=None):
    """One CleverHans / torchattacks step from x_t, float64."""
    cls = tgt if targeted else y
    g = ce_grad64(model, x_t, cls).reshape(len(x_t), -1)
    s = -1.0 if targeted else 1.0
    flat, f0 = x_t.reshape(len(x_t), -1).double(), x0.reshape(len(x0), -1).double()
    if norm == "linf":
        nx = clip(flat + s * alpha * g.sign())
        nx = torch.max(torch.min(nx, f0 + eps), f0 - eps)
        nx = clip(nx)
    else:
        nx = flat + s * alpha * g / (g.norm(dim=1, keepdim=True) + 1e-10)
        d = nx - f0
        n = d.norm(dim=1, keepdim=True)
        nx = f0 + d * torch.clamp(eps / n, max=1.0)
        nx = clip(nx)
    return nx, g


class Setup:
    nets = {}

    @classmethod
    def net(cls, seed, kind=None):
        if seed not in cls.nets:
            model, shape, K, path = random_net(seed, kind)
            x = draw(model, shape, 8, seed)
            assert x is not None
            y = logits64(model, x).argmax(1)
            cls.nets[seed] = (model, shape, K, path, x, y)
        return cls.nets[seed]


SEEDS = [11, 12, 13, 14]


class TestStepwise(unittest.TestCase):
    def check_step(self, got, want, g, norm, alpha):
        got = got.reshape(len(got), -1).double()
        if norm == "linf":
            m = sign_mask(g)
            self.assertLess(float((got - want).abs()[m].max()), 2e-6)
            # The excluded coordinates still moved by at most alpha.
        else:
            self.assertLess(float((got - want).abs().max()), 2e-6 + 1e-4 * alpha)

    def test_fgsm(self):
        for seed in SEEDS:
            model, shape, K, path, x, y = Setup.net(seed)
            for norm, eps in (("linf", 0.1), ("l2", 0.5)):
                out = probe(path, x, y, {"attack": "fgsm", "norm": norm, "epsilon": eps})
                want, g = step_ref(model, x, x, y, norm, eps, eps)
                self.check_step(out["adversarial"], want, g, norm, eps)
                self.assertTrue(bool((out["iterations"] == 1).all()))

    def test_pgd_steps_from_the_c_iterate(self):
        steps = 6
        for seed in SEEDS:
            model, shape, K, path, x, y = Setup.net(seed)
            B, D = len(x), x[0].numel()
            for norm, eps, alpha in (("linf", 0.1, 0.03), ("l2", 0.8, 0.3)):
                gen = torch.Generator().manual_seed(seed)
                start = clip(x.reshape(B, D) + (torch.rand(B, D, generator=gen) * 2 - 1) * eps * 0.9)
                if norm == "l2":
                    d = start - x.reshape(B, D)
                    start = x.reshape(B, D) + d * (0.9 * eps / d.norm(dim=1, keepdim=True))
                start = start.float().double()
                opts = {"attack": "pgd", "norm": norm, "epsilon": eps, "step_size": alpha,
                        "steps": steps, "trace": steps}
                out = probe(path, x, y, opts, start=start)
                prev = start
                for t in range(steps):
                    want, g = step_ref(model, prev.reshape(x.shape), x, y, norm, eps, alpha)
                    self.check_step(out["trace"][t], want, g, norm, alpha)
                    prev = out["trace"][t].double()
                self.assertTrue(torch.equal(out["trace"][steps - 1], out["adversarial"]))

    def test_pgd_targeted_steps(self):
        for seed in SEEDS[:2]:
            model, shape, K, path, x, y = Setup.net(seed)
            B, D = len(x), x[0].numel()
            tgt = (y + 1) % K
            opts = {"attack": "pgd", "norm": "linf", "epsilon": 0.2, "step_size": 0.05,
                    "steps": 4, "trace": 4, "random_start": False}
            out = probe(path, x, y, opts, target=tgt)
            prev = x.reshape(B, D)
            for t in range(4):
                want, g = step_ref(model, prev.reshape(x.shape), x, y, "linf", 0.2, 0.05, True, tgt)
                self.check_step(out["trace"][t], want, g, "linf", 0.05)
                prev = out["trace"][t].double()
            z = logits64(model, out["adversarial"].double().reshape(x.shape))
            self.assertTrue(torch.equal(out["success"].bool(), z.argmax(1) == tgt))

    def test_bim_first_step_is_from_the_input(self):
        for seed in SEEDS:
            model, shape, K, path, x, y = Setup.net(seed)
            out = probe(path, x, y, {"attack": "bim", "epsilon": 0.1, "step_size": 0.02,
                                     "steps": 3, "trace": 3})
            want, g = step_ref(model, x, x, y, "linf", 0.1, 0.02)
            self.check_step(out["trace"][0], want, g, "linf", 0.02)

    def test_restarts_keep_the_worst_case(self):
        for seed in SEEDS:
            model, shape, K, path, x, y = Setup.net(seed)
            o1 = probe(path, x, y, {"attack": "pgd", "epsilon": 0.08, "steps": 10, "seed": 5})
            o3 = probe(path, x, y, {"attack": "pgd", "epsilon": 0.08, "steps": 10, "seed": 5,
                                    "restarts": 3})
            # Restart 0 is the single run; a kept success is never lost.
            self.assertTrue(bool((o3["success"] >= o1["success"]).all()))
            same = o1["success"].bool()
            self.assertTrue(torch.equal(o3["adversarial"][same], o1["adversarial"][same]))


def deepfool_step(model, shape, x0, rtot, cand, norm, overshoot):
    """One LTS4 step (Foolbox's LinfDeepFool for linf) from r_tot (flat), float64; returns
    the new r_tot and whether the choice of class was clear."""
    xt = clip(x0 + (1 + overshoot) * rtot.float().double()).float().double()
    xr = xt.clone().requires_grad_(True)
    z = model(xr.reshape([1] + list(shape)))[0]
    grads = [torch.autograd.grad(z[k], xr, retain_graph=True)[0].reshape(-1) for k in cand]
    c = cand[0]
    perts, ws = [], []
    for q in range(1, len(cand)):
        w = grads[q] - grads[0]
        f = float(z[cand[q]] - z[c])
        nw = float(w.abs().sum()) if norm == "linf" else float(w.norm())
        perts.append(abs(f) / nw if nw > 0 else math.inf)
        ws.append(w)
    order = sorted(range(len(perts)), key=lambda i: perts[i])
    clear = len(order) < 2 or perts[order[1]] - perts[order[0]] > 1e-4 * perts[order[0]]
    w, pert = ws[order[0]], perts[order[0]]
    if norm == "linf":
        r = (pert + 1e-4) * w.sign()
    else:
        r = (pert + 1e-4) * w / w.norm()
    return rtot + r, clear, w


class TestDeepFool(unittest.TestCase):
    def test_steps_equal_the_lts4_transcription(self):
        checked = 0
        for seed in SEEDS:
            model, shape, K, path, x, y = Setup.net(seed)
            B, D = len(x), x[0].numel()
            for norm in ("l2", "linf"):
                out = probe(path, x, y, {"attack": "deepfool", "norm": norm, "trace": 50})
                z0 = logits64(model, x)
                for b in range(B):
                    c = int(y[b])
                    others = [k for k in torch.argsort(z0[b], descending=True).tolist() if k != c]
                    cand = [c] + others[:min(10, K) - 1]
                    prev = torch.zeros(D, dtype=torch.float64)
                    for t in range(int(out["iterations"][b])):
                        want, clear, w = deepfool_step(model, shape, x[b].reshape(-1), prev,
                                                       cand, norm, 0.02)
                        got = out["trace"][t, b].double()
                        if not clear:
                            break
                        want = want.reshape(-1)
                        scale = float((want - prev).norm())
                        if norm == "linf":
                            m = w.abs() >= 1e-4 * w.abs().max()
                            err = float((got - want)[m].abs().max())
                            scale = float((want - prev).abs().max())
                        else:
                            err = float((got - want).norm())
                        self.assertLess(err, 1e-4 * scale + 1e-6, f"seed {seed} {norm} sample {b} step {t}")
                        checked += 1
                        prev = got
                    # The returned point is the clipped final iterate.
                    n = int(out["iterations"][b])
                    if n:
                        xa = clip(x[b].reshape(-1) + 1.02 * out["trace"][n - 1, b].double())
                        self.assertLess(float((xa - out["adversarial"][b].double()).abs().max()), 2e-6)
        self.assertGreater(checked, 20)


class TestProperties(unittest.TestCase):
    def check_result(self, model, x, y, out, tgt=None):
        """Reported norms, predictions and success are true of the returned batch."""
        B = len(x)
        xa = out["adversarial"].double().reshape(x.shape)
        d = (xa - x).reshape(B, -1)
        self.assertTrue(torch.allclose(out["l2"].double(), d.norm(dim=1), rtol=1e-5, atol=1e-6))
        self.assertTrue(torch.allclose(out["linf"].double(), d.abs().amax(dim=1), rtol=1e-5, atol=1e-6))
        pred = logits64(model, xa).argmax(1)
        self.assertTrue(torch.equal(out["predictions"], pred))
        want = (pred == tgt) if tgt is not None else (pred != y)
        self.assertTrue(torch.equal(out["success"].bool(), want))
        self.assertGreaterEqual(float(xa.min()), LO)
        self.assertLessEqual(float(xa.max()), HI)

    def test_eps_bounded_attacks(self):
        for seed in SEEDS:
            model, shape, K, path, x, y = Setup.net(seed)
            for name in ("fgsm", "pgd", "bim"):
                for norm, eps in (("linf", 0.05), ("linf", 0.3), ("l2", 0.5), ("l2", 2.0)):
                    out = probe(path, x, y, {"attack": name, "norm": norm, "epsilon": eps,
                                             "steps": 8, "seed": seed})
                    bound = out["linf"] if norm == "linf" else out["l2"]
                    self.assertLessEqual(float(bound.max()), eps * (1 + 1e-6), f"{name} {norm} {eps}")
                    self.check_result(model, x, y, out)

    def test_minimum_norm_attacks_report_the_truth(self):
        for seed in SEEDS[:2]:
            model, shape, K, path, x, y = Setup.net(seed)
            for opts in ({"attack": "deepfool"}, {"attack": "deepfool", "norm": "linf"},
                         {"attack": "cw_l2", "binary_search_steps": 4, "max_iter": 100},
                         {"attack": "ead", "binary_search_steps": 3, "max_iter": 100},
                         {"attack": "jsma"}, {"attack": "zoo", "max_iter": 20}):
                out = probe(path, x, y, opts)
                self.check_result(model, x, y, out)
                if opts["attack"] == "zoo":
                    self.assertEqual(int(out["counts"][0]), 0, "zoo called the gradient")
                    self.assertGreater(int(out["counts"][1]), 0)
                if opts["attack"] == "jsma":
                    changed = (out["adversarial"].double() != x.reshape(len(x), -1)).sum(1)
                    self.assertTrue(bool((changed <= 2 * out["iterations"]).all()))

    def test_targeted_attacks_reach_their_target_or_say_so(self):
        model, shape, K, path, x, y = Setup.net(SEEDS[0])
        tgt = (y + 1) % K
        for opts in ({"attack": "cw_l2", "binary_search_steps": 3, "max_iter": 100},
                     {"attack": "jsma"}, {"attack": "fgsm", "epsilon": 0.3}):
            out = probe(path, x, y, opts, target=tgt)
            self.check_result(model, x, y, out, tgt)

    def test_cw_beats_pgd_l2_with_bisected_epsilon(self):
        model, path, xt, yt = trained_mlp()
        pred = logits64(model, xt).argmax(1)
        idx = torch.nonzero(pred == yt).reshape(-1)[:24]
        x, y = xt[idx], yt[idx]
        cw = probe(path, x, y, {"attack": "cw_l2"})
        # Per sample: the smallest epsilon at which PGD-L2 (40 steps of eps / 8) succeeds.
        lo, hi = torch.zeros(len(x), dtype=torch.float64), torch.full((len(x),), 4.0, dtype=torch.float64)
        found = torch.zeros(len(x), dtype=torch.bool)
        for _ in range(12):
            mid = (lo + hi) / 2
            for b in range(len(x)):
                e = float(mid[b])
                o = probe(path, x[b:b + 1], y[b:b + 1], {"attack": "pgd", "norm": "l2", "epsilon": e,
                                                         "step_size": e / 8, "steps": 40, "seed": 1})
                if bool(o["success"][0]):
                    hi[b], found[b] = mid[b], True
                else:
                    lo[b] = mid[b]
        both = found & cw["success"].bool()
        self.assertGreaterEqual(int(both.sum()), 15)
        ok = (cw["l2"].double()[both] <= 1.01 * hi[both]).double().mean()
        self.assertGreaterEqual(float(ok), 0.9, f"C&W vs PGD-L2: {cw['l2'][both]} vs {hi[both]}")


if __name__ == "__main__":
    unittest.main()
