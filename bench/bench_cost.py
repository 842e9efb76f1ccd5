#!/usr/bin/python3
"""How wrong the daemon's cost model is (server/cost.h), per cost class, measured on this machine.

Starts reluregd with its default flags on the MLP 784-1024-1024-10 and the CNN of bench_core.py,
sends each kind of request REPS times in turn (so that each class's learned correction sees the
others' interference as it would in service), then reads /metrics: for each class the typical
factor the estimate is off by, exp(mean |ln(estimated / measured)|), for the FLOP formula alone
and with the learned correction, and the estimated and measured totals. Not a test.
"""
import argparse
import http.client
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
sys.path.insert(0, HERE)
import bench_core  # noqa: E402
from relureg import export  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--reps", type=int, default=6)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="relureg-bench-cost-")
    nets = bench_core.models()
    for name, m in nets.items():
        export(m, [1, 28, 28], os.path.join(tmp, f"{name}.safetensors"), input_range=[0, 1])
    p = subprocess.Popen([a.daemon, "--port", "0", "--models-dir", tmp, "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(re.match(r"reluregd listening on http://[0-9.]+:(\d+)", p.stdout.readline()).group(1))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(model, route, doc):
        conn.request("POST", f"/v1/models/{model}/{route}", json.dumps(doc),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"{model}/{route}: {r.status} {body[:300]!r}")

    g = torch.Generator().manual_seed(0)

    def batch(B):
        return torch.rand(B, 1, 28, 28, generator=g).tolist(), (torch.arange(B) % 10).tolist()

    x1, y1 = batch(1)
    x16, y16 = batch(16)
    x64, y64 = batch(64)
    x256, y256 = batch(256)
    work = [
        ("mlp", "predict", {"inputs": x1}),
        ("mlp", "predict", {"inputs": x256}),
        ("cnn", "predict", {"inputs": x64}),
        ("mlp", "jacobian", {"inputs": x64}),
        ("cnn", "jacobian", {"inputs": x16}),
        ("mlp", "regularizers", {"inputs": x256, "labels": y256, "gradients": ["inputs", "parameters"],
                                 "regularizers": [{"name": "input_gradient"}]}),
        ("mlp", "regularizers", {"inputs": x64, "labels": y64, "gradients": ["parameters"],
                                 "regularizers": [{"name": "jacobian"}]}),
        ("cnn", "regularizers", {"inputs": x16, "labels": y16, "gradients": ["inputs"],
                                 "regularizers": [{"name": "curvature"}]}),
        ("mlp", "attacks", {"inputs": x64, "labels": y64, "attack": "fgsm", "epsilon": 0.05}),
        ("mlp", "attacks", {"inputs": x64, "labels": y64, "attack": "pgd", "epsilon": 0.01,
                            "steps": 20}),
        ("mlp", "attacks", {"inputs": x16, "labels": y16, "attack": "deepfool"}),
        ("mlp", "attacks", {"inputs": x16, "labels": y16, "attack": "apgd_ce", "epsilon": 0.01,
                            "steps": 20}),
        ("mlp", "certify", {"inputs": x16, "labels": y16}),
        ("mlp", "robustness", {"inputs": x16, "labels": y16, "epsilons": [0.01, 0.03],
                               "attack": {"attack": "pgd", "steps": 10}}),
    ]
    for _ in range(a.reps):
        for model, route, doc in work:
            post(model, route, doc)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    p.terminate()
    p.wait()

    def fam(name):
        out = {}
        for m in re.finditer(name + r'\{class="([^"]+)"(?:,estimator="(\w+)")?\} (\S+)', text):
            out[(m.group(1), m.group(2))] = float(m.group(3))
        return out

    n, err, est, meas = (fam("relureg_cost_observations_total"), fam("relureg_cost_log_error_total"),
                         fam("relureg_cost_estimated_seconds_total"),
                         fam("relureg_compute_seconds_total"))
    print(f"cost model on {os.cpu_count()} cores, {a.reps} requests per kind; factor = typical "
          "ratio between estimate and measurement (1.0 = exact)")
    for (cls, _), count in sorted(n.items()):
        f_raw = math.exp(err[(cls, "formula")] / count)
        f_learned = math.exp(err[(cls, "learned")] / count)
        print(json.dumps({"class": cls, "requests": int(count),
                          "measured_ms_mean": round(meas[(cls, None)] / count * 1e3, 3),
                          "formula_ms_mean": round(est[(cls, "formula")] / count * 1e3, 3),
                          "formula_factor": round(f_raw, 2),
                          "learned_factor": round(f_learned, 2)}))


if __name__ == "__main__":
    main()
