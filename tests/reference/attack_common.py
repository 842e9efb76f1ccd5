"""Helpers of the attack and certificate tests: random nets from gen_core, the probe runner,
and float64 torch forwards of the same float32 weights."""
import functools
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
import gen_core  # noqa: E402
from relureg import export  # noqa: E402
from relureg import safetensors  # noqa: E402

PROBE = os.environ.get("RR_PROBE", os.path.join(HERE, "..", "..", "build", "release", "attack-probe"))
TMP = tempfile.mkdtemp(prefix="rr-attack-")
FASHION = "/usr/share/datasets/fashion-mnist"


def random_net(seed, kind=None, scale=1.5, max_units=2000):
    """A random ReLU-family net of gen_core (float64, weights rounded to float32), its input
    shape, K, and the path of its export with input_range [-1, 1]."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(50):
        pick = kind or (gen_core.cnn if rng.random() < 0.5 else gen_core.mlp)
        model, shape, K = pick(rng)
        if gen_core.relu_units(model, shape) <= max_units and K >= 3:
            break
    model = model.double().eval()
    gen_core.scale_weights(model, scale)
    gen_core.round_to(model, "F32")
    path = os.path.join(TMP, f"net_{seed}.safetensors")
    export(model.float(), shape, path, input_range=[-1.0, 1.0])
    model = gen_core.twin(model).double().eval()
    return model, shape, K, path


def draw(model, shape, B, seed):
    """B inputs in [-1, 1] away from relu kinks and max-pool ties (float32 values)."""
    g = torch.Generator().manual_seed(seed)
    x = gen_core.draw_inputs(model, shape, B, g)
    return None if x is None else x.float().double()


def probe(path, x, labels, options, target=None, start=None):
    """Runs tests/probe/attack_probe; returns its output tensors (torch)."""
    t = {"inputs": x.float().contiguous(), "labels": labels.to(torch.int64).contiguous()}
    if target is not None:
        t["target_labels"] = target.to(torch.int64).contiguous()
    if start is not None:
        t["start"] = start.float().contiguous()
    fd, fin = tempfile.mkstemp(dir=TMP, suffix=".in")
    os.close(fd)
    fout = fin[:-3] + ".out"
    with open(fin, "wb") as f:
        f.write(safetensors.save(t, {"options": json.dumps(options)}))
    subprocess.run([PROBE, path, fin, fout], check=True)
    with open(fout, "rb") as f:
        out, _ = safetensors.load(f.read())
    return out


def logits64(model, x):
    with torch.no_grad():
        return model(x.double())


def ce_grad64(model, x, y):
    """d CE / dx per sample, float64."""
    xr = x.double().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xr), y, reduction="sum")
    return torch.autograd.grad(loss, xr)[0]


def pattern(model, x):
    """Activation pattern of each sample in float64 (gen_core.pattern)."""
    return gen_core.pattern(model, x.double())


def _idx(name):
    with gzip.open(os.path.join(FASHION, name), "rb") as f:
        data = f.read()
    if name.find("images") >= 0:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


@functools.lru_cache(maxsize=None)
def trained_mlp(seed=0, n_train=12000, epochs=2):
    """A 784-64-10 MLP trained for a few seconds on Fashion-MNIST (input_range [0, 1]); trained
    once per process (the attack test files share it)."""
    torch.manual_seed(seed)
    xs = torch.from_numpy(_idx("train-images-idx3-ubyte.gz")[:n_train].copy())
    ys = torch.from_numpy(_idx("train-labels-idx1-ubyte.gz")[:n_train].copy())
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(n_train)
        for i in range(0, n_train, 100):
            idx = perm[i:i + 100]
            opt.zero_grad()
            F.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    path = os.path.join(TMP, f"fashion_{seed}.safetensors")
    export(model.float(), [784], path, input_range=[0.0, 1.0])
    model = model.double().eval()
    xt = torch.from_numpy(_idx("t10k-images-idx3-ubyte.gz")[:2000].copy()).double()
    yt = torch.from_numpy(_idx("t10k-labels-idx1-ubyte.gz")[:2000].copy())
    return model, path, xt, yt
