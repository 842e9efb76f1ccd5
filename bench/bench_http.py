#!/usr/bin/python3
"""The transport's cost, measured on this machine in one run (issue 11). Not a test.

1. wrk against POST /v1/models/tiny/predict at batch 1 (an MLP 4-8-3), requests per second and
   p99 latency, beside nginx serving the same reply bytes as a static file to the same POST
   (error_page 405 =200 lets the static module answer a POST) with the same wrk settings.
   reluregd runs with --workers 2 --threads 2 (one OpenMP thread per worker) and wrk keeps at
   most 3 x workers requests in flight, so no answer is a 503 (they are counted anyway: a
   non-2xx answer fails the run). Both servers write an access log line per request.
2. The regularizers at batch 256 on the MLP 784-1024-1024-10 of bench_core.py: the in-process
   library call (bench-reg, the same workspace reuse as a daemon worker), and the same request
   over HTTP with JSON tensors and with binary (safetensors) tensors, on one kept-alive
   connection; the body is encoded once beforehand and the answer read as bytes, so the figures
   are the daemon's parsing, encoding and transfer, not Python's JSON speed.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
sys.path.insert(0, HERE)
import bench_core  # noqa: E402
from relureg import export, safetensors  # noqa: E402

BIN = "application/vnd.safetensors"


def start_daemon(daemon, models, extra, log):
    p = subprocess.Popen([daemon, "--port", "0", "--models-dir", models, *extra],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    m = re.match(r"reluregd listening on http://([0-9.]+):(\d+)", p.stdout.readline())
    if not m:
        p.kill()
        raise SystemExit("reluregd did not start")
    return p, int(m.group(2))


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()


def wrk(url, body, threads, conns, seconds, tmp):
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n"
                "wrk.headers['Content-Type'] = 'application/json'\n")
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s",
                          "--latency", "-s", script, url], check=True, capture_output=True,
                         text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)\b", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if bad or errors:
        raise SystemExit(f"wrk saw failures against {url}:\n{out}")
    return rps, p99_ms


def nginx(root, port, tmp):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            root {root};
            default_type application/json;
            error_page 405 =200 $uri;
        }}
    }}
}}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/")
            c.getresponse().read()
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nginx did not start")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(conn, path, body, headers):
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {data[:300]!r}")
    return data


def timed(fn, reps):
    fn()
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    t.sort()
    return t[0], t[len(t) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--bench-reg", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: make deps installs it")
    os.environ["PATH"] += ":/usr/sbin"
    tmp = tempfile.mkdtemp(prefix="relureg-bench-http-")
    models = os.path.join(tmp, "models")
    os.makedirs(models)
    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    export(tiny, [4], os.path.join(models, "tiny.safetensors"))
    big = bench_core.models()["mlp"]
    export(big, [1, 28, 28], os.path.join(models, "mlp.safetensors"))
    log = open(os.path.join(tmp, "reluregd.log"), "w")
    print(f"threads 2 (the machine has {os.cpu_count()} cores)")

    # 1. Tiny predict against nginx.
    d, port = start_daemon(a.daemon, models, ["--threads", "2", "--workers", "2"], log)
    try:
        body = json.dumps({"inputs": [[0.1, -0.2, 0.3, 0.4]]})
        conn = http.client.HTTPConnection("127.0.0.1", port)
        reply = post(conn, "/v1/models/tiny/predict", body, {"Content-Type": "application/json"})
        conn.close()
        root = os.path.join(tmp, "static")
        os.makedirs(os.path.join(root, "v1", "models", "tiny"))
        with open(os.path.join(root, "v1", "models", "tiny", "predict"), "wb") as f:
            f.write(reply)
        nport = free_port()
        n = nginx(root, nport, tmp)
        try:
            for conns in (1, 6):
                r_rps, r_p99 = wrk(f"http://127.0.0.1:{port}/v1/models/tiny/predict", body, 1,
                                   conns, a.seconds, tmp)
                n_rps, n_p99 = wrk(f"http://127.0.0.1:{nport}/v1/models/tiny/predict", body, 1,
                                   conns, a.seconds, tmp)
                print(json.dumps({"op": f"predict tiny batch 1, wrk -t1 -c{conns}",
                                  "reluregd_rps": r_rps, "reluregd_p99_ms": r_p99,
                                  "nginx_rps": n_rps, "nginx_p99_ms": n_p99,
                                  "ratio_rps": round(r_rps / n_rps, 3),
                                  "reply_bytes": len(reply)}), flush=True)
        finally:
            n.terminate()
            n.wait()
    finally:
        stop(d)

    # 2. Regularizers at batch 256: in-process vs HTTP+JSON vs HTTP+binary.
    B = 256
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 1, 28, 28, generator=g)
    y = torch.arange(B) % 10
    lib = {}
    out = subprocess.run([a.bench_reg, os.path.join(models, "mlp.safetensors"), str(B), "2",
                          str(a.reps)], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        r = json.loads(line)
        lib[r["op"]] = r
    d, port = start_daemon(a.daemon, models, ["--threads", "2", "--workers", "1"], log)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for name, op, grads in (("input_gradient", "input_gradient", ["inputs"]),
                                ("input_gradient", "input_gradient+params",
                                 ["inputs", "parameters"]),
                                ("jacobian", "jacobian+params", ["inputs", "parameters"])):
            rest = {"regularizers": [{"name": name}], "gradients": grads}
            jbody = json.dumps(dict(rest, inputs=x.tolist(), labels=y.tolist())).encode()
            bbody = safetensors.save({"/inputs": x, "/labels": y},
                                     {"relureg.request": json.dumps(rest)})
            path = "/v1/models/mlp/regularizers"
            jh = {"Content-Type": "application/json"}
            bh = {"Content-Type": BIN, "Accept": BIN}
            jsize = len(post(conn, path, jbody, jh))
            bsize = len(post(conn, path, bbody, bh))
            jmin, jmed = timed(lambda: post(conn, path, jbody, jh), a.reps)
            bmin, bmed = timed(lambda: post(conn, path, bbody, bh), a.reps)
            lmed = lib[op]["ms_median"]
            print(json.dumps({"op": f"{op} B={B}", "library_ms": lmed, "http_json_ms": jmed,
                              "http_binary_ms": bmed,
                              "json_overhead": round(jmed / lmed - 1, 3),
                              "binary_overhead": round(bmed / lmed - 1, 3),
                              "request_bytes_json": len(jbody),
                              "request_bytes_binary": len(bbody),
                              "reply_bytes_json": jsize, "reply_bytes_binary": bsize}),
                  flush=True)
        conn.close()
    finally:
        stop(d)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
