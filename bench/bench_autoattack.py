#!/usr/bin/python3
"""APGD-CE against a torch transcription on this machine, and AutoAttack's wall time.

1. APGD-CE, linf, eps 0.1, 100 steps, 1 restart, at batch 256 on the MLP 784-1024-1024-10
   and the CNN of bench_core.py, on Fashion-MNIST test images labelled by the model itself:
   relureg (rr_attack) against a batched float32 torch transcription of the published
   APGD-CE (AutoAttack autopgd_base.py, APGDAttack.perturb / attack_single_run: random start,
   eta = 2 eps, momentum 0.75 after the first step, checkpoints with step halving and moves
   back to the best point; one autograd gradient per step for the whole batch). Both at the
   same thread count; ratio = torch ms / relureg ms. The samples each broke are printed as a
   sanity check (different random starts, so close rather than equal).
2. The AutoAttack `standard` suite (apgd_ce -> apgd_t -> fab_t -> square), relureg only (no
   torch AutoAttack is installed), linf eps 0.1 on the first 1000 Fashion-MNIST test images
   with their labels, on the demo MLP and CNN: the trained build/demo models when present,
   else random-weight nets of the same architectures (tests/e2e/test_cookbook.py demo_models),
   which is said in the output. Seconds, samples broken (broken_by) and the robust accuracy
   left after each stage (stage times from the progress callback), and in total.

Run by `make bench`.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
sys.path.insert(0, HERE)
import bench_core  # noqa: E402
from bench_attacks import timeit  # noqa: E402
from relureg import export  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def fashion(n):
    with gzip.open(f"{DATA}/t10k-images-idx3-ubyte.gz", "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(f"{DATA}/t10k-labels-idx1-ubyte.gz", "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


# ---- APGD-CE as published (AutoAttack autopgd_base.py, linf, eot_iter 1) ----

def apgd_single_run(model, x, y, eps, n_iter):
    """attack_single_run: returns (acc, x_best_adv); acc is False where some iterate
    misclassified, x_best_adv the last such iterate."""
    B = len(x)
    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)
    t = 2 * torch.rand(x.shape) - 1
    # normalize() for linf: t / max|t| per sample.
    x_adv = x + eps * t / (t.reshape(B, -1).abs().amax(1).reshape(-1, 1, 1, 1) + 1e-12)
    x_adv = x_adv.clamp(0.0, 1.0)
    x_best_adv = x_adv.clone()
    loss_steps = torch.zeros(n_iter, B)

    def grad_at(xa):
        xa.requires_grad_(True)
        logits = model(xa)
        loss_indiv = F.cross_entropy(logits, y, reduction="none")
        g, = torch.autograd.grad(loss_indiv.sum(), xa)
        return g, logits.detach(), loss_indiv.detach()

    grad, logits, loss_indiv = grad_at(x_adv)
    x_adv = x_adv.detach()
    x_best, grad_best = x_adv.clone(), grad.clone()
    acc = logits.argmax(1) == y
    loss_best = loss_indiv.clone()
    step_size = 2.0 * eps * torch.ones(B, 1, 1, 1)
    x_adv_old = x_adv.clone()
    k, counter3 = n_iter_2, 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones_like(loss_best)
    lo, hi = x - eps, x + eps
    for i in range(n_iter):
        with torch.no_grad():
            grad2 = x_adv - x_adv_old
            x_adv_old = x_adv
            a = 0.75 if i > 0 else 1.0
            x_adv_1 = torch.clamp(torch.min(torch.max(x_adv + step_size * grad.sign(), lo), hi), 0.0, 1.0)
            x_adv = torch.clamp(torch.min(torch.max(
                x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), lo), hi), 0.0, 1.0)
        grad, logits, loss_indiv = grad_at(x_adv)
        x_adv = x_adv.detach()
        with torch.no_grad():
            pred = logits.argmax(1) == y
            acc = acc & pred
            x_best_adv[~pred] = x_adv[~pred]
            loss_steps[i] = loss_indiv
            ind = loss_indiv > loss_best
            x_best[ind], grad_best[ind], loss_best[ind] = x_adv[ind], grad[ind], loss_indiv[ind]
            counter3 += 1
            if counter3 == k:
                # check_oscillation: increases over the last k steps (index -1 reads the
                # last, still zero, row at the first checkpoint, as published).
                ups = torch.zeros(B)
                for c in range(k):
                    ups += (loss_steps[i - c] > loss_steps[i - c - 1]).float()
                fl_osc = ups <= k * 0.75
                fl_no_impr = (reduced_last_check == 0) & (loss_best_last_check >= loss_best)
                fl_osc = fl_osc | fl_no_impr
                reduced_last_check = fl_osc.float()
                loss_best_last_check = loss_best.clone()
                if fl_osc.any():
                    step_size[fl_osc] /= 2.0
                    x_adv[fl_osc] = x_best[fl_osc]
                    grad[fl_osc] = grad_best[fl_osc]
                k = max(k - size_decr, n_iter_min)
                counter3 = 0
    return acc, x_best_adv


def torch_apgd_ce(model, x, y, eps=0.1, n_iter=100, n_restarts=1):
    """APGDAttack.perturb: each restart attacks the samples still classified correctly.
    Returns the number of samples broken."""
    with torch.no_grad():
        acc = model(x).argmax(1) == y
    adv = x.clone()
    for _ in range(n_restarts):
        ind = acc.nonzero().reshape(-1)
        if len(ind) == 0:
            break
        acc_curr, adv_curr = apgd_single_run(model, x[ind], y[ind], eps, n_iter)
        broke = ind[~acc_curr]
        acc[broke] = False
        adv[broke] = adv_curr[~acc_curr]
    return int((~acc).sum())


def run_bin(a, path, x, y, reps, op, eps):
    fx, fy = os.path.join(a.out, "aa_x.f32"), os.path.join(a.out, "aa_y.i64")
    x.numpy().astype(np.float32).tofile(fx)
    y.numpy().astype(np.int64).tofile(fy)
    r = subprocess.run([a.bin, path, fx, fy, str(len(x)), str(a.threads), str(reps), op, str(eps)],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def demo_architectures():
    """Random-weight nets with the demo models' architectures, built as
    tests/e2e/test_cookbook.py demo_models builds them (seed 0, five MLPs, then the CNN)."""
    torch.manual_seed(0)
    mlps = [nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
                          nn.ReLU(), nn.Linear(256, 10)).eval() for _ in range(5)]
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(1568, 10)).eval()
    return {"mlp": mlps[0], "cnn": cnn}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release/bench-autoattack")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--demo", default="build/demo")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--n-autoattack", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    eps = a.eps

    # ---- 1. APGD-CE against the torch transcription ----
    B = a.batch
    x, _ = fashion(B)
    print(f"APGD-CE linf eps {eps}, 100 steps, 1 restart: threads {a.threads}, batch {B}, "
          f"Fashion-MNIST test images labelled by the model; torch {torch.__version__}")
    print(f"{'model':5} {'op':13} {'relureg ms':>11} {'torch ms':>9} {'ratio':>6}  notes")
    for name, model in bench_core.models().items():
        path = os.path.join(a.out, f"{name}.safetensors")
        export(model, [1, 28, 28], path, input_range=[0.0, 1.0])
        with torch.no_grad():
            y = model(x).argmax(1)
        c = run_bin(a, path, x, y, a.reps, "apgd_ce", eps)
        torch.manual_seed(0)
        _, tt, nt = timeit(lambda: torch_apgd_ce(model, x, y, eps), a.reps)
        cm = c["ms_median"]
        print(f"{name:5} {'apgd_ce linf':13} {cm:11.1f} {tt:9.1f} {tt / cm:6.2f}  "
              f"broken relureg {c['success']}/{B}, torch {nt}/{B}")

    # ---- 2. AutoAttack standard, relureg only ----
    N = a.n_autoattack
    x, y = fashion(N)
    trained = all(os.path.exists(os.path.join(a.demo, f"{n}.safetensors")) for n in ("mlp", "cnn"))
    if trained:
        paths = {n: os.path.join(a.demo, f"{n}.safetensors") for n in ("mlp", "cnn")}
        what = f"the trained demo models ({a.demo})"
    else:
        paths = {}
        for n, model in demo_architectures().items():
            paths[n] = os.path.join(a.out, f"demo_arch_{n}.safetensors")
            export(model, [1, 28, 28], paths[n], input_range=[0.0, 1.0])
        what = (f"UNTRAINED random-weight nets of the demo architectures ({a.demo} has no "
                f"trained models; run `make demo`): the numbers are not those of trained models")
    print(f"\nAutoAttack standard linf eps {eps}, first {N} Fashion-MNIST test images with their "
          f"labels, threads {a.threads}: {what}")
    print(f"{'model':5} {'stage':8} {'seconds':>8} {'broken':>7} {'robust':>7}")
    for n, path in paths.items():
        c = run_bin(a, path, x, y, 1, "standard", eps)
        left = c["clean"]
        print(f"{n:5} {'clean':8} {'':>8} {'':>7} {left / N:7.1%}")
        for st, k in c["broken_by"].items():
            left -= k
            print(f"{n:5} {st:8} {c['stage_s'][st]:8.2f} {k:7d} {left / N:7.1%}")
        assert left == N - c["success"], "robust accuracy and broken_by disagree"
        print(f"{n:5} {'total':8} {c['ms_median'] / 1e3:8.2f} {c['clean'] - left:7d} "
              f"{left / N:7.1%}  ({c['gradient_calls']} gradient, {c['forward_calls']} "
              f"forward calls)")


if __name__ == "__main__":
    main()
