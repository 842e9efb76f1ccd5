"""The command-line client `relureg` (clients/c/relureg.c) against a live reluregd: every command,
its human form and its --json form, checked against what the daemon answers directly over HTTP
for the same request; problem answers, connection errors and usage errors with their exit
statuses (0 success, 1 error, 2 usage). RELUREG_CLI names the client binary (default
build/relureg), RELUREGD the daemon (harness.py)."""
import json
import os
import random
import re
import socket
import subprocess
import tempfile
import shutil
import unittest

import harness

CLI = os.environ.get("RELUREG_CLI", os.path.join(harness.ROOT, "build", "relureg"))


def rows(text, header):
    """The whitespace-split rows of a table printed under a header line starting with header."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    return [line.split() for line in lines[start + 1:] if line.strip()]


def g6(x):
    """A number as the human form prints it (%.6g), parsed back."""
    return float(f"{x:.6g}")


def without(doc, *keys):
    return {k: v for k, v in doc.items() if k not in keys}


def compact(text):
    """JSON text without the whitespace outside strings (strings here hold no whitespace)."""
    return "".join(text.split())


class Cli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(CLI, os.X_OK):
            raise RuntimeError(f"{CLI} is not built (make build/relureg)")
        cls.d = harness.Daemon()
        cls.dir = tempfile.mkdtemp(prefix="relureg-cli-")
        cls.token = os.path.join(cls.dir, "token")
        with open(cls.token, "w") as f:
            f.write(harness.TOKEN + "\n")
        cls.bad_token = os.path.join(cls.dir, "bad-token")
        with open(cls.bad_token, "w") as f:
            f.write("not-the-token\n")
        st, _, cls.weights = cls.d.request("GET", "/v1/models/mlp/weights")
        assert st == 200, st
        cls.model_file = os.path.join(cls.dir, "mlp.safetensors")
        with open(cls.model_file, "wb") as f:
            f.write(cls.weights)
        rng = random.Random(7)
        cls.x = [[round(rng.uniform(-1, 1), 4) for _ in range(12)] for _ in range(6)]
        cls.y = [rng.randrange(4) for _ in range(6)]
        cls.req = cls.write("req.json", {"inputs": cls.x, "labels": cls.y})
        cls.bare = cls.write("bare.json", cls.x)
        cls.img = [[[[round(rng.uniform(0, 1), 4) for _ in range(8)] for _ in range(8)]]
                   for _ in range(3)]
        cls.img_req = cls.write("img.json", {"inputs": cls.img})

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def write(cls, name, doc):
        path = os.path.join(cls.dir, name)
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def run_cli(self, *args, url=True, env=None, stdin=None):
        """(exit status, stdout, stderr) of relureg [--url base] args, with a clean environment."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("RELUREG_")}
        e.update(env or {})
        argv = [CLI] + (["--url", self.d.base] if url else []) + list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=e, input=stdin,
                           cwd=self.dir)
        return r.returncode, r.stdout, r.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.run_cli(*args, **kw)
        self.assertEqual(rc, 0, f"relureg {' '.join(args)} failed: {err}")
        self.assertEqual(err, "")
        return out

    def direct(self, method, path, body=None, headers=None, status=200):
        st, _, doc = self.d.json(method, path, body, headers)
        self.assertEqual(st, status, doc)
        return doc

    def auth(self):
        return {"Authorization": f"Bearer {harness.TOKEN}"}

    def cleanup_model(self, name):
        """Unloads name when the test ends, however it ends, so no test sees another's model."""
        self.addCleanup(self.d.request, "DELETE", f"/v1/models/{name}", None, self.auth())

    def problem_line(self, doc):
        return f"relureg: {doc['status']} {doc['title']}: {doc['detail']}"

    # ---- list ----

    def test_list_human_matches_models(self):
        want = self.direct("GET", "/v1/models")["models"]
        got = rows(self.ok("list"), "NAME")
        self.assertEqual(len(got), len(want))
        for r, m in zip(got, want):
            shape = "[" + ", ".join(map(str, m["input_shape"])) + "]"
            # The shape may hold spaces: name and version lead, counts trail.
            self.assertEqual(r[0], m["name"])
            self.assertEqual(int(r[1]), m["version"])
            self.assertEqual(" ".join(r[2:-3]), shape)
            self.assertEqual([int(v) for v in r[-3:]],
                             [m["num_classes"], m["parameter_count"], m["layers"]])

    def test_list_json_is_the_answer_verbatim(self):
        st, _, raw = self.d.request("GET", "/v1/models")
        self.assertEqual(st, 200)
        out = self.ok("--json", "list")
        self.assertEqual(json.loads(out), json.loads(raw))
        # Pretty-printed (one member per line) yet token for token the server's text.
        self.assertGreater(len(out.splitlines()), 10)
        self.assertEqual(compact(out), raw.decode())

    def test_url_from_environment(self):
        out = self.ok("list", url=False, env={"RELUREG_URL": self.d.base + "/"})
        want = [m["name"] for m in self.direct("GET", "/v1/models")["models"]]
        self.assertEqual([r[0] for r in rows(out, "NAME")], want)
        self.assertIn("mlp", want)

    # ---- predict ----

    def test_predict_human_matches_direct(self):
        want = self.direct("POST", "/v1/models/mlp/predict", {"inputs": self.x})
        K = want["probabilities"]["shape"][1]
        p = want["probabilities"]["data"]
        got = rows(self.ok("predict", "mlp", self.req), "SAMPLE")
        self.assertEqual([int(r[0]) for r in got], list(range(len(self.x))))
        self.assertEqual([int(r[1]) for r in got], want["predictions"])
        for b, r in enumerate(got):
            top = max(p[b * K:(b + 1) * K])
            self.assertEqual(float(r[2]), g6(top))

    def test_predict_json_equals_direct_for_every_input_form(self):
        want = self.direct("POST", "/v1/models/cnn/predict", {"inputs": self.img})
        forms = {"object": (self.img_req, None),
                 "bare array": (self.write("img-bare.json", self.img), None),
                 "tensor object": (self.write("img-tensor.json", {
                     "shape": [3, 1, 8, 8], "datatype": "FP32",
                     "data": [v for s in self.img for c in s for row in c for v in row]}), None),
                 "stdin": ("-", json.dumps(self.img))}
        for form, (path, stdin) in forms.items():
            with self.subTest(form=form):
                got = json.loads(self.ok("--json", "predict", "cnn", path, stdin=stdin))
                self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))

    # ---- regularizers ----

    def test_regularizers_match_direct(self):
        regs = [{"name": "jacobian", "estimator": "projection", "projections": 2, "seed": 3},
                {"name": "curvature", "method": "finite_difference", "h": 0.5},
                {"name": "input_gradient"}]
        want = self.direct("POST", "/v1/models/mlp/regularizers",
                           {"inputs": self.x, "labels": self.y, "regularizers": regs,
                            "gradients": ["inputs", "parameters"]})
        args = ["regularizers", "mlp", self.bare, "--labels", ",".join(map(str, self.y)),
                "--reg", "jacobian:estimator=projection,projections=2,seed=3",
                "--reg", "curvature:method=finite_difference,h=0.5", "--reg", "input_gradient",
                "--gradients", "inputs,parameters"]
        got = json.loads(self.ok("--json", *args))
        self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))
        # Numbers went as JSON numbers (the server echoes the options it was given).
        self.assertIs(type(got["regularizers"][0]["projections"]), int)
        self.assertEqual(got["regularizers"][1]["h"], 0.5)

        lines = self.ok(*args).splitlines()
        rx = re.compile(r"^(\S+)(?: \((.*)\))?  value (\S+)  per_sample (.*)$")
        heads = [rx.match(line) for line in lines if not line.startswith("  ")]
        self.assertTrue(all(heads), lines)
        self.assertEqual([m.group(1) for m in heads], ["loss"] + [r["name"] for r in regs])
        for m, entry in zip(heads, [want["loss"]] + want["regularizers"]):
            self.assertEqual(float(m.group(3)), g6(entry["value"]))
            self.assertEqual([float(v) for v in m.group(4).split()],
                             [g6(v) for v in entry["per_sample"]])
        self.assertIn("estimator=projection, projections=2, seed=3", heads[1].group(2))
        grads = [line.split() for line in lines if line.startswith("  grad_inputs")]
        self.assertEqual(grads, [["grad_inputs", "[6,", "12]"]] * 3)

    def test_regularizers_per_sample_shows_first_few(self):
        x = self.x * 3  # 18 samples
        out = self.ok("regularizers", "mlp", self.write("req18.json", {"inputs": x, "labels": self.y * 3}),
                      "--reg", "weight_decay", "--reg", "cross_lipschitz")
        want = self.direct("POST", "/v1/models/mlp/regularizers",
                           {"inputs": x, "labels": self.y * 3,
                            "regularizers": [{"name": "cross_lipschitz"}]})
        line = next(line for line in out.splitlines() if line.startswith("cross_lipschitz"))
        shown = line.split("per_sample ")[1]
        self.assertTrue(shown.endswith("... (+12 more)"), line)
        self.assertEqual([float(v) for v in shown.split(" ...")[0].split()],
                         [g6(v) for v in want["regularizers"][0]["per_sample"][:6]])

    # ---- attack ----

    def test_attack_matches_direct_and_writes_the_adversarial_tensor(self):
        body = {"inputs": self.x, "labels": self.y, "attack": "pgd", "norm": "linf",
                "epsilon": 0.1, "steps": 5, "seed": 3, "random_start": False}
        want = self.direct("POST", "/v1/models/mlp/attacks", body)
        args = ["attack", "mlp", self.req, "--attack", "pgd", "--norm", "linf", "--epsilon", "0.1",
                "--steps", "5", "--seed", "3", "--set", "random_start=false"]
        got = json.loads(self.ok("--json", *args))
        self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))

        adv = os.path.join(self.dir, "adv.json")
        out = self.ok(*args, "--out", adv)
        first = out.splitlines()[0]
        ok = sum(want["success"])
        self.assertEqual(first, f"pgd (norm=linf, epsilon=0.1, steps=5, seed=3): {ok} of 6 succeeded")
        table = rows(out, "SAMPLE")[:6]
        self.assertEqual([r[1] == "yes" for r in table], want["success"])
        self.assertEqual([float(r[2]) for r in table],
                         [g6(v) for v in want["perturbation_norms"]["l2"]])
        self.assertEqual([float(r[3]) for r in table],
                         [g6(v) for v in want["perturbation_norms"]["linf"]])
        self.assertEqual([int(r[4]) for r in table], want["predictions"])
        with open(adv) as f:
            self.assertEqual(json.load(f), want["adversarial"])
        # The written tensor is itself an INPUTS.json: predicting on it gives the attack's
        # predictions.
        pred = rows(self.ok("predict", "mlp", adv), "SAMPLE")
        self.assertEqual([int(r[1]) for r in pred], want["predictions"])

    def test_attack_bad_hyperparameter_is_the_servers_422(self):
        body = {"inputs": self.x, "labels": self.y, "attack": "pgd", "steps": 100000}
        want = self.direct("POST", "/v1/models/mlp/attacks", body, status=422)
        rc, out, err = self.run_cli("attack", "mlp", self.req, "--attack", "pgd", "--steps",
                                    "100000")
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err.strip(), self.problem_line(want))

    # ---- certify ----

    def test_certify_matches_direct(self):
        want = self.direct("POST", "/v1/models/mlp/certify", {"inputs": self.x, "norm": "linf"})
        out = self.ok("certify", "mlp", self.bare, "--norm", "linf")
        self.assertEqual(out.splitlines()[0], "norm linf")
        got = rows(out, "SAMPLE")
        self.assertEqual([int(r[1]) for r in got], want["predictions"])
        self.assertEqual([float(r[2]) for r in got],
                         [g6(v) if v is not None else float("inf")
                          for v in want["certified_radius"]])
        self.assertEqual([r[3] == "yes" for r in got], want["exact"])
        got = json.loads(self.ok("--json", "certify", "mlp", self.bare, "--norm", "linf"))
        self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))

    # ---- jacobian, connections ----

    def test_jacobian_matches_direct(self):
        for of in ("logits", "log_probabilities"):
            with self.subTest(of=of):
                want = self.direct("POST", "/v1/models/mlp/jacobian", {"inputs": self.x, "of": of})
                out = self.ok("jacobian", "mlp", self.req, "--of", of)
                self.assertEqual(out.splitlines()[0], f"jacobian of {of}, shape [6, 4, 12]")
                J, n = want["jacobian"]["data"], 4 * 12
                got = [float(r[1]) for r in rows(out, "SAMPLE")]
                fro2 = [sum(v * v for v in J[b * n:(b + 1) * n]) for b in range(len(self.x))]
                for g, w in zip(got, fro2):
                    self.assertAlmostEqual(g, w, delta=1e-5 * abs(w))  # %.6g of a float64 sum
                got = json.loads(self.ok("--json", "jacobian", "mlp", self.req, "--of", of))
                self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))
        want = self.direct("POST", "/v1/models/mlp/connections", {"inputs": self.x,
                                                                  "labels": self.y})
        self.assertEqual([float(r[1]) for r in rows(self.ok("jacobian", "mlp", self.req),
                                                     "SAMPLE")],
                         [g6(v) for v in want["jacobian_fro2"]])

    def test_connections_matches_direct(self):
        want = self.direct("POST", "/v1/models/mlp/connections",
                           {"inputs": self.x, "labels": self.y, "h": 0.5})
        out = self.ok("connections", "mlp", self.req, "--h", "0.5")
        head = out.splitlines()[0].split()
        self.assertEqual(head, ["SAMPLE", "JACOBIAN_FRO2", "INPUT_GRADIENT_NORM2",
                                "HESSIAN_TRACE", "CURVATURE_RATIO", "LEFT_REGION"])
        got = rows(out, "SAMPLE")
        for k, col in (("jacobian_fro2", 1), ("input_gradient_norm2", 2), ("hessian_trace", 3)):
            self.assertEqual([float(r[col]) for r in got], [g6(v) for v in want[k]], k)
        self.assertEqual([r[4] for r in got],
                         ["inf" if v is None else f"{v:.6g}" for v in want["curvature_ratio"]])
        self.assertEqual([r[5] == "yes" for r in got], want["left_region"])
        got = json.loads(self.ok("--json", "connections", "mlp", self.req, "--h", "0.5"))
        self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))

    # ---- robustness and jobs ----

    def robustness_direct(self, attack):
        return self.direct("POST", "/v1/models/mlp/robustness",
                           {"inputs": self.x, "labels": self.y, "epsilons": [0.05, 0.2],
                            "norm": "linf", "attack": attack})

    def test_robustness_runs_as_a_job_with_a_progress_bar(self):
        want = self.robustness_direct({"attack": "pgd", "steps": 7, "seed": 2, "restarts": 2})
        rc, out, err = self.run_cli("robustness", "mlp", self.req, "--epsilons", "0.05,0.2",
                                    "--attack", "pgd", "--steps", "7", "--seed", "2",
                                    "--set", "restarts=2")
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"\[#{30}\] 100% done")  # the bar, on standard error
        self.assertEqual(out.splitlines()[0], "robustness under pgd (linf)")
        self.assertIn(f"clean accuracy         {want['clean_accuracy']:.6g}", out)
        got = rows(out, "EPSILON")
        self.assertEqual([float(r[0]) for r in got], [0.05, 0.2])
        self.assertEqual([float(r[1]) for r in got], [g6(v) for v in want["robust_accuracy"]])
        rc, out, err = self.run_cli("--json", "robustness", "mlp", self.req, "--epsilons",
                                    "0.05,0.2", "--attack", "pgd", "--steps", "7", "--seed", "2",
                                    "--set", "restarts=2")
        self.assertEqual(rc, 0, err)
        got = json.loads(out)
        self.assertEqual(without(got, "elapsed_ms"), without(want, "elapsed_ms"))
        # the server's 422 for an epsilon outside the input range, exit 1
        rc, out, err = self.run_cli("robustness", "mlp", self.req, "--epsilons", "0.1,9")
        self.assertEqual(rc, 1)
        self.assertIn("relureg: 422 Invalid request: epsilons[1] = 9", err)

    def test_jobs_status_wait_and_cancel(self):
        want = self.robustness_direct({"attack": "fgsm"})
        rc, out, err = self.run_cli("robustness", "mlp", self.req, "--epsilons", "0.05,0.2",
                                    "--attack", "fgsm", "--no-wait")
        self.assertEqual(rc, 0, err)
        m = re.fullmatch(r"job (\S+) queued \(relureg jobs wait \1\)\n", out)
        self.assertIsNotNone(m, out)
        job = m.group(1)
        rc, out, err = self.run_cli("jobs", "wait", job)
        self.assertEqual(rc, 0, err)
        self.assertIn("100% done", err)
        self.assertEqual([float(r[1]) for r in rows(out, "EPSILON")],
                         [g6(v) for v in want["robust_accuracy"]])
        out = self.ok("jobs", "status", job)
        self.assertEqual(out, f"job {job} done 1\n")
        doc = json.loads(self.ok("--json", "jobs", "status", job))
        self.assertEqual(doc["status"], "done")
        self.assertEqual(doc["result"]["robust_accuracy"], want["robust_accuracy"])
        # a long job, cancelled: status says so and wait exits 1 naming it
        big = self.write("big.json", {"inputs": self.x * 10, "labels": self.y * 10})
        rc, out, err = self.run_cli("robustness", "mlp", big, "--epsilons",
                                    "0.01,0.02,0.05,0.1,0.2", "--attack", "pgd", "--steps",
                                    "1000", "--set", "restarts=10", "--no-wait")
        self.assertEqual(rc, 0, err)
        job = out.split()[1]
        out = self.ok("jobs", "cancel", job)
        self.assertRegex(out, rf"^job {job} (queued|running|cancelled) ")
        rc, out, err = self.run_cli("jobs", "wait", job)
        self.assertEqual(rc, 1)
        self.assertIn(f"relureg: job {job} was cancelled", err)
        self.assertRegex(self.ok("jobs", "status", job), rf"^job {job} cancelled ")
        # unknown job: the server's 404; unknown action: usage
        rc, out, err = self.run_cli("jobs", "status", "f" * 32)
        self.assertEqual(rc, 1)
        self.assertIn("relureg: 404", err)
        rc, out, err = self.run_cli("jobs", "frob", job)
        self.assertEqual(rc, 2)
        self.assertIn("unknown action 'frob'", err)

    # ---- put and delete ----

    def test_put_creates_then_replaces(self):
        self.cleanup_model("cli-put")
        out = self.ok("--token", self.token, "put", "cli-put", self.model_file)
        self.assertEqual(out, "cli-put version 1 (created)\n")
        out = self.ok("put", "cli-put", self.model_file,
                      env={"RELUREG_TOKEN_FILE": self.token})
        self.assertEqual(out, "cli-put version 2 (replaced)\n")
        got = json.loads(self.ok("--json", "--token", self.token, "put", "cli-put",
                                 self.model_file))
        self.assertEqual((got["name"], got["version"], got["created"]), ("cli-put", 3, False))
        self.assertEqual(self.direct("GET", "/v1/models/cli-put")["version"], 3)
        st, _, back = self.d.request("GET", "/v1/models/cli-put/weights")
        self.assertEqual((st, back), (200, self.weights))

    def test_delete_removes_the_model(self):
        self.cleanup_model("cli-del")
        st, _, _ = self.d.request("PUT", "/v1/models/cli-del", self.weights,
                                  {**self.auth(), "Content-Type": "application/vnd.safetensors"})
        self.assertEqual(st, 201)
        self.assertIn("cli-del", [r[0] for r in rows(self.ok("list"), "NAME")])
        self.assertEqual(self.ok("--token", self.token, "delete", "cli-del"), "cli-del deleted\n")
        self.assertNotIn("cli-del", [m["name"] for m in self.direct("GET", "/v1/models")["models"]])
        self.assertNotIn("cli-del", [r[0] for r in rows(self.ok("list"), "NAME")])
        want = self.direct("DELETE", "/v1/models/cli-del", headers=self.auth(), status=404)
        rc, out, err = self.run_cli("--token", self.token, "delete", "cli-del")
        self.assertEqual((rc, out, err.strip()), (1, "", self.problem_line(want)))

    def test_missing_or_wrong_token_is_the_servers_401(self):
        self.cleanup_model("cli-nope")
        want = self.direct("DELETE", "/v1/models/mlp", status=401)
        for token in ([], ["--token", self.bad_token]):
            with self.subTest(token=token):
                rc, out, err = self.run_cli(*token, "put", "cli-nope", self.model_file)
                self.assertEqual((rc, out), (1, ""))
                self.assertIn(f"relureg: 401 {want['title']}: ", err)
                rc, out, err = self.run_cli(*token, "delete", "mlp")
                self.assertEqual((rc, out), (1, ""))
                self.assertIn(f"relureg: 401 {want['title']}: ", err)
        self.direct("GET", "/v1/models/cli-nope", status=404)
        self.direct("GET", "/v1/models/mlp")

    # ---- errors ----

    def test_unknown_model_is_the_servers_404(self):
        want = self.direct("POST", "/v1/models/nope/predict", {"inputs": self.x}, status=404)
        for args in (["predict", "nope", self.req], ["--json", "certify", "nope", self.req]):
            with self.subTest(args=args):
                rc, out, err = self.run_cli(*args)
                self.assertEqual((rc, out), (1, ""))
                self.assertEqual(err, self.problem_line(want) + "\n")

    def test_unreachable_server(self):
        with socket.socket() as s:  # a loopback port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        rc, out, err = self.run_cli("--url", url, "list", url=False)
        self.assertEqual((rc, out), (1, ""))
        self.assertRegex(err, rf"^relureg: GET {url}/v1/models: .*connect")

    def test_bad_input_file(self):
        bad = os.path.join(self.dir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"inputs": [1, 2,')
        for path in (bad, os.path.join(self.dir, "missing.json"),
                     self.write("noinputs.json", {"labels": [1]})):
            with self.subTest(path=path):
                rc, out, err = self.run_cli("predict", "mlp", path)
                self.assertEqual((rc, out), (1, ""))
                self.assertTrue(err.startswith(f"relureg: {path}"), err)

    def test_usage_errors_exit_2(self):
        cases = [[], ["bogus"], ["predict", "mlp"], ["predict", "mlp", self.req, "extra"],
                 ["regularizers", "mlp", self.req], ["attack", "mlp", self.req],
                 ["predict", "mlp", self.req, "--reg", "jacobian"],
                 ["regularizers", "mlp", self.req, "--reg", "jacobian:projections"],
                 ["attack", "mlp", self.req, "--attack", "pgd", "--steps", "many"],
                 ["list", "--frobnicate"], ["list", "--url"]]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = self.run_cli(*args)
                self.assertEqual((rc, out), (2, ""))
                self.assertRegex(err, r"^relureg: ")
                self.assertIn("usage: relureg", err)
        for flag in ("-h", "--help"):
            rc, out, err = self.run_cli(flag)
            self.assertEqual((rc, err), (0, ""))
            self.assertTrue(out.startswith("usage: relureg"))
            for cmd in ("list", "put", "delete", "predict", "regularizers", "attack", "certify"):
                self.assertIn(f"\n  {cmd} ", out)


if __name__ == "__main__":
    unittest.main()
