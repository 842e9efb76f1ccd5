#!/usr/bin/python3
"""Regularizers against torch double backprop on this machine, same thread count, same run.

For the MLP 784-1024-1024-10 and the CNN of bench_core.py at batch 256: each regularizer's
mean value, per-sample values, gradient to the inputs and to every parameter. The torch side
computes each regularizer from its definition with autograd (create_graph=True), as the
reference tests do (tests/reference/gen_reg.py), in float32. Run by `make bench`.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
sys.path.insert(0, HERE)
import bench_core  # noqa: E402
import gen_reg  # noqa: E402
from relureg import export  # noqa: E402

SPECS = {
    "cross_entropy": {"name": "cross_entropy"},
    "input_gradient": {"name": "input_gradient"},
    "jacobian": {"name": "jacobian"},
    "jacobian_projection": {"name": "jacobian", "estimator": "projection", "projections": 1},
    "cross_lipschitz": {"name": "cross_lipschitz"},
    "curvature_fd": {"name": "curvature", "method": "finite_difference"},
    "curvature_hessian": {"name": "curvature", "method": "hessian"},
    "curvature_trace": {"name": "curvature", "method": "trace"},
}


def torch_time(model, spec, B, K, reps, with_params):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 1, 28, 28, generator=g)
    y = torch.arange(B) % K
    params = list(model.parameters())
    dirs = None
    if spec.get("estimator") == "projection":
        dirs = torch.nn.functional.normalize(torch.randn(B, 1, K, generator=g), dim=2)

    def step():
        xr = x.clone().requires_grad_(True)
        if spec["name"] == "cross_lipschitz":
            # the efficient form (2/K) ||J_c||^2 rather than the reference code's pair loop
            _, J = gen_reg.jacobian(model, xr, K, True)
            Jc = J - J.mean(dim=1, keepdim=True)
            v = (2.0 / K * (Jc * Jc).sum((1, 2))).mean()
        elif dirs is not None:
            # Hoffman et al.'s JacobianReg: one VJP per projection, not the full J.
            z = model(xr)
            u = torch.autograd.grad(z, xr, dirs[:, 0, :], create_graph=True)[0]
            v = (K * (u * u).reshape(B, -1).sum(1)).mean()
        else:
            v = gen_reg.per_sample(model, xr, y, spec, K, dirs).mean()
        # allow_unused: the Jacobian-type values do not depend on biases (nor, inside a
        # region, on x); torch then returns None for them.
        torch.autograd.grad(v, [xr] + (params if with_params else []), allow_unused=True)
    return bench_core.timeit(step, reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release/bench-reg")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    B, K = a.batch, 10
    print(f"regularizers: value + per-sample + grad_inputs + grad_parameters, batch {B}, "
          f"threads {a.threads}; ratio = torch double backprop / relureg")
    print(f"{'':26} {'value + grad_inputs':^27}   {'... + grad_parameters':^27}")
    print(f"{'model':5} {'regularizer':20} {'relureg ms':>11} {'torch ms':>9} {'ratio':>6}   "
          f"{'relureg ms':>11} {'torch ms':>9} {'ratio':>6}")
    for name, model in bench_core.models().items():
        path = os.path.join(a.out, f"{name}.safetensors")
        export(model, [1, 28, 28], path)
        r = subprocess.run([a.bin, path, str(B), str(a.threads), str(a.reps)], check=True,
                           capture_output=True, text=True)
        c = {d["op"]: d["ms_median"] for d in map(json.loads, r.stdout.split("\n")[:-1])}
        for op, spec in SPECS.items():
            t0 = torch_time(model, spec, B, K, a.reps, False)[1]
            t1 = torch_time(model, spec, B, K, a.reps, True)[1]
            c0, c1 = c[op], c[op + "+params"]
            print(f"{name:5} {op:20} {c0:11.1f} {t0:9.1f} {t0 / c0:6.2f}   "
                  f"{c1:11.1f} {t1:9.1f} {t1 / c1:6.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
