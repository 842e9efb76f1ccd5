"""End-to-end test of the training orchestrator example
(clients/python/examples/train_orchestrator.py) against a live reluregd.

K = 5 steps of the example's `step` (PUT the weights, pin the returned version, get R and
dR/dtheta from the daemon, CE.backward() + lam * dR/dtheta, SGD with momentum) on real
Fashion-MNIST batches run next to a pure-torch reference of the same steps: same initial
weights (a deep copy), same batches, same optimizer, loss = CE + lam * R with R computed by
autograd double backprop (create_graph=True) from math.md's definition with "reduction":
"mean". After every step the two runs' parameters must agree to float32 tolerance, R and the
cross-entropy must agree, the PUT version must be the previous one + 1 and a request pinned
to a stale version must be 409. lam is chosen so that the regularizer's share of each update
is far above the tolerance (checked against a CE-only step from the same state), so dropping
or mis-signing lam * dR/dtheta fails the test.

Tolerance: parameters are compared with torch.testing.assert_close(rtol=1e-5, atol=1e-7).
Both runs are float32 and follow independent trajectories (the reference is never re-synced
to the orchestrated model). Measured (ORCH_VERBOSE=1 prints it): the daemon's
dR/dtheta equals torch's to ~1e-10 absolute (gradients ~1e-4..1e-2; float32 rounding in another
summation order), and over the 5 steps the parameters (|theta| up to ~0.1) differ by at most
7.5e-9 absolute, i.e. 1 float32 ulp, which is <= 0.021 x the tolerance and grows only from
0.009 x at step 1. lam (10 for input_gradient, 1 for jacobian, 5 for cross_lipschitz) makes the
regularizer move every weight matrix by > VISIBLE = 100 x the tolerance (measured >= ~700 x,
and 6e3..1.5e4 x for the largest), so a dropped, mis-signed or mis-scaled dR/dtheta fails. The
tolerance (rtol 1e-5 ~ 80 ulps) leaves room for reduction-order rounding with other thread
counts or BLAS builds, not for a wrong gradient; no re-syncing of the reference is needed.

Run from tests/e2e: RELUREGD=../../build/reluregd python3 -m unittest -v test_orchestrator
"""
import copy
import os
import subprocess
import sys
import unittest

import torch
import torch.nn.functional as F

import harness
import relureg
from relureg import ProblemError

EXAMPLES = os.path.join(harness.ROOT, "clients", "python", "examples")
sys.path.insert(0, EXAMPLES)
import train_orchestrator as orch  # noqa: E402

K_STEPS = 5
BATCH = 32
LR, MOMENTUM = 0.1, 0.9
RTOL, ATOL = 1e-5, 1e-7        # parameters after each step (float32 runs, see the docstring)
VALUE_RTOL = 1e-5              # R and cross-entropy values (float32 sums of B terms)
VISIBLE = 100.0                # the regularizer must move the parameters >= VISIBLE x tolerance


# ---- the pure-torch reference: R from math.md's definitions, autograd double backprop ----

def _input_jacobian(model, x):
    """J [B, K, d] of the logits w.r.t. the inputs, kept in the graph (create_graph=True)."""
    xx = x.detach().clone().requires_grad_(True)
    z = model(xx)
    rows = [torch.autograd.grad(z[:, k].sum(), xx, create_graph=True)[0].flatten(1)
            for k in range(z.shape[1])]
    return torch.stack(rows, 1)


def r_input_gradient(model, x, y):
    """mean_i ||grad_x l_i||_2^2 (math.md input_gradient, norm l2)."""
    xx = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xx), y, reduction="sum")  # sum: row i of the grad is grad l_i
    g, = torch.autograd.grad(loss, xx, create_graph=True)
    return g.flatten(1).pow(2).sum(1).mean()


def r_jacobian(model, x, y):
    """mean_i ||J_i||_F^2 (math.md jacobian, estimator exact)."""
    return _input_jacobian(model, x).pow(2).sum((1, 2)).mean()


def r_cross_lipschitz(model, x, y):
    """mean_i (2/K) ||J_c,i||_F^2 (math.md cross_lipschitz)."""
    J = _input_jacobian(model, x)
    Jc = J - J.mean(1, keepdim=True)
    return (2.0 / J.shape[1]) * Jc.pow(2).sum((1, 2)).mean()


def reference_step(model, x, y, lam, r_fn, optimizer):
    """One step of CE + lam * R entirely in torch; returns (CE, R) before the update."""
    optimizer.zero_grad(set_to_none=False)
    ce = F.cross_entropy(model(x), y)
    r = r_fn(model, x, y)
    (ce + lam * r).backward()
    optimizer.step()
    return ce.item(), r.item()


def ce_only_step(model, opt_state, x, y):
    """A copy of `model` after one cross-entropy-only step of SGD from the optimizer state
    `opt_state`: the counterfactual update without the regularizer."""
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM)
    opt.load_state_dict(opt_state)  # deep-copies the momentum buffers
    opt.zero_grad(set_to_none=False)
    F.cross_entropy(m(x), y).backward()
    opt.step()
    return m


def excess(a, b):
    """{name: max |a - b| / (ATOL + RTOL |b|)} over the parameters of two models: a value > 1
    means assert_close(a, b) fails on that tensor."""
    return {n: ((p - q).abs() / (ATOL + RTOL * q.abs())).max().item()
            for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters())}


class OrchestratorTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.client = relureg.Client(cls.d.base, token=harness.TOKEN)
        images, labels = orch.load_fashion_mnist("train", limit=K_STEPS * BATCH)
        cls.batches = [(images[i * BATCH:(i + 1) * BATCH], labels[i * BATCH:(i + 1) * BATCH])
                       for i in range(K_STEPS)]

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.d.stop()

    def run_against_reference(self, name, spec, lam, r_fn):
        model = orch.make_model(seed=0)
        ref = copy.deepcopy(model)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        ref_opt = torch.optim.SGD(ref.parameters(), lr=LR, momentum=MOMENTUM)
        prev = None
        for k, (x, y) in enumerate(self.batches, 1):
            with self.subTest(step=k):
                before_model, before_opt = copy.deepcopy(model), copy.deepcopy(opt.state_dict())
                res = orch.step(self.client, model, x, y, lam, spec, opt, name)
                ref_ce, ref_r = reference_step(ref, x, y, lam, r_fn, ref_opt)

                # versions: each PUT is the previous one + 1; the first creates the model
                if prev is None:
                    self.assertTrue(res["put"]["created"])
                else:
                    self.assertFalse(res["put"]["created"])
                    self.assertEqual(res["version"], prev + 1)
                prev = res["version"]
                # a request pinned to a stale version is refused
                with self.assertRaises(ProblemError) as cm:
                    self.client.regularizers(name, x, y, [spec], gradients=(),
                                             version=res["version"] - 1)
                self.assertEqual(cm.exception.status, 409)
                self.assertEqual(cm.exception.type, "/problems/version-mismatch")

                # values: R from the daemon = R from autograd; the daemon's CE = torch's
                self.assertAlmostEqual(res["r"], ref_r, delta=VALUE_RTOL * abs(ref_r) + 1e-9)
                self.assertAlmostEqual(res["daemon_ce"], ref_ce, delta=VALUE_RTOL * ref_ce)
                self.assertAlmostEqual(res["ce"], ref_ce, delta=VALUE_RTOL * ref_ce)

                # parameters: orchestrated == reference (independent float32 trajectories)
                for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
                    torch.testing.assert_close(p.detach(), q.detach(), rtol=RTOL, atol=ATOL,
                                               msg=lambda m, n=n: f"step {k}, {n}: {m}")

                # the regularizer's share of the update is far above the tolerance in every
                # weight matrix (biases: dR/db is 0 for jacobian and cross_lipschitz)
                vis = excess(model, ce_only_step(before_model, before_opt, x, y))
                for n, v in vis.items():
                    if n.endswith(".weight"):
                        self.assertGreater(v, VISIBLE, f"step {k}: lam * dR/dtheta moves {n} "
                                           f"only {v:.3g} x the tolerance")
                if os.environ.get("ORCH_VERBOSE"):
                    print(f"\n  {spec['name']} step {k}: v{res['version']} R {res['r']:.6g} "
                          f"CE {res['ce']:.5f} "
                          f"ref-excess {max(excess(model, ref).values()):.3g} R-visible "
                          + " ".join(f"{n}:{v:.3g}" for n, v in vis.items()), file=sys.stderr)
        self.client.delete_model(name)

    def test_input_gradient_matches_torch_double_backprop(self):
        self.run_against_reference("orch-input-gradient", {"name": "input_gradient"}, 10.0,
                                   r_input_gradient)

    def test_jacobian_matches_torch_double_backprop(self):
        self.run_against_reference("orch-jacobian", {"name": "jacobian", "estimator": "exact"},
                                   1.0, r_jacobian)

    def test_cross_lipschitz_matches_torch_double_backprop(self):
        self.run_against_reference("orch-cross-lipschitz", {"name": "cross_lipschitz"}, 5.0,
                                   r_cross_lipschitz)

    def test_example_script_runs(self):
        """The command line: a few steps, progress lines and a final test accuracy."""
        out = subprocess.run(
            [sys.executable, os.path.join(EXAMPLES, "train_orchestrator.py"), "--url",
             self.d.base, "--token-file", os.path.join(self.d.dir, "token"), "--name",
             "orch-cli", "--regularizer", "jacobian", "--lam", "0.1", "--steps", "3",
             "--batch", "16", "--test-n", "50", "--log-every", "1", "--delete"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(sum(l.startswith("step ") for l in lines), 3, out.stdout)
        self.assertIn("version 3", lines[-2])
        self.assertTrue(lines[-1].startswith("test accuracy on 50 test images: "), out.stdout)

    def test_put_needs_the_token(self):
        anon = relureg.Client(self.d.base)
        try:
            with self.assertRaises(ProblemError) as cm:
                orch.step(anon, orch.make_model(0), *self.batches[0], 1.0,
                          {"name": "input_gradient"}, None, "orch-anon")
            self.assertEqual(cm.exception.status, 401)
        finally:
            anon.close()


if __name__ == "__main__":
    unittest.main()
