"""Errors that teach (issue 24): each answer names what went wrong and what to do, with the
documented problem type. Every case asserts the key words of the detail, the status, the
problem `type` and that the answer is valid against api/openapi.yaml.
"""
import io
import json
import unittest
import zipfile

import harness
from harness import check

AUTH = {"Authorization": f"Bearer {harness.TOKEN}"}
X = [[0.1] * 12]


class Errors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def problem(self, method, path, body, status, ptype, *words, headers=None):
        """Sends the request; asserts status, problem type and that every word is in detail."""
        st, h, b = self.d.request(method, path, body, headers)
        self.assertEqual(st, status, b[:400])
        check(self, method, path.split("?")[0], st, h, b)
        doc = json.loads(b)
        self.assertEqual(doc["type"], "/problems/" + ptype)
        for w in words:
            self.assertIn(w, doc["detail"])
        return doc

    # ---- bodies ----

    def test_empty_post_body_says_it_is_empty(self):
        for ct in ("application/json", None):
            hdrs = {"Content-Type": ct} if ct else {}
            doc = self.problem("POST", "/v1/models/mlp/predict", b"", 400, "malformed-body",
                               "the body is empty", "JSON object", headers=hdrs)
            self.assertNotIn("line -1", doc["detail"])

    def test_upload_of_a_file_that_is_not_safetensors_points_at_the_exporter(self):
        with open(harness.ROOT + "/README.md", "rb") as f:
            readme = f.read()
        buf = io.BytesIO()  # what torch.save writes: a zip archive
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        for body, why in ((readme, "8-byte header length"), (buf.getvalue(), "zip archive"),
                          (b"\x80\x04\x95" + b"\x00" * 20, "pickle")):
            with self.subTest(why=why):
                doc = self.problem("PUT", "/v1/models/upload", body, 400, "malformed-body",
                                   "not a safetensors model file", why, "relureg.export",
                                   headers=dict(AUTH, **{"Content-Type": BIN}))
                self.assertEqual(doc.get("field"), "body")
        # nothing was registered
        st, _, _ = self.d.request("GET", "/v1/models/upload")
        self.assertEqual(st, 404)

    # ---- members: did you mean ----

    def test_unknown_member_suggests_the_member_meant(self):
        self.problem("POST", "/v1/models/mlp/regularizers",
                     {"inputs": X, "labels": [1], "regularisers": ["jacobian"]}, 422,
                     "invalid-request", "unknown member 'regularisers'",
                     "did you mean 'regularizers'?")
        self.problem("POST", "/v1/models/mlp/regularizers",
                     {"inputs": X, "labels": [1],
                      "regularizers": [{"name": "jacobian", "estimater": "exact"}]},
                     422, "invalid-request", "unknown member 'estimater'",
                     "did you mean 'estimator'?")
        self.problem("POST", "/v1/models/mlp/attacks",
                     {"inputs": X, "labels": [1], "attack": "pgd", "epsilonn": 0.1}, 422,
                     "invalid-request", "did you mean 'epsilon'?")
        self.problem("POST", "/v1/models/mlp/regularizers",
                     {"inputs": X, "labels": [1], "regularizers": ["jacobain"]}, 422,
                     "invalid-request", "unknown regularizer 'jacobain'", "did you mean 'jacobian'?")
        self.problem("POST", "/v1/models/mlp/attacks",
                     {"inputs": X, "labels": [1], "attack": "pdg"}, 422, "invalid-request",
                     "unknown attack 'pdg'", "did you mean 'pgd'?")
        # nothing close: no suggestion, but the list of members
        doc = self.problem("POST", "/v1/models/mlp/predict", {"inputs": X, "zzzzzz": 1}, 422,
                           "invalid-request", "unknown member 'zzzzzz'", "members:")
        self.assertNotIn("did you mean", doc["detail"])

    def test_missing_inputs_names_the_unknown_input_sent_beside_it(self):
        doc = self.problem("POST", "/v1/models/mlp/regularizers",
                           {"input": X, "labels": [1], "regularizers": ["jacobian"]}, 422,
                           "invalid-request", "missing required member 'inputs'", "'input'",
                           "did you mean 'inputs'?")
        self.assertEqual(doc["field"], "inputs")
        self.problem("POST", "/v1/models/mlp/attacks", {"inputs": X, "label": [1]}, 422,
                     "invalid-request", "missing required member 'labels'", "'label'")
        doc = self.problem("POST", "/v1/models/mlp/predict", {"x": X}, 422, "invalid-request",
                           "missing required member 'inputs'")
        self.assertNotIn("did you mean", doc["detail"])

    # ---- 404s list what exists ----

    def test_unknown_model_lists_the_loaded_models(self):
        self.problem("POST", "/v1/models/mpl/predict", {"inputs": X}, 404, "not-found",
                     "no model named 'mpl'", "did you mean 'mlp'?", "cnn, mlp")
        doc = self.problem("GET", "/v1/models/resnet", None, 404, "not-found",
                           "no model named 'resnet'", "the loaded models are: cnn, mlp")
        self.assertNotIn("did you mean", doc["detail"])
        self.problem("DELETE", "/v1/models/resnet", None, 404, "not-found", "cnn, mlp",
                     headers=AUTH)

    def test_unknown_dataset_lists_the_datasets(self):
        self.problem("GET", "/v1/datasets/mnist/test?limit=1", None, 404, "not-found",
                     "no dataset named 'mnist'", "fashion-mnist", "train", "test")
        self.problem("GET", "/v1/datasets/fashion-mnist/val", None, 404, "not-found",
                     "no split 'val'", "train and test")

    # ---- epsilon and the input range ----

    def test_epsilon_larger_than_the_input_range_is_refused(self):
        # mlp has input_range [-1, 1] over 12 features: linf diameter 2, l2 diameter 2*sqrt(12)
        doc = self.problem("POST", "/v1/models/mlp/attacks",
                           {"inputs": X, "labels": [1], "attack": "pgd", "epsilon": 1000}, 422,
                           "invalid-request", "epsilon = 1000", "input_range [-1, 1]", "linf")
        self.assertEqual(doc["field"], "epsilon")
        self.problem("POST", "/v1/models/mlp/attacks",
                     {"inputs": X, "labels": [1], "attack": "fgsm", "norm": "l2", "epsilon": 7},
                     422, "invalid-request", "input_range [-1, 1]", "6.9282", "l2")
        doc = self.problem("POST", "/v1/models/mlp/robustness",
                           {"inputs": X, "labels": [1], "epsilons": [0.1, 5],
                            "attack": {"attack": "fgsm"}},
                           422, "invalid-request", "epsilons[1] = 5", "input_range [-1, 1]")
        self.assertEqual(doc["field"], "epsilons[1]")
        # within the range: answered (the diameter itself, in both norms)
        for norm, eps in (("linf", 2.0), ("l2", 6.9)):
            st, h, b = self.d.request("POST", "/v1/models/mlp/attacks",
                                      {"inputs": X, "labels": [1], "attack": "fgsm", "norm": norm,
                                       "epsilon": eps})
            self.assertEqual(st, 200, b[:300])
        # a model without input_range takes any epsilon
        st, h, b = self.d.request("POST", "/v1/models/cnn/attacks",
                                  {"inputs": [[[[0.1] * 8] * 8]], "labels": [1], "attack": "fgsm",
                                   "epsilon": 1000})
        self.assertEqual(st, 200, b[:300])

    # ---- regularizers: names or objects ----

    def test_regularizers_accept_names_and_objects(self):
        st, h, b = self.d.request("POST", "/v1/models/mlp/regularizers",
                                  {"inputs": X, "labels": [1], "gradients": [],
                                   "regularizers": ["jacobian", {"name": "input_gradient"},
                                                    "cross_lipschitz"]})
        self.assertEqual(st, 200, b[:300])
        check(self, "POST", "/v1/models/mlp/regularizers", st, h, b)
        names = json.loads(b)["regularizers"]
        st, h, b = self.d.request("POST", "/v1/models/mlp/regularizers",
                                  {"inputs": X, "labels": [1], "gradients": [],
                                   "regularizers": [{"name": "jacobian"}, {"name": "input_gradient"},
                                                    {"name": "cross_lipschitz"}]})
        objects = json.loads(b)["regularizers"]
        self.assertEqual([r["name"] for r in names], ["jacobian", "input_gradient",
                                                       "cross_lipschitz"])
        self.assertEqual([r["value"] for r in names], [r["value"] for r in objects])
        self.problem("POST", "/v1/models/mlp/regularizers",
                     {"inputs": X, "labels": [1], "regularizers": [3]}, 422, "invalid-request",
                     "regularizers[0] must be a regularizer's name")


BIN = "application/vnd.safetensors"

if __name__ == "__main__":
    unittest.main()
