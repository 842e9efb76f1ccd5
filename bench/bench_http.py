#!/usr/bin/python3
"""The transport's cost, measured on this machine in one run (issue 11). Not a test.

reluregd runs with its default flags throughout (what `make run` gives).
1. wrk -t2 -c32 against POST /v1/models/tiny/predict at batch 1 (an MLP 8-16-3, JSON), requests
   per second and p99 latency, beside nginx serving the same reply bytes as a static file to
   the same POST (error_page 405 =200 lets the static module answer a POST). A non-2xx answer
   fails the run. Then the same while async AutoAttack robustness jobs (256 images) keep the
   batch lane busy. Both servers write an access log line per request.
2. An orchestrator step, the regularizers at batch 256 on the MLP 784-1024-1024-10 of
   bench_core.py: the in-process library call (bench-reg, the same workspace reuse as a daemon
   worker), the same request over HTTP with JSON and with binary tensors on one kept-alive
   connection (the body encoded once beforehand, the answer read as bytes: the daemon's
   parsing, encoding and transfer), through relureg.Client (torch tensors in and out), and
   torch double backprop in this process.
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


def job_load(port, x, y, n):
    """Queues n async AutoAttack robustness jobs (256 images, epsilons small enough that the
    attacks run their full length); returns their ids."""
    ids = []
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"inputs": x.tolist(), "labels": y.tolist(), "epsilons": [0.001, 0.002],
                       "async": True, "attack": {"attack": "autoattack", "suite": "standard"}})
    for _ in range(n):
        conn.request("POST", "/v1/models/mlp/robustness", body=body,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        doc = json.loads(r.read())
        if r.status != 202:
            raise SystemExit(f"robustness job: {r.status} {doc}")
        ids.append(doc["job"])
    conn.close()
    return ids


def job_status(port, jid, cancel=False):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("DELETE" if cancel else "GET", f"/v1/jobs/{jid}")
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return json.loads(data)["status"] if data else None


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
    tiny = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    export(tiny, [8], os.path.join(models, "tiny.safetensors"))
    big = bench_core.models()["mlp"]
    export(big, [1, 28, 28], os.path.join(models, "mlp.safetensors"), input_range=[0, 1])
    log = open(os.path.join(tmp, "reluregd.log"), "w")
    print(f"reluregd with default flags on {os.cpu_count()} cores")
    B = 256
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 1, 28, 28, generator=g)
    y = torch.arange(B) % 10

    # 1. Tiny predictions (MLP 8-16-3, batch 1, JSON), wrk -t2 -c32, against nginx serving the
    #    same bytes; then the same while AutoAttack jobs keep the batch lane busy.
    d, port = start_daemon(a.daemon, models, [], log)
    try:
        body = json.dumps({"inputs": [[0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8]]})
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
            url = f"http://127.0.0.1:{port}/v1/models/tiny/predict"
            r_rps, r_p99 = wrk(url, body, 2, 32, a.seconds, tmp)
            n_rps, n_p99 = wrk(f"http://127.0.0.1:{nport}/v1/models/tiny/predict", body, 2, 32,
                               a.seconds, tmp)
            print(json.dumps({"op": "predict tiny batch 1, wrk -t2 -c32", "reluregd_rps": r_rps,
                              "reluregd_p99_ms": r_p99, "nginx_rps": n_rps,
                              "nginx_p99_ms": n_p99, "ratio_rps": round(r_rps / n_rps, 3),
                              "non_2xx": 0, "reply_bytes": len(reply)}), flush=True)
            ids = job_load(port, x, y, 3)
            time.sleep(0.5)
            running = job_status(port, ids[0])
            j_rps, j_p99 = wrk(url, body, 2, 32, a.seconds, tmp)
            still = [job_status(port, j) for j in ids]
            for j in ids:
                job_status(port, j, cancel=True)
            print(json.dumps({"op": "predict tiny batch 1, wrk -t2 -c32, AutoAttack jobs running",
                              "reluregd_rps": j_rps, "reluregd_p99_ms": j_p99, "non_2xx": 0,
                              "job_status_at_start": running, "job_status_at_end": still}),
                  flush=True)
        finally:
            n.terminate()
            n.wait()
    finally:
        stop(d)

    # 2. An orchestrator step: regularizers at batch 256 on the MLP 784-1024-1024-10
    #    (input_gradient, gradients of inputs and parameters) in-process, through HTTP with the
    #    body encoded beforehand (JSON and binary), through the Python client, and torch double
    #    backprop in this process.
    lib = {}
    out = subprocess.run([a.bench_reg, os.path.join(models, "mlp.safetensors"), str(B),
                          str(os.cpu_count()), str(a.reps)], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        r = json.loads(line)
        lib[r["op"]] = r
    import relureg
    import bench_reg
    d, port = start_daemon(a.daemon, models, [], log)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        client = relureg.Client(f"http://127.0.0.1:{port}")
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
            cmin, cmed = timed(lambda: client.regularizers("mlp", x, y, [{"name": name}],
                                                           gradients=grads), a.reps)
            tmin, tmed = bench_reg.torch_time(big, {"name": name}, B, 10, a.reps,
                                              "parameters" in grads)
            lmed = lib[op]["ms_median"]
            print(json.dumps({"op": f"{op} B={B}", "library_ms": lmed, "http_json_ms": jmed,
                              "http_binary_ms": bmed, "python_client_ms": cmed,
                              "torch_double_backprop_ms": round(tmed, 3),
                              "client_over_library": round(cmed / lmed, 3),
                              "json_overhead": round(jmed / lmed - 1, 3),
                              "binary_overhead": round(bmed / lmed - 1, 3),
                              "request_bytes_json": len(jbody),
                              "request_bytes_binary": len(bbody),
                              "reply_bytes_json": jsize, "reply_bytes_binary": bsize}),
                  flush=True)
        conn.close()
        client.close()
    finally:
        stop(d)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
