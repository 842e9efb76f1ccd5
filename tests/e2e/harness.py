"""Shared end-to-end machinery: start reluregd on a free loopback port with test models, talk to
it with urllib, and validate answers against api/openapi.yaml with jsonschema (Draft 2020-12).
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import torch
import torch.nn as nn
import yaml
from jsonschema import Draft202012Validator, RefResolver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
# RELUREG_INSTALLED=1 (test_install.py): use the relureg package installed in the running
# interpreter's environment instead of the tree's clients/python.
INSTALLED = os.environ.get("RELUREG_INSTALLED") == "1"
if not INSTALLED:
    sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from relureg import export, safetensors  # noqa: E402

DAEMON = os.environ.get("RELUREGD", os.path.join(ROOT, "build", "reluregd"))
TOKEN = "e2e-secret-token"
ORIGIN = "http://dashboard.example"


def mlp(seed, d=12, k=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, k)).eval()


def cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5)).eval()


def overflow_model():
    """The file of an MLP 12-16-4 whose curvature finite difference at x = 3e38 (all features)
    overflows float32 whatever the BLAS kernels: every weight is positive and small, so the
    forward pass is finite and the same in any summation order, the loss gradient points along
    +1 in every feature, and x + h u with h = 3e38 passes the largest float32. A job on it
    fails inside its computation (422 /problems/non-finite), deterministically."""
    m = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        m[0].weight.fill_(1e-2)
        m[0].bias.zero_()
        m[2].weight.copy_(torch.arange(1, 5, dtype=torch.float32).reshape(4, 1).expand(4, 16) * 1e-2)
        m[2].bias.zero_()
    path = tempfile.mktemp(suffix=".safetensors")
    try:
        export(m.eval(), [12], path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        if os.path.exists(path):
            os.remove(path)


OVERFLOW_REQUEST = {"inputs": [[3e38] * 12] * 4, "labels": [0, 0, 0, 0],
                    "regularizers": [{"name": "curvature", "h": 3e38}]}


class Daemon:
    """reluregd with a models dir holding `mlp` and `cnn`, a token file and a CORS origin."""

    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="relureg-e2e-")
        models = os.path.join(self.dir, "models")
        os.makedirs(models)
        export(mlp(1), [12], os.path.join(models, "mlp.safetensors"), input_range=[-1, 1])
        export(cnn(2), [1, 8, 8], os.path.join(models, "cnn.safetensors"))
        with open(os.path.join(models, "bad name!.safetensors"), "wb") as f:
            f.write(b"skipped: not a valid model name")
        token = os.path.join(self.dir, "token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        self.log = open(os.path.join(self.dir, "daemon.log"), "w+")
        self.proc = subprocess.Popen(
            [DAEMON, "--port", "0", "--models-dir", models, "--token-file", token,
             "--cors-origin", ORIGIN, "--static-dir", os.path.join(ROOT, "clients", "js"),
             "--max-body-mb", "4", "--max-batch", "64", "--max-steps", "1000", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"reluregd listening on http://([0-9.]+):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"reluregd did not start: {line!r}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.base = f"http://{self.host}:{self.port}"

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers, body bytes); body may be bytes, str or a JSON-able object. The
        answer is read even when the server refused the body before it was all sent."""
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                pass  # an early answer (413) closed the connection; read it below
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None):
        st, h, b = self.request(method, path, body, headers)
        return st, h, (json.loads(b) if b else None)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


# ---- OpenAPI validation ----

_SPEC = None


def spec():
    global _SPEC
    if _SPEC is None:
        with open(os.path.join(ROOT, "api", "openapi.yaml")) as f:
            _SPEC = yaml.safe_load(f)
    return _SPEC


def _template(path):
    """The spec's path template matching a concrete path (without query)."""
    path = path.split("?")[0]
    for t in spec()["paths"]:
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"
        if t == "/static/{path}":
            rx = "^/static/.+$"
        if re.match(rx, path):
            return t
    return None


def response_schema(method, path, status, content_type):
    t = _template(path)
    if t is None:
        raise AssertionError(f"{path} is not in api/openapi.yaml")
    op = spec()["paths"][t].get(method.lower())
    if op is None:
        raise AssertionError(f"{method} {t} is not in api/openapi.yaml")
    resp = op["responses"].get(str(status))
    if resp is None:
        raise AssertionError(f"{method} {t} does not document status {status}")
    if "$ref" in resp:
        name = resp["$ref"].split("/")[-1]
        resp = spec()["components"]["responses"][name]
    media = (content_type or "").split(";")[0].strip()
    content = resp.get("content", {})
    if media not in content and "*/*" not in content:
        if not content and status == 204:
            return None
        raise AssertionError(f"{method} {t} {status} does not document {media!r}")
    return content.get(media, content.get("*/*"))["schema"]


def validate(schema, doc):
    """Raises jsonschema.ValidationError when doc does not match."""
    resolver = RefResolver(base_uri="", referrer=spec())
    Draft202012Validator(schema, resolver=resolver).validate(doc)


def check(testcase, method, path, status, headers, body):
    """Asserts that an answer is documented and, for JSON, valid against its schema. Paths or
    methods the API does not have are answered 404 / 405 with a problem."""
    ct = headers.get("Content-Type", "")
    t = _template(path)
    if status in (404, 405) and (t is None or method.lower() not in spec()["paths"][t]):
        testcase.assertTrue(ct.startswith("application/problem+json"))
        validate(spec()["components"]["schemas"]["Problem"], json.loads(body))
        return
    schema = response_schema(method, path, status, ct)
    testcase.assertIn("X-Request-Id", headers)
    if schema is not None and ("json" in ct):
        validate(schema, json.loads(body))


def binary_doc(tensors, meta_key, doc):
    return safetensors.save(tensors, {meta_key: json.dumps(doc)})
