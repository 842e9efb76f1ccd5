#!/usr/bin/python3
"""Reference cases for the core kernels, computed with torch float64 autograd at test time.

For each of 24 seeded random architectures (covering every layer type and option of
model-format.md) this writes `core_NNN.model.safetensors` (the model, as relureg.export
writes it) and `core_NNN.case.safetensors` with inputs, labels and the expected logits,
input Jacobian, JVPs, mean cross-entropy, its gradient to the inputs and to every model
tensor but num_batches_tracked, and the activation pattern (relu masks, max-pool indices).

Like with like: weights and inputs are rounded to float32 (or to the stored dtype) before
the float64 computation, and every sample is drawn (at most 100 tries) so that every
relu / leaky_relu input and every max-pool top-two gap is at least 1e-4 of its layer's
largest magnitude (all-zero windows exempt), so both sides see the same linear region.
Run: /usr/bin/python3 tests/reference/gen_core.py --out build/ref
"""
import argparse
import json
import os
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
from relureg import Residual, export  # noqa: E402
from relureg import safetensors  # noqa: E402

MARGIN = 1e-4
TRIES = 100
T = 3  # JVP tangents per sample

COVER = set()


def cover(*tags):
    COVER.update(tags)


# ---- random layers (shapes tracked as lists without the batch dimension) ----

def conv(rng, shape, out_ch=None, k=None, s=None, p=None, bias=None):
    c = shape[0]
    out_ch = out_ch or rng.choice([2, 3, 4])
    # kernels that fit the input even unpadded
    k = k or rng.choice([kk for kk in [(1, 1), (3, 3), (5, 5), (3, 1), (1, 3), (3, 5)]
                         if kk[0] <= shape[1] and kk[1] <= shape[2]])
    s = s or rng.choice([(1, 1), (1, 1), (2, 2), (2, 1)])
    p = p if p is not None else (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
    bias = rng.random() < 0.8 if bias is None else bias
    h = (shape[1] + 2 * p[0] - k[0]) // s[0] + 1
    w = (shape[2] + 2 * p[1] - k[1]) // s[1] + 1
    assert h >= 1 and w >= 1
    cover("conv2d", f"conv_k{k[0]}x{k[1]}")
    if k[0] != k[1]:
        cover("conv_nonsquare_kernel")
    if s != (1, 1):
        cover("conv_stride")
    if p != (0, 0):
        cover("conv_padding")
    if not bias:
        cover("conv_nobias")
    return nn.Conv2d(c, out_ch, k, stride=s, padding=p, bias=bias), [out_ch, h, w]


def pool_out(n, k, s, p, ceil):
    num = n + 2 * p - k
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


def pool(rng, shape, kind):
    for _ in range(50):
        k = rng.choice([(2, 2), (3, 3), (2, 3), (3, 2)])
        s = rng.choice([k, (1, 1), (2, 2), (2, 1)])
        p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
        ceil = rng.random() < 0.5
        h, w = pool_out(shape[1], k[0], s[0], p[0], ceil), pool_out(shape[2], k[1], s[1], p[1], ceil)
        if h >= 1 and w >= 1 and shape[1] + 2 * p[0] >= k[0] and shape[2] + 2 * p[1] >= k[1]:
            break
    else:
        raise RuntimeError("no pooling fits")
    tag = "maxpool2d" if kind == "max" else "avgpool2d"
    cover(tag)
    if ceil:
        cover(f"{tag}_ceil_mode")
    if p != (0, 0):
        cover(f"{tag}_padding")
    if s[0] < k[0] or s[1] < k[1]:
        cover(f"{tag}_overlap")
    if kind == "max":
        return nn.MaxPool2d(k, s, p, ceil_mode=ceil), [shape[0], h, w]
    cip = rng.random() < 0.5
    cover(f"avgpool2d_count_include_pad_{cip}")
    return nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=cip), [shape[0], h, w]


def act(rng):
    if rng.random() < 0.5:
        cover("relu")
        return nn.ReLU()
    slope = rng.choice([0.01, 0.1, 0.2, 0.5])
    cover("leaky_relu", f"leaky_{slope}")
    return nn.LeakyReLU(slope)


def bn(rng, shape):
    affine = rng.random() < 0.7
    eps = rng.choice([1e-5, 1e-3, 0.1])
    cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    m = cls(shape[0], eps=eps, affine=affine)
    with torch.no_grad():
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.3, 2.0)
        m.num_batches_tracked.fill_(rng.randint(0, 1000))
        if affine:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.3, 0.3)
    cover("batchnorm2d" if len(shape) == 3 else "batchnorm1d")
    if not affine:
        cover("batchnorm_no_affine")
    if eps != 1e-5:
        cover("batchnorm_eps")
    return m


def lin(rng, d, out=None, bias=None):
    out = out or rng.choice([6, 8, 12, 16])
    bias = rng.random() < 0.85 if bias is None else bias
    cover("linear")
    if not bias:
        cover("linear_nobias")
    return nn.Linear(d, out, bias=bias), out


def mlp(rng):
    """Vector or image input; optional leading flatten; linear/act/bn and residual blocks."""
    K = rng.randint(2, 10)
    if rng.random() < 0.4:
        shape = [rng.randint(1, 2), rng.randint(3, 6), rng.randint(3, 6)]
        mods = [nn.Flatten()]
        cover("flatten_image")
        d = shape[0] * shape[1] * shape[2]
    else:
        shape = [rng.randint(3, 20)]
        mods = []
        d = shape[0]
        if rng.random() < 0.3:
            mods.append(nn.Flatten())
            cover("flatten_vector")
    for _ in range(rng.randint(1, 3)):
        m, d = lin(rng, d)
        mods.append(m)
        if rng.random() < 0.4:
            mods.append(bn(rng, [d]))
        mods.append(act(rng))
        if rng.random() < 0.3:
            mods.append(nn.Dropout(0.5))
            cover("dropout_dropped")
        if rng.random() < 0.4:
            a, _ = lin(rng, d, d)
            b, _ = lin(rng, d, d)
            body = [a, act(rng), b]
            if rng.random() < 0.4:
                c, _ = lin(rng, d, d)
                body.append(Residual(nn.Sequential(act(rng), c)))
                cover("residual_nested")
            mods.append(Residual(nn.Sequential(*body)))
            mods.append(act(rng))
            cover("residual_mlp")
    m, _ = lin(rng, d, K)
    mods.append(m)
    return nn.Sequential(*mods), shape, K


def cnn(rng):
    K = rng.randint(2, 10)
    shape = [rng.randint(1, 3), rng.randint(7, 12), rng.randint(7, 12)]
    mods, s = [], list(shape)
    for _ in range(rng.randint(1, 2)):
        m, s = conv(rng, s)
        mods.append(m)
        if rng.random() < 0.5:
            mods.append(bn(rng, s))
        mods.append(act(rng))
        if rng.random() < 0.4 and s[1] >= 3 and s[2] >= 3:
            c1, _ = conv(rng, s, out_ch=s[0], k=(3, 3), s=(1, 1), p=(1, 1))
            c2, _ = conv(rng, s, out_ch=s[0], k=(3, 3), s=(1, 1), p=(1, 1))
            body = [c1]
            if rng.random() < 0.6:
                body.append(bn(rng, s))
            body += [act(rng), c2]
            mods.append(Residual(nn.Sequential(*body)))
            mods.append(act(rng))
            cover("residual_conv")
        if s[1] >= 2 and s[2] >= 2:
            p, s = pool(rng, s, rng.choice(["max", "max", "avg"]))
            mods.append(p)
    mods.append(nn.Flatten())
    cover("flatten_image")
    d = s[0] * s[1] * s[2]
    if rng.random() < 0.5:
        m, d2 = lin(rng, d)
        mods += [m, act(rng)]
        d = d2
    m, _ = lin(rng, d, K)
    mods.append(m)
    return nn.Sequential(*mods), shape, K


def relu_units(model, shape):
    n = 0

    def hook(mod, inp, out):
        nonlocal n
        n += inp[0][0].numel()
    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros([1] + shape))
    for h in hs:
        h.remove()
    return n


def scale_weights(model, gain):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(gain)


# ---- the float64 twin: batchnorm with running statistics as differentiable leaves ----

class BNEval(nn.Module):
    def __init__(self, bn_):
        super().__init__()
        self.eps = bn_.eps
        self.weight = nn.Parameter(bn_.weight.detach().clone()) if bn_.affine else None
        self.bias = nn.Parameter(bn_.bias.detach().clone()) if bn_.affine else None
        self.running_mean = nn.Parameter(bn_.running_mean.detach().clone())
        self.running_var = nn.Parameter(bn_.running_var.detach().clone())

    def forward(self, x):
        view = [1, -1] + [1] * (x.dim() - 2)
        y = (x - self.running_mean.view(view)) / torch.sqrt(self.running_var.view(view) + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(view) + self.bias.view(view)
        return y


def twin(seq):
    """A copy of `seq` whose batchnorms expose running statistics as parameters."""
    out = nn.Sequential()
    for key, m in seq.named_children():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.add_module(key, BNEval(m))
        elif isinstance(m, Residual):
            out.add_module(key, Residual(twin(m.body)))
        else:
            out.add_module(key, m)
    return out


def pattern_layers(model):
    """relu / leaky_relu / maxpool2d modules in forward order (nested residuals in place)."""
    out = []
    for m in model.children():
        if isinstance(m, Residual):
            out += pattern_layers(m.body)
        elif isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.MaxPool2d)):
            out.append(m)
    return out


def capture(model, x):
    """Runs model on x; returns the inputs of its pattern layers in order."""
    layers, seen = pattern_layers(model), []
    hs = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0].detach())))
          for m in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return seen


def pattern(model, x):
    """Activation pattern of each sample, in x's precision: relu masks and max-pool indices
    (torch's first maximum on ties), concatenated."""
    parts = []
    for mod, inp in capture(model, x):
        if isinstance(mod, nn.MaxPool2d):
            _, ind = F.max_pool2d(inp, mod.kernel_size, mod.stride, mod.padding,
                                  ceil_mode=mod.ceil_mode, return_indices=True)
            parts.append(ind.reshape(len(x), -1).to(torch.int64))
        else:
            parts.append((inp > 0).reshape(len(x), -1).to(torch.int64))
    return torch.cat(parts, dim=1)


def window_gaps(mod, x):
    """Per window of a max-pool on x [1, C, H, W]: top-two gap and whether all entries are 0.
    Padding cells are -inf in unfold's view, so they are excluded by masking."""
    k = mod.kernel_size if isinstance(mod.kernel_size, tuple) else (mod.kernel_size,) * 2
    s = mod.stride if isinstance(mod.stride, tuple) else (mod.stride,) * 2
    p = mod.padding if isinstance(mod.padding, tuple) else (mod.padding,) * 2
    C, H, W = x.shape[1:]
    oh, ow = pool_out(H, k[0], s[0], p[0], mod.ceil_mode), pool_out(W, k[1], s[1], p[1], mod.ceil_mode)
    gaps, zeros = [], []
    xi = x[0]
    for c in range(C):
        for i in range(oh):
            for j in range(ow):
                y0, x0 = i * s[0] - p[0], j * s[1] - p[1]
                vals = xi[c, max(y0, 0):min(y0 + k[0], H), max(x0, 0):min(x0 + k[1], W)].reshape(-1)
                zeros.append(bool((vals == 0).all()))
                if vals.numel() < 2:
                    gaps.append(float("inf"))
                else:
                    top = torch.topk(vals, 2).values
                    gaps.append(float(top[0] - top[1]))
    return gaps, zeros


def margin_ok(model, x):
    for mod, inp in capture(model, x):
        scale = float(inp.abs().max())
        if scale == 0:
            continue
        if isinstance(mod, nn.MaxPool2d):
            gaps, zeros = window_gaps(mod, inp)
            if any(g < MARGIN * scale and not z for g, z in zip(gaps, zeros)):
                return False
        elif float(inp.abs().min()) < MARGIN * scale:
            return False
    return True


def draw_inputs(model, shape, B, rng_t):
    xs = []
    for b in range(B):
        for _ in range(TRIES):
            x = (torch.rand([1] + shape, generator=rng_t) * 2 - 1).float().double()
            if margin_ok(model, x):
                xs.append(x)
                break
        else:
            return None
    return torch.cat(xs)


def round_to(model, dtype_name):
    """Rounds weights and buffers to the stored dtype, then to float32 and float64 (what the C
    side computes with is that float32 value)."""
    dt = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
          "BF16": torch.bfloat16}[dtype_name]
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                t.copy_(t.to(dt).float().double())


def describe(seq):
    return " ".join(f"Residual[{describe(m.body)}]" if isinstance(m, Residual) else type(m).__name__
                    for m in seq.children())


def make_case(idx, seed, out_dir):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for attempt in range(20):
        model, shape, K = (cnn if rng.random() < 0.55 else mlp)(rng)
        if relu_units(model, shape) <= 2000:
            break
    model = model.double().eval()
    scale_weights(model, 1.5)
    dtype_name = {3: "F64", 7: "F16", 11: "BF16", 19: "F16"}.get(idx, "F32")
    if dtype_name != "F32":
        cover(f"weights_{dtype_name}")
    round_to(model, dtype_name)
    B = rng.randint(3, 8)
    rng_t = torch.Generator().manual_seed(seed)
    x = draw_inputs(model, shape, B, rng_t)
    if x is None:
        return None
    y = torch.randint(0, K, (B,), generator=rng_t)
    desc = write_case(model, shape, x, y, f"core_{idx:03d}", out_dir, rng_t, dtype_name,
                      {"seed": seed})
    return f"core_{idx:03d}", B, K, shape, desc


def write_case(model, shape, x, y, case_name, out_dir, rng_t, dtype_name="F32", info=None):
    """Writes CASE_NAME.model.safetensors and CASE_NAME.case.safetensors for `model` (float64, weights
    already rounded) at inputs x [B, ...] with labels y; returns the description."""
    B, K = x.shape[0], int(model(x[:1]).shape[1])
    tw = twin(model).double().eval()
    with torch.no_grad():
        assert torch.allclose(tw(x), model(x), rtol=1e-12, atol=1e-12), "BN twin disagrees"

    # Activation pattern, in forward order.
    pattern = {}
    for j, (mod, inp) in enumerate(capture(model, x)):
        if isinstance(mod, nn.MaxPool2d):
            _, ind = F.max_pool2d(inp, mod.kernel_size, mod.stride, mod.padding,
                                  ceil_mode=mod.ceil_mode, return_indices=True)
            pattern[f"pattern/{j:03d}"] = ind.to(torch.int64)
        else:
            pattern[f"pattern/{j:03d}"] = (inp > 0).to(torch.uint8)

    # Logits and the Jacobian (K backward passes of float64 autograd).
    xr = x.clone().requires_grad_(True)
    z = tw(xr)
    D = x[0].numel()
    J = torch.stack([torch.autograd.grad(z[:, k].sum(), xr, retain_graph=True)[0].reshape(B, D)
                     for k in range(K)], dim=1)
    v = torch.rand(B, T, D, generator=rng_t).mul(2).sub(1).float().double()
    jv = torch.einsum("bkd,btd->btk", J, v)

    # Mean cross-entropy and its gradients to inputs and every parameter.
    tw.zero_grad()
    xr = x.clone().requires_grad_(True)
    per = F.cross_entropy(tw(xr), y, reduction="none")
    loss = per.mean()
    params = dict(tw.named_parameters())
    grads = torch.autograd.grad(loss, [xr] + list(params.values()))

    case = {"inputs": x.float(), "labels": y.to(torch.int64), "logits": z.detach(),
            "jacobian": J.reshape(B, K, D), "loss": loss.detach().reshape([]),
            "loss_per_sample": per.detach(), "grad_inputs": grads[0],
            "jvp_tangents": v.float(), "jvp": jv}
    for (name, _), g in zip(params.items(), grads[1:]):
        case[f"grad/{name}"] = g
    case.update(pattern)
    kinds = ["maxpool2d" if isinstance(m, nn.MaxPool2d) else "relu" for m in pattern_layers(model)]
    desc = describe(model)
    meta = {"relureg.case": json.dumps(dict(info or {}, description=desc, layers=kinds))}
    export(model.float(), shape, os.path.join(out_dir, f"{case_name}.model.safetensors"),
           dtype=dtype_name)
    model.double()
    with open(os.path.join(out_dir, f"{case_name}.case.safetensors"), "wb") as f:
        f.write(safetensors.save(case, meta))
    return desc


REQUIRED = {
    "linear", "linear_nobias", "conv2d", "conv_k1x1", "conv_k3x3", "conv_k5x5",
    "conv_nonsquare_kernel", "conv_stride", "conv_padding", "conv_nobias", "relu", "leaky_relu",
    "maxpool2d", "maxpool2d_ceil_mode", "maxpool2d_padding", "maxpool2d_overlap", "avgpool2d",
    "avgpool2d_ceil_mode", "avgpool2d_padding", "avgpool2d_count_include_pad_True",
    "avgpool2d_count_include_pad_False", "flatten_image", "flatten_vector", "batchnorm1d",
    "batchnorm2d", "batchnorm_no_affine", "batchnorm_eps", "residual_mlp", "residual_conv",
    "residual_nested", "dropout_dropped", "weights_F64", "weights_F16", "weights_BF16",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, default=24)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0, names, seed = time.time(), [], 1000
    # At least --cases cases, and more (up to 2x) until every option is covered.
    while len(names) < a.cases or (REQUIRED - COVER and len(names) < 2 * a.cases):
        seed += 1
        r = make_case(len(names), seed, a.out)
        if r is None:
            print(f"seed {seed}: no inputs away from kinks in {TRIES} tries, next architecture")
            continue
        name, B, K, shape, desc = r
        names.append(name)
        print(f"{name}: seed {seed}, B={B}, K={K}, input {shape}: {desc}")
    with open(os.path.join(a.out, "core_index.json"), "w") as f:
        json.dump(names, f)
    missing = REQUIRED - COVER
    print(f"{len(names)} cases in {time.time() - t0:.1f} s; covered {len(COVER)} options")
    if missing:
        print(f"uncovered options: {sorted(missing)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
