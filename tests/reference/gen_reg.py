#!/usr/bin/python3
"""Reference cases for the regularizers, computed with torch float64 double backprop.

For each of 22 seeded random architectures (the core generator's builders, every layer
type) this writes `reg_NNN.model.safetensors` and `reg_NNN.case.safetensors` holding, for
every regularizer of math.md in SPECS, the mean value, the per-sample values, the gradient of
the mean with respect to the inputs and to every model tensor but num_batches_tracked — each
computed literally from its definition with autograd (`create_graph=True`), not through the
closed forms the C library uses.

Like with like (as gen_core.py): float32-rounded weights and inputs, samples drawn so that every
relu input and max-pool gap is at least 1e-4 of its layer's scale, every input-gradient
component is at least 1e-4 of its largest (sign(g) stable, for input_gradient l1 and
curvature), and the displaced points x + h u of the finite-difference specs satisfy the same
margins; their activation patterns are stored so the C side can check it sees the same
regions. Projection directions are drawn with a Python replica of relureg's counter-based
RNG; the C test checks that the directions it drew are these.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_core as core  # noqa: E402
from relureg import export, safetensors  # noqa: E402

GRAD_MARGIN = 1e-4

# The specs every case runs, in this order (the C test reads them from the case metadata).
SPECS = [
    {"name": "cross_entropy"},
    {"name": "input_gradient"},
    {"name": "input_gradient", "norm": "l1"},
    {"name": "jacobian"},
    {"name": "jacobian", "estimator": "projection", "projections": 3, "seed": 7},
    {"name": "jacobian", "estimator": "projection", "directions": "onehot"},
    {"name": "cross_lipschitz"},
    {"name": "curvature", "method": "finite_difference"},
    {"name": "curvature", "method": "finite_difference", "h": 0.5, "squared": False},
    {"name": "curvature", "method": "hessian"},
    {"name": "curvature", "method": "hessian", "h": 3.0, "squared": False},
    {"name": "curvature", "method": "trace"},
    {"name": "weight_decay"},
]


# ---- relureg's RNG (lib/core/rng.c), replicated bit for bit ----
M64 = (1 << 64) - 1


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


class Rng:
    def __init__(self, seed, stream):
        self.s = _mix((seed + 0x9e3779b97f4a7c15) & M64) ^ _mix(((~stream) & M64) * 0xd1b54a32d192ed03 & M64)

    def next(self):
        self.s = (self.s + 0x9e3779b97f4a7c15) & M64
        return _mix(self.s)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53

    def normal(self):
        u1, u2 = self.uniform(), self.uniform()
        if u1 <= 0.0:
            u1 = 2.0 ** -53
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586476925 * u2)


def sphere_directions(seed, B, n, K):
    out = np.zeros((B, n, K), dtype=np.float32)
    for b in range(B):
        r = Rng(seed, b)
        for j in range(n):
            v = np.array([np.float32(r.normal()) for _ in range(K)], dtype=np.float32)
            nn_ = math.sqrt(sum(float(a) * float(a) for a in v))
            out[b, j] = np.array([np.float32(float(a) / nn_) for a in v], dtype=np.float32)
    return torch.from_numpy(out)


# ---- the regularizers, literally, in float64 autograd ----

def cure_direction(g):
    s = torch.sign(g).reshape(g.shape[0], -1)
    n = s.norm(dim=1, keepdim=True)
    return torch.where(n > 0, s / n.clamp_min(1e-300), torch.zeros_like(s)).reshape(g.shape)


def jacobian(model, x, K, create_graph):
    z = model(x)
    rows = [torch.autograd.grad(z[:, k].sum(), x, create_graph=create_graph, retain_graph=True)[0]
            .reshape(x.shape[0], -1) for k in range(K)]
    return z, torch.stack(rows, dim=1)


def per_sample(model, x, y, spec, K, directions):
    """Per-sample values of one spec at x (a leaf requiring grad); differentiable."""
    name = spec["name"]
    B = x.shape[0]
    if name == "cross_entropy":
        return F.cross_entropy(model(x), y, reduction="none")
    if name == "input_gradient":
        l = F.cross_entropy(model(x), y, reduction="sum")
        g = torch.autograd.grad(l, x, create_graph=True)[0].reshape(B, -1)
        return g.abs().sum(1) if spec.get("norm") == "l1" else (g * g).sum(1)
    if name == "jacobian":
        _, J = jacobian(model, x, K, True)
        if spec.get("estimator") != "projection":
            return (J * J).sum((1, 2))
        if spec.get("directions") == "onehot":
            V = torch.eye(K, dtype=x.dtype).expand(B, K, K)
        else:
            V = directions.to(x.dtype)
        n = V.shape[1]
        u = torch.einsum("bnk,bkd->bnd", V, J)
        return (K / n) * (u * u).sum((1, 2))
    if name == "cross_lipschitz":
        _, J = jacobian(model, x, K, True)
        total = 0
        for l_ in range(K):  # the reference code's double loop over pairs
            for m in range(K):
                d = J[:, l_] - J[:, m]
                total = total + (d * d).sum(1)
        return total / K ** 2
    if name == "curvature":
        method, h = spec.get("method", "finite_difference"), spec.get("h", 1.5)
        squared = spec.get("squared", True)
        l = F.cross_entropy(model(x), y, reduction="sum")
        g = torch.autograd.grad(l, x, create_graph=True)[0]
        if method == "trace":
            z, J = jacobian(model, x, K, True)
            p = F.softmax(z, dim=1)
            a = (p * (J * J).sum(2)).sum(1)
            Jp = torch.einsum("bk,bkd->bd", p, J)
            return a - (Jp * Jp).sum(1)
        u = cure_direction(g.detach())
        if method == "hessian":
            Hu = torch.autograd.grad((g * u).sum(), x, create_graph=True)[0].reshape(B, -1)
            sq = h * h * (Hu * Hu).sum(1)
        else:
            x2 = x + h * u
            l2 = F.cross_entropy(model(x2), y, reduction="sum")
            g2 = torch.autograd.grad(l2, x, create_graph=True)[0]
            d = (g2 - g).reshape(B, -1)
            sq = (d * d).sum(1)
        return sq if squared else torch.sqrt(sq)
    raise ValueError(name)


def weight_decay(model):
    return sum(0.5 * (m.weight * m.weight).sum() for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))


def grad_margin_ok(model, x, y):
    """Every component of g = grad_x l at least GRAD_MARGIN of the largest (sign(g) stable),
    and the softmax not saturated (1 - max p >= 1e-3), so that g, H and the curvature
    quantities are far from zero and their norms differentiable."""
    xr = x.clone().requires_grad_(True)
    z = model(xr)
    g = torch.autograd.grad(F.cross_entropy(z, y, reduction="sum"), xr)[0]
    g = g.reshape(x.shape[0], -1)
    mx = g.abs().max(dim=1, keepdim=True).values
    unsaturated = bool((1 - F.softmax(z.detach(), dim=1).max(dim=1).values >= 1e-3).all())
    return bool((mx > 0).all() and (g.abs() >= GRAD_MARGIN * mx).all()) and unsaturated, g


def displaced(model, x, y, h):
    _, g = grad_margin_ok(model, x, y)
    return x + h * cure_direction(g).reshape(x.shape)


def draw(model, shape, K, B, rng_t):
    xs, ys = [], []
    fd_h = [s.get("h", 1.5) for s in SPECS if s.get("method") == "finite_difference"]
    for _ in range(B):
        for _ in range(core.TRIES * 3):
            x = (torch.rand([1] + shape, generator=rng_t) * 2 - 1).float().double()
            y = torch.randint(0, K, (1,), generator=rng_t)
            if not core.margin_ok(model, x) or not grad_margin_ok(model, x, y)[0]:
                continue
            # the displaced points (rounded to float32 as the C side computes them)
            if all(core.margin_ok(model, displaced(model, x, y, h).float().double())
                   for h in fd_h):
                xs.append(x)
                ys.append(y)
                break
        else:
            return None, None
    return torch.cat(xs), torch.cat(ys)


def make_case(idx, seed, out_dir):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(20):
        model, shape, K = (core.cnn if rng.random() < 0.5 else core.mlp)(rng)
        model.eval()
        if core.relu_units(model, shape) <= 1000 and math.prod(shape) <= 300:
            break
    model = model.double().eval()
    core.scale_weights(model, 1.5)
    core.round_to(model, "F32")
    B = rng.randint(3, 5)
    rng_t = torch.Generator().manual_seed(seed)
    x, y = draw(model, shape, K, B, rng_t)
    if x is None:
        return None
    desc = write_case(model, shape, x, y, f"reg_{idx:03d}", out_dir, {"seed": seed})
    return f"reg_{idx:03d}", B, K, shape, desc


def write_case(model, shape, x, y, case_name, out_dir, info=None):
    """Writes CASE_NAME.model.safetensors and CASE_NAME.case.safetensors: every spec of SPECS for
    `model` (float64, weights already rounded) at x with labels y; returns the description."""
    B, K = x.shape[0], int(model(x[:1]).shape[1])
    tw = core.twin(model).double().eval()
    params = dict(tw.named_parameters())
    case = {"inputs": x.float(), "labels": y.to(torch.int64)}
    for j, (mod, inp) in enumerate(core.capture(model, x)):
        case.update(pattern_entry(f"pattern/{j:03d}", mod, inp))
    for si, spec in enumerate(SPECS):
        key = f"reg/{si:02d}"
        dirs = None
        if spec.get("estimator") == "projection" and spec.get("directions") != "onehot":
            dirs = sphere_directions(spec.get("seed", 0), B, spec.get("projections", 1), K)
            case[f"{key}/directions"] = dirs
        xr = x.clone().requires_grad_(True)
        if spec["name"] == "weight_decay":
            value = weight_decay(tw)
            grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
            gx = torch.zeros_like(x)
        else:
            ps = per_sample(tw, xr, y, spec, K, dirs)
            value = ps.mean()
            grads = torch.autograd.grad(value, [xr] + list(params.values()), allow_unused=True)
            gx, grads = grads[0], grads[1:]
            case[f"{key}/per_sample"] = ps.detach()
        case[f"{key}/value"] = value.detach().reshape([])
        case[f"{key}/grad_inputs"] = gx
        for (name, p), g in zip(params.items(), grads):
            case[f"{key}/grad/{name}"] = g if g is not None else torch.zeros_like(p)
        if spec.get("method") == "finite_difference":
            x2 = displaced(tw, x, y, spec.get("h", 1.5)).float().double()
            for j, (mod, inp) in enumerate(core.capture(model, x2)):
                case.update(pattern_entry(f"{key}/pattern/{j:03d}", mod, inp))
    meta = {"relureg.case": json.dumps(dict(info or {}, specs=SPECS,
                                            description=core.describe(model)))}
    export(model.float(), shape, os.path.join(out_dir, f"{case_name}.model.safetensors"))
    model.double()
    with open(os.path.join(out_dir, f"{case_name}.case.safetensors"), "wb") as f:
        f.write(safetensors.save(case, meta))
    return core.describe(model)


def pattern_entry(key, mod, inp):
    if isinstance(mod, nn.MaxPool2d):
        _, ind = F.max_pool2d(inp, mod.kernel_size, mod.stride, mod.padding,
                              ceil_mode=mod.ceil_mode, return_indices=True)
        return {key: ind.to(torch.int64)}
    return {key: (inp > 0).to(torch.uint8)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, default=22)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0, n, seed = time.time(), 0, 5000
    while n < a.cases:
        seed += 1
        r = make_case(n, seed, a.out)
        if r is None:
            print(f"seed {seed}: no samples with the margins, next architecture")
            continue
        name, B, K, shape, desc = r
        print(f"{name}: seed {seed}, B={B}, K={K}, input {shape}: {desc}")
        n += 1
    print(f"{n} regularizer cases in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
