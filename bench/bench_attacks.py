#!/usr/bin/python3
"""Attacks and certificates against equivalent torch loops on this machine, same run.

PGD-40 linf (eps 0.1, step 0.01, random start) and l2 DeepFool (overshoot 0.02, 10
candidates, max_iter 50) at batch 256 on the MLP 784-1024-1024-10 and the CNN of
bench_core.py, on Fashion-MNIST test images (Debian's dataset-fashion-mnist) labelled by
the model itself. The torch loops are the efficient batched forms: PGD one autograd
gradient per step; DeepFool one forward and one backward per candidate class per iteration
for the samples still running (the LTS4 reference code loops over samples, far slower).
relureg's certificates have no torch or library counterpart; their rate is printed.
Run by `make bench`.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
sys.path.insert(0, HERE)
import bench_core  # noqa: E402
from relureg import export  # noqa: E402


def fashion(n):
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    return torch.from_numpy(x.astype(np.float32) / 255)


def timeit(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[0], ts[len(ts) // 2], out


def torch_pgd(model, x, y, eps=0.1, alpha=0.01, steps=40):
    xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        g, = torch.autograd.grad(loss, xa)
        with torch.no_grad():
            xa = xa + alpha * g.sign()
            xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
    return None


def torch_deepfool(model, x, y, overshoot=0.02, max_iter=50, nc=10):
    B = len(x)
    with torch.no_grad():
        z0 = model(x)
    cand = torch.argsort(z0, dim=1, descending=True)[:, :nc]
    rtot = torch.zeros_like(x)
    xa = x.clone()
    active = torch.ones(B, dtype=torch.bool)
    iters = torch.zeros(B)
    for _ in range(max_iter):
        idx = torch.nonzero(active).reshape(-1)
        if len(idx) == 0:
            break
        xi = xa[idx].clone().requires_grad_(True)
        z = model(xi)
        still = z.argmax(1) == y[idx]
        if not still.any():
            active[idx] = False
            break
        c = cand[idx]
        grads = torch.stack([torch.autograd.grad(z.gather(1, c[:, k:k + 1]).sum(), xi,
                                                 retain_graph=k < nc - 1)[0] for k in range(nc)], 1)
        w = (grads[:, 1:] - grads[:, :1]).flatten(2)
        f = (z.gather(1, c[:, 1:]) - z.gather(1, c[:, :1])).detach()
        pert = f.abs() / w.norm(dim=2)
        best = pert.argmin(1)
        wb = w[torch.arange(len(idx)), best]
        pb = pert[torch.arange(len(idx)), best]
        r = ((pb + 1e-4) / wb.norm(dim=1)).reshape(-1, 1) * wb
        sel = idx[still]
        rtot[sel] += r[still].reshape(rtot[sel].shape)
        xa[sel] = (x[sel] + (1 + overshoot) * rtot[sel]).clamp(0, 1)
        iters[sel] += 1
        active[idx[~still]] = False
    return float(iters.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release/bench-attacks")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    B = a.batch
    x = fashion(B)
    print(f"threads {a.threads}, batch {B}, Fashion-MNIST test images; torch {torch.__version__}")
    print(f"{'model':5} {'op':13} {'relureg ms':>11} {'torch ms':>9} {'ratio':>6}  notes")
    for name, model in bench_core.models().items():
        path = os.path.join(a.out, f"{name}.safetensors")
        export(model, [1, 28, 28], path, input_range=[0.0, 1.0])
        with torch.no_grad():
            y = model(x).argmax(1)
        fx, fy = os.path.join(a.out, "attack_x.f32"), os.path.join(a.out, "attack_y.i64")
        x.numpy().astype(np.float32).tofile(fx)
        y.numpy().astype(np.int64).tofile(fy)
        r = subprocess.run([a.bin, path, fx, fy, str(B), str(a.threads), str(a.reps)],
                           check=True, capture_output=True, text=True)
        c = {d["op"]: d for d in map(json.loads, r.stdout.strip().split("\n"))}
        torch.manual_seed(0)
        _, tp, _ = timeit(lambda: torch_pgd(model, x, y), a.reps)
        _, td, it = timeit(lambda: torch_deepfool(model, x, y), a.reps)
        cp, cd = c["pgd40"]["ms_median"], c["deepfool"]["ms_median"]
        print(f"{name:5} {'pgd40 linf':13} {cp:11.1f} {tp:9.1f} {tp / cp:6.2f}")
        print(f"{name:5} {'deepfool l2':13} {cd:11.1f} {td:9.1f} {td / cd:6.2f}  "
              f"mean iterations relureg {c['deepfool']['iterations_mean']:.2f}, torch {it:.2f}")
        for op in ("certify_l2", "certify_linf"):
            ms = c[op]["ms_median"]
            print(f"{name:5} {op:13} {ms:11.1f} {'-':>9} {'-':>6}  {B / (ms * 1e-3):.0f} certificates/s, "
                  f"{int(c[op]['success'])}/{B} exact")


if __name__ == "__main__":
    main()
