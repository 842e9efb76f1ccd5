"""FAB-T of librelureg against a torch float64 transcription of AutoAttack's FABAttack_PT
(targeted), step by step from the library's own iterates, on random MLPs and small CNNs where
the linearisation is exact (weights and inputs float32 values; a step is checked only when its
starting point is away from relu kinks and max-pool ties, where float32 and float64 agree on
the region). The projections are FAB's published projection_linf / projection_l2, written for
the box [0, 1] and mapped affinely onto input_range.

Tolerances: the library's logits and gradient are float32, so a step agrees with the float64
one to 1e-5 kappa relative of its size plus 2e-6 absolute (iterates are float32 values in
[-1, 1]), where kappa = max(1, |z|_inf / |z_t - z_y|) at the step's start: the step scales with
the offset z_t - z_y, which float32 logits know only to ~1e-7 |z|_inf. Steps whose
misclassification test sits within 1e-5 relative of a tie are not compared (either outcome is
right). The returned point is compared with the transcription's smallest misclassified iterate
to that iterate's step tolerance. Norm bounds allow eps * (1 + 1e-6).
"""
import math
import unittest

import torch

import gen_core
from attack_common import logits64, probe
from test_square import Nets, big_batch

LO, HI = -1.0, 1.0
STEPS = 15


# ---- AutoAttack's fab_projections.py (box [0, 1]), float64 ----

def projection_linf(points_to_project, w_hyperplane, b_hyperplane):
    t, w, b = points_to_project, w_hyperplane.clone(), b_hyperplane.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).double()
    d = (a - t) * (w != 0).double()
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0].unsqueeze(1)).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (b - b2 <= 0)
    lb = torch.zeros(c2.sum(), dtype=torch.float64)
    ub = torch.full((c2.sum(),), w.shape[1] - 1, dtype=torch.float64)
    nitermax = math.ceil(math.log2(w.shape[1]))
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(nitermax):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - counter2)
        b2 = sb_.gather(1, counter2) - s_.gather(1, counter2) * p_.gather(1, indcurr)
        c = b_ - b2.squeeze(1) > 0
        lb = torch.where(c, counter4, lb)
        ub = torch.where(c, ub, counter4)
    lb = lb.long()
    if c_l.any():
        lmbd_opt = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd_opt
    lmbd_opt = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd_opt, d[c2]) * a[c2] + torch.max(-lmbd_opt, d[c2]) * (1 - a[c2])
    return d * (w != 0).double()


def projection_l2(points_to_project, w_hyperplane, b_hyperplane):
    t, w, b = points_to_project, w_hyperplane.clone(), b_hyperplane
    c = (w * t).sum(1) - b
    ind2 = c < 0
    w[ind2] *= -1
    c[ind2] *= -1
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r[w.abs() < 1e-8] = 1e12
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = torch.nn.functional.pad(rs[:, 1:], (0, 1))
    rs[rs == 1e12] = 0
    rs2[rs2 == 1e12] = 0
    w3s = (w ** 2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).double())
    s = torch.cat(((-w5.squeeze(1) * rs[:, 0]).unsqueeze(1),
                   torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0].unsqueeze(-1)), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~c4 & ~c3
    lb = torch.zeros(c2.sum(), dtype=torch.float64)
    ub = torch.full((c2.sum(),), w.shape[1] - 1, dtype=torch.float64)
    nitermax = math.ceil(math.log2(w.shape[1]))
    s_, c_ = s[c2], c[c2]
    for _ in range(nitermax):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        c3 = s_.gather(1, counter2).squeeze(1) + c_ > 0
        lb = torch.where(c3, counter4, lb)
        ub = torch.where(c3, ub, counter4)
    lb = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).double()
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).double()


def project_box(norm, t, w, b):
    """FAB's projection onto {u : w . u = b} inside [LO, HI]^D, via u = LO + (HI - LO) v."""
    s = HI - LO
    fn = projection_linf if norm == "linf" else projection_l2
    return fn((t - LO) / s, w * s, b - (w * LO).sum(1)) * s


def fab_step(model, shape, x0, prev, y, t, norm):
    """One step of FABAttack_PT.attack_single_run (targeted) from prev (flat, float64 of float32
    values); returns the iterate after the step, after the backward step, whether it was
    misclassified and whether that test was clear of a tie."""
    xr = prev.clone().requires_grad_(True)
    z = model(xr.reshape([1] + shape))[0]
    diffy = -(z[y] - z[t])
    # The library's float32 logits know f = z_t - z_y to about 1e-7 |z|_inf, and the step
    # scales with f: the step's relative error grows like |z|_inf / |f| near the boundary.
    kappa = max(1.0, float(z.detach().abs().max() / diffy.detach().abs().clamp(min=1e-30)))
    g = torch.autograd.grad(diffy, xr)[0]
    df, w = diffy.detach(), g
    b = -df + (w * prev).sum()
    d3 = project_box(norm, torch.stack([prev, x0]), torch.stack([w, w]), torch.stack([b, b]))
    a0 = d3.abs().amax(1) if norm == "linf" else d3.norm(dim=1)
    a0 = torch.clamp(a0, min=1e-8)
    a1, a2 = a0[0], a0[1]
    alpha = torch.clamp(a1 / (a1 + a2), 0.0, 0.1)
    x1 = ((prev + 1.05 * d3[0]) * (1 - alpha) + (x0 + 1.05 * d3[1]) * alpha).clamp(LO, HI)
    pre = x1.float().double()  # the library holds the iterate in float32
    zz = logits64(model, pre.reshape([1] + shape))[0]
    others = torch.cat([zz[:y], zz[y + 1:]])
    gap = float(zz[y] - others.max())
    clear = abs(gap) > 1e-5 * float(zz.abs().max())
    adv = int(zz.argmax()) != y
    post = (x0 + (pre - x0) * 0.9).float().double() if adv else pre
    return pre, post, adv, clear, kappa


def targets_of(z, y, K):
    """Classes ranked 2nd .. (n+1)th by the clean logits, n = min(9, K - 1)."""
    order = sorted(range(K), key=lambda k: (-float(z[k]), k))
    return order[1:1 + min(9, K - 1)]


class TestFabTranscription(unittest.TestCase):
    def run_case(self, name, norm):
        model, shape, K, path, x = Nets.get(name)
        B, D = len(x), x[0].numel()
        z0 = logits64(model, x)
        y = z0.argmax(1)
        y[0] = (y[0] + 1) % K  # misclassified at x: not attacked, returned as is
        NT = min(9, K - 1)
        out = probe(path, x, y, {"attack": "fab_t", "norm": norm, "steps": STEPS, "trace": NT * STEPS})
        flat = x.reshape(B, D)
        where = f"{name} {norm} shape={shape} K={K}"
        self.assertEqual(out["iterations"].tolist(), [0] + [NT * STEPS] * (B - 1), where)
        self.assertEqual(int(out["counts"][0]), NT * STEPS, where)
        self.assertTrue(torch.equal(out["adversarial"][0].double(), flat[0]))
        checked = advs = chosen = 0
        for b in range(1, B):
            tg = targets_of(z0[b], int(y[b]), K)
            best, best_n, whole = flat[b], math.inf, True
            for ti, t in enumerate(tg):
                prev = flat[b]
                for s in range(STEPS):
                    got = out["trace"][ti * STEPS + s, b].double()
                    pre, post, adv, clear, kappa = fab_step(model, shape, flat[b], prev, int(y[b]), t, norm)
                    size = float((post - prev).abs().max())
                    tol = 1e-5 * kappa * size + 2e-6
                    match = float((got - post).abs().max()) < tol
                    if clear and gen_core.margin_ok(model, prev.reshape([1] + shape)):
                        self.assertTrue(match, f"{where} sample {b} target {t} step {s}: "
                                               f"error {float((got - post).abs().max()):.3g}, tol {tol:.3g}")
                        checked += 1
                    # A step that matched made the same misclassification call (the backward step
                    # would have moved it by a tenth of its distance otherwise).
                    if match and adv:
                        advs += 1
                        d = pre - flat[b]
                        n = float(d.abs().max() if norm == "linf" else d.norm())
                        if n < best_n:
                            best, best_n, best_tol = pre, n, tol
                    whole = whole and match  # else this step's outcome is unknown here
                    prev = got  # the next step starts from the library's iterate either way
            if whole:
                # The returned point is the smallest misclassified iterate over all targets.
                chosen += 1
                tol = best_tol if best_n < math.inf else 0.0
                self.assertLessEqual(float((out["adversarial"][b].double() - best).abs().max()), tol,
                                     f"{where} sample {b}")
        total = (B - 1) * NT * STEPS
        self.assertGreater(checked, 0.6 * total, where)
        self.assertGreater(advs, 0, f"{where}: no step was misclassified")
        return chosen

    def test_mlp_linf_and_l2(self):
        chosen = [self.run_case("mlp1d", norm) for norm in ("linf", "l2")]
        self.assertTrue(all(c > 0 for c in chosen), f"selections checked: {chosen}")

    def test_cnn_linf_and_l2(self):
        chosen = [self.run_case("cnn", norm) for norm in ("linf", "l2")]
        self.assertTrue(all(c > 0 for c in chosen), f"selections checked: {chosen}")


class TestFabProperties(unittest.TestCase):
    def test_bounded_results_and_truth(self):
        for name in ("mlp1d", "cnn"):
            model, shape, K, path, x = Nets.get(name)
            y = logits64(model, x).argmax(1)
            B = len(x)
            flat = x.reshape(B, -1)
            for norm, eps in (("linf", 0.05), ("l2", 0.3)):
                free = probe(path, x, y, {"attack": "fab_t", "norm": norm, "steps": 30})
                out = probe(path, x, y, {"attack": "fab_t", "norm": norm, "steps": 30, "epsilon": eps})
                for o in (free, out):
                    d = o["adversarial"].double() - flat
                    n = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
                    self.assertTrue(torch.allclose(o[norm].double(), n, rtol=1e-6, atol=1e-7))
                    pred = logits64(model, o["adversarial"].double().reshape(x.shape)).argmax(1)
                    self.assertTrue(torch.equal(o["predictions"], pred))
                    self.assertTrue(torch.equal(o["success"].bool(), pred != y))
                    self.assertGreaterEqual(float(o["adversarial"].min()), LO)
                    self.assertLessEqual(float(o["adversarial"].max()), HI)
                n = out[norm].double()
                self.assertLessEqual(float(n.max()), eps * (1 + 1e-6), f"{name} {norm}")
                # Failures return x; minimum-norm results within eps are found bounded too.
                fail = ~out["success"].bool()
                self.assertTrue(torch.equal(out["adversarial"][fail].double(), flat[fail]))
                within = free["success"].bool() & (free[norm].double() <= eps)
                self.assertTrue(bool((out["success"].bool() | ~within).all()), f"{name} {norm}")
                self.assertGreater(int(free["success"].sum()), 0)

    def test_same_bits_at_one_and_two_threads(self):
        model, shape, K, path, x = Nets.get("cnn")
        x = big_batch(shape)  # enough work per step for the parallel loops to run
        y = logits64(model, x).argmax(1)
        for norm in ("linf", "l2"):
            o = {"attack": "fab_t", "norm": norm, "steps": 20, "restarts": 2, "seed": 5}
            a = probe(path, x, y, dict(o, threads=1))
            b = probe(path, x, y, dict(o, threads=2))
            self.assertTrue(torch.equal(a["adversarial"], b["adversarial"]))
            self.assertTrue(torch.equal(a["iterations"], b["iterations"]))


if __name__ == "__main__":
    unittest.main()
