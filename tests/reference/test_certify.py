"""Linear-region certificates of librelureg against float64 torch on the same float32
weights and inputs, and against attacks that aim at them (math.md, "Certificates").

Tolerances: d_D and d_B agree with the float64 computation to 1e-4 relative; an attack is
never shorter than the certified radius by more than 1e-4 relative; the exact point's norm is
within 1e-3 relative of d_D. Steps to 0.999 x radius keep the class (and the pattern); a step
to 1.001 x d_B along its minimising constraint changes the pattern."""
import math
import os
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F

import gen_core
from attack_common import draw, logits64, pattern, probe, random_net

SEEDS = [21, 22, 23, 24, 25, 26]


def constraints(model, shape, x):
    """Every constraint of math.md at x (one sample, float64): a list of (value, gradient,
    layer, unit, other) with the gradient a flat [D] tensor."""
    D = x.numel()
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0])))
             for m in gen_core.pattern_layers(model)]
    xr = x.reshape([1] + list(shape)).clone().requires_grad_(True)
    try:
        z = model(xr)[0]
    finally:
        for h in hooks:
            h.remove()
    vals, rows = [], []  # (value tensor, meta) then gradients in one batched backward
    meta = []
    for j, (mod, inp) in enumerate(seen):
        u = inp[0].reshape(-1)
        if isinstance(mod, nn.MaxPool2d):
            k = mod.kernel_size if isinstance(mod.kernel_size, tuple) else (mod.kernel_size,) * 2
            s = mod.stride if isinstance(mod.stride, tuple) else (mod.stride,) * 2
            p = mod.padding if isinstance(mod.padding, tuple) else (mod.padding,) * 2
            C, H, W = inp.shape[1:]
            _, ind = F.max_pool2d(inp.detach(), k, s, p, ceil_mode=mod.ceil_mode, return_indices=True)
            oh, ow = ind.shape[2:]
            for c in range(C):
                for i in range(oh):
                    for jj in range(ow):
                        sel = c * H * W + int(ind[0, c, i, jj])
                        y0, x0 = i * s[0] - p[0], jj * s[1] - p[1]
                        for iy in range(max(y0, 0), min(y0 + k[0], H)):
                            for jx in range(max(x0, 0), min(x0 + k[1], W)):
                                v = c * H * W + iy * W + jx
                                if v != sel:
                                    vals.append(u[sel] - u[v])
                                    meta.append((j, sel, v))
        else:
            for q in range(u.numel()):
                vals.append(u[q])
                meta.append((j, q, -1))
    g = torch.stack(vals) if vals else torch.zeros(0, dtype=torch.float64)
    grads = []
    for i in range(0, len(vals), 256):  # batched rows of the Jacobian of the constraints
        blk = g[i:i + 256]
        eye = torch.eye(len(blk), dtype=torch.float64)
        gr = torch.autograd.grad(blk, xr, grad_outputs=eye, is_grads_batched=True, retain_graph=True)[0]
        grads.append(gr.reshape(len(blk), D))
    G = torch.cat(grads) if grads else torch.zeros(0, D, dtype=torch.float64)
    eyeK = torch.eye(len(z), dtype=torch.float64)
    J = torch.autograd.grad(z, xr, grad_outputs=eyeK, is_grads_batched=True)[0].reshape(len(z), D)
    return z.detach(), J, g.detach(), G, meta


def dual(v, norm):
    return v.norm(dim=-1) if norm == "l2" else v.abs().sum(dim=-1)


def toward(g, grad, norm):
    """Unit (in norm) direction that decreases |g| fastest."""
    s = -torch.sign(g).reshape(-1, 1)
    if norm == "l2":
        return s * grad / grad.norm(dim=1, keepdim=True)
    return s * torch.sign(grad)


class TestCertify(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cases = []
        for seed in SEEDS:
            kind = gen_core.cnn if seed % 2 else gen_core.mlp
            model, shape, K, path = random_net(seed, kind, max_units=600)
            x = draw(model, shape, 5, seed)
            if x is None:
                continue
            y = logits64(model, x).argmax(1)
            cls.cases.append((seed, model, shape, K, path, x, y))
        assert len(cls.cases) >= 4
        cls.maxpool_seen = any(isinstance(m, nn.MaxPool2d) for c in cls.cases
                               for m in gen_core.pattern_layers(c[1]))

    def test_distances_equal_float64_and_steps_keep_class_and_pattern(self):
        self.assertTrue(self.maxpool_seen, "no net with a max-pool among the cases")
        exact_seen = 0
        for seed, model, shape, K, path, x, y in self.cases:
            B, D = len(x), x[0].numel()
            pat0 = pattern(model, x)
            for norm in ("l2", "linf"):
                out = probe(path, x, y, {"op": "certify", "norm": norm})
                self.assertTrue(torch.equal(out["predictions"], y))
                for b in range(B):
                    z, J, g, G, meta = constraints(model, shape, x[b])
                    c = int(y[b])
                    # d_D
                    W = J - J[c]
                    nq = dual(W, norm)
                    dd = [(float((z[c] - z[j]) / nq[j]), j) for j in range(K) if j != c and nq[j] > 0]
                    dD, jstar = min(dd) if dd else (math.inf, -1)
                    # d_B
                    ng = dual(G, norm)
                    keep = ng > 0
                    ratios = torch.where(keep, g.abs() / torch.where(keep, ng, torch.ones_like(ng)),
                                         torch.full_like(ng, math.inf))
                    dB = float(ratios.min()) if len(ratios) else math.inf
                    got_dD, got_dB = float(out["decision_distance"][b]), float(out["region_distance"][b])
                    msg = f"seed {seed} {norm} sample {b}"
                    for got, want in ((got_dD, dD), (got_dB, dB)):
                        if math.isinf(want):
                            self.assertTrue(math.isinf(got), msg)
                        else:
                            self.assertLess(abs(got - want), 1e-4 * want + 1e-12, msg)
                    R = float(out["certified_radius"][b])
                    self.assertAlmostEqual(R, min(got_dD, got_dB), places=12)
                    if math.isinf(R):
                        continue
                    # Every constraint's worst-case direction, to 0.999 R: class and pattern kept.
                    dirs = [toward(g[keep], G[keep], norm)]
                    wj = torch.stack([W[j] for j in range(K) if j != c and nq[j] > 0])
                    gj = torch.stack([z[c] - z[j] for j in range(K) if j != c and nq[j] > 0])
                    dirs.append(toward(gj, -wj, norm))
                    P = x[b].reshape(1, D) + 0.999 * R * torch.cat(dirs)
                    pts = P.reshape([-1] + list(shape))
                    self.assertTrue(bool((logits64(model, pts).argmax(1) == c).all()), msg)
                    self.assertTrue(bool((pattern(model, pts) == pat0[b]).all()), msg)
                    # Tightness: 1.001 d_B along the minimising constraint changes the pattern.
                    if not math.isinf(dB):
                        i = int(ratios.argmin())
                        d = toward(g[i:i + 1], G[i:i + 1], norm)
                        p = (x[b].reshape(1, D) + 1.001 * dB * d).reshape([1] + list(shape))
                        self.assertFalse(bool((pattern(model, p) == pat0[b]).all()), msg)
                    # 10 000 random points on the sphere / cube surface at 0.999 R keep the class.
                    gen = torch.Generator().manual_seed(seed * 100 + b)
                    if norm == "l2":
                        u = torch.randn(10000, D, generator=gen, dtype=torch.float64)
                        u = u / u.norm(dim=1, keepdim=True)
                    else:
                        u = torch.rand(10000, D, generator=gen, dtype=torch.float64) * 2 - 1
                        face = torch.randint(0, D, (10000,), generator=gen)
                        sgn = torch.randint(0, 2, (10000,), generator=gen).double() * 2 - 1
                        u[torch.arange(10000), face] = sgn
                    pts = (x[b].reshape(1, D) + 0.999 * R * u).reshape([-1] + list(shape))
                    self.assertTrue(bool((logits64(model, pts).argmax(1) == c).all()), msg)
                    # The exact point flips the class at d_D.
                    if bool(out["exact"][b]):
                        exact_seen += 1
                        self.assertLess(got_dD, got_dB, msg)
                        xa = out["adversarial"][b].double()
                        self.assertNotEqual(int(logits64(model, xa.reshape([1] + list(shape))).argmax(1)), c, msg)
                        dx = xa - x[b].reshape(-1)
                        n = float(dx.norm() if norm == "l2" else dx.abs().max())
                        self.assertLess(abs(n - got_dD), 1e-3 * got_dD, msg)
                        self.assertEqual(int(out["decision_class"][b]), jstar, msg)
                    else:
                        self.assertTrue(torch.equal(out["adversarial"][b], x[b].reshape(-1).float()))
        self.assertGreater(exact_seen, 0, "no exact certificate among the cases")

    def test_attacks_never_beat_the_certificate(self):
        for seed, model, shape, K, path, x, y in self.cases:
            for norm in ("l2", "linf"):
                cert = probe(path, x, y, {"op": "certify", "norm": norm})
                R = cert["certified_radius"]
                runs = [{"attack": "deepfool", "norm": norm}]
                if norm == "l2":
                    runs.append({"attack": "cw_l2", "binary_search_steps": 5, "max_iter": 200})
                else:
                    runs.append({"attack": "pgd", "epsilon": 0.5, "steps": 20, "step_size": 0.05})
                for opts in runs:
                    out = probe(path, x, y, opts)
                    nrm = out["l2"] if norm == "l2" else out["linf"]
                    for b in range(len(x)):
                        if bool(out["success"][b]):
                            self.assertGreaterEqual(float(nrm[b]), float(R[b]) * (1 - 1e-4),
                                                    f"seed {seed} {opts} sample {b}")

    def test_misclassified_samples_are_not_certified(self):
        seed, model, shape, K, path, x, y = self.cases[0]
        wrong = (y + 1) % K
        out = probe(path, x, wrong, {"op": "certify", "norm": "l2"})
        self.assertTrue(bool((out["certified_radius"] == 0).all()))
        self.assertFalse(bool(out["exact"].any()))
        self.assertTrue(bool((out["decision_distance"] == 0).all()))
        free = probe(path, x, y, {"op": "certify", "norm": "l2", "use_labels": False})
        lab = probe(path, x, y, {"op": "certify", "norm": "l2"})
        self.assertTrue(torch.equal(free["certified_radius"], lab["certified_radius"]))


def constraints_seq(model, x):
    """constraints() for a Sequential of Conv2d, ReLU, MaxPool2d (no padding, stride =
    kernel), Flatten and Linear, in forward mode: every pattern layer's input and its Jacobian
    to x, from one pass of the D basis tangents through the network linearised at x (masks and
    max-pool choices of x, first maximum on ties as torch). Values and gradient rows of the
    relu and max-pool constraints (math.md), and the logits' Jacobian."""
    D = x.numel()
    u = x.reshape(1, *x.shape)
    t = torch.eye(D, dtype=torch.float64).reshape(D, *x.shape)  # tangents
    vals, grads = [], []
    for m in model:
        if isinstance(m, nn.Conv2d):
            u = m(u)
            t = F.conv2d(t, m.weight, None, m.stride, m.padding)
        elif isinstance(m, nn.Linear):
            u = m(u)
            t = t @ m.weight.T
        elif isinstance(m, nn.Flatten):
            u, t = u.flatten(1), t.flatten(1)
        elif isinstance(m, nn.ReLU):
            vals.append(u.reshape(-1))
            grads.append(t.reshape(D, -1).T)
            mask = (u > 0).double()
            u, t = u * mask, t * mask
        elif isinstance(m, nn.MaxPool2d):
            k = m.kernel_size
            C, H, W = u.shape[1:]
            _, ind = F.max_pool2d(u, k, k, return_indices=True)
            uf, tf = u.reshape(-1), t.reshape(D, -1)
            oh, ow = ind.shape[2:]
            base = (torch.arange(C).reshape(C, 1, 1) * H * W)
            sel = (base + ind[0]).reshape(-1)  # flat index of each window's choice
            rows = (torch.arange(oh).reshape(oh, 1) * k).reshape(1, oh, 1)
            cols = (torch.arange(ow).reshape(1, ow) * k).reshape(1, 1, ow)
            for dy in range(k):
                for dx in range(k):
                    v = (base + (rows + dy) * W + cols + dx).reshape(-1)
                    other = v != sel
                    vals.append((uf[sel] - uf[v])[other])
                    grads.append((tf[:, sel] - tf[:, v]).T[other])
            u = uf[sel].reshape(1, C, oh, ow)
            t = tf[:, sel].reshape(D, C, oh, ow)
        else:
            raise ValueError(f"constraints_seq: {type(m).__name__}")
    return u.reshape(-1), t.reshape(D, -1).T, torch.cat(vals), torch.cat(grads)


class TestCertifyTies(unittest.TestCase):
    """Certificates on images with flat backgrounds (gen_real.py's smallest net: two conv ->
    relu -> max-pool stages) and on real Fashion-MNIST test images, no margin filtering: ties in
    max-pool windows are the point. A tie at a live unit is a region boundary at distance 0, so
    d_B is exactly 0 there; elsewhere both agree to 1e-4 relative as above."""

    def test_region_and_decision_distances_on_ties(self):
        import gen_real
        from attack_common import TMP
        from relureg import export
        model = gen_real.small_net(5)
        gen_core.round_to(model, "F32")
        path = os.path.join(TMP, "ties.safetensors")
        export(model.float().eval(), [1, 28, 28], path, input_range=[0.0, 1.0])
        model = model.double().eval()
        xs = gen_real.synthetic(torch.Generator().manual_seed(5))
        if os.path.exists(gen_real.DATA):
            real, _ = gen_real.load("t10k", 8)
            xs = torch.cat([xs, real])
        x = xs.double()
        y = logits64(model, x).argmax(1)
        zero_seen = 0
        for norm in ("l2", "linf"):
            out = probe(path, x, y, {"op": "certify", "norm": norm})
            self.assertTrue(torch.equal(out["predictions"], y))
            for b in range(len(x)):
                z, J, g, G = constraints_seq(model, x[b])
                self.assertTrue(torch.allclose(z, logits64(model, x[b:b + 1])[0], atol=1e-9))
                c = int(y[b])
                W = J - J[c]
                nq = dual(W, norm)
                dd = [float((z[c] - z[j]) / nq[j]) for j in range(len(z)) if j != c and nq[j] > 0]
                dD = min(dd) if dd else math.inf
                ng = dual(G, norm)
                keep = ng > 0
                ratios = torch.where(keep, g.abs() / torch.where(keep, ng, torch.ones_like(ng)),
                                     torch.full_like(ng, math.inf))
                dB = float(ratios.min()) if len(ratios) else math.inf
                zero_seen += dB == 0
                got_dD = float(out["decision_distance"][b])
                got_dB = float(out["region_distance"][b])
                msg = f"{norm} image {b}: d_D {got_dD} vs {dD}, d_B {got_dB} vs {dB}"
                for got, want in ((got_dD, dD), (got_dB, dB)):
                    if math.isinf(want):
                        self.assertTrue(math.isinf(got), msg)
                    else:
                        self.assertLessEqual(abs(got - want), 1e-4 * want + 1e-12, msg)
        self.assertGreater(zero_seen, 0, "no image with a max-pool tie at a live unit")


if __name__ == "__main__":
    unittest.main()
