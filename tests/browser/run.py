"""Browser tests of the dashboard and the JS client (make browser, run by make test).

Trains a small MLP on 6000 Fashion-MNIST training images with torch (seeded, a few seconds),
exports it with a CNN of the demo's shape, starts reluregd on a free loopback port serving
clients/js, then runs with the machine's Node:
  - tsc --strict on types.test.ts: clients/js/relureg.d.ts types the client's uses and
    rejects its misuses;
  - client.test.mjs: the ES module client against the live daemon (JSON and binary transport,
    jobs, problem+json errors);
  - dashboard.test.mjs: headless Chromium (Debian's, through playwright-core from
    tests/browser/package-lock.json): the page loads, lists the models, runs an attack and a
    robustness job and shows their results; screenshots go to $BROWSER_OUT (default
    build/test-output/browser).
Exit status non-zero when any step fails.
"""
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from relureg import export  # noqa: E402

DAEMON = os.environ.get("RELUREGD", os.path.join(ROOT, "build", "reluregd"))
DATA = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
OUT = os.environ.get("BROWSER_OUT", os.path.join(ROOT, "build", "test-output", "browser"))


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def trained_mlp():
    torch.manual_seed(0)
    x = torch.tensor(idx("train-images-idx3-ubyte.gz")[:6000], dtype=torch.float32) / 255
    y = torch.tensor(idx("train-labels-idx1-ubyte.gz")[:6000], dtype=torch.long)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(4):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 100):
            b = perm[i:i + 100]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[b].unsqueeze(1)), y[b]).backward()
            opt.step()
    return net.eval()


# A training record as long as relureg-train writes (options and a per-epoch history), for the
# dashboard's metadata view: it must stay inside its card at any width.
TRAINING = json.dumps({
    "options": {"arch": "mlp", "regularizer": "jacobian", "lambda": 0.01, "epochs": 40,
                "optimizer": "adam", "learning_rate": 0.001, "batch_size": 128, "seed": 1,
                "data": "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"},
    "history": [{"epoch": e, "loss": round(1 / (e + 1), 6), "regularizer": round(0.5 / (e + 2), 6),
                 "train_accuracy": round(0.7 + e / 200, 4)} for e in range(40)],
}, separators=(",", ":"))
TOKEN = "browser-test-token"


def main():
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="relureg-browser-")
    models = os.path.join(work, "models")
    os.makedirs(models)
    export(trained_mlp(), [1, 28, 28], os.path.join(models, "fashion-mlp.safetensors"),
           input_range=[0, 1], class_names=CLASSES, metadata={"dataset": "fashion-mnist (6000 training images)",
                                         "trained_by": "tests/browser/run.py",
                                         "relureg.training": TRAINING})
    torch.manual_seed(1)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 14 * 14, 10)).eval()
    export(cnn, [1, 28, 28], os.path.join(models, "random-cnn.safetensors"), input_range=[0, 1])
    log = open(os.path.join(OUT, "daemon.log"), "w")
    token = os.path.join(work, "token")
    with open(token, "w") as f:
        f.write(TOKEN + "\n")
    proc = subprocess.Popen([DAEMON, "--port", "0", "--models-dir", models, "--workers", "2",
                             "--token-file", token,
                             "--static-dir", os.path.join(ROOT, "clients", "js")],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    rc = 1
    try:
        line = proc.stdout.readline()
        m = re.match(r"reluregd listening on (http://[0-9.]+:\d+)", line)
        if not m:
            print(f"browser: reluregd did not start: {line!r}", file=sys.stderr)
            return 1
        env = dict(os.environ, RELUREG_URL=m.group(1), BROWSER_OUT=OUT, RELUREG_TOKEN=TOKEN)
        rc = 0
        # The client's types (clients/js/relureg.d.ts): tsc from package-lock.json.
        r = subprocess.run([os.path.join(HERE, "node_modules", ".bin", "tsc"), "-p",
                            os.path.join(HERE, "tsconfig.json")], cwd=HERE)
        if r.returncode != 0:
            print("browser: relureg.d.ts does not type-check types.test.ts", file=sys.stderr)
            rc = 1
        for script in ("client.test.mjs", "dashboard.test.mjs"):
            r = subprocess.run(["node", "--test-reporter=spec", os.path.join(HERE, script)], env=env, cwd=HERE)
            if r.returncode != 0:
                print(f"browser: {script} failed ({r.returncode})", file=sys.stderr)
                rc = 1
        if proc.poll() is not None:
            print("browser: reluregd died during the tests", file=sys.stderr)
            rc = 1
        return rc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        proc.stdout.close()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
