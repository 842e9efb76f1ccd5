"""Hostile-client cases for the minor items of issue 21 (7 to 10, and the static half of 11):
float options and model input ranges that overflow float32, request tensors of a dtype the
format does not allow, a tiny body declaring a huge tensor, NUL bytes in paths, headers and the
token file, the bearer scheme in any case, a model that can never run, and a symbolic link
leading out of --static-dir. Each case checks the status, the problem type and its key words,
then that the daemon keeps serving and the preloaded models are unchanged.
"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import torch
import torch.nn as nn

import harness
from harness import TOKEN
from relureg import export

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BIN = "application/vnd.safetensors"
PROBLEM = "application/problem+json"


def never_runs():
    """A conv with padding 7000 on a 1x1 input: one 14001 x 14001 channel (196 M values, under
    the per-layer limit of model loading), but one sample's workspace (activations and two
    backward buffers of that size) is 2.2 GiB, over the budget of every request."""
    m = nn.Sequential(nn.Conv2d(1, 1, 1, padding=7000), nn.AvgPool2d(14001), nn.Flatten(),
                      nn.Linear(1, 3)).eval()
    return export(m, [1, 1, 1])


def vm_peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmPeak:"):
                return int(line.split()[1])
    raise AssertionError("no VmPeak in /proc/PID/status")


class HostileMinor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A static folder holding links out of it (to a file and to a folder) and one inside.
        cls.static = tempfile.mkdtemp(prefix="relureg-static-")
        with open(os.path.join(cls.static, "index.html"), "w") as f:
            f.write("<!doctype html><title>t</title>\n")
        with open(os.path.join(cls.static, "app.js"), "w") as f:
            f.write("export const x = 1;\n")
        cls.secret = tempfile.mkdtemp(prefix="relureg-secret-")
        with open(os.path.join(cls.secret, "passwd.txt"), "w") as f:
            f.write("root:x:0:0:secret\n")
        os.symlink(os.path.join(cls.secret, "passwd.txt"), os.path.join(cls.static, "link.txt"))
        os.symlink("/etc/passwd", os.path.join(cls.static, "passwd"))
        os.symlink(cls.secret, os.path.join(cls.static, "dir"))
        os.symlink("app.js", os.path.join(cls.static, "inner.js"))
        cls.d = harness.Daemon(extra=("--static-dir", cls.static))
        cls.before = {n: cls.fingerprint(n) for n in ("mlp", "cnn")}

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.static, ignore_errors=True)
        shutil.rmtree(cls.secret, ignore_errors=True)

    @classmethod
    def fingerprint(cls, name):
        st, _, doc = cls.d.json("GET", f"/v1/models/{name}")
        assert st == 200, (name, st, doc)
        return doc["content_hash"], doc["version"]

    def tearDown(self):
        # Whatever the case sent, the daemon still answers and the preloaded models are as
        # they were.
        self.assertTrue(self.d.alive(), "reluregd exited")
        st, _, b = self.d.request("GET", "/v1/health/ready", timeout=10)
        self.assertEqual(st, 200, b)
        for n, fp in self.before.items():
            self.assertEqual(self.fingerprint(n), fp, f"model {n} changed")

    def problem(self, st, h, body, status, ptype, *words, field=None):
        self.assertEqual(st, status, body[:400])
        self.assertTrue(h.get("Content-Type", "").startswith(PROBLEM), h)
        doc = json.loads(body)
        self.assertEqual(doc["type"], ptype, doc)
        for w in words:
            self.assertIn(w, doc["detail"], doc)
        if field is not None:
            self.assertEqual(doc.get("field"), field, doc)
        return doc

    def post(self, model, route, body):
        return self.d.request("POST", f"/v1/models/{model}/{route}", body)

    def x(self, B=2):
        return (torch.rand(B, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1).tolist()

    # ---- item 7: values finite in double but not in float32; request dtypes ----

    def test_float_options_overflowing_float32_are_422(self):
        x, y = self.x(), [0, 1]
        cases = [
            ("attacks", {"attack": "pgd", "epsilon": 1e39, "inputs": x, "labels": y}, "epsilon"),
            ("attacks", {"attack": "pgd", "epsilon": 0.1, "step_size": 1e39, "inputs": x,
                         "labels": y}, "step_size"),
            ("attacks", {"attack": "fgsm", "epsilon": -1e39, "inputs": x, "labels": y},
             "epsilon"),
            ("attacks", {"attack": "cw_l2", "c": 1e39, "max_iter": 2, "binary_search_steps": 1,
                         "inputs": x, "labels": y}, "c"),
            ("attacks", {"attack": "zoo", "h": 1e39, "inputs": x, "labels": y}, "h"),
            ("robustness", {"inputs": x, "labels": y, "epsilons": [0.1, 1e39],
                            "attack": {"attack": "fgsm"}}, "epsilons"),
            ("robustness", {"inputs": x, "labels": y, "epsilons": [0.1],
                            "attack": {"attack": "pgd", "steps": 2, "step_size": 1e39}},
             "step_size"),
            ("regularizers", {"inputs": x, "labels": y,
                              "regularizers": [{"name": "curvature", "h": 1e39}]},
             "regularizers[0].h"),
            ("connections", {"inputs": x, "labels": y, "h": 1e39}, "h"),
        ]
        for route, body, field in cases:
            with self.subTest(route=route, field=field):
                st, h, b = self.post("mlp", route, body)
                self.problem(st, h, b, 422, "/problems/non-finite", "float32", field=field)
        # The largest float32 is still a valid value (on the cnn, which has no input_range:
        # the mlp's [-1, 1] refuses any epsilon over 2, test_errors.py).
        xc = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)).tolist()
        st, _, b = self.post("cnn", "attacks", {"attack": "fgsm", "epsilon": 3.4028234e38,
                                                "inputs": xc, "labels": y})
        self.assertEqual(st, 200, b[:300])

    def test_input_range_not_finite_in_float32_is_refused_at_put(self):
        for rng in ([0, 1e39], [-1e39, 0]):
            with self.subTest(input_range=rng):
                body = export(harness.mlp(3), [12], input_range=rng)
                st, h, b = self.d.request("PUT", "/v1/models/widerange", body,
                                          {**AUTH, "Content-Type": BIN})
                self.problem(st, h, b, 422, "/problems/invalid-request", "input_range",
                             "float32", field="input_range")
                st, _, _ = self.d.request("GET", "/v1/models/widerange")
                self.assertEqual(st, 404)

    def test_request_tensors_other_than_f32_f64_are_422(self):
        x = torch.rand(2, 12, generator=torch.Generator().manual_seed(1))
        for dt, name in ((torch.float16, "F16"), (torch.bfloat16, "BF16")):
            with self.subTest(dtype=name):
                body = harness.binary_doc({"/inputs": x.to(dt)}, "relureg.request", {})
                st, h, b = self.d.request("POST", "/v1/models/mlp/predict", body,
                                          {"Content-Type": BIN})
                self.problem(st, h, b, 422, "/problems/unsupported-dtype", name, "F32 or F64",
                             field="inputs")
        for dt in (torch.float32, torch.float64):  # still accepted
            body = harness.binary_doc({"/inputs": x.to(dt)}, "relureg.request", {})
            st, _, b = self.d.request("POST", "/v1/models/mlp/predict", body,
                                      {"Content-Type": BIN})
            self.assertEqual(st, 200, b[:300])

    # ---- item 8: a declared shape is counted against the values sent before allocating ----

    def test_tiny_body_declaring_a_huge_tensor_allocates_nothing(self):
        pid = self.d.proc.pid
        # An 80-byte KServe object declaring 2^31 floats (8 GiB).
        kserve = '{"inputs":{"shape":[2147483648],"datatype":"FP32","data":[0]}}'
        # Nested arrays whose first elements claim 14^8 (1.5 G) values in about 230 bytes.
        nested = "0" + ",0" * 13
        for _ in range(7):
            nested = "[" + nested + "]" + ",0" * 13
        nested = '{"inputs":[' + nested + "]}"
        # Smaller claim first: VmPeak is a high-water mark.
        for what, body in (("nested", nested), ("kserve", kserve)):
            with self.subTest(form=what):
                self.assertLess(len(body), 256)
                peak = vm_peak_kib(pid)
                t0 = time.monotonic()
                st, h, b = self.d.request("POST", "/v1/models/mlp/predict", body,
                                          {"Content-Type": "application/json"})
                self.problem(st, h, b, 422, "/problems/shape-mismatch", "inputs",
                             field="inputs")
                grown = vm_peak_kib(pid) - peak
                self.assertLess(grown, 256 << 10, f"VmPeak grew by {grown} KiB")
                self.assertLess(time.monotonic() - t0, 5)
        # The count itself: a shape that disagrees with the data sent.
        st, h, b = self.post("mlp", "predict", {"inputs": {"shape": [2, 12], "datatype": "FP32",
                                                           "data": [0.0] * 23}})
        self.problem(st, h, b, 422, "/problems/shape-mismatch", "23 values", "24",
                     field="inputs")

    # ---- item 9: NUL bytes, the bearer scheme, the token file ----

    def put_model(self, name, seed=5):
        st, _, b = self.d.request("PUT", f"/v1/models/{name}",
                                  export(harness.mlp(seed), [12]), {**AUTH, "Content-Type": BIN})
        self.assertIn(st, (200, 201), b[:300])

    def test_nul_in_a_model_path_names_no_model(self):
        # Needs main.c to pass MHD_OPTION_UNESCAPE_CALLBACK, rrd_url_unescape (router.c).
        body = export(harness.mlp(4), [12])
        st, h, b = self.d.request("PUT", "/v1/models/a%00b", body, {**AUTH, "Content-Type": BIN})
        self.problem(st, h, b, 422, "/problems/invalid-request", "must match", field="name")
        for path in ("/v1/models/a", "/v1/models/a%00b"):
            st, _, _ = self.d.request("GET", path)
            self.assertNotEqual(st, 200, path)
        self.put_model("victim")
        _, _, before = self.d.json("GET", "/v1/models/victim")
        for path in ("/v1/models/victim%00anything", "/v1/models/victim%00"):
            with self.subTest(path=path):
                st, h, b = self.d.request("DELETE", path, None, AUTH)
                self.problem(st, h, b, 422, "/problems/invalid-request", field="name")
                st, h, b = self.d.request("PUT", path, body, {**AUTH, "Content-Type": BIN})
                self.problem(st, h, b, 422, "/problems/invalid-request", field="name")
        st, _, after = self.d.json("GET", "/v1/models/victim")
        self.assertEqual(st, 200)
        self.assertEqual((after["content_hash"], after["version"]),
                         (before["content_hash"], before["version"]))
        # Other routes: the path with %00 names no model and no file.
        st, h, b = self.d.request("POST", "/v1/models/mlp%00x/predict", {"inputs": self.x()})
        self.assertEqual(st, 422, b[:300])
        st, _, _ = self.d.request("GET", "/static/app.js%00.png")
        self.assertEqual(st, 404)
        # Other escapes still decode.
        st, _, _ = self.d.request("GET", "/v1/models/vic%74im")
        self.assertEqual(st, 200)
        self.assertEqual(self.d.request("DELETE", "/v1/models/victim", None, AUTH)[0], 204)

    def raw(self, request):
        """Sends bytes as they are; returns (status, headers, body) of the answer."""
        with socket.create_connection((self.d.host, self.d.port), timeout=10) as s:
            s.sendall(request)
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        self.assertIsNotNone(m, data[:200])
        hdrs = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(m.group(1)), hdrs, body

    def test_nul_in_the_authorization_header_is_refused(self):
        self.put_model("guarded")
        for junk in (b"\x00junk", b"\x00" + TOKEN.encode(), b"\x00\x01"):
            with self.subTest(junk=junk):
                req = (b"DELETE /v1/models/guarded HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Authorization: Bearer " + TOKEN.encode() + junk + b"\r\n\r\n")
                st, h, b = self.raw(req)
                # MHD may refuse the header line itself (400); what matters is no 204.
                self.assertIn(st, (400, 401), b[:300])
                if st == 401:
                    self.problem(st, h, b, 401, "/problems/unauthorized")
                self.assertEqual(self.d.request("GET", "/v1/models/guarded")[0], 200)
        self.assertEqual(self.d.request("DELETE", "/v1/models/guarded", None, AUTH)[0], 204)

    def test_bearer_scheme_is_case_insensitive(self):
        body = export(harness.mlp(6), [12])
        for i, scheme in enumerate(("bearer", "BEARER", "bEaReR")):
            with self.subTest(scheme=scheme):
                auth = {"Authorization": f"{scheme} {TOKEN}"}
                st, _, b = self.d.request("PUT", f"/v1/models/cased{i}", body,
                                          {**auth, "Content-Type": BIN})
                self.assertEqual(st, 201, b[:300])
                st, _, b = self.d.request("DELETE", f"/v1/models/cased{i}", None, auth)
                self.assertEqual(st, 204, b[:300])
        # A wrong token stays wrong in any case, and so does another scheme.
        for auth in (f"bearer {TOKEN}x", f"bearer {TOKEN[:-1]}", f"Basic {TOKEN}",
                     f"bearer{TOKEN}", "bearer "):
            with self.subTest(auth=auth):
                st, h, b = self.d.request("PUT", "/v1/models/cased9", body,
                                          {"Authorization": auth, "Content-Type": BIN})
                self.problem(st, h, b, 401, "/problems/unauthorized")
        self.assertEqual(self.d.request("GET", "/v1/models/cased9")[0], 404)

    def start(self, token):
        """Starts reluregd with a token file holding `token`; (returncode or None, stderr)."""
        tmp = tempfile.mkdtemp(prefix="relureg-token-")
        try:
            path = os.path.join(tmp, "token")
            with open(path, "wb") as f:
                f.write(token + b"\n")
            p = subprocess.Popen([harness.DAEMON, "--port", "0", "--token-file", path,
                                  "--models-dir", tmp], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            try:
                out, err = p.communicate(timeout=10)
                return p.returncode, out.decode(), err.decode()
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                return None, out.decode(), err.decode()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_token_file_longer_than_the_buffer_is_refused_at_start(self):
        for token, words in ((b"t" * 300, "longer than"), (b"t" * 256, "longer than"),
                             (b"abc\x00def", "NUL")):
            with self.subTest(n=len(token)):
                rc, out, err = self.start(token)
                self.assertEqual(rc, 2, f"reluregd started: {out!r} {err[-300:]!r}")
                self.assertIn("token file", err)
                self.assertIn(words, err)
                self.assertNotIn("listening", out)

    def test_token_of_255_characters_works(self):
        tmp = tempfile.mkdtemp(prefix="relureg-token-")
        token = "k" * 255
        path = os.path.join(tmp, "token")
        with open(path, "w") as f:
            f.write(token + "\r\n")
        p = subprocess.Popen([harness.DAEMON, "--port", "0", "--token-file", path, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = p.stdout.readline()
            m = re.match(r"reluregd listening on http://([0-9.]+):(\d+)", line)
            self.assertIsNotNone(m, line)
            body = export(harness.mlp(7), [12])
            for auth, want in ((token[:-1], 401), (token, 201)):
                c = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=10)
                c.request("PUT", "/v1/models/m", body, {"Authorization": "Bearer " + auth,
                                                        "Content-Type": BIN})
                self.assertEqual(c.getresponse().status, want)
                c.close()
        finally:
            p.terminate()
            p.wait(timeout=30)
            p.stdout.close()
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- item 10: a model that can never run ----

    def test_model_that_can_never_run_is_refused_at_put(self):
        st, h, b = self.d.request("PUT", "/v1/models/huge", never_runs(),
                                  {**AUTH, "Content-Type": BIN})
        doc = self.problem(st, h, b, 422, "/problems/invalid-request", "workspace", "256 MiB",
                           "MiB")
        self.assertNotIn("Retry-After", h)
        self.assertRegex(doc["detail"], r"needs 2\d{3} MiB")
        self.assertEqual(self.d.request("GET", "/v1/models/huge")[0], 404)
        # A replacement of an existing name is refused the same way and keeps the old model.
        st, h, b = self.d.request("PUT", "/v1/models/cnn", never_runs(),
                                  {**AUTH, "Content-Type": BIN})
        self.problem(st, h, b, 422, "/problems/invalid-request", "workspace")

    def test_preload_skips_models_that_cannot_load_or_run(self):
        # The workspace check needs main.c's preload to call rrd_model_load (registry.c).
        tmp = tempfile.mkdtemp(prefix="relureg-preload-")
        try:
            export(harness.mlp(8), [12], os.path.join(tmp, "good.safetensors"))
            export(harness.mlp(8), [12], os.path.join(tmp, "wide.safetensors"),
                   input_range=[0, 1e39])
            with open(os.path.join(tmp, "huge.safetensors"), "wb") as f:
                f.write(never_runs())
            d = harness.Daemon(extra=("--models-dir", tmp))
            try:
                st, _, doc = d.json("GET", "/v1/models")
                self.assertEqual(st, 200)
                self.assertEqual([m["name"] for m in doc["models"]], ["good"])
                d.log.flush()
                d.log.seek(0)
                log = d.log.read()
                self.assertRegex(log, r"skipping \S*wide\.safetensors: .*input_range")
                self.assertRegex(log, r"skipping \S*huge\.safetensors: .*workspace")
            finally:
                d.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- item 11 (static half): symbolic links out of --static-dir ----

    def test_static_route_does_not_follow_links_out_of_its_folder(self):
        for path in ("/static/link.txt", "/static/passwd", "/static/dir/passwd.txt"):
            with self.subTest(path=path):
                st, h, b = self.d.request("GET", path)
                self.problem(st, h, b, 404, "/problems/not-found")
                self.assertNotIn(b"root:", b)
        st, _, b = self.d.request("GET", "/static/app.js")
        self.assertEqual((st, b), (200, b"export const x = 1;\n"))
        st, _, b = self.d.request("GET", "/static/inner.js")  # a link that stays inside
        self.assertEqual((st, b), (200, b"export const x = 1;\n"))
        st, _, b = self.d.request("GET", "/")
        self.assertEqual(st, 200)
        self.assertIn(b"<title>t</title>", b)


if __name__ == "__main__":
    unittest.main()
