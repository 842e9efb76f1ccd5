#!/usr/bin/python3
"""Thread scaling of every kernel and regularizer, against OpenBLAS's own sgemm scaling.

For the MLP 784-1024-1024-10 and the CNN of bench_core.py at batch 256: forward, exact
Jacobian, backward to parameters (bench-core), and every regularizer with its gradients to
the inputs and to the parameters (bench-reg), at 1, 2, 4, ... threads up to the machine's
cores (--max-threads may go beyond, for structure on a small machine). Beside them OpenBLAS's
own threaded sgemm at 2048^3 and relureg's deterministic product (rr__sgemm) on the same
shape. For each row: the time at each thread count, the speed-up from 1 thread to the most,
and that speed-up as a fraction of sgemm's ("vs sgemm": 1.0 means it scales as well as
OpenBLAS does). With --torch, torch CPU at the largest thread count beside it (ratio = torch /
relureg).

Run by `make bench` (not by `make test`).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "python"))
import bench_core  # noqa: E402
import bench_reg  # noqa: E402
from relureg import export  # noqa: E402


def thread_counts(top):
    ts, t = [], 1
    while t < top:
        ts.append(t)
        t *= 2
    return ts + [top]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--core", default="build/release/bench-core")
    ap.add_argument("--reg", default="build/release/bench-reg")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--max-threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--torch", action="store_true", help="torch CPU at the largest count")
    ap.add_argument("--models", default="mlp,cnn")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ts = thread_counts(a.max_threads)
    B, K = a.batch, 10
    rows = {}  # name -> {threads: ms}

    def put(name, t, ms):
        rows.setdefault(name, {})[t] = ms

    models = {k: v for k, v in bench_core.models().items() if k in a.models.split(",")}
    paths = {}
    for name, model in models.items():
        paths[name] = os.path.join(a.out, f"{name}.safetensors")
        export(model, [1, 28, 28], paths[name])
    for t in ts:
        for op in ("sgemm", "rrgemm"):
            put(f"{op} 2048^3", t, bench_core.c_times(a.core, [op, 2048], t, a.reps)[op][0])
        for name, path in paths.items():
            for op, v in bench_core.c_times(a.core, [path, B], t, a.reps).items():
                put(f"{name} {op}", t, v[0])
            for op, v in bench_core.c_times(a.reg, [path, B], t, a.reps).items():
                put(f"{name} {op}", t, v[0])
        print(f"# {t} threads done", file=sys.stderr, flush=True)

    top = ts[-1]
    torch_ms = {}
    if a.torch:
        torch.set_num_threads(top)
        for name, model in models.items():
            for op, v in bench_core.torch_times(model, B, K, a.reps).items():
                if op != "jacobian_method":
                    torch_ms[f"{name} {op}"] = v[0]
            for op, spec in bench_reg.SPECS.items():
                torch_ms[f"{name} {op}"] = bench_reg.torch_time(model, spec, B, K, a.reps, False)[0]
                torch_ms[f"{name} {op}+params"] = bench_reg.torch_time(
                    model, spec, B, K, a.reps, True)[0]

    sg = rows["sgemm 2048^3"]
    sg_up = sg[1] / sg[top]
    print(f"thread scaling, batch {B}, best of {a.reps} (ms); {os.cpu_count()} cores; "
          f"OpenBLAS sgemm speed-up 1->{top} threads: {sg_up:.2f}x")
    head = f"{'kernel':34}" + "".join(f"{str(t) + ' thr':>10}" for t in ts)
    head += f"{'speed-up':>10}{'vs sgemm':>10}"
    if a.torch:
        head += f"{'torch ' + str(top):>10}{'ratio':>7}"
    print(head)
    for name, v in rows.items():
        up = v[1] / v[top]
        line = f"{name:34}" + "".join(f"{v[t]:10.2f}" for t in ts)
        line += f"{up:9.2f}x{up / sg_up:10.2f}"
        if a.torch and name in torch_ms:
            line += f"{torch_ms[name]:10.2f}{torch_ms[name] / v[top]:7.2f}"
        print(line)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
