#!/usr/bin/python3
"""Core kernels against PyTorch on this machine, same thread count, same run.

For the MLP 784-1024-1024-10 and the CNN of issue 8 (conv 1->32 3x3 pad 1, relu, maxpool 2,
conv 32->64 3x3 pad 1, relu, maxpool 2, linear 3136->10) at batch 256: forward, the exact
input Jacobian of the logits, and forward + mean cross-entropy + backward to every parameter.
The torch Jacobian is the faster of K backward passes and one is_grads_batched call. Also the
best OpenBLAS sgemm GFLOP/s at 2048^3 at the same thread count, and the fraction of it each
relureg kernel reaches on its dense-layer FLOPs.

Run by `make bench` (not by `make test`). Prints a table; ratio = torch time / relureg time.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "python"))
from relureg import export  # noqa: E402


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                        nn.ReLU(), nn.Linear(1024, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(3136, 10))
    return {"mlp": mlp.eval(), "cnn": cnn.eval()}


def dense_flops(model, B, K):
    """Multiply-add FLOPs of the dense layers: forward, Jacobian (forward + K backward rows to
    the input), and backward to parameters (forward + weight gradients + input gradients of
    every dense layer but the first)."""
    fwd, grad_in = [], []
    x = torch.zeros(1, 1, 28, 28)
    for m in model:
        y = m(x)
        if isinstance(m, nn.Linear):
            f = 2 * m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d):
            f = 2 * y.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            f = 0
        if f:
            fwd.append(f)
        x = y
    F_ = sum(fwd) * B
    return {
        "forward": F_,
        "jacobian": F_ + K * sum(fwd) * B,
        "backward": F_ + F_ + sum(fwd[1:]) * B,
    }


def timeit(fn, reps):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[0], ts[len(ts) // 2]


def torch_times(model, B, K, reps):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 1, 28, 28, generator=g)
    y = torch.arange(B) % K
    out = {}

    def fwd():
        with torch.no_grad():
            model(x)
    out["forward"] = timeit(fwd, reps)

    def jac_loop():
        xr = x.clone().requires_grad_(True)
        z = model(xr)
        for k in range(K):
            torch.autograd.grad(z[:, k].sum(), xr, retain_graph=k < K - 1)

    def jac_batched():
        xr = x.clone().requires_grad_(True)
        z = model(xr)
        eye = torch.eye(K).unsqueeze(1).expand(K, B, K)
        torch.autograd.grad(z, xr, eye, is_grads_batched=True)
    a, b = timeit(jac_loop, reps), timeit(jac_batched, reps)
    out["jacobian"] = a if a[1] <= b[1] else b
    out["jacobian_method"] = "K backward passes" if a[1] <= b[1] else "is_grads_batched"

    def bwd():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    out["backward"] = timeit(bwd, reps)
    return out


def c_times(binary, args, threads, reps):
    r = subprocess.run([binary] + [str(a) for a in args] + [str(threads), str(reps)],
                       check=True, capture_output=True, text=True)
    return {d["op"]: (d["ms_min"], d["ms_median"]) for d in map(json.loads, r.stdout.split("\n")[:-1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release/bench-core")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    B, K = a.batch, 10

    sg = c_times(a.bin, ["sgemm", 2048], a.threads, 5)["sgemm"]
    peak = 2 * 2048 ** 3 / (sg[0] * 1e-3) / 1e9
    print(f"threads {a.threads}, batch {B}; torch {torch.__version__}; "
          f"OpenBLAS sgemm 2048^3: {peak:.1f} GFLOP/s (best of 5)")
    print(f"{'model':5} {'kernel':9} {'relureg ms':>11} {'torch ms':>9} {'ratio':>6} "
          f"{'GFLOP/s':>8} {'% sgemm':>8}  torch method")
    for name, model in models().items():
        path = os.path.join(a.out, f"{name}.safetensors")
        export(model, [1, 28, 28], path)
        c = c_times(a.bin, [path, B], a.threads, a.reps)
        t = torch_times(model, B, K, a.reps)
        fl = dense_flops(model, B, K)
        for op in ("forward", "jacobian", "backward"):
            cm, tm = c[op][1], t[op][1]
            gf = fl[op] / (cm * 1e-3) / 1e9
            method = t.get("jacobian_method", "") if op == "jacobian" else ""
            print(f"{name:5} {op:9} {cm:11.2f} {tm:9.2f} {tm / cm:6.2f} {gf:8.1f} "
                  f"{100 * gf / peak:7.1f}%  {method}")
    conv_layers(a, peak)


def conv_layers(a, peak):
    """The CNN's two convolutions alone (each followed by relu, flatten and a linear head, as a
    model file needs a classifier): forward at batch a.batch, GFLOP/s of the convolution and
    its share of sgemm's, beside torch at the same thread count."""
    torch.manual_seed(0)
    layers = {"conv 1->32 28x28": (1, 32, 28), "conv 32->64 14x14": (32, 64, 14)}
    print(f"\nconvolution layers alone, forward, batch {a.batch} (3x3, pad 1; K = 9 C_in):")
    print(f"{'layer':18} {'relureg ms':>11} {'torch ms':>9} {'ratio':>6} {'GFLOP/s':>8} {'% sgemm':>8}")
    for name, (ci, co, hw) in layers.items():
        model = nn.Sequential(nn.Conv2d(ci, co, 3, padding=1), nn.ReLU(), nn.Flatten(),
                              nn.Linear(co * hw * hw, 10)).eval()
        path = os.path.join(a.out, f"conv{ci}x{co}.safetensors")
        export(model, [ci, hw, hw], path)
        c = c_times(a.bin, [path, a.batch], a.threads, a.reps)["forward"][1]
        x = torch.rand(a.batch, ci, hw, hw)

        def fwd():
            with torch.no_grad():
                model(x)
        t = timeit(fwd, a.reps)[1]
        conv = 2 * a.batch * co * hw * hw * ci * 9
        head = 2 * a.batch * co * hw * hw * 10
        gf = (conv + head) / (c * 1e-3) / 1e9
        print(f"{name:18} {c:11.2f} {t:9.2f} {t / c:6.2f} {gf:8.1f} {100 * gf / peak:7.1f}%")


if __name__ == "__main__":
    main()
