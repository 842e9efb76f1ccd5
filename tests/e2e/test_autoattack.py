"""The AutoAttack ensemble over HTTP (/attacks and /robustness with "autoattack").

On a small MLP trained here on Fashion-MNIST (torch, seeded, about two seconds):
- the ensemble breaks the correctly classified samples that some member breaks when run alone
  with the same options, and `broken_by` names the first such member in suite order (every
  attack draws from (seed, original sample index), so a sample's randomness does not depend
  on which samples are still robust when its stage runs). Float rounding does: OpenBLAS's
  kernels round a row differently with the number of rows in the product, so a stage run on
  the still-robust subset can end a borderline sample differently from the member run on the
  whole batch; one such sample in 48 is allowed, and the ensemble must still break at least
  as many as each member;
- epsilon bound and input range hold; answers are bit-identical at 1 and 2 threads;
- `fast` runs only the APGD stages and never counts black-box-only samples;
- no certified sample is broken; the trained net raises no gradient-masking flag, the same net
  with its logits scaled by 1e4 (a saturated softmax: zero cross-entropy gradients) does;
- the ensemble's options that make no sense are 422.
Budgets are small (steps 20, queries 300) to keep the suite quick; the schedules are those of
the full runs.
"""
import gzip
import os
import unittest

import numpy as np
import torch
from torch import nn

import harness
from harness import TOKEN, check

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/vnd.safetensors"}
DATA = "/usr/share/datasets/fashion-mnist"
STAGES = ["apgd_ce", "apgd_t", "fab_t", "square"]
BUDGET = {"steps": 20, "queries": 300}


def idx(name, n):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)[:n]


def staircase(net, levels=8, ramp=1e-3):
    """`net` on its input quantised to `levels` levels by a ReLU staircase (1x1 convolutions):
    piecewise linear, flat but for ramps of width `ramp`, so its input gradients are 0 almost
    everywhere and only a black-box attack can move it: gradient masking by construction."""
    up = nn.Conv2d(1, 2 * levels, 1)
    down = nn.Conv2d(2 * levels, 1, 1, bias=False)
    with torch.no_grad():
        up.weight.fill_(1.0)
        for k in range(levels):
            t = (k + 0.5) / levels
            up.bias[2 * k], up.bias[2 * k + 1] = -t, -(t + ramp)
            down.weight[0, 2 * k], down.weight[0, 2 * k + 1] = 1 / (ramp * levels), -1 / (ramp * levels)
    return nn.Sequential(up, nn.ReLU(), down, *net).eval()


def trained():
    torch.manual_seed(0)
    x = torch.tensor(idx("train-images-idx3-ubyte.gz", 4000), dtype=torch.float32) / 255
    y = torch.tensor(idx("train-labels-idx1-ubyte.gz", 4000), dtype=torch.long)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(4):
        for i in range(0, 4000, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i:i + 100]), y[i:i + 100]).backward()
            opt.step()
    return net.eval()


class AutoAttack(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(extra=("--threads", "2"))
        cls.d1 = harness.Daemon(extra=("--threads", "1"))
        net = trained()
        masked = nn.Sequential(*net, nn.Linear(10, 10)).eval()
        with torch.no_grad():
            masked[-1].weight.copy_(torch.eye(10) * 1e4)
            masked[-1].bias.zero_()
        for d in (cls.d, cls.d1):
            for name, m in (("fashion", net), ("masked", masked), ("staircase", staircase(net))):
                body = harness.export(m, [1, 28, 28], input_range=[0, 1])
                st, _, b = d.request("PUT", f"/v1/models/{name}", body, AUTH)
                assert st in (200, 201), b
        cls.x = torch.tensor(idx("t10k-images-idx3-ubyte.gz", 48), dtype=torch.float32).unsqueeze(1) / 255
        cls.y = idx("t10k-labels-idx1-ubyte.gz", 48).astype(int).tolist()
        with torch.no_grad():
            cls.pred = net(cls.x).argmax(1).tolist()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d1.stop()

    def post(self, route, body, status=200, d=None, model="fashion"):
        d = d or self.d
        path = f"/v1/models/{model}/{route}"
        st, h, b = d.request("POST", path, body)
        check(self, "POST", path, st, h, b)
        self.assertEqual(st, status, b[:400])
        import json
        return json.loads(b)

    def attack(self, name, eps, norm="linf", **kw):
        return self.post("attacks", {"inputs": self.x.tolist(), "labels": self.y, "attack": name,
                                     "epsilon": eps, "norm": norm, "seed": 3, **kw})

    def test_ensemble_is_the_union_of_its_members_in_order(self):
        for norm, eps in (("linf", 0.05), ("l2", 0.6)):
            ens = self.attack("autoattack", eps, norm, **BUDGET)
            self.assertEqual(ens["stages"], STAGES)
            alone = {}
            for s in STAGES:
                kw = {"queries": BUDGET["queries"]} if s == "square" else {"steps": BUDGET["steps"]}
                alone[s] = self.attack(s, eps, norm, **kw)["success"]
            broken, mismatched = 0, []
            for i, (y, p) in enumerate(zip(self.y, self.pred)):
                if p != y:  # misclassified clean: not attacked, no stage named
                    self.assertIsNone(ens["broken_by"][i])
                    self.assertTrue(ens["success"][i])
                    continue
                first = next((s for s in STAGES if alone[s][i]), None)
                self.assertEqual(ens["success"][i], ens["broken_by"][i] is not None)
                if ens["broken_by"][i] != first:
                    mismatched.append((i, ens["broken_by"][i], first))
                broken += ens["success"][i]
            self.assertLessEqual(len(mismatched), 1, f"{norm}: {mismatched}")
            # At these budgets every stage has work: the ensemble beats each member alone.
            correct = [p == y for p, y in zip(self.pred, self.y)]
            for s in STAGES:
                self.assertGreaterEqual(broken, sum(a and c for a, c in zip(alone[s], correct)))
            self.assertGreater(broken, 0)

    def test_streams_follow_the_original_sample_index(self):
        # Mislabelling sample 0 takes it out of the ensemble's stages; every other sample keeps
        # its stream (seed, original index), so its l2 APGD point is the same but for float
        # rounding (the product has one row fewer). Keyed by position among the robust
        # samples instead, every start would move and the points would differ by O(epsilon).
        y2 = list(self.y)
        y2[0] = (self.pred[0] + 1) % 10
        a = self.attack("autoattack", 1.0, "l2", suite="fast", steps=5)
        b = self.post("attacks", {"inputs": self.x.tolist(), "labels": y2, "attack": "autoattack",
                                  "epsilon": 1.0, "norm": "l2", "seed": 3, "suite": "fast",
                                  "steps": 5})
        pa = torch.tensor(a["adversarial"]["data"]).reshape(48, 784)
        pb = torch.tensor(b["adversarial"]["data"]).reshape(48, 784)
        both = [i for i in range(1, 48) if a["broken_by"][i] == b["broken_by"][i] == "apgd_ce"]
        self.assertGreater(len(both), 10)
        worst = max(float((pa[i] - pb[i]).norm()) for i in both)
        self.assertLess(worst, 1e-3, worst)

    def test_bounds_and_range(self):
        for norm, eps in (("linf", 0.1), ("l2", 1.0)):
            r = self.attack("autoattack", eps, norm, **BUDGET)
            adv = torch.tensor(r["adversarial"]["data"]).reshape(48, 784)
            delta = adv - self.x.reshape(48, 784)
            n = delta.abs().amax(1) if norm == "linf" else delta.double().norm(dim=1)
            self.assertLessEqual(float(n.max()), eps * (1 + 1e-6))
            self.assertGreaterEqual(float(adv.min()), 0.0)
            self.assertLessEqual(float(adv.max()), 1.0)
            key = "linf" if norm == "linf" else "l2"
            self.assertLessEqual(max(r["perturbation_norms"][key]), eps * (1 + 1e-6))

    def test_every_epsilon_bounded_attack_keeps_a_small_epsilon(self):
        # At small epsilon float rounding of x + eps can land a hair outside the ball; every
        # attack rounds toward the clean input, so ||x' - x|| <= eps (1 + 1e-6) in float64.
        x = self.x[:16].reshape(16, 784).double()
        for norm, eps in (("linf", 0.004), ("l2", 0.01)):
            for name, kw in (("fgsm", {}), ("pgd", {"steps": 5, "step_size": eps / 2}),
                             ("bim", {"steps": 5, "step_size": eps / 2}), ("apgd_ce", {"steps": 5}),
                             ("apgd_t", {"steps": 5}), ("square", {"queries": 50}),
                             ("autoattack", {"steps": 3, "queries": 50})):
                r = self.post("attacks", {"inputs": self.x[:16].tolist(), "labels": self.y[:16],
                                          "attack": name, "epsilon": eps, "norm": norm, **kw})
                adv = torch.tensor(r["adversarial"]["data"], dtype=torch.float64).reshape(16, 784)
                d = adv - x
                n = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
                self.assertLessEqual(float(n.max()), eps * (1 + 1e-6), f"{name} {norm}")
                self.assertGreaterEqual(float(adv.min()), 0.0)
                self.assertLessEqual(float(adv.max()), 1.0)

    def test_same_answer_at_one_and_two_threads(self):
        body = {"inputs": self.x.tolist(), "labels": self.y, "epsilons": [0.03, 0.1],
                "attack": {"attack": "autoattack", "seed": 7, **BUDGET}}
        a = self.post("robustness", body)
        b = self.post("robustness", body, d=self.d1)
        for k in ("robust_accuracy", "broken_by", "per_sample_min_epsilon", "flags"):
            self.assertEqual(a[k], b[k], k)
        r1 = self.attack("autoattack", 0.1, **BUDGET)
        st, _, raw = self.d1.request("POST", "/v1/models/fashion/attacks",
                                     {"inputs": self.x.tolist(), "labels": self.y,
                                      "attack": "autoattack", "epsilon": 0.1, "norm": "linf",
                                      "seed": 3, **BUDGET})
        import json
        self.assertEqual(r1["adversarial"], json.loads(raw)["adversarial"])

    def test_robustness_report_flags_and_suites(self):
        eps = [0.02, 0.05, 0.1]
        std = self.post("robustness", {"inputs": self.x.tolist(), "labels": self.y,
                                       "epsilons": eps,
                                       "attack": {"attack": "autoattack", **BUDGET}})
        pgd = self.post("robustness", {"inputs": self.x.tolist(), "labels": self.y,
                                       "epsilons": eps, "attack": {"attack": "pgd"}})
        fast = self.post("robustness", {"inputs": self.x.tolist(), "labels": self.y,
                                        "epsilons": eps,
                                        "attack": {"attack": "autoattack", "suite": "fast",
                                                   "steps": 20}})
        self.assertEqual(std["attack"]["stages"], STAGES)
        self.assertEqual(fast["attack"]["stages"], STAGES[:2])
        for r in (std, fast):
            self.assertEqual(len(r["broken_by"]), 48)
            self.assertFalse(r["flags"]["flagged"], r["flags"])
            self.assertEqual(r["flags"]["certified_broken"], 0)
            ra = r["robust_accuracy"]
            self.assertTrue(ra[0] >= ra[1] >= ra[2], ra)
            # broken_by names a stage exactly for the samples broken at the largest epsilon.
            for i, s in enumerate(r["broken_by"]):
                m = r["per_sample_min_epsilon"][i]
                self.assertEqual(s is not None, m is not None and m > 0, i)
        self.assertTrue(set(fast["broken_by"]) <= {None, "apgd_ce", "apgd_t"})
        self.assertEqual(fast["flags"]["black_box_only"], 0)
        self.assertEqual(std["flags"]["black_box_only"], std["broken_by"].count("square"))
        # The standard suite is at least as strong as the fast one and as PGD-40.
        for k in range(3):
            self.assertLessEqual(std["robust_accuracy"][k], fast["robust_accuracy"][k])
            self.assertLessEqual(std["robust_accuracy"][k], pgd["robust_accuracy"][k] + 1 / 48)

    def test_black_box_only_counts_what_square_alone_broke(self):
        # On the staircase net the gradient stages see zero gradients; Square, which only
        # evaluates the net, breaks samples they missed: AutoAttack's check_square_sr flag.
        r = self.post("robustness", {"inputs": self.x.tolist(), "labels": self.y,
                                     "epsilons": [0.05, 0.15], "attack": {"attack": "autoattack",
                                                                          **BUDGET}},
                      model="staircase")
        n = r["broken_by"].count("square")
        self.assertGreater(n, 0, r["broken_by"])
        self.assertEqual(r["flags"]["black_box_only"], n)
        self.assertTrue(r["flags"]["flagged"])

    def test_masked_gradients_raise_the_flags(self):
        r = self.post("robustness", {"inputs": self.x.tolist(), "labels": self.y,
                                     "epsilons": [0.05, 0.1],
                                     "attack": {"attack": "autoattack", **BUDGET}},
                      model="masked")
        f = r["flags"]
        self.assertTrue(f["flagged"], f)
        self.assertGreater(f["zero_gradient_fraction"], 0.1)
        self.assertEqual(f["certified_broken"], 0)
        # The clean model on the same inputs: no flag (test_robustness_report_flags_and_suites).

    def test_bad_options_are_422(self):
        x = self.x[:2].tolist()
        for extra, field in (({"suite": "strong"}, "suite"), ({"step_size": 0.01}, "step_size"),
                             ({"random_start": False}, "random_start"),
                             ({"targeted": True, "target_labels": [1, 2]}, "targeted"),
                             ({"steps": 0}, "steps"), ({"queries": 10 ** 9}, "queries")):
            r = self.post("attacks", {"inputs": x, "labels": self.y[:2], "attack": "autoattack",
                                      **extra}, status=422)
            self.assertEqual(r["field"], field, r)
        r = self.post("attacks", {"inputs": x, "labels": self.y[:2], "attack": "pgd",
                                  "suite": "fast"}, status=422)
        self.assertEqual(r["field"], "suite")
        r = self.post("robustness", {"inputs": x, "labels": self.y[:2], "epsilons": [0.1],
                                     "attack": {"attack": "autoattack", "suite": 1}}, status=422)
        self.assertEqual(r["field"], "suite")


if __name__ == "__main__":
    unittest.main()
