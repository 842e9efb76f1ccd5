"""End-to-end tests of reluregd over HTTP: every route and documented status code (500 aside),
answers validated against api/openapi.yaml, values equal to torch's and identical between the
JSON and binary paths, the bad-input table of tests/cases/http, concurrency with model
replacement, async jobs, a body that stops half way, and the drain on SIGTERM.
"""
import base64
import glob
import http.client
import json
import os
import random
import socket
import subprocess
import threading
import time
import unittest

import jsonschema
import torch
import torch.nn.functional as F

import harness
from harness import ORIGIN, TOKEN, check

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BIN = "application/vnd.safetensors"
# float32 server values against float64 torch on the same float32 weights and inputs.
RTOL, ATOL = 1e-5, 1e-6


def tensor(obj):
    return torch.tensor(obj["data"], dtype=torch.float64).reshape(obj["shape"])


def tensor32(obj):
    """The float32 values a JSON tensor carries (9 significant digits round-trip them)."""
    return torch.tensor(obj["data"], dtype=torch.float32).reshape(obj["shape"])


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.models = {"mlp": harness.mlp(1).double(), "cnn": harness.cnn(2).double()}

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def call(self, method, path, body=None, headers=None, status=None):
        st, h, b = self.d.request(method, path, body, headers)
        check(self, method, path, st, h, b)
        if status is not None:
            self.assertEqual(st, status, f"{method} {path}: {b[:300]!r}")
        return st, h, b

    def jcall(self, method, path, body=None, headers=None, status=200):
        st, h, b = self.call(method, path, body, headers, status)
        return json.loads(b) if b else None

    def inputs(self, B=3, shape=(12,), seed=0):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(B, *shape, generator=g) * 2 - 1).float()


class Routes(Base):
    def test_health_metrics_and_listing(self):
        self.assertEqual(self.jcall("GET", "/v1/health/live")["status"], "live")
        self.assertEqual(self.jcall("GET", "/v1/health/ready")["status"], "ready")
        names = [m["name"] for m in self.jcall("GET", "/v1/models")["models"]]
        self.assertEqual(names, ["cnn", "mlp"], "the invalid file name in --models-dir is skipped")
        st, h, b = self.call("GET", "/metrics", status=200)
        text = b.decode()
        self.assertTrue(text.endswith("\n"))
        for metric in ["relureg_requests_total", "relureg_request_duration_seconds_bucket",
                       "relureg_requests_in_flight", "relureg_queue_depth",
                       "relureg_models_loaded 2", "relureg_received_bytes_total"]:
            self.assertIn(metric, text)
        self.assertIn('le="+Inf"', text)

    def test_model_detail_and_weights_byte_identical(self):
        doc = self.jcall("GET", "/v1/models/mlp")
        self.assertEqual(doc["input_shape"], [12])
        self.assertEqual(doc["input_range"], [-1.0, 1.0])
        self.assertEqual([p["name"] for p in doc["parameters"]],
                         ["0.weight", "0.bias", "2.weight", "2.bias"])
        st, h, b = self.call("GET", "/v1/models/mlp/weights", status=200)
        with open(os.path.join(self.d.dir, "models", "mlp.safetensors"), "rb") as f:
            self.assertEqual(b, f.read())
        self.call("GET", "/v1/models/none/weights", status=404)

    def test_put_replace_delete_with_versions(self):
        data = harness.export(harness.mlp(9), [12])
        hdr = dict(AUTH, **{"Content-Type": BIN})
        r1 = self.jcall("PUT", "/v1/models/tmp", data, hdr, status=201)
        self.assertEqual((r1["version"], r1["created"]), (1, True))
        r2 = self.jcall("PUT", "/v1/models/tmp", data, dict(AUTH, **{"Content-Type": "application/octet-stream"}), status=200)
        self.assertEqual((r2["version"], r2["created"]), (2, False))
        st, h, b = self.call("GET", "/v1/models/tmp/weights", status=200)
        self.assertEqual(b, data)
        self.call("DELETE", "/v1/models/tmp", headers=AUTH, status=204)
        self.call("DELETE", "/v1/models/tmp", headers=AUTH, status=404)
        r3 = self.jcall("PUT", "/v1/models/tmp", data, hdr, status=201)
        self.assertEqual(r3["version"], 3, "versions never repeat after a delete")
        self.call("DELETE", "/v1/models/tmp", headers=AUTH, status=204)

    def test_cors_preflight_and_headers(self):
        st, h, b = self.call("OPTIONS" if False else "GET", "/v1/models", headers={"Origin": ORIGIN})
        self.assertEqual(h.get("Access-Control-Allow-Origin"), ORIGIN)
        st, h, b = self.d.request("OPTIONS", "/v1/models/mlp/predict",
                                  headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        self.assertEqual(st, 204)
        self.assertIn("POST", h.get("Access-Control-Allow-Methods", ""))
        self.assertIn("Content-Type", h.get("Access-Control-Allow-Headers", ""))
        st, h, b = self.d.request("GET", "/v1/health/live", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(h.get("X-Request-Id"), "abc-123")

    def test_static_and_dataset(self):
        st, h, b = self.call("GET", "/", status=200)
        self.assertIn(b"<html", b)
        self.call("GET", "/static/index.html", status=200)
        self.call("GET", "/static/nope.js", status=404)
        doc = self.jcall("GET", "/v1/datasets/fashion-mnist/test?offset=3&limit=2")
        self.assertEqual(doc["images"]["shape"], [2, 1, 28, 28])
        self.assertEqual(len(doc["labels"]), 2)
        self.assertTrue(0 <= min(doc["images"]["data"]) and max(doc["images"]["data"]) <= 1)
        st, h, b = self.d.request("GET", "/v1/datasets/fashion-mnist/train?limit=1",
                                  headers={"Accept": BIN})
        t, meta = harness.safetensors.load(b)
        self.assertEqual(list(t["/images"].shape), [1, 1, 28, 28])
        self.call("GET", "/v1/datasets/fashion-mnist/test?offset=-1", status=422)

    def test_kserve_v2(self):
        self.assertIn("binary_tensor_data", self.jcall("GET", "/v2")["extensions"])
        self.assertTrue(self.jcall("GET", "/v2/health/live")["live"])
        self.assertTrue(self.jcall("GET", "/v2/health/ready")["ready"])
        meta = self.jcall("GET", "/v2/models/cnn")
        self.assertEqual(meta["inputs"][0]["shape"], [-1, 1, 8, 8])
        self.jcall("GET", "/v2/models/cnn/versions/1")
        self.assertTrue(self.jcall("GET", "/v2/models/cnn/ready")["ready"])
        self.jcall("GET", "/v2/models/cnn/versions/1/ready")
        self.call("GET", "/v2/models/zzz", status=404)
        x = self.inputs(2, (1, 8, 8))
        req = {"id": "q1", "inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                       "data": x.flatten().tolist()}]}
        out = self.jcall("POST", "/v2/models/cnn/infer", req)
        self.assertEqual(out["id"], "q1")
        want = self.models["cnn"](x.double())
        got = {o["name"]: torch.tensor(o["data"]).reshape(o["shape"]) for o in out["outputs"]}
        torch.testing.assert_close(got["logits"].double(), want, rtol=RTOL, atol=ATOL)
        # binary input and binary output (the extension)
        head = json.dumps({"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 2 * 64 * 4}}],
                           "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
        body = head + x.numpy().tobytes()
        st, h, b = self.d.request("POST", "/v2/models/cnn/versions/1/infer", body,
                                  {"Content-Type": "application/octet-stream",
                                   "Inference-Header-Content-Length": str(len(head))})
        self.assertEqual(st, 200)
        hl = int(h["Inference-Header-Content-Length"])
        doc = json.loads(b[:hl])
        self.assertEqual(doc["outputs"][0]["parameters"]["binary_data_size"], 2 * 5 * 4)
        harness.validate(harness.spec()["components"]["schemas"]["V2InferResponse"], doc)
        logits = torch.frombuffer(bytearray(b[hl:]), dtype=torch.float32).reshape(2, 5)
        self.assertTrue(torch.equal(logits, got["logits"]), "binary and JSON outputs are the same")

    def test_async_job_and_cancel(self):
        x = self.inputs(4)
        acc = self.jcall("POST", "/v1/models/mlp/regularizers",
                         {"inputs": x.tolist(), "labels": [0, 1, 2, 3], "async": True,
                          "regularizers": [{"name": "jacobian"}]}, status=202)
        job = acc["job"]
        for _ in range(200):
            doc = self.jcall("GET", f"/v1/jobs/{job}")
            if doc["status"] in ("done", "failed"):
                break
            time.sleep(0.02)
        self.assertEqual(doc["status"], "done")
        self.assertEqual(doc["progress"], 1.0)
        sync = self.jcall("POST", "/v1/models/mlp/regularizers",
                          {"inputs": x.tolist(), "labels": [0, 1, 2, 3],
                           "regularizers": [{"name": "jacobian"}]})
        self.assertEqual(doc["result"]["regularizers"][0]["value"], sync["regularizers"][0]["value"])
        after = self.jcall("DELETE", f"/v1/jobs/{job}")
        self.assertEqual(after["status"], "done", "cancelling a finished job keeps its result")
        self.call("DELETE", "/v1/jobs/" + "f" * 32, status=404)
        # A failing job reports its problem (h is a valid float32, x + h u overflows on a
        # model built for it, harness.overflow_model; an h that overflows float32 itself is
        # refused before the job starts).
        auth = {"Authorization": "Bearer " + harness.TOKEN,
                "Content-Type": "application/vnd.safetensors"}
        self.call("PUT", "/v1/models/overflow", harness.overflow_model(), auth, status=201)
        try:
            acc = self.jcall("POST", "/v1/models/overflow/regularizers",
                             dict(harness.OVERFLOW_REQUEST, **{"async": True}), status=202)
            for _ in range(200):
                doc = self.jcall("GET", f"/v1/jobs/{acc['job']}")
                if doc["status"] in ("done", "failed"):
                    break
                time.sleep(0.02)
        finally:
            self.call("DELETE", "/v1/models/overflow", None, auth, status=204)
        self.assertEqual(doc["status"], "failed")
        self.assertEqual(doc["error"]["status"], 422)


class Values(Base):
    def test_predict_matches_torch_and_hashes_regions(self):
        x = self.inputs(5, (1, 8, 8), seed=3)
        doc = self.jcall("POST", "/v1/models/cnn/predict", {"inputs": x.tolist()})
        want = self.models["cnn"](x.double())
        torch.testing.assert_close(tensor(doc["logits"]), want, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(tensor(doc["probabilities"]), F.softmax(want, 1), rtol=RTOL, atol=ATOL)
        self.assertEqual(doc["predictions"], want.argmax(1).tolist())
        # the same input twice: same hash; a single sample is a batch of one
        one = self.jcall("POST", "/v1/models/cnn/predict", {"inputs": x[0].tolist()})
        self.assertEqual(one["logits"]["shape"], [1, 5])
        self.assertEqual(one["activation_pattern_hash"][0], doc["activation_pattern_hash"][0])

    def test_jacobian_matches_torch(self):
        x = self.inputs(2, seed=4)
        for of in ["logits", "log_probabilities"]:
            doc = self.jcall("POST", "/v1/models/mlp/jacobian", {"inputs": x.tolist(), "of": of})
            f = self.models["mlp"] if of == "logits" else (lambda t: F.log_softmax(self.models["mlp"](t), 1))
            J = torch.stack([torch.autograd.functional.jacobian(f, xi.double()[None])[0, :, 0]
                             for xi in x])
            torch.testing.assert_close(tensor(doc["jacobian"]), J, rtol=1e-4, atol=1e-6)

    def test_regularizers_match_torch_json_and_binary(self):
        x = self.inputs(3, seed=5)
        y = [0, 1, 3]
        req = {"inputs": x.tolist(), "labels": y, "gradients": ["inputs", "parameters"],
               "regularizers": [{"name": "input_gradient"}, {"name": "cross_lipschitz"},
                                {"name": "jacobian", "estimator": "projection", "projections": 2, "seed": 4},
                                {"name": "weight_decay"}]}
        doc = self.jcall("POST", "/v1/models/mlp/regularizers", req)
        m = harness.mlp(1).double()
        xr = x.double().requires_grad_(True)
        l = F.cross_entropy(m(xr), torch.tensor(y), reduction="sum")
        g = torch.autograd.grad(l, xr, create_graph=True)[0]
        ig = (g * g).sum(1)
        gx, *gp = torch.autograd.grad(ig.mean(), [xr] + list(m.parameters()))
        r0 = doc["regularizers"][0]
        torch.testing.assert_close(torch.tensor(r0["per_sample"], dtype=torch.float64), ig.detach(), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(tensor(r0["grad_inputs"]), gx, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(tensor(r0["grad_parameters"]["0.weight"]), gp[0], rtol=1e-4, atol=1e-6)
        self.assertEqual(doc["regularizers"][2]["seed"], 4, "the seed used is echoed")
        self.assertIsNone(doc["regularizers"][3]["per_sample"])
        # The binary path gives the same bits: request in safetensors, answer in safetensors.
        body = harness.binary_doc({"/inputs": x, "/labels": torch.tensor(y)}, "relureg.request",
                                  {k: v for k, v in req.items() if k not in ("inputs", "labels")})
        st, h, b = self.d.request("POST", "/v1/models/mlp/regularizers", body,
                                  {"Content-Type": BIN, "Accept": BIN})
        self.assertEqual(st, 200, b[:300])
        self.assertEqual(h["Content-Type"], BIN)
        t, meta = harness.safetensors.load(b)
        rest = json.loads(meta["relureg.response"])
        self.assertNotIn("grad_inputs", rest["regularizers"][0])
        self.assertEqual(rest["regularizers"][0]["grad_parameters"], {})
        self.assertEqual(rest["regularizers"][0]["value"], r0["value"])
        for i in range(4):
            self.assertTrue(torch.equal(t[f"/regularizers/{i}/grad_inputs"],
                                        tensor32(doc["regularizers"][i]["grad_inputs"])))
            self.assertTrue(torch.equal(t[f"/regularizers/{i}/grad_parameters/2.weight"],
                                        tensor32(doc["regularizers"][i]["grad_parameters"]["2.weight"])))
        # JSON request with a KServe tensor object and INT64 labels, binary answer only.
        req2 = dict(req, inputs={"shape": [3, 12], "datatype": "FP32", "data": x.flatten().tolist()},
                    labels={"shape": [3], "datatype": "INT64", "data": y})
        st, h, b = self.d.request("POST", "/v1/models/mlp/regularizers", req2, {"Accept": BIN})
        t2, _ = harness.safetensors.load(b)
        self.assertTrue(torch.equal(t2["/regularizers/1/grad_parameters/0.weight"],
                                    t["/regularizers/1/grad_parameters/0.weight"]))

    def test_connections(self):
        x = self.inputs(2, (1, 8, 8), seed=6)
        doc = self.jcall("POST", "/v1/models/cnn/connections",
                         {"inputs": x.tolist(), "labels": [1, 2], "h": 0.5})
        for k in ["jacobian_fro2", "hessian_trace", "curvature_fd", "left_region"]:
            self.assertEqual(len(doc[k]), 2)
        for b in range(2):
            self.assertLessEqual(doc["input_gradient_norm2"][b], doc["input_gradient_bound"][b] * (1 + 1e-6))

    def test_attacks_answer_true_outcomes_json_and_binary(self):
        x = self.inputs(4, seed=7)
        m = self.models["mlp"]
        y = m(x.double()).argmax(1).tolist()
        for req in ({"attack": "pgd", "epsilon": 0.3, "steps": 10, "seed": 3},
                    {"attack": "fgsm", "norm": "l2", "epsilon": 1.0},
                    {"attack": "deepfool", "norm": "linf"},
                    {"attack": "cw_l2", "binary_search_steps": 3, "max_iter": 50},
                    {"attack": "jsma"}, {"attack": "ead", "max_iter": 30, "binary_search_steps": 2},
                    {"attack": "zoo", "max_iter": 5}):
            doc = self.jcall("POST", "/v1/models/mlp/attacks", dict(req, inputs=x.tolist(), labels=y))
            adv = tensor32(doc["adversarial"]).double()
            self.assertEqual(list(adv.shape), [4, 12])
            self.assertLessEqual(float(adv.max()), 1.0, "clipped to input_range")
            self.assertGreaterEqual(float(adv.min()), -1.0)
            pred = m(adv).argmax(1)
            self.assertEqual(doc["predictions"], pred.tolist())
            self.assertEqual(doc["success"], [p != t for p, t in zip(pred.tolist(), y)])
            d = adv - x.double()
            torch.testing.assert_close(torch.tensor(doc["perturbation_norms"]["l2"], dtype=torch.float64),
                                       d.norm(dim=1), rtol=1e-5, atol=1e-6)
            self.assertEqual(doc["attack"], req["attack"])
            self.assertEqual(doc["seed"], req.get("seed", 0))
            if req["attack"] == "zoo":
                self.assertEqual(doc["gradient_calls"], 0)
        # Defaults echoed; the same seed gives the same bits, in JSON and in binary.
        req = {"attack": "pgd", "inputs": x.tolist(), "labels": y, "seed": 9, "epsilon": 0.2}
        a = self.jcall("POST", "/v1/models/mlp/attacks", req)
        self.assertEqual((a["steps"], a["step_size"], a["random_start"], a["restarts"]), (40, 0.01, True, 1))
        b = self.jcall("POST", "/v1/models/mlp/attacks", req)
        self.assertEqual(a["adversarial"], b["adversarial"])
        st, h, body = self.d.request("POST", "/v1/models/mlp/attacks", req, {"Accept": BIN})
        self.assertEqual(st, 200)
        t, meta = harness.safetensors.load(body)
        self.assertTrue(torch.equal(t["/adversarial"], tensor32(a["adversarial"])))
        # Targeted.
        tgt = [(v + 1) % 4 for v in y]
        doc = self.jcall("POST", "/v1/models/mlp/attacks",
                         {"attack": "pgd", "inputs": x.tolist(), "labels": y, "targeted": True,
                          "target_labels": tgt, "epsilon": 1.0, "step_size": 0.1})
        self.assertEqual(doc["success"], [p == t for p, t in zip(doc["predictions"], tgt)])

    def test_square_answers_sane_fields_and_forward_passes_only(self):
        x = self.inputs(4, seed=17)
        m = self.models["mlp"]
        y = m(x.double()).argmax(1).tolist()
        for req in ({"attack": "square", "epsilon": 0.3, "queries": 300, "seed": 4},
                    {"attack": "square", "norm": "l2", "epsilon": 1.5, "queries": 200, "p_init": 0.3}):
            doc = self.jcall("POST", "/v1/models/mlp/attacks", dict(req, inputs=x.tolist(), labels=y))
            self.assertEqual((doc["attack"], doc["queries"], doc["seed"]),
                             (req["attack"], req["queries"], req.get("seed", 0)))
            self.assertEqual(doc["p_init"], req.get("p_init", 0.8))
            self.assertEqual(doc["gradient_calls"], 0)
            adv = tensor32(doc["adversarial"]).double()
            pred = m(adv).argmax(1)
            self.assertEqual(doc["predictions"], pred.tolist())
            self.assertEqual(doc["success"], [p != t for p, t in zip(pred.tolist(), y)])
            d = adv - x.double()
            n = d.abs().amax(1) if req.get("norm", "linf") == "linf" else d.norm(dim=1)
            self.assertLessEqual(float(n.max()), req["epsilon"] * (1 + 1e-6))
            self.assertLessEqual(float(adv.abs().max()), 1.0)
            self.assertTrue(all(1 <= it <= req["queries"] + 1 for it in doc["iterations"]))
        # Defaults echoed (math.md "Attacks"); the same seed gives the same bits.
        req = {"attack": "square", "inputs": x.tolist(), "labels": y, "queries": 50, "seed": 2}
        a = self.jcall("POST", "/v1/models/mlp/attacks", req)
        self.assertEqual((a["norm"], a["epsilon"], a["p_init"], a["restarts"]), ("linf", 0.3, 0.8, 1))
        self.assertEqual(a["adversarial"], self.jcall("POST", "/v1/models/mlp/attacks", req)["adversarial"])
        zero = self.jcall("POST", "/v1/models/mlp/attacks", {"attack": "square", "inputs": x[:1].tolist(),
                                                              "labels": y[:1], "epsilon": 0.0})
        self.assertEqual((zero["success"], zero["perturbation_norms"]["linf"]), ([False], [0]))
        for bad, field in (({"queries": 0}, "queries"), ({"queries": 10001}, "queries"),
                           ({"queries": 1.5}, "queries"), ({"p_init": 0}, "p_init"),
                           ({"p_init": 1.5}, "p_init"), ({"epsilon": -0.1}, "epsilon"),
                           ({"norm": "l1"}, "norm")):
            st, h, b = self.call("POST", "/v1/models/mlp/attacks",
                                 dict({"attack": "square"}, inputs=x.tolist(), labels=y, **bad), status=422)
            self.assertEqual(json.loads(b)["field"], field, b)

    def test_fab_t_answers_sane_fields_minimum_norm_and_bounded(self):
        x = self.inputs(4, seed=18)
        m = self.models["mlp"]
        y = m(x.double()).argmax(1).tolist()
        body = {"attack": "fab_t", "inputs": x.tolist(), "labels": y, "steps": 30}
        free = self.jcall("POST", "/v1/models/mlp/attacks", body)
        # K = 4: min(9, K - 1) = 3 targets of 30 steps; minimum-norm without epsilon.
        self.assertEqual((free["attack"], free["norm"], free["steps"], free["restarts"]), ("fab_t", "linf", 30, 1))
        self.assertNotIn("epsilon", free)
        self.assertEqual(free["iterations"], [90] * 4)
        self.assertEqual(free["gradient_calls"], 90)
        for doc, eps in ((free, None), (self.jcall("POST", "/v1/models/mlp/attacks", dict(body, epsilon=0.1)), 0.1),
                         (self.jcall("POST", "/v1/models/mlp/attacks", dict(body, norm="l2", epsilon=0.5)), 0.5)):
            adv = tensor32(doc["adversarial"]).double()
            pred = m(adv).argmax(1)
            self.assertEqual(doc["predictions"], pred.tolist())
            self.assertEqual(doc["success"], [p != t for p, t in zip(pred.tolist(), y)])
            self.assertLessEqual(float(adv.abs().max()), 1.0)
            if eps is not None:
                self.assertEqual(doc["epsilon"], eps)
                d = adv - x.double()
                n = d.abs().amax(1) if doc["norm"] == "linf" else d.norm(dim=1)
                self.assertLessEqual(float(n.max()), eps * (1 + 1e-6))
                for b in range(4):  # a failure returns the input
                    if not doc["success"][b]:
                        self.assertEqual(float(n[b]), 0.0)
        self.assertGreater(sum(free["success"]), 0)
        # /robustness: fab_t runs once (minimum norm), square once per epsilon.
        for atk in ({"attack": "fab_t", "steps": 20}, {"attack": "square", "queries": 100}):
            doc = self.jcall("POST", "/v1/models/mlp/robustness",
                             {"inputs": x.tolist(), "labels": y, "epsilons": [0.05, 0.5], "attack": atk})
            self.assertEqual(doc["attack"]["attack"], atk["attack"])
            self.assertNotIn("epsilon", doc["attack"])
            ra = doc["robust_accuracy"]
            self.assertTrue(ra[0] >= ra[1] or doc["flags"]["non_monotone"])
            for i, e in enumerate([0.05, 0.5]):
                robust = sum(1 for v in doc["per_sample_min_epsilon"] if v is None or v > e)
                self.assertAlmostEqual(robust / 4, ra[i])
        for bad, field in (({"targeted": True, "target_labels": [0, 1, 2, 3]}, "targeted"),
                           ({"target_labels": [0, 1, 2, 3]}, "target_labels"),
                           ({"targeted": True}, "targeted"), ({"steps": 0}, "steps"),
                           ({"restarts": 0}, "restarts"), ({"epsilon": -1}, "epsilon"),
                           ({"norm": "l1"}, "norm"), ({"queries": "many"}, "queries")):
            st, h, b = self.call("POST", "/v1/models/mlp/attacks", dict(body, **bad), status=422)
            self.assertEqual(json.loads(b)["field"], field, b)

    def test_attack_option_errors_are_422(self):
        x = self.inputs(2).tolist()
        for bad, field in (({"attack": "nope"}, "attack"), ({"attack": "pgd", "epsilon": -1}, "epsilon"),
                           ({"attack": "pgd", "steps": 0}, "steps"), ({"attack": "pgd", "steps": 10001}, "steps"),
                           ({"attack": "jsma", "gamma": 0}, "gamma"), ({"attack": "jsma", "theta": 2}, "theta"),
                           ({"attack": "cw_l2", "c": 0}, "c"), ({"attack": "zoo", "h": 0}, "h"),
                           ({"attack": "pgd", "targeted": True}, "target_labels"),
                           ({"attack": "pgd", "targeted": True, "target_labels": [0, 9]}, "target_labels"),
                           ({"attack": "deepfool", "targeted": True, "target_labels": [0, 1]}, "targeted"),
                           ({"attack": "pgd", "norm": "l1"}, "norm"), ({"attack": "pgd", "bogus": 1}, "bogus")):
            st, h, b = self.call("POST", "/v1/models/mlp/attacks", dict(bad, inputs=x, labels=[0, 1]), status=422)
            self.assertEqual(json.loads(b)["field"], field, b)

    def test_apgd_attacks_and_their_option_errors(self):
        x = self.inputs(4, seed=11)
        m = self.models["mlp"]
        y = m(x.double()).argmax(1).tolist()
        for req in ({"attack": "apgd_ce", "epsilon": 0.3, "steps": 20, "seed": 1},
                    {"attack": "apgd_ce", "norm": "l2", "epsilon": 1.0, "steps": 20, "restarts": 2},
                    {"attack": "apgd_t", "epsilon": 0.05, "steps": 10, "seed": 2},
                    {"attack": "apgd_t", "norm": "l2", "epsilon": 0.2, "steps": 10}):
            doc = self.jcall("POST", "/v1/models/mlp/attacks", dict(req, inputs=x.tolist(), labels=y))
            norm, eps = req.get("norm", "linf"), req["epsilon"]
            self.assertEqual((doc["attack"], doc["norm"], doc["epsilon"], doc["steps"], doc["seed"]),
                             (req["attack"], norm, eps, req["steps"], req.get("seed", 0)))
            self.assertEqual(doc["restarts"], req.get("restarts", 1))
            adv = tensor32(doc["adversarial"]).double()
            self.assertLessEqual(float(adv.abs().max()), 1.0, "clipped to input_range")
            self.assertLessEqual(max(doc["perturbation_norms"][norm]), eps * (1 + 1e-6))
            pred = m(adv).argmax(1)
            self.assertEqual(doc["predictions"], pred.tolist())
            self.assertEqual(doc["success"], [p != t for p, t in zip(pred.tolist(), y)])
            # Runs of `steps` (apgd_t: one per target of the K - 1 = 3 while unbroken).
            runs = [it // req["steps"] for it in doc["iterations"]]
            self.assertTrue(all(it % req["steps"] == 0 and 1 <= r <= 3 for it, r in zip(doc["iterations"], runs)))
            self.assertGreaterEqual(doc["gradient_calls"], req["steps"] + 1)
            self.assertEqual(doc["forward_calls"], doc["gradient_calls"] + 2)
        doc = self.jcall("POST", "/v1/models/mlp/attacks", {"attack": "apgd_ce", "inputs": x.tolist(), "labels": y})
        self.assertEqual((doc["epsilon"], doc["steps"], doc["restarts"]), (0.3, 100, 1))
        # In a robustness report, as an epsilon-bounded attack.
        rep = self.jcall("POST", "/v1/models/mlp/robustness",
                         {"inputs": x.tolist(), "labels": y, "epsilons": [0.02, 0.5],
                          "attack": {"attack": "apgd_t", "steps": 10, "seed": 3}})
        self.assertEqual(rep["attack"], {"attack": "apgd_t", "norm": "linf", "steps": 10, "restarts": 1, "seed": 3})
        self.assertEqual(len(rep["robust_accuracy"]), 2)
        # A sample's outcome does not depend on another being misclassified (and skipped): each
        # keeps its random stream (math.md). Many epsilons and 3 steps make outcomes start-bound.
        x8 = self.inputs(8, seed=12)
        y8 = m(x8.double()).argmax(1).tolist()
        body = {"inputs": x8.tolist(), "epsilons": [0.01 * i for i in range(1, 41)],
                "attack": {"attack": "apgd_ce", "steps": 3, "seed": 5}}
        a = self.jcall("POST", "/v1/models/mlp/robustness", dict(body, labels=y8))
        b = self.jcall("POST", "/v1/models/mlp/robustness",
                       dict(body, labels=[(y8[0] + 1) % 4] + y8[1:]))
        self.assertEqual(a["per_sample_min_epsilon"][1:], b["per_sample_min_epsilon"][1:])
        self.assertEqual(b["per_sample_min_epsilon"][0], 0)
        for bad, field in (({"attack": "apgd_t", "targeted": True, "target_labels": [0, 1]}, "targeted"),
                           ({"attack": "apgd_ce", "targeted": True, "target_labels": [0, 1]}, "targeted"),
                           ({"attack": "apgd_t", "target_labels": [0, 1]}, "target_labels"),
                           ({"attack": "apgd_ce", "step_size": 0.1}, "step_size"),
                           ({"attack": "apgd_ce", "random_start": False}, "random_start"),
                           ({"attack": "apgd_t", "steps": 0}, "steps"),
                           ({"attack": "apgd_ce", "restarts": 10001}, "restarts"),
                           ({"attack": "apgd_ce", "epsilon": -0.1}, "epsilon"),
                           ({"attack": "apgd_t", "norm": "l1"}, "norm")):
            st, h, b = self.call("POST", "/v1/models/mlp/attacks",
                                 dict(bad, inputs=x[:2].tolist(), labels=y[:2]), status=422)
            self.assertEqual(json.loads(b)["field"], field, b)

    def test_certify_matches_its_definition(self):
        x = self.inputs(3, (1, 8, 8), seed=8)
        m = self.models["cnn"]
        doc = self.jcall("POST", "/v1/models/cnn/certify", {"inputs": x.tolist()})
        self.assertEqual(doc["norm"], "l2")
        z = m(x.double())
        self.assertEqual(doc["predictions"], z.argmax(1).tolist())
        for b in range(3):
            r = doc["certified_radius"][b]
            dd, db = doc["decision_distance"][b], doc["region_distance"][b]
            self.assertAlmostEqual(r, min(v for v in (dd, db) if v is not None), places=9)
            # d_D from torch float64: min_j (z_c - z_j) / ||grad z_c - grad z_j||_2
            J = torch.autograd.functional.jacobian(m, x[b:b + 1].double())[0, :, 0].reshape(5, -1)
            c = int(z[b].argmax())
            want = min(float((z[b, c] - z[b, j]) / (J[c] - J[j]).norm()) for j in range(5) if j != c)
            self.assertLess(abs(dd - want), 1e-4 * want)
            adv = tensor32(doc["adversarial"])[b:b + 1].double()
            if doc["exact"][b]:
                self.assertNotEqual(int(m(adv).argmax()), c)
            else:
                self.assertTrue(torch.equal(adv.float(), x[b:b + 1]))
        wrong = [(p + 1) % 5 for p in doc["predictions"]]
        doc2 = self.jcall("POST", "/v1/models/cnn/certify", {"inputs": x.tolist(), "labels": wrong, "norm": "linf"})
        self.assertEqual(doc2["certified_radius"], [0, 0, 0])
        self.call("POST", "/v1/models/cnn/certify", {"inputs": x.tolist(), "norm": "l3"}, status=422)

    def test_robustness_report(self):
        x = self.inputs(8, seed=9)
        m = self.models["mlp"]
        y = m(x.double()).argmax(1).tolist()
        y[0] = (y[0] + 1) % 4  # one misclassified sample
        eps = [0.0, 0.05, 0.2, 1.0]
        doc = self.jcall("POST", "/v1/models/mlp/robustness",
                         {"inputs": x.tolist(), "labels": y, "epsilons": eps,
                          "attack": {"attack": "pgd", "steps": 10, "step_size": 0.05, "seed": 2}})
        self.assertEqual(doc["clean_accuracy"], 7 / 8)
        self.assertEqual(doc["robust_accuracy"][0], 7 / 8)
        self.assertEqual(doc["per_sample_min_epsilon"][0], 0)
        self.assertEqual(doc["attack"]["seed"], 2)
        ra = doc["robust_accuracy"]
        self.assertTrue(all(ra[i] >= ra[i + 1] for i in range(3)) or doc["flags"]["non_monotone"])
        self.assertEqual(doc["flags"]["certified_broken"], 0)
        # Each sample's smallest breaking epsilon agrees with robust_accuracy.
        for i, e in enumerate(eps):
            robust = sum(1 for v in doc["per_sample_min_epsilon"] if v is None or v > e)
            self.assertAlmostEqual(robust / 8, ra[i])
        cert = self.jcall("POST", "/v1/models/mlp/certify", {"inputs": x.tolist(), "labels": y, "norm": "linf"})
        self.assertAlmostEqual(doc["mean_certified_radius"], sum(cert["certified_radius"]) / 8, places=6)
        # Minimum-norm attack, l2, async with progress.
        acc = self.jcall("POST", "/v1/models/mlp/robustness",
                         {"inputs": x.tolist(), "labels": y, "epsilons": [0.1, 0.5], "norm": "l2",
                          "attack": {"attack": "deepfool"}, "async": True}, status=202)
        for _ in range(500):
            job = self.jcall("GET", f"/v1/jobs/{acc['job']}")
            if job["status"] in ("done", "failed"):
                break
            time.sleep(0.02)
        self.assertEqual(job["status"], "done")
        self.assertEqual(job["progress"], 1.0)
        self.assertEqual(job["result"]["attack"]["norm"], "l2")
        self.call("POST", "/v1/models/mlp/robustness",
                  {"inputs": x.tolist(), "labels": y, "epsilons": [0.1], "norm": "l2",
                   "attack": {"attack": "pgd", "norm": "linf"}}, status=422)
        self.call("POST", "/v1/models/mlp/robustness",
                  {"inputs": x.tolist(), "labels": y, "epsilons": []}, status=422)

    def test_robustness_sample_outcome_independent_of_others(self):
        # Every attack draws from (seed, original sample index): making sample 0 misclassified
        # (so it is not attacked) leaves every other sample's outcome unchanged.
        x = self.inputs(16, seed=13)
        y = self.models["mlp"](x.double()).argmax(1).tolist()
        req = {"inputs": x.tolist(), "epsilons": [0.05, 0.1, 0.15, 0.2, 0.3],
               "attack": {"attack": "pgd", "steps": 1, "step_size": 0.01, "seed": 5}}
        a = self.jcall("POST", "/v1/models/mlp/robustness", dict(req, labels=y))
        y2 = list(y)
        y2[0] = (y2[0] + 1) % 4
        b = self.jcall("POST", "/v1/models/mlp/robustness", dict(req, labels=y2))
        self.assertEqual(b["per_sample_min_epsilon"][0], 0)
        self.assertEqual(a["per_sample_min_epsilon"][1:], b["per_sample_min_epsilon"][1:])
        # The random start matters here: another seed changes some outcome.
        c = self.jcall("POST", "/v1/models/mlp/robustness",
                       dict(req, labels=y, attack=dict(req["attack"], seed=6)))
        self.assertNotEqual(a["per_sample_min_epsilon"], c["per_sample_min_epsilon"])

    def test_version_pin(self):
        x = self.inputs(1)
        self.jcall("POST", "/v1/models/mlp/predict", {"inputs": x.tolist(), "version": 1})
        self.call("POST", "/v1/models/mlp/predict", {"inputs": x.tolist(), "version": 2}, status=409)


class Schema(Base):
    def test_validator_rejects_an_answer_missing_a_required_member(self):
        doc = self.jcall("POST", "/v1/models/mlp/predict", {"inputs": self.inputs(1).tolist()})
        schema = harness.response_schema("POST", "/v1/models/mlp/predict", 200, "application/json")
        harness.validate(schema, doc)
        del doc["activation_pattern_hash"]
        with self.assertRaises(jsonschema.ValidationError):
            harness.validate(schema, doc)
        problem = harness.spec()["components"]["schemas"]["Problem"]
        with self.assertRaises(jsonschema.ValidationError):
            harness.validate(problem, {"type": "/problems/x", "title": "t", "status": 400, "detail": "d"})


class BadInputs(Base):
    def test_bad_input_table(self):
        files = sorted(glob.glob(os.path.join(harness.ROOT, "tests", "cases", "http", "*.json")))
        self.assertGreaterEqual(len(files), 40)
        x = self.inputs(2)
        before = self.jcall("POST", "/v1/models/mlp/predict", {"inputs": x.tolist()})
        for path in files:
            name = os.path.basename(path)[:-5]
            with open(path) as f:
                c = json.load(f)
            headers = dict(c.get("headers", {}))
            if c.get("auth"):
                headers.update(AUTH)
            if "json" in c:
                body = json.dumps(c["json"]).encode()
                headers.setdefault("Content-Type", "application/json")
            elif "body_b64" in c:
                body = base64.b64decode(c["body_b64"])
            elif "body_fill" in c:
                body = b" " * c["body_fill"]
            else:
                body = c.get("body")
                if body is not None:
                    body = body.encode()
                    headers.setdefault("Content-Type", "application/json")
            with self.subTest(case=name):
                st, h, b = self.d.request(c["method"], c["path"], body, headers)
                self.assertEqual(st, c["status"], f"{name}: {b[:300]!r}")
                self.assertTrue(h.get("Content-Type", "").startswith("application/problem+json"), name)
                doc = json.loads(b)
                self.assertEqual(doc["type"], "/problems/" + c["type"], name)
                self.assertEqual(doc["error"], doc["detail"])
                if st == 503:
                    self.assertIn("Retry-After", h)
                check(self, c["method"], c["path"].split("?")[0], st, h, b)
        self.assertTrue(self.d.alive())
        after = self.jcall("POST", "/v1/models/mlp/predict", {"inputs": x.tolist()})
        self.assertEqual(after["logits"], before["logits"], "the models answer exactly as before")
        self.assertEqual([m["version"] for m in self.jcall("GET", "/v1/models")["models"]], [1, 1])

    def test_body_that_stops_half_way_is_dropped(self):
        s = socket.create_connection((self.d.host, self.d.port))
        s.sendall(b"POST /v1/models/mlp/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"inputs\": [[0.1, 0.2")
        s.close()
        time.sleep(0.2)
        self.assertTrue(self.d.alive())
        self.jcall("GET", "/v1/health/live")


class Concurrency(unittest.TestCase):
    """Parallel clients mixing compute, PUT-replace and DELETE: no crash, no 5xx but documented
    503s, every predict answer consistent with the version it reports."""

    def test_mixed_load(self):
        d = harness.Daemon(extra=("--workers", "2", "--threads", "2"))
        try:
            nets = [harness.mlp(100 + i).double() for i in range(3)]
            files = [harness.export(harness.mlp(100 + i), [12]) for i in range(3)]
            x = (torch.rand(4, 12) * 2 - 1).float()
            want = [n(x.double()) for n in nets]
            version_net = {}
            lock = threading.Lock()
            hdr = dict(AUTH, **{"Content-Type": BIN})
            st, h, b = d.request("PUT", "/v1/models/hot", files[0], hdr)
            version_net[json.loads(b)["version"]] = 0
            errors, counts, answers = [], {}, []
            stop = time.time() + 5

            def worker(seed):
                rng = random.Random(seed)
                while time.time() < stop:
                    op = rng.random()
                    if op < 0.15:
                        i = rng.randrange(3)
                        st, h, b = d.request("PUT", "/v1/models/hot", files[i], hdr)
                        if st in (200, 201):
                            with lock:
                                version_net[json.loads(b)["version"]] = i
                    elif op < 0.2:
                        st, h, b = d.request("DELETE", "/v1/models/hot", headers=AUTH)
                    elif op < 0.6:
                        st, h, b = d.request("POST", "/v1/models/hot/predict", {"inputs": x.tolist()})
                        if st == 200:
                            with lock:  # checked at the end, once every PUT's answer is known
                                answers.append(json.loads(b))
                    else:
                        st, h, b = d.request("POST", "/v1/models/hot/regularizers",
                                             {"inputs": x.tolist(), "labels": [0, 1, 2, 3],
                                              "regularizers": [{"name": "curvature"}],
                                              "gradients": ["parameters"]})
                    with lock:
                        counts[st] = counts.get(st, 0) + 1
                    if st >= 500 and st != 503:
                        errors.append(f"status {st}: {b[:200]!r}")
                    if st not in (200, 201, 204, 404, 503):
                        errors.append(f"unexpected status {st}: {b[:200]!r}")

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertTrue(d.alive())
            for doc in answers:
                i = version_net.get(doc["version"])
                if i is None:
                    errors.append(f"unknown version {doc['version']}")
                elif not torch.allclose(tensor(doc["logits"]), want[i], rtol=1e-5, atol=1e-6):
                    errors.append(f"version {doc['version']} answered another net's logits")
            self.assertEqual(errors, [])
            self.assertGreater(len(answers), 20, counts)
        finally:
            self.assertEqual(d.stop(), 0)


class Drain(unittest.TestCase):
    def test_sigterm_finishes_in_flight_requests_then_exits_0(self):
        d = harness.Daemon(extra=("--workers", "1", "--drain-grace-s", "1"))
        try:
            x = (torch.rand(64, 1, 8, 8)).tolist()
            result = {}

            def slow():
                result["r"] = d.request("POST", "/v1/models/cnn/regularizers",
                                        {"inputs": x, "labels": [0] * 64,
                                         "regularizers": [{"name": "cross_lipschitz"}] * 16,
                                         "gradients": ["parameters"]})

            self.assertEqual(d.request("GET", "/v1/health/ready")[0], 200)
            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.3)
            d.proc.send_signal(15)
            time.sleep(0.1)
            # During the grace period readiness is 503 (so balancers stop sending), requests
            # are still served; then the daemon stops accepting and drains.
            st, h, b = d.request("GET", "/v1/health/ready")
            self.assertEqual(st, 503, b)
            self.assertEqual(d.request("GET", "/v1/health/live")[0], 200)
            t.join()
            self.assertEqual(result["r"][0], 200)
            self.assertEqual(d.proc.wait(timeout=30), 0)
        finally:
            d.stop()


class QueueFull(unittest.TestCase):
    def test_queue_full_is_503_with_retry_after(self):
        # Admission is by deadline (test_serving.py); --queue-max bounds the queue's memory:
        # two workers, one queued task at most, the rest refused at once.
        d = harness.Daemon(extra=("--workers", "2", "--threads", "2", "--queue-max", "1"))
        try:
            # Each request keeps its worker busy for well over the time the 8 take to arrive
            # (PGD, 1000 steps x 8 restarts, one sample each step never succeeding early).
            x = (torch.rand(64, 1, 8, 8)).tolist()
            req = {"inputs": x, "labels": [0] * 64, "attack": "pgd", "epsilon": 1e-3,
                   "steps": 1000, "restarts": 8}
            results = []

            def call():
                results.append(d.request("POST", "/v1/models/cnn/attacks", req))

            threads = [threading.Thread(target=call) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            codes = sorted(r[0] for r in results)
            self.assertIn(503, codes, codes)
            self.assertIn(200, codes, codes)
            for st, h, b in results:
                if st == 503:
                    self.assertEqual(json.loads(b)["type"], "/problems/queue-full")
                    self.assertIn("queue is full", json.loads(b)["detail"])
                    self.assertIn("Retry-After", h)
        finally:
            d.stop()


class Timeout(unittest.TestCase):
    def test_request_past_timeout_is_503(self):
        d = harness.Daemon(extra=("--timeout-s", "1", "--threads", "1"))
        try:
            x = (torch.rand(64, 1, 8, 8)).tolist()
            heavy = {"name": "jacobian", "estimator": "projection", "projections": 1000}
            st, h, b = d.request("POST", "/v1/models/cnn/regularizers",
                                 {"inputs": x, "labels": [0] * 64, "gradients": ["parameters"],
                                  "regularizers": [heavy] * 16})
            self.assertEqual(st, 503, b[:200])
            self.assertEqual(json.loads(b)["type"], "/problems/timeout")
            self.assertTrue(d.alive())
        finally:
            d.stop()


class Instance(unittest.TestCase):
    """--instance NAME prefixes job ids with NAME- (serving.md §7.3: a balancer routes
    /v1/jobs/NAME-... back to the replica holding the job); a bad name refuses to start."""

    def test_job_ids_name_the_replica(self):
        d = harness.Daemon(extra=("--instance", "replica-a.1"))
        try:
            x = (torch.rand(2, 12) * 2 - 1).tolist()
            st, h, b = d.request("POST", "/v1/models/mlp/predict", {"inputs": x, "async": True})
            self.assertEqual(st, 202, b[:200])
            check(self, "POST", "/v1/models/mlp/predict", st, h, b)  # the id pattern in the spec
            job = json.loads(b)["job"]
            self.assertRegex(job, "^replica-a\\.1-[0-9a-f]{32}$")
            for _ in range(200):
                st, h, b = d.request("GET", f"/v1/jobs/{job}")
                check(self, "GET", f"/v1/jobs/{job}", st, h, b)
                if json.loads(b)["status"] == "done":
                    break
                time.sleep(0.02)
            self.assertEqual(json.loads(b)["job"], job)
            self.assertEqual(json.loads(b)["status"], "done")
            self.assertEqual(d.request("GET", "/v1/jobs/" + job[len("replica-a.1-"):])[0], 404)
        finally:
            d.stop()

    def test_bad_instance_name_is_refused(self):
        for bad in ("-a", "a/b", "x" * 65):
            r = subprocess.run([harness.DAEMON, "--port", "0", "--instance", bad],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("--instance", r.stderr)


if __name__ == "__main__":
    unittest.main()
