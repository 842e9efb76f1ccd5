#!/usr/bin/env python3
"""Train a PyTorch MLP on Fashion-MNIST with a robustness regularizer computed by reluregd.

    /usr/bin/python3 clients/python/examples/train_orchestrator.py \\
        --url http://127.0.0.1:8080 --regularizer input_gradient --lam 0.1 --steps 200 --batch 64

The loss is  cross_entropy + lam * R.  PyTorch computes the cross-entropy and its gradient;
reluregd computes R and dR/dtheta exactly (api.md, POST /v1/models/{name}/regularizers;
definitions in math.md, "reduction": "mean"). Every step the orchestrator

  1. PUTs the current weights (binary safetensors, via Client.put_model with the torch module,
     input_range [0, 1]) under the model name (default "orchestrated"),
  2. asks for R and grad_parameters on the batch, pinned to the version that PUT returned
     (a 409 /problems/version-mismatch means someone replaced the model in between; it is
     raised, not papered over),
  3. runs loss.backward() of the cross-entropy, adds lam * dR/dtheta to every parameter's
     .grad, and steps the optimizer (SGD with momentum by default, --optimizer adam).

`--regularizer` takes a name (input_gradient, jacobian, cross_lipschitz, curvature, ...) or a
JSON object with its options, e.g. '{"name": "jacobian", "estimator": "projection",
"projections": 1, "seed": 0}'. When the daemon runs with --token-file, PUT needs the token:
pass --token-file.

Fashion-MNIST is read with the standard library from Debian's dataset-fashion-mnist package
(gzip IDX files in /usr/share/datasets/fashion-mnist/); images are scaled to [0, 1], shape
[N, 1, 28, 28].

The pieces are importable (tests/e2e/test_orchestrator.py uses them): `load_fashion_mnist`,
`make_model`, `regularizer_spec`, `step`, `train`, `evaluate`, `random_batches`.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))  # clients/python: the relureg package
import relureg  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INPUT_SHAPE = [1, 28, 28]
INPUT_RANGE = [0.0, 1.0]
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


# ---- data ----

def _idx(path, magic, limit):
    """(dims, raw bytes) of a gzip IDX file, reading only the first `limit` items."""
    with gzip.open(path, "rb") as f:
        m, n = struct.unpack(">II", f.read(8))
        if m != magic:
            raise ValueError(f"{path}: IDX magic {m:#x}, expected {magic:#x}")
        ndim = magic & 0xFF
        dims = [n] + list(struct.unpack(">" + "I" * (ndim - 1), f.read(4 * (ndim - 1))))
        if limit is not None:
            dims[0] = min(n, int(limit))
        per = 1
        for d in dims[1:]:
            per *= d
        raw = f.read(dims[0] * per)
        if len(raw) != dims[0] * per:
            raise ValueError(f"{path}: truncated ({len(raw)} of {dims[0] * per} bytes)")
    return dims, raw


def load_fashion_mnist(split="train", limit=None, root=DATA_DIR):
    """(images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N]) of the first `limit` (all
    when None) samples of `split` ("train" or "test")."""
    img_file, lab_file = FILES[split]
    dims, raw = _idx(os.path.join(root, img_file), 0x00000803, limit)
    ldims, lraw = _idx(os.path.join(root, lab_file), 0x00000801, limit)
    if ldims[0] != dims[0]:
        raise ValueError(f"{split}: {dims[0]} images but {ldims[0]} labels")
    images = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    images = images.reshape(dims[0], 1, dims[1], dims[2]).to(torch.float32).div_(255.0)
    labels = torch.frombuffer(bytearray(lraw), dtype=torch.uint8).to(torch.int64)
    return images, labels


def random_batches(images, labels, batch, steps, seed=0):
    """`steps` minibatches (x, y) of `batch` samples, drawn by reshuffling once per epoch."""
    g = torch.Generator().manual_seed(seed)
    n, perm, pos = images.shape[0], None, None
    for _ in range(steps):
        if perm is None or pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + batch]
        pos += batch
        yield images[idx], labels[idx]


# ---- model ----

def make_model(seed=0):
    """Flatten, Linear(784, 256), ReLU, Linear(256, 256), ReLU, Linear(256, 10) (float32)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
                         nn.ReLU(), nn.Linear(256, 10))


def regularizer_spec(text):
    """A regularizer entry of the request: {"name": text}, or the JSON object `text`."""
    text = text.strip()
    if text.startswith("{"):
        spec = json.loads(text)
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError("a JSON regularizer needs a \"name\"")
        return spec
    return {"name": text}


# ---- training ----

def step(client, model, x, y, lam, reg_spec, optimizer, name, *, reduction="mean",
         input_range=INPUT_RANGE):
    """One training step of  cross_entropy(model(x), y) + lam * R(model; x, y)  with R and
    dR/dtheta from reluregd. Returns a dict: `version` (the one the PUT returned and the
    regularizer request was pinned to), `put` (the PUT answer), `ce` (torch's mean
    cross-entropy), `daemon_ce` (the daemon's), `r` (R's value), `accuracy` (on the batch,
    before the update), `answer` (the regularizer entry of the answer).

    `reduction` must be the one the cross-entropy uses ("mean": F.cross_entropy's default),
    so that lam weighs the two terms as the formula says."""
    put = client.put_model(name, model, input_shape=INPUT_SHAPE, input_range=list(input_range),
                           class_names=CLASS_NAMES)
    version = put["version"]
    ans = client.regularizers(name, x, y, regularizers=[reg_spec], gradients=("parameters",),
                              reduction=reduction, version=version, as_="torch")
    if ans.get("version") != version:
        raise RuntimeError(f"asked for version {version}, the daemon answered {ans.get('version')}")
    reg = ans["regularizers"][0]
    grads = reg["grad_parameters"]

    optimizer.zero_grad(set_to_none=False)
    logits = model(x)
    ce = F.cross_entropy(logits, y, reduction=reduction)
    ce.backward()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname not in grads:
                raise KeyError(f"the daemon's grad_parameters lacks {pname!r}")
            g = grads[pname].to(device=p.device, dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"grad_parameters[{pname!r}] has shape {list(g.shape)}, "
                                 f"the parameter {list(p.shape)}")
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(g, alpha=lam)
    optimizer.step()
    acc = (logits.detach().argmax(1) == y).float().mean().item()
    return {"version": version, "put": put, "ce": ce.item(), "daemon_ce": ans["loss"]["value"],
            "r": reg["value"], "accuracy": acc, "answer": reg}


def train(client, model, batches, lam, reg_spec, optimizer, name, *, log=print, log_every=10):
    """Runs `step` on every (x, y) of `batches`; returns the list of step results. Prints
    step, CE, R and batch accuracy every `log_every` steps (averaged since the last line)."""
    results, since, t0 = [], [], time.monotonic()
    for i, (x, y) in enumerate(batches, 1):
        r = step(client, model, x, y, lam, reg_spec, optimizer, name)
        results.append(r)
        since.append(r)
        if log is not None and (i % log_every == 0 or i == 1):
            n = len(since)
            ce = sum(s["ce"] for s in since) / n
            rv = [s["r"] for s in since if s["r"] is not None]
            rm = sum(rv) / len(rv) if rv else float("nan")
            acc = sum(s["accuracy"] for s in since) / n
            log(f"step {i:5d}  CE {ce:.4f}  R {rm:.6g}  CE+lam*R {ce + lam * rm:.4f}  "
                f"acc {acc:.3f}  version {r['version']}  {time.monotonic() - t0:.1f}s")
            since = []
    return results


def evaluate(model, images, labels, batch=1000):
    """Accuracy of `model` on (images, labels)."""
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            correct += (model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum().item()
    model.train(was)
    return correct / max(1, images.shape[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="reluregd's base URL")
    ap.add_argument("--token-file", help="file holding the bearer token for PUT")
    ap.add_argument("--name", default="orchestrated", help="model name on the daemon")
    ap.add_argument("--regularizer", default="input_gradient",
                    help="regularizer name or JSON entry (default input_gradient)")
    ap.add_argument("--lam", type=float, default=0.1, help="weight of R (default 0.1)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--lr", type=float, default=None, help="default 0.05 (sgd), 1e-3 (adam)")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    ap.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    ap.add_argument("--test-n", type=int, default=1000, help="test images for the final accuracy")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--delete", action="store_true", help="DELETE the model at the end")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.test_n < 0:
        ap.error("--steps and --batch must be >= 1, --test-n >= 0")

    token = None
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    spec = regularizer_spec(args.regularizer)
    images, labels = load_fashion_mnist("train", root=args.data_dir)
    test_x, test_y = load_fashion_mnist("test", limit=args.test_n, root=args.data_dir)
    model = make_model(args.seed)
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr or 0.05, momentum=args.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr or 1e-3)
    print(f"training {args.steps} steps of batch {args.batch} on {images.shape[0]} images: "
          f"CE + {args.lam} * {json.dumps(spec)} via {args.url} (model {args.name!r}), "
          f"{args.optimizer}")
    with relureg.Client(args.url, token=token) as client:
        try:
            train(client, model, random_batches(images, labels, args.batch, args.steps, args.seed),
                  args.lam, spec, opt, args.name, log_every=args.log_every)
        except relureg.ProblemError as e:
            print(f"reluregd refused a request: {e}", file=sys.stderr)
            return 1
        finally:
            if args.delete:
                try:
                    client.delete_model(args.name)
                except relureg.ProblemError:
                    pass
    if args.test_n:
        print(f"test accuracy on {test_x.shape[0]} test images: "
              f"{evaluate(model, test_x, test_y):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
