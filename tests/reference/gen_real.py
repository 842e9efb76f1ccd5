#!/usr/bin/python3
"""Reference cases on real images (issue 23), beside gen_core's and gen_reg's random ones.

Fashion-MNIST backgrounds are exactly 0, so convolutions give equal values at neighbouring
positions and max-pool windows hold exact ties; PyTorch keeps equal values equal and routes
to the first maximum. These cases keep the ties: NO margin filtering.

- core_real_small: the smallest case of the issue (conv 1->4, relu, maxpool, conv 4->8, relu,
  maxpool, linear 392->3, non-negative conv biases) on synthetic flat-background images: a zero
  image, zero images with constant patches of several values, sizes and places, and a sample
  of U(0, 1e-3) noise.
- core_real_cnn, core_real_bn: the demo CNN (conv 1->16, relu, maxpool, conv 16->32, relu,
  maxpool, linear 1568->10) and conv 1->8, relu, maxpool, conv 8->16, batchnorm, relu,
  maxpool, linear 784->10, each trained here for a couple of seconds (seeded, Adam, float32)
  on the first 2048 training images of Debian's dataset-fashion-mnist, evaluated on the first
  256 test images and the same images with a constant patch (value, size and place drawn per
  image): logits, pattern, Jacobian, JVPs, cross-entropy gradients (test_core.c).
- reg_real_*: every regularizer of gen_reg.SPECS with input and parameter gradients
  (test_reg.c), on 4 of those images (2 plain, 2 patched) per net and on the synthetic
  images for the small net: float64 double backprop through these convs costs about a second per image.

Weights are rounded to float32 before the float64 computation, as in gen_core.
Run: /usr/bin/python3 tests/reference/gen_real.py --out build/ref
"""
import argparse
import copy
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_core as core  # noqa: E402
import gen_reg as reg  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist (as relureg-train)
N_TRAIN = 2048
N_TEST = 256
N_REG = 2


def load(split, n):
    """The first n images (float32 in [0, 1], as lib/train/idx.c: byte / 255) and labels."""
    with gzip.open(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read(16 + n * 784)
    with gzip.open(os.path.join(DATA, f"{split}-labels-idx1-ubyte.gz"), "rb") as f:
        lab = f.read(8 + n)
    x = np.frombuffer(raw[16:], np.uint8).astype(np.float32) / np.float32(255.0)
    return (torch.from_numpy(x.reshape(n, 1, 28, 28).copy()),
            torch.from_numpy(np.frombuffer(lab[8:], np.uint8).astype(np.int64)))


def patched(x, gen):
    """x with one constant rectangle per image: value in {0, 0.5, 1, random}, side 3..12."""
    out = x.clone()
    for b in range(len(x)):
        h, w = (int(v) for v in torch.randint(3, 13, (2,), generator=gen))
        y0, x0 = int(torch.randint(0, 28 - h + 1, (1,), generator=gen)), int(
            torch.randint(0, 28 - w + 1, (1,), generator=gen))
        v = [0.0, 0.5, 1.0, float(torch.rand(1, generator=gen))][int(torch.randint(0, 4, (1,), generator=gen))]
        out[b, :, y0:y0 + h, x0:x0 + w] = v
    return out


def synthetic(gen):
    """Flat-background images: zeros, constant patches, two patches, one noisy image."""
    xs = [torch.zeros(1, 28, 28)]
    p = torch.zeros(1, 28, 28)
    p[0, 10:18, 10:18] = 0.5  # the image
    xs.append(p)
    for v, (y0, y1, x0, x1) in [(1.0, (0, 8, 0, 8)), (0.25, (20, 28, 20, 28)), (0.5, (3, 25, 5, 9)),
                                (0.75, (1, 27, 1, 27)), (1.0, (13, 15, 0, 28)), (0.5, (0, 28, 14, 15))]:
        p = torch.zeros(1, 28, 28)
        p[0, y0:y1, x0:x1] = v
        xs.append(p)
    p = torch.zeros(1, 28, 28)
    p[0, 2:9, 4:12], p[0, 15:26, 14:20] = 0.3, 0.9
    xs.append(p)
    xs.append(torch.full((1, 28, 28), 0.5))
    xs.append(torch.rand(1, 28, 28, generator=gen) * 1e-3)
    return torch.stack(xs)


def small_net(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(392, 3))
    with torch.no_grad():
        m[0].bias.abs_()
        m[3].bias.abs_()
    return m


def demo_cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(1568, 10))


def bn_cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(784, 10))


def train(m, x, y, seed, epochs=1, batch=64):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    m.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(m(x[idx]), y[idx]).backward()
            opt.step()
    m.eval()
    return m


def ready(m):
    m = m.double().eval()
    core.round_to(m, "F32")
    return m


def decidable(m, x):
    """Samples whose activation pattern float32 arithmetic decides: torch float32 and torch
    float64 agree on it. Exact ties (flat backgrounds) stay: both keep equal values equal and
    take the first maximum. What goes is a gap between two values smaller than float32 can
    resolve (a few samples of a trained net, which ones depending on the training's own
    float32 rounding): there no float32 computation, torch's included, has a right answer."""
    return (core.pattern(m, x.double()) == core.pattern(copy.deepcopy(m).float(), x.float())).all(1)


def write(name, m, x, y, out_dir, seed, reg_rows):
    t0 = time.time()
    keep = decidable(m, x)
    if not bool(keep.all()):
        rows = torch.nonzero(keep).flatten()
        pos = {int(r): i for i, r in enumerate(rows)}
        reg_rows = [pos[r] for r in reg_rows if r in pos]
        x, y = x[rows], y[rows]
    print(f"{name}: {int((~keep).sum())} of {len(keep)} samples left out: float32 (torch) and "
          "float64 patterns differ there")
    rng_t = torch.Generator().manual_seed(seed)
    x64 = x.double()
    core.write_case(m, [1, 28, 28], x64, y, f"core_{name}", out_dir, rng_t, "F32",
                    {"seed": seed, "real": True})
    xr, yr = x64[reg_rows], y[reg_rows]
    reg.write_case(m, [1, 28, 28], xr, yr, f"reg_{name}", out_dir, {"seed": seed, "real": True})
    print(f"core_{name}: B={len(x)}, reg_{name}: B={len(xr)}: {core.describe(m)} "
          f"({time.time() - t0:.1f} s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.time()
    gen = torch.Generator().manual_seed(23)

    # The smallest case, synthetic images; labels are arbitrary classes.
    xs = synthetic(gen)
    m = ready(small_net(0))
    ys = torch.arange(len(xs)) % 3
    write("real_small", m, xs, ys, a.out, 23, list(range(len(xs))))

    xtr, ytr = load("train", N_TRAIN)
    xte, yte = load("t10k", N_TEST)
    x = torch.cat([xte, patched(xte, gen)])
    y = torch.cat([yte, yte])
    rows = list(range(N_REG)) + list(range(N_TEST, N_TEST + N_REG))
    for name, build, seed in (("real_cnn", demo_cnn, 1), ("real_bn", bn_cnn, 2)):
        torch.manual_seed(seed)
        m = ready(train(build(), xtr, ytr, seed))
        write(name, m, x, y, a.out, seed, rows)
    print(f"real-data cases in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
