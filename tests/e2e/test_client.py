"""End-to-end tests of the Python client (clients/python/relureg/client.py) against a live
reluregd: values equal to torch's over both transports (safetensors and JSON), tensor types in
and out, model upload from a torch module, version pinning, problems as ProblemError, attacks,
certificates, async robustness jobs with progress and cancellation, the dataset route, 503
retries honouring Retry-After (against a stub server) and the keep-alive connection.

Run from tests/e2e: RELUREGD=../../build/reluregd python3 -m unittest -v test_client
"""
import copy
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

import numpy as np
import torch
import torch.nn.functional as F

import harness
import relureg
from relureg import Client, Job, JobCancelled, ProblemError

# float32 server values against float64 torch on the same float32 weights and inputs.
RTOL, ATOL = 1e-5, 1e-6


def inputs(B=3, shape=(12,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, *shape, generator=g) * 2 - 1).float()


class ClientTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # One compute thread: the tiny test models gain nothing from more, and on a busy
        # machine OpenMP threads waiting for each other cost seconds.
        cls.d = harness.Daemon(extra=("--threads", "1"))
        cls.mlp = harness.mlp(1).double()
        cls.cnn = harness.cnn(2).double()
        cls.bin = Client(cls.d.base, binary=True)
        cls.json = Client(cls.d.base, binary=False)
        cls.admin = Client(cls.d.base, token=harness.TOKEN)

    @classmethod
    def tearDownClass(cls):
        for c in (cls.bin, cls.json, cls.admin):
            c.close()
        cls.d.stop()

    def clients(self):
        return (("binary", self.bin), ("json", self.json))

    # ---- models ----

    def test_default_transport_is_binary_with_numpy(self):
        self.assertTrue(Client(self.d.base).binary)
        self.assertFalse(Client(self.d.base, binary=False).binary)

    def test_models_model_and_weights(self):
        names = [m["name"] for m in self.json.models()]
        self.assertEqual(names, ["cnn", "mlp"])
        doc = self.bin.model("mlp")
        self.assertEqual((doc["input_shape"], doc["num_classes"]), ([12], 4))
        data = self.bin.weights("mlp")
        self.assertEqual(data, harness.export(harness.mlp(1), [12], input_range=[-1, 1]))
        back, arch, meta = relureg.load(data)
        self.assertEqual(arch["input_range"], [-1.0, 1.0])
        x = inputs(2, seed=11).double()
        torch.testing.assert_close(back(x), self.mlp(x))

    def test_put_model_from_torch_module_then_predict_and_delete(self):
        net = harness.mlp(7, d=5, k=3)
        try:
            r1 = self.admin.put_model("client-tmp", net, input_shape=[5], input_range=[-1, 1])
            self.assertEqual((r1["name"], r1["created"], r1["input_shape"]), ("client-tmp", True, [5]))
            x = inputs(4, (5,), seed=12)
            ref = copy.deepcopy(net).double()
            for kind, c in self.clients():
                with self.subTest(transport=kind):
                    out = c.predict("client-tmp", x, version=r1["version"])
                    self.assertEqual(out["version"], r1["version"])
                    torch.testing.assert_close(out["logits"].double(), ref(x.double()),
                                               rtol=RTOL, atol=ATOL)
            # Replacing from bytes bumps the version; the pinned old version is now a conflict.
            net2 = harness.mlp(8, d=5, k=3)
            r2 = self.admin.put_model("client-tmp", harness.export(net2, [5]))
            self.assertEqual((r2["version"], r2["created"]), (r1["version"] + 1, False))
            out = self.bin.predict("client-tmp", x)
            torch.testing.assert_close(out["logits"].double(), net2.double()(x.double()),
                                       rtol=RTOL, atol=ATOL)
            with self.assertRaises(ProblemError) as cm:
                self.bin.predict("client-tmp", x, version=r1["version"])
            self.assertEqual(cm.exception.status, 409)
            # ... and from a file path
            path = os.path.join(self.d.dir, "client-tmp.safetensors")
            harness.export(net, [5], path)
            r3 = self.admin.put_model("client-tmp", path)
            self.assertEqual(r3["version"], r2["version"] + 1)
            self.assertEqual(self.bin.weights("client-tmp"), harness.export(net, [5]))
            # PUT without the token is a 401 problem.
            with self.assertRaises(ProblemError) as cm:
                self.json.put_model("client-tmp", harness.export(net2, [5]))
            self.assertEqual(cm.exception.status, 401)
            with self.assertRaises(ValueError):
                self.admin.put_model("client-tmp", net2)  # a module needs input_shape
        finally:
            self.admin.delete_model("client-tmp")
        with self.assertRaises(ProblemError) as cm:
            self.admin.model("client-tmp")
        self.assertEqual(cm.exception.status, 404)

    def test_version_pin_mismatch_is_409(self):
        x = inputs(1)
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                self.assertEqual(c.predict("mlp", x, version=1)["version"], 1)
                with self.assertRaises(ProblemError) as cm:
                    c.predict("mlp", x, version=2)
                e = cm.exception
                self.assertEqual(e.status, 409)
                self.assertEqual(e.type, "/problems/version-mismatch")
                self.assertEqual(e.field, "version")

    def test_unknown_model_is_404_problem(self):
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                with self.assertRaises(ProblemError) as cm:
                    c.predict("no-such-model", inputs(1))
                e = cm.exception
                self.assertEqual(e.status, 404)
                self.assertEqual(e.problem["status"], 404)
                self.assertTrue(e.title)
                self.assertIn("no-such-model", e.detail)
                self.assertTrue(str(e).startswith(f"404 {e.title}: "), str(e))
                self.assertIn(e.detail, str(e))
                self.assertIn("X-Request-Id".lower(), e.headers)

    def test_invalid_request_is_422_naming_the_field(self):
        with self.assertRaises(ProblemError) as cm:
            self.bin.predict("mlp", torch.zeros(2, 11))
        self.assertEqual((cm.exception.status, cm.exception.field), (422, "inputs"))
        with self.assertRaises(ProblemError) as cm:
            self.json.attack("mlp", inputs(2), [0, 1], "pgd", steps=0)
        self.assertEqual((cm.exception.status, cm.exception.field), (422, "steps"))
        # A body over --max-body-mb (4 here) is answered 413 before it is all sent; the client
        # reads that answer and its next request goes through.
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                with self.assertRaises(ProblemError) as cm:
                    c.predict("mlp", np.zeros((110000, 12), np.float32))
                self.assertEqual((cm.exception.status, cm.exception.type), (413, "/problems/body-too-large"))
                self.assertEqual(c.predict("mlp", np.zeros((2, 12)))["predictions"],
                                 self.mlp(torch.zeros(2, 12, dtype=torch.float64)).argmax(1).tolist())

    # ---- compute ----

    def test_predict_matches_torch_in_every_tensor_type(self):
        x = inputs(5, seed=3)
        want = self.mlp(x.double())
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                doc = c.predict("mlp", x)
                self.assertIsInstance(doc["logits"], torch.Tensor)
                self.assertEqual(doc["logits"].dtype, torch.float32)
                torch.testing.assert_close(doc["logits"].double(), want, rtol=RTOL, atol=ATOL)
                torch.testing.assert_close(doc["probabilities"].double(), F.softmax(want, 1),
                                           rtol=RTOL, atol=ATOL)
                self.assertEqual(doc["predictions"], want.argmax(1).tolist())
                self.assertEqual((doc["model"], doc["version"]), ("mlp", 1))
                self.assertEqual(len(doc["activation_pattern_hash"]), 5)
                a = c.predict("mlp", x.numpy())["logits"]
                self.assertIsInstance(a, np.ndarray)
                self.assertTrue(torch.equal(torch.from_numpy(a), doc["logits"]))
                lst = c.predict("mlp", x.tolist())["logits"]
                self.assertIsInstance(lst, list)
                self.assertEqual(lst, doc["logits"].tolist())
                self.assertIsInstance(c.predict("mlp", x.tolist(), as_="torch")["logits"], torch.Tensor)
                self.assertIsInstance(c.predict("mlp", x, as_="numpy")["logits"], np.ndarray)
                # float64 inputs are sent as float32; a single sample is a batch of one
                self.assertTrue(torch.equal(c.predict("mlp", x.double())["logits"], doc["logits"]))
                one = c.predict("mlp", x[0])
                self.assertEqual(list(one["logits"].shape), [1, 4])
        # both transports give the same bits
        self.assertTrue(torch.equal(self.bin.predict("mlp", x)["logits"],
                                    self.json.predict("mlp", x)["logits"]))

    def test_cnn_predict_and_jacobian_match_torch(self):
        x = inputs(3, (1, 8, 8), seed=4)
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                doc = c.predict("cnn", x)
                torch.testing.assert_close(doc["logits"].double(), self.cnn(x.double()),
                                           rtol=RTOL, atol=ATOL)
                J = c.jacobian("cnn", x, of="log_probabilities")["jacobian"]
                self.assertEqual(list(J.shape), [3, 5, 1, 8, 8])
                f = lambda t: F.log_softmax(self.cnn(t), 1)  # noqa: E731
                want = torch.stack([torch.autograd.functional.jacobian(f, xi.double()[None])[0, :, 0]
                                    for xi in x])
                torch.testing.assert_close(J.double(), want, rtol=1e-4, atol=1e-6)

    def test_regularizers_match_torch_double_backprop_both_transports(self):
        x = inputs(3, seed=5)
        y = [0, 1, 3]
        m = harness.mlp(1).double()
        params = list(m.parameters())
        names = [n for n, _ in m.named_parameters()]
        xr = x.double().requires_grad_(True)
        z = m(xr)
        # input_gradient: ||grad_x l_i||^2 per sample
        g = torch.autograd.grad(F.cross_entropy(z, torch.tensor(y), reduction="sum"), xr,
                                create_graph=True)[0]
        ig = (g * g).sum(1)
        ig_gx, *ig_gp = torch.autograd.grad(ig.mean(), [xr] + params, retain_graph=True)
        # cross_lipschitz: (2/K) ||J_c||_F^2 per sample
        J = torch.stack([torch.autograd.grad(z[:, k].sum(), xr, create_graph=True)[0]
                         for k in range(4)], 1)
        Jc = J - J.mean(1, keepdim=True)
        cl = (2 / 4) * (Jc * Jc).sum((1, 2))
        cl_gp = [torch.zeros_like(p) if g is None else g  # the last bias does not enter J
                 for p, g in zip(params, torch.autograd.grad(cl.mean(), params, allow_unused=True))]
        answers = {}
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                doc = c.regularizers("mlp", x.clone(), torch.tensor(y),
                                     ["input_gradient", {"name": "cross_lipschitz"}])
                answers[kind] = doc
                self.assertEqual(len(doc["loss"]["per_sample"]), 3)
                r0, r1 = doc["regularizers"]
                self.assertEqual((r0["name"], r1["name"]), ("input_gradient", "cross_lipschitz"))
                torch.testing.assert_close(torch.tensor(r0["per_sample"], dtype=torch.float64),
                                           ig.detach(), rtol=1e-4, atol=1e-7)
                torch.testing.assert_close(torch.tensor(r1["per_sample"], dtype=torch.float64),
                                           cl.detach(), rtol=1e-4, atol=1e-7)
                self.assertIsInstance(r0["grad_inputs"], torch.Tensor)
                torch.testing.assert_close(r0["grad_inputs"].double(), ig_gx, rtol=1e-4, atol=1e-6)
                self.assertEqual(sorted(r0["grad_parameters"]), sorted(names))
                for n, want_ig, want_cl in zip(names, ig_gp, cl_gp):
                    torch.testing.assert_close(r0["grad_parameters"][n].double(), want_ig,
                                               rtol=1e-4, atol=1e-6, msg=f"{kind} input_gradient {n}")
                    torch.testing.assert_close(r1["grad_parameters"][n].double(), want_cl,
                                               rtol=1e-4, atol=1e-6, msg=f"{kind} cross_lipschitz {n}")
                # numpy in, numpy out; values only when no gradients are asked for
                d2 = c.regularizers("mlp", x.numpy(), np.array(y), ["input_gradient"], gradients=(),
                                    reduction="sum")
                self.assertNotIn("grad_inputs", d2["regularizers"][0])
                self.assertAlmostEqual(d2["regularizers"][0]["value"], float(ig.sum()), delta=1e-4 * float(ig.sum()))
        # an async job (binary request, JSON job result) gives the same tensors
        job = self.bin.regularizers("mlp", x, y, ["input_gradient", "cross_lipschitz"], wait=False)
        answers["job"] = job.wait(poll=0.02)
        # the two transports carry the same float32 bits
        b = answers["binary"]["regularizers"]
        for j in (answers["json"]["regularizers"], answers["job"]["regularizers"]):
            for i in range(2):
                self.assertIsInstance(j[i]["grad_inputs"], torch.Tensor)
                self.assertTrue(torch.equal(b[i]["grad_inputs"], j[i]["grad_inputs"]))
                for n in names:
                    self.assertTrue(torch.equal(b[i]["grad_parameters"][n], j[i]["grad_parameters"][n]))

    def test_connections(self):
        x = inputs(2, (1, 8, 8), seed=6)
        doc = self.bin.connections("cnn", x, [1, 2], h=0.5)
        for k in ("jacobian_fro2", "hessian_trace", "curvature_fd", "left_region"):
            self.assertEqual(len(doc[k]), 2)
        # ||J||_F^2 from torch
        for b in range(2):
            J = torch.autograd.functional.jacobian(self.cnn, x[b:b + 1].double())
            self.assertAlmostEqual(doc["jacobian_fro2"][b], float((J * J).sum()),
                                   delta=1e-4 * float((J * J).sum()))

    def test_attack_success_consistent_with_predictions(self):
        x = inputs(4, seed=7)
        y = self.mlp(x.double()).argmax(1)
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                doc = c.attack("mlp", x, y, "pgd", epsilon=np.float32(0.3), steps=10, seed=3)
                adv = doc["adversarial"]
                self.assertIsInstance(adv, torch.Tensor)
                self.assertEqual(list(adv.shape), [4, 12])
                self.assertLessEqual(float((adv - x).abs().max()), 0.3 + 1e-6)
                self.assertLessEqual(float(adv.max()), 1.0, "clipped to input_range")
                pred = self.mlp(adv.double()).argmax(1).tolist()
                self.assertEqual(doc["predictions"], pred)
                self.assertEqual(doc["success"], [p != t for p, t in zip(pred, y.tolist())])
                self.assertTrue(any(doc["success"]), "eps 0.3 breaks some of these samples")
                self.assertEqual(doc["seed"], 3)
                tgt = [(v + 1) % 4 for v in y.tolist()]
                doc = c.attack("mlp", x.numpy(), y.numpy(), "pgd", targeted=True,
                               target_labels=np.array(tgt), epsilon=1.0, step_size=0.1)
                self.assertIsInstance(doc["adversarial"], np.ndarray)
                pred = self.mlp(torch.from_numpy(doc["adversarial"]).double()).argmax(1).tolist()
                self.assertEqual(doc["success"], [p == t for p, t in zip(pred, tgt)])

    def test_certify(self):
        x = inputs(3, (1, 8, 8), seed=8)
        z = self.cnn(x.double())
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                doc = c.certify("cnn", x)
                self.assertEqual(doc["norm"], "l2")
                self.assertEqual(doc["predictions"], z.argmax(1).tolist())
                self.assertEqual(list(doc["adversarial"].shape), [3, 1, 8, 8])
                for b in range(3):
                    dd, db = doc["decision_distance"][b], doc["region_distance"][b]
                    self.assertAlmostEqual(doc["certified_radius"][b],
                                           min(v for v in (dd, db) if v is not None), places=9)
                    J = torch.autograd.functional.jacobian(
                        self.cnn, x[b:b + 1].double())[0, :, 0].reshape(5, -1)
                    k = int(z[b].argmax())
                    want = min(float((z[b, k] - z[b, j]) / (J[k] - J[j]).norm()) for j in range(5) if j != k)
                    self.assertLess(abs(dd - want), 1e-4 * want)
                    if doc["exact"][b]:
                        self.assertNotEqual(int(self.cnn(doc["adversarial"][b:b + 1].double()).argmax()), k)
                wrong = [(p + 1) % 5 for p in doc["predictions"]]
                doc2 = c.certify("cnn", x, labels=wrong, norm="linf")
                self.assertEqual(doc2["certified_radius"], [0, 0, 0])

    def test_robustness_sync_report(self):
        x = inputs(8, seed=9)
        y = self.mlp(x.double()).argmax(1).tolist()
        y[0] = (y[0] + 1) % 4  # one misclassified sample
        doc = self.bin.robustness("mlp", x, y, [0.0, 0.2, 1.0],
                                  {"attack": "pgd", "steps": 10, "step_size": 0.05, "seed": 2})
        self.assertEqual(doc["clean_accuracy"], 7 / 8)
        self.assertEqual(doc["robust_accuracy"][0], 7 / 8)
        self.assertEqual(doc["per_sample_min_epsilon"][0], 0)
        self.assertEqual(doc["attack"]["seed"], 2)
        self.assertEqual(doc["flags"]["certified_broken"], 0)

    def test_autoattack_report_and_attack(self):
        x = inputs(16, seed=11)
        y = self.mlp(x.double()).argmax(1).tolist()
        doc = self.bin.robustness("mlp", x, y, [0.05, 0.3],
                                  {"attack": "autoattack", "suite": "standard", "steps": 10,
                                   "queries": 100})
        self.assertEqual(doc["attack"]["stages"], ["apgd_ce", "apgd_t", "fab_t", "square"])
        self.assertEqual(len(doc["broken_by"]), 16)
        self.assertTrue(set(doc["broken_by"]) <= {None, "apgd_ce", "apgd_t", "fab_t", "square"})
        self.assertEqual(sum(b is not None for b in doc["broken_by"]),
                         round(16 * (1 - doc["robust_accuracy"][1])))
        r = self.json.attack("mlp", x, y, "autoattack", epsilon=0.3, suite="fast", steps=10)
        self.assertEqual(r["broken_by"], [b if b in ("apgd_ce", "apgd_t") else None
                                          for b in r["broken_by"]])
        with self.assertRaises(ProblemError) as e:
            self.bin.attack("mlp", x, y, "autoattack", suite="slow")
        self.assertEqual(e.exception.status, 422)

    def test_robustness_job_polled_to_completion_with_progress(self):
        x = inputs(64, (1, 8, 8), seed=10)
        y = self.cnn(x.double()).argmax(1)
        attack = {"attack": "pgd", "steps": 1000, "step_size": 0.01, "seed": 1}
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                job = c.robustness("cnn", x, y, [0.05, 0.1], attack, wait=False)
                self.assertIsInstance(job, Job)
                self.assertRegex(job.id, "^[0-9a-f]{32}$")
                st = job.status()
                self.assertIn(st["status"], ("queued", "running", "done"))
                seen = []
                result = job.wait(poll=0.02, progress=seen.append)
                self.assertEqual(seen[-1], 1.0)
                self.assertEqual(seen, sorted(seen), "progress never goes back")
                self.assertTrue(any(0 < p < 1 for p in seen), seen)
                self.assertEqual(result["clean_accuracy"], 1.0)
                self.assertEqual(len(result["robust_accuracy"]), 2)
                self.assertEqual(job.status()["status"], "done")
                self.assertEqual(job.cancel()["status"], "done", "a finished job keeps its result")
        # progress= alone also runs as a job and waits; same seed, same report
        seen = []
        doc = self.bin.robustness("cnn", x, y, [0.05, 0.1], attack, progress=seen.append, poll=0.02)
        self.assertEqual(doc["robust_accuracy"], result["robust_accuracy"])
        self.assertEqual(seen[-1], 1.0)

    def test_job_cancel_and_failure(self):
        x = inputs(64, (1, 8, 8), seed=13)
        y = self.cnn(x.double()).argmax(1)
        job = self.bin.robustness("cnn", x, y, [0.01, 0.02, 0.05, 0.1, 0.2],
                                  {"attack": "pgd", "steps": 1000, "restarts": 10}, wait=False)
        after = job.cancel()
        self.assertIn(after["status"], ("queued", "running", "cancelled"))
        with self.assertRaises(JobCancelled):
            job.wait(poll=0.02, timeout=20)
        with self.assertRaises(ProblemError) as cm:
            self.bin.job("f" * 32).status()
        self.assertEqual(cm.exception.status, 404)
        # a job whose computation fails raises its problem
        # (on a model built for it: harness.overflow_model)
        st, h, b = self.d.request("PUT", "/v1/models/overflow", harness.overflow_model(),
                                  {"Authorization": "Bearer " + harness.TOKEN,
                                   "Content-Type": "application/vnd.safetensors"})
        self.assertEqual(st, 201, b[:200])
        try:
            req = harness.OVERFLOW_REQUEST
            failing = self.json.regularizers("overflow", torch.tensor(req["inputs"]),
                                             req["labels"], req["regularizers"], wait=False)
            with self.assertRaises(ProblemError) as cm:
                failing.wait(poll=0.02, timeout=20)
        finally:
            self.d.request("DELETE", "/v1/models/overflow", None,
                           {"Authorization": "Bearer " + harness.TOKEN})
        self.assertEqual(cm.exception.status, 422)

    def test_dataset_returns_images(self):
        docs = {}
        for kind, c in self.clients():
            with self.subTest(transport=kind):
                doc = c.dataset("fashion-mnist", "test", offset=3, limit=4)
                docs[kind] = doc
                self.assertIsInstance(doc["images"], np.ndarray)
                self.assertEqual(doc["images"].shape, (4, 1, 28, 28))
                self.assertTrue(0 <= doc["images"].min() and doc["images"].max() <= 1)
                self.assertGreater(doc["images"].max(), 0.5, "real images, not zeros")
                self.assertEqual(len(doc["labels"]), 4)
                self.assertTrue(all(0 <= v <= 9 for v in doc["labels"]))
                self.assertEqual((doc["offset"], len(doc["class_names"])), (3, 10))
        self.assertTrue(np.array_equal(docs["binary"]["images"], docs["json"]["images"]))
        self.assertEqual(docs["binary"]["labels"], docs["json"]["labels"])
        t = self.bin.dataset(split="train", limit=2, as_="torch")["images"]
        self.assertIsInstance(t, torch.Tensor)
        # the images feed predict of a model shaped like them
        lst = self.json.dataset(limit=1, as_="list")["images"]
        self.assertEqual((len(lst), len(lst[0]), len(lst[0][0]), len(lst[0][0][0])), (1, 1, 28, 28))
        with self.assertRaises(ProblemError) as cm:
            self.bin.dataset(split="validation")
        self.assertEqual(cm.exception.status, 404)

    def test_standard_library_only(self):
        """Without numpy and torch the client talks JSON and answers nested lists (binary=True
        still works, in pure Python)."""
        code = (
            "import sys; sys.modules['numpy'] = None; sys.modules['torch'] = None\n"
            + ("" if harness.INSTALLED else
               f"sys.path.insert(0, {os.path.join(harness.ROOT, 'clients', 'python')!r})\n") +
            "import json, relureg\n"
            "assert not hasattr(relureg, 'export'), 'the exporter needs torch'\n"
            f"c = relureg.Client({self.d.base!r})\n"
            "p = c.predict('mlp', [[0.5] * 12, [-0.25] * 12])\n"
            "r = c.regularizers('mlp', [[0.5] * 12], [1], ['input_gradient'])\n"
            "d = c.dataset(limit=1)\n"
            f"b = relureg.Client({self.d.base!r}, binary=True)\n"
            "assert b.predict('mlp', [[0.5] * 12, [-0.25] * 12])['logits'] == p['logits']\n"
            "print(json.dumps([c.binary, p['logits'], p['predictions'],\n"
            "                  r['regularizers'][0]['grad_parameters']['0.bias'],\n"
            "                  len(d['images'][0][0])]))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        binary, logits, preds, gb, rows = json.loads(out.stdout)
        self.assertFalse(binary)
        x = torch.tensor([[0.5] * 12, [-0.25] * 12])
        self.assertEqual(logits, self.bin.predict("mlp", x)["logits"].tolist())
        self.assertEqual(preds, self.mlp(x.double()).argmax(1).tolist())
        want = self.bin.regularizers("mlp", x[:1], [1], ["input_gradient"])
        self.assertEqual(gb, want["regularizers"][0]["grad_parameters"]["0.bias"].tolist())
        self.assertEqual(rows, 28)

    def test_keep_alive_connection_is_reused(self):
        c = Client(self.d.base)
        try:
            c.models()
            sock = c._conn.sock
            self.assertIsNotNone(sock)
            c.predict("mlp", inputs(1))
            c.model("mlp")
            self.assertIs(c._conn.sock, sock, "one connection for the client's requests")
            c._conn.sock.shutdown(socket.SHUT_RDWR)  # a connection that broke while idle
            self.assertEqual(len(c.models()), 2, "a broken connection is reopened")
            self.assertIsNot(c._conn.sock, sock)
        finally:
            c.close()


class _Stub(http.server.BaseHTTPRequestHandler):
    """503 with Retry-After `fails` times, then 200; with `drop`, closes each connection after
    its answer without saying so (as a server whose keep-alive idle timeout struck)."""
    protocol_version = "HTTP/1.1"
    fails, seen, retry_after, drop = 2, [], "1", False

    def do_GET(self):
        _Stub.seen.append(time.monotonic())
        if len(_Stub.seen) <= _Stub.fails:
            body = json.dumps({"type": "/problems/queue-full", "title": "Compute queue full",
                               "status": 503, "detail": "busy", "error": "busy"}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            if _Stub.retry_after is not None:
                self.send_header("Retry-After", _Stub.retry_after)
        else:
            body = json.dumps({"models": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if _Stub.drop:
            self.close_connection = True

    def log_message(self, *a):
        pass


class Retries(unittest.TestCase):
    def setUp(self):
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.srv.server_address[1]}"
        _Stub.seen, _Stub.drop = [], False

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()

    def test_503_retried_honouring_retry_after(self):
        _Stub.fails, _Stub.retry_after = 2, "1"
        t0 = time.monotonic()
        with Client(self.base) as c:
            self.assertEqual(c.models(), [])
        self.assertEqual(len(_Stub.seen), 3)
        self.assertGreaterEqual(_Stub.seen[1] - _Stub.seen[0], 0.95, "waited Retry-After")
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)

    def test_retries_are_bounded(self):
        _Stub.fails, _Stub.retry_after = 10, "0"
        with self.assertRaises(ProblemError) as cm, Client(self.base, retries=3) as c:
            c.models()
        self.assertEqual(len(_Stub.seen), 4, "the first try and 3 retries")
        e = cm.exception
        self.assertEqual((e.status, e.type, e.title), (503, "/problems/queue-full", "Compute queue full"))
        self.assertEqual(str(e), "503 Compute queue full: busy")
        _Stub.seen = []
        with self.assertRaises(ProblemError), Client(self.base, retries=0) as c:
            c.models()
        self.assertEqual(len(_Stub.seen), 1)

    def test_503_without_retry_after_is_not_retried(self):
        # the rule the JS client shares (tests/browser/client.test.mjs)
        _Stub.fails, _Stub.retry_after = 10, None
        with self.assertRaises(ProblemError) as cm, Client(self.base, retries=3) as c:
            c.models()
        self.assertEqual(cm.exception.status, 503)
        self.assertEqual(len(_Stub.seen), 1)

    def test_unreachable_daemon_names_the_url(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with self.assertRaises(ConnectionError) as cm, Client(f"http://127.0.0.1:{port}") as c:
            c.models()
        self.assertIn(f"http://127.0.0.1:{port}", str(cm.exception))
        self.assertIn("GET /v1/models", str(cm.exception))
        self.assertIn("Is the daemon running", str(cm.exception))

    def test_connection_closed_by_the_server_is_reopened(self):
        _Stub.fails, _Stub.drop = 0, True
        with Client(self.base) as c:
            for _ in range(3):
                self.assertEqual(c.models(), [])
        self.assertEqual(len(_Stub.seen), 3, "each request sent once")


if __name__ == "__main__":
    unittest.main()
