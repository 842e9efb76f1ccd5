"""The curl cookbook (clients/curl/README.md) and the top-level README's examples, run as
written against a live reluregd serving models named and shaped like `make run`'s demo models
(random weights: `make test` never trains). Each ```sh block runs in order in one bash process
with `set -euo pipefail`, so a failing curl (`-f`), a missing field (a Python one-liner's
KeyError) or a wrong status stops it; the status codes the page announces are checked too."""
import os
import re
import subprocess
import sys
import tempfile
import shutil
import unittest

import torch
from torch import nn

import harness

ROOT = harness.ROOT
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from relureg import export  # noqa: E402


def demo_models(d):
    """Models with the demo models' names and architectures (tools/relureg_train.c presets)."""
    torch.manual_seed(0)
    mlp = lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),  # noqa: E731
                                nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(1568, 10)).eval()
    for name in ("mlp", "mlp-input-gradient", "mlp-jacobian", "mlp-cross-lipschitz",
                 "mlp-curvature"):
        export(mlp(), [1, 28, 28], os.path.join(d, f"{name}.safetensors"), input_range=[0, 1])
    export(cnn, [1, 28, 28], os.path.join(d, "cnn.safetensors"), input_range=[0, 1])


def sh_blocks(path):
    with open(path) as f:
        return re.findall(r"```sh\n(.*?)```", f.read(), re.S)


class Cookbook(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="relureg-cookbook-")
        models = os.path.join(cls.dir, "models")
        os.makedirs(models)
        demo_models(models)
        cls.log = open(os.path.join(cls.dir, "daemon.log"), "w+")
        cls.proc = subprocess.Popen([harness.DAEMON, "--port", "0", "--models-dir", models],
                                    stdout=subprocess.PIPE, stderr=cls.log, text=True)
        m = re.match(r"reluregd listening on http://([0-9.]+):(\d+)", cls.proc.stdout.readline())
        if not m:
            cls.proc.kill()
            raise RuntimeError("reluregd did not start")
        cls.base = f"http://{m.group(1)}:{m.group(2)}"

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=30)
        cls.proc.stdout.close()
        cls.log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def run_blocks(self, blocks, env=None, strict=True):
        """Runs the blocks in one bash process in a fresh directory; returns each block's
        output (stdout and stderr), failing the test with the block's text on a failure."""
        work = tempfile.mkdtemp(dir=self.dir)
        # The README pipes into `head`, which closes the pipe early, as a user's shell does;
        # pipefail would call that a failure, so it is on only for the cookbook.
        script = ["set -euo pipefail" if strict else "set -eu"]
        for i, b in enumerate(blocks):
            script += [f"echo '@@block {i}'", f"echo '@@block {i}' >&2", b]
        r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, **(env or {})))
        out = re.split(r"@@block (\d+)\n", r.stdout)
        err = re.split(r"@@block (\d+)\n", r.stderr)
        outs = {int(out[i]): out[i + 1] for i in range(1, len(out), 2)}
        errs = {int(err[i]): err[i + 1] for i in range(1, len(err), 2)}
        if r.returncode != 0:
            last = max(outs) if outs else 0
            self.fail(f"block {last} failed (rc {r.returncode}):\n{blocks[last]}\n"
                      f"stdout:\n{outs.get(last, '')}\nstderr:\n{errs.get(last, '')}")
        self.assertEqual(len(outs), len(blocks), "every block ran")
        return [outs.get(i, "") for i in range(len(blocks))]

    def test_cookbook_runs_as_written(self):
        blocks = sh_blocks(os.path.join(ROOT, "clients", "curl", "README.md"))
        self.assertGreaterEqual(len(blocks), 15)
        text = "\n".join(blocks)
        # Every resource of the contract appears in the cookbook.
        for route in ("/v1/health/live", "/v1/health/ready", "/metrics", "/v1/models",
                      "/weights", "-X PUT", "-X DELETE", "/predict", "/jacobian",
                      "/regularizers", "/connections", "/attacks", "/certify", "/robustness",
                      "/v1/jobs/", "/v1/datasets/fashion-mnist/", "/v2/models/", "Accept: $ST",
                      "Content-Type: $ST"):
            self.assertIn(route, text, f"the cookbook shows {route}")
        outs = self.run_blocks(blocks, {"RELUREG": self.base})
        joined = "\n".join(outs)
        # The status codes the page announces in its comments are the ones the daemon gave.
        for b, o in zip(blocks, outs):
            for code in re.findall(r"# (\d{3})\b", b):
                if "%{http_code}" in b:
                    self.assertIn(code, o.split(), f"block announces {code}:\n{b}\n{o}")
        self.assertRegex(joined, r"\[4, 10, 1, 28, 28\]")  # the Jacobian's shape
        self.assertIn("[4, 1, 28, 28]", joined)  # the adversarial batch's shape
        errors = outs[-1].split()
        for code in ("404", "422", "400"):
            self.assertIn(code, errors, "the error block shows its status codes")

    def test_readme_try_it_runs_as_written(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
        self.assertTrue(blocks, "the README has a Try it example")
        port = self.base.rsplit(":", 1)[1]
        blocks = [b.replace("localhost:8080", f"localhost:{port}") for b in blocks]
        outs = "".join(self.run_blocks(blocks, strict=False))
        # The Python example, as written, with the client from clients/python.
        pys = re.findall(r"```python\n(.*?)```", section, re.S)
        self.assertTrue(pys, "the README has a Python example")
        for code in pys:
            code = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120, cwd=self.dir,
                               env=dict(os.environ,
                                        PYTHONPATH=os.path.join(ROOT, "clients", "python")))
            self.assertEqual(r.returncode, 0, f"{code}\n{r.stderr}")
            self.assertIn("dict_keys(['", r.stdout, "the Python example printed its answers")
        for member in ('"models"', '"predictions"', '"regularizers"', '"jacobian_fro2"',
                       "'linf'", '"certified_radius"', '"robust_accuracy"'):
            self.assertIn(member, outs, "each README example printed its answer")

    def test_readme_bring_your_own_model_runs_as_written(self):
        """The README's "Bring your own PyTorch model" section: a torch network defined in the
        block, trained a little, uploaded, used and deleted, run as written."""
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        self.assertIn("## Bring your own PyTorch model", readme)
        section = readme.split("## Bring your own PyTorch model", 1)[1].split("\n## ", 1)[0]
        pys = re.findall(r"```python\n(.*?)```", section, re.S)
        self.assertEqual(len(pys), 1, "one Python block")
        code = pys[0]
        for needle in ("nn.Sequential(", "put_model(", "delete_model("):
            self.assertIn(needle, code)
        port = self.base.rsplit(":", 1)[1]
        code = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300, cwd=self.dir,
                           env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "clients", "python"),
                                    OMP_NUM_THREADS="1"))
        self.assertEqual(r.returncode, 0, f"{code}\n{r.stderr}")
        out = r.stdout
        self.assertRegex(out, r"uploaded my-cnn version 1 \d+ parameters")
        preds = re.search(r"predictions (\[.*?\]) torch (\[.*?\])", out)
        self.assertIsNotNone(preds, out)
        self.assertEqual(preds.group(1), preds.group(2), "the daemon predicts as torch does")
        self.assertIn("'input_gradient':", out)
        self.assertIn("'jacobian':", out)
        self.assertIn("pgd success [", out)
        self.assertIn("certified radius [", out)
        models = re.search(r"models now (\[.*\])", out).group(1)
        self.assertNotIn("my-cnn", models, "the block deleted its model")
        self.assertIn("'mlp'", models)


if __name__ == "__main__":
    unittest.main()
