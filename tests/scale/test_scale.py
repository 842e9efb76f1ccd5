#!/usr/bin/python3
"""make test-scale: the docker/ topology without containers.

Debian's nginx runs docker/nginx.conf itself (replica addresses, listen port and pid / log
paths rewritten; as an unprivileged user when started as root) in front of two build/reluregd
processes named relureg-a and relureg-b (--instance), and the test checks, printing each check:

  static   docker/Dockerfile, compose.yaml, nginx.conf and k8s/*.yaml agree with the daemon:
           flags and RELUREG_* variables it knows (--help), its port, health routes, models
           dir, a non-root USER, a HEALTHCHECK on /v1/health/ready, runtime packages that
           provide every library build/reluregd needs (readelf NEEDED, dpkg -S)
  models   a model PUT to each replica directly (per-replica admin, serving.md §7.3) is seen
           with the same version through the balancer
  spread   N predictions through nginx: both replicas answered a share (their own /metrics)
           and every answer is identical
  jobs     an async PGD job created through nginx has an id naming its replica, is unknown to
           the other one (404 there: without affinity polls would fail), and is polled to
           completion through nginx ...
  failover ... while a stream of synchronous attacks goes through nginx and the other replica
           is SIGKILLed mid-run: every request of the stream, before and after the kill, is
           answered 200 with the same bytes as before the kill (nginx retries a request the
           dead replica dropped: proxy_next_upstream error timeout non_idempotent, justified in
           nginx.conf), and the survivor answered all of those after the kill
  eval-*   sharded robustness evaluations (shards.py): docker/k8s/eval against relureg-eval,
           the Indexed Job's pods as local processes, the Python client's shards=N through
           nginx with a replica SIGKILLed

Standard library only (plus python3-yaml for the static part); exits non-zero on failure.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import eval_model  # noqa: E402
import shards

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DAEMON = os.environ.get("RELUREGD", os.path.join(ROOT, "build", "reluregd"))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
DOCKER = os.path.join(ROOT, "docker")
REPLICAS = ("relureg-a", "relureg-b")  # compose.yaml's service names = their --instance
PORT = 8080  # the container port everywhere in docker/

T0 = time.monotonic()


class Failure(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise Failure(what + (f": {detail}" if detail else ""))
    print(f"  ok   {what}", flush=True)


def section(name):
    print(f"-- {name} ({time.monotonic() - T0:.1f} s)", flush=True)


# ---- static: docker/ against the daemon ----

def daemon_flags():
    """{flag: env var} from reluregd --help, plus the flags without a variable."""
    text = subprocess.run([DAEMON, "--help"], capture_output=True, text=True, check=True).stdout
    flags = dict(re.findall(r"^\s+--([a-z-]+) \S+\s+(RELUREG_[A-Z_]+)", text, re.M))
    flags.update({f: None for f in re.findall(r"^\s+--([a-z-]+)\s{2,}", text, re.M)})
    return flags


def parse_args(args):
    """['--host', 'x', '--quiet', ...] -> {'host': 'x', 'quiet': True}."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise Failure(f"unexpected argument {a!r} in {args}")
        if "=" in a:
            k, v = a[2:].split("=", 1)
        elif a == "--quiet":
            k, v = "quiet", True
        else:
            k, v = a[2:], args[i + 1]
            i += 1
        out[k] = v
        i += 1
    return out


def dockerfile_stages(text):
    """[(from line, [instructions])] with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", text, flags=re.M))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append((rest, []))
        elif stages:
            stages[-1][1].append((word.upper(), rest.strip()))
    return stages


def check_args(args, flags, where):
    a = parse_args(args)
    unknown = sorted(set(a) - set(flags))
    check(not unknown, f"{where}: every flag is one reluregd has", ", ".join(unknown))
    check(a.get("host") == "0.0.0.0", f"{where}: --host 0.0.0.0")
    check(int(a.get("port", 8080)) == PORT, f"{where}: port {PORT}")
    check(a.get("models-dir") == "/models", f"{where}: --models-dir /models")
    return a


def check_env(env, flags, where):
    known = {v for v in flags.values() if v}
    ours = [k for k in env if k.startswith("RELUREG_")]
    unknown = sorted(set(ours) - known)
    check(not unknown, f"{where}: every RELUREG_* variable is one reluregd reads ({len(ours)})",
          ", ".join(unknown))


def static_checks():
    import yaml  # python3-yaml, a test dependency (scripts/install-deps.sh)

    section("static: docker/ agrees with the daemon")
    flags = daemon_flags()
    check("instance" in flags and flags["instance"] == "RELUREG_INSTANCE",
          "reluregd --help documents --instance / RELUREG_INSTANCE")
    with open(os.path.join(ROOT, "api", "openapi.yaml")) as f:
        paths = yaml.safe_load(f)["paths"]
    check("/v1/health/ready" in paths and "/v1/health/live" in paths,
          "the health routes are in api/openapi.yaml")

    # Dockerfile
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        stages = dockerfile_stages(f.read())
    check(len(stages) >= 2 and all(s[0].startswith("debian:bookworm") for s in stages),
          "Dockerfile: multi-stage, every stage on Debian bookworm", [s[0] for s in stages])
    build, runtime = stages[0][1], stages[-1][1]
    check(any(k == "RUN" and re.search(r"\bmake\b", v) for k, v in build),
          "Dockerfile: the build stage runs make")
    rt_run = " ".join(v for k, v in runtime if k == "RUN")
    rt_pkgs = set(re.findall(r"\b([a-z0-9][a-z0-9.+-]+)\b", rt_run))
    check(not [p for p in rt_pkgs if p.endswith("-dev")] and "build-essential" not in rt_pkgs,
          "Dockerfile: no -dev package or compiler in the runtime stage")
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]",
                        subprocess.run(["readelf", "-d", DAEMON], capture_output=True,
                                       text=True, check=True).stdout)
    base = {"libc6"}  # in every Debian image
    missing = []
    for lib in needed:
        owners = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True)
        pkgs = {ln.split(":")[0] for ln in owners.stdout.splitlines()
                if ln.rstrip().endswith("/" + lib)}
        # the OpenMP OpenBLAS is the one linked (Makefile): only its package counts
        if lib.startswith("libopenblas"):
            pkgs = {p for p in pkgs if "openmp" in p}
        if not pkgs & (rt_pkgs | base):
            missing.append(f"{lib} ({', '.join(sorted(pkgs)) or 'no package'})")
    check(not missing, f"Dockerfile: the runtime stage installs the package of each of "
          f"{len(needed)} libraries reluregd needs", "; ".join(missing))
    users = [v for k, v in runtime if k == "USER"]
    check(users and users[-1].split(":")[0] not in ("root", "0"),
          f"Dockerfile: runs as a non-root USER ({users[-1] if users else None})")
    hc = " ".join(v for k, v in runtime if k == "HEALTHCHECK")
    check(f"127.0.0.1:{PORT}/v1/health/ready" in hc and "--fail" in hc,
          "Dockerfile: HEALTHCHECK fails unless /v1/health/ready answers 2xx")
    check(f"{PORT}" in [v.split("/")[0] for k, v in runtime if k == "EXPOSE"],
          f"Dockerfile: EXPOSE {PORT}")
    entry = json.loads([v for k, v in runtime if k == "ENTRYPOINT"][-1])
    cmd = json.loads([v for k, v in runtime if k == "CMD"][-1])
    check(entry[0].endswith("/reluregd"), "Dockerfile: ENTRYPOINT is reluregd")
    image_args = check_args(cmd, flags, "Dockerfile CMD")
    copies = " ".join(v for k, v in runtime if k == "COPY")
    check(image_args.get("static-dir", "") in copies, "Dockerfile: --static-dir is copied in")

    # compose.yaml
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    svcs = compose["services"]
    check(set(REPLICAS) <= set(svcs) and "nginx" in svcs,
          f"compose.yaml: services {', '.join(REPLICAS)} and nginx")
    for name in REPLICAS:
        s = svcs[name]
        check_args(s["command"], flags, f"compose {name}")
        check_env(s["environment"], flags, f"compose {name}")
        check(s["environment"].get("RELUREG_INSTANCE") == name,
              f"compose {name}: RELUREG_INSTANCE is its service name (job ids name it)")
        check(any(v.split(":")[1] == "/models" for v in s["volumes"]),
              f"compose {name}: a volume at /models")
        check(s["build"]["dockerfile"] == "docker/Dockerfile", f"compose {name}: builds "
              "docker/Dockerfile")
    ngx = svcs["nginx"]
    check(any(v.startswith("./nginx.conf:/etc/nginx/nginx.conf") for v in ngx["volumes"]),
          "compose nginx: mounts docker/nginx.conf")
    check(ngx["ports"] == [f"{PORT}:{PORT}"], f"compose nginx: publishes {PORT}")
    check(all(ngx["depends_on"][r]["condition"] == "service_healthy" for r in REPLICAS),
          "compose nginx: waits for both replicas' HEALTHCHECK")

    # nginx.conf (its behaviour is tested live below)
    with open(os.path.join(DOCKER, "nginx.conf")) as f:
        conf = f.read()
    for name in REPLICAS:
        check(conf.count(f"server {name}:{PORT}") == 2,
              f"nginx.conf: {name}:{PORT} in the balanced group and in its own")
        check(re.search(rf'"?~\^/v1/jobs/{name}-\S*"?\s+{name};', conf) is not None,
              f"nginx.conf: /v1/jobs/{name}-... goes to {name}")
    m = re.search(r"client_max_body_size (\d+)m;", conf)
    check(m and int(m.group(1)) >= 64, "nginx.conf: client_max_body_size >= reluregd's 64 MiB")
    m = re.search(r"proxy_read_timeout (\d+)s;", conf)
    check(m and int(m.group(1)) > 300, "nginx.conf: proxy_read_timeout > --timeout-s (300)")

    # Kubernetes
    docs = {}
    for fn in sorted(os.listdir(os.path.join(DOCKER, "k8s"))):
        if os.path.isdir(os.path.join(DOCKER, "k8s", fn)):
            continue  # k8s/eval: shards.static_checks
        with open(os.path.join(DOCKER, "k8s", fn)) as f:
            for d in yaml.safe_load_all(f):
                docs[d["kind"]] = d
    check({"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
           "Kustomization"} <= set(docs), "k8s: Deployment, Service, HPA, PVC, kustomization")
    kust = docs["Kustomization"]["resources"]
    check(all(os.path.exists(os.path.join(DOCKER, "k8s", r)) for r in kust),
          "k8s: kustomization lists existing files")
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    a = check_args(c["args"], flags, "k8s Deployment args")
    env = {e["name"]: e for e in c["env"]}
    check_env(env, flags, "k8s Deployment")
    check(env["RELUREG_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
          "k8s: RELUREG_INSTANCE is the pod name")
    check(env["RELUREG_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu",
          "k8s: RELUREG_THREADS from the CPU limit")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == PORT, f"k8s: containerPort http = {PORT} = --port")
    for probe, path in (("readinessProbe", "/v1/health/ready"),
                        ("livenessProbe", "/v1/health/live"),
                        ("startupProbe", "/v1/health/ready")):
        g = c[probe]["httpGet"]
        check(g["path"] == path and g["port"] in ("http", PORT),
              f"k8s: {probe} GET {path} on the daemon's port")
    res = c["resources"]
    check(res["requests"]["cpu"] == res["limits"]["cpu"] and "memory" in res["limits"],
          "k8s: CPU requests == limits, a memory limit")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    check(any(mounts.get(n) == a["models-dir"] for n in vols),
          "k8s: a models volume mounted at --models-dir")
    pvc = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
           if "persistentVolumeClaim" in v]
    check(pvc == [docs["PersistentVolumeClaim"]["metadata"]["name"]], "k8s: the PVC is the one used")
    sc = pod["securityContext"]
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "k8s: runs as non-root")
    grace = int(env["RELUREG_DRAIN_GRACE_S"]["value"])
    check(grace + int(a.get("timeout-s", 300)) + 5 <= pod["terminationGracePeriodSeconds"],
          "k8s: drain (grace + --timeout-s + 5 s) fits terminationGracePeriodSeconds")
    svc = docs["Service"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
          "k8s: the Service selects the Deployment's pods")
    check(svc["spec"]["ports"][0]["targetPort"] in ("http", PORT), "k8s: Service targets http")
    check(svc["spec"].get("sessionAffinity") == "ClientIP",
          "k8s: Service ClientIP affinity (a job's polls reach its pod)")
    hpa = docs["HorizontalPodAutoscaler"]
    ref = hpa["spec"]["scaleTargetRef"]
    check(hpa["apiVersion"] == "autoscaling/v2" and ref["kind"] == "Deployment"
          and ref["name"] == dep["metadata"]["name"], "k8s: HPA autoscaling/v2 on the Deployment")
    check(hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
          and hpa["spec"]["minReplicas"] >= 2, "k8s: HPA on CPU, at least 2 replicas")
    shards.static_checks(check, section, yaml, dockerfile_stages)


# ---- a model without torch ----

D, H, K = 256, 256, 10


def model_bytes(seed=7):
    """An MLP D-H-H-K in relureg's model format (safetensors + architecture metadata)."""
    rng = random.Random(seed)
    shapes = [("0.weight", [H, D]), ("0.bias", [H]), ("2.weight", [H, H]), ("2.bias", [H]),
              ("4.weight", [K, H]), ("4.bias", [K])]
    arch = {"format": "relureg/1", "input_shape": [D], "num_classes": K, "input_range": [0, 1],
            "layers": [{"type": "linear", "name": "0", "in_features": D, "out_features": H},
                       {"type": "relu"},
                       {"type": "linear", "name": "2", "in_features": H, "out_features": H},
                       {"type": "relu"},
                       {"type": "linear", "name": "4", "in_features": H, "out_features": K}]}
    tensors = []
    for name, shape in shapes:
        n = 1
        for s in shape:
            n *= s
        fan_in = shape[-1] if len(shape) == 2 else H
        tensors.append((name, shape, [rng.gauss(0, 1.5 / fan_in ** 0.5) for _ in range(n)]))
    return eval_model.model_file(arch, tensors)

def batch(B, seed):
    rng = random.Random(seed)
    return [[rng.random() for _ in range(D)] for _ in range(B)], [rng.randrange(K) for _ in range(B)]


# ---- processes ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=30):
    """(status, body bytes) of one request on a fresh connection."""
    h = {}
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    elif body is not None:
        h["Content-Type"] = "application/vnd.safetensors"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def jrequest(port, method, path, body=None):
    st, b = request(port, method, path, body)
    try:
        return st, json.loads(b)
    except ValueError:
        return st, b


class Replica:
    def __init__(self, name, tmp):
        self.name = name
        self.log = open(os.path.join(tmp, f"{name}.log"), "w+")
        self.proc = subprocess.Popen(
            [DAEMON, "--port", "0", "--instance", name, "--threads", "2", "--workers", "2",
             "--max-steps", "100000"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"reluregd listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            raise Failure(f"{name} did not start: {line!r}")
        self.port = int(m.group(1))

    def metric(self, pattern):
        """The sum of the /metrics samples matching pattern (a regex; a labelled family such as
        relureg_workers_busy{lane=...} sums over its labels), or 0."""
        st, b = request(self.port, "GET", "/metrics")
        return sum(int(v) for v in re.findall(pattern + r"(?:\{[^}]*\})? (\d+)", b.decode()))

    def counter(self, route, code=200):
        return self.metric(rf'relureg_requests_total\{{route="{route}",code="{code}"\}}')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def nginx_conf(tmp, port, replicas):
    """docker/nginx.conf with the replica addresses, the listen port and pid / log / temp paths
    rewritten; each rewrite must apply exactly as often as expected."""
    with open(os.path.join(DOCKER, "nginx.conf")) as f:
        conf = f.read()

    def sub(old, new, count):
        nonlocal conf
        n = conf.count(old)
        if n != count:
            raise Failure(f"docker/nginx.conf: expected {count} x {old!r}, found {n}")
        conf = conf.replace(old, new)

    for r in replicas:
        sub(f"server {r.name}:{PORT}", f"server 127.0.0.1:{r.port}", 2)
    sub(f"listen {PORT};", f"listen 127.0.0.1:{port};", 1)
    sub("pid /tmp/nginx.pid;", f"pid {tmp}/nginx.pid;", 1)
    sub("error_log /dev/stderr warn;", f"error_log {tmp}/error.log warn;", 1)
    sub("access_log /dev/stdout;", f"access_log {tmp}/access.log;", 1)
    temps = "".join(f"    {k}_temp_path {tmp}/{k}_temp;\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    sub("http {\n", "http {\n" + temps, 1)
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


class Nginx:
    def __init__(self, tmp, replicas):
        if not os.access(NGINX, os.X_OK):
            raise Failure(f"{NGINX} is missing: run `make deps` (Debian package nginx)")
        self.tmp = os.path.join(tmp, "nginx")
        os.makedirs(self.tmp)
        self.port = free_port()
        conf = nginx_conf(self.tmp, self.port, replicas)
        # Started as root (CI, `make test`), nginx runs as nobody: an unprivileged foreground
        # process, as in a container; its prefix directory is its own.
        kw = {}
        if os.geteuid() == 0:
            os.chmod(tmp, 0o755)
            for d, _, files in os.walk(self.tmp):
                os.chown(d, 65534, 65534)
                for fn in files:
                    os.chown(os.path.join(d, fn), 65534, 65534)
            kw = dict(user=65534, group=65534, extra_groups=[])
        argv = [NGINX, "-p", self.tmp + "/", "-c", conf, "-e", f"{self.tmp}/error.log"]
        t = subprocess.run(argv + ["-t"], capture_output=True, text=True, **kw)
        check(t.returncode == 0, "nginx -t accepts docker/nginx.conf (rewritten for loopback)",
              t.stderr)
        self.proc = subprocess.Popen(argv + ["-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, **kw)
        for _ in range(100):
            try:
                if request(self.port, "GET", "/v1/health/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise Failure(f"nginx exited: {self.error_log()[-500:]}")
            time.sleep(0.05)
        else:
            raise Failure("nginx did not answer /v1/health/ready")

    def error_log(self):
        try:
            with open(f"{self.tmp}/error.log") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the live checks ----

def live_checks(tmp):
    section("start: two reluregd replicas, nginx with docker/nginx.conf")
    reps = [Replica(n, tmp) for n in REPLICAS]
    ngx = None
    try:
        check(True, "replicas listening: " + ", ".join(f"{r.name} on :{r.port}" for r in reps))
        ngx = Nginx(tmp, reps)
        check(True, f"nginx (pid {ngx.proc.pid}, uid {os.stat(f'/proc/{ngx.proc.pid}').st_uid}) "
              f"on 127.0.0.1:{ngx.port}")
        run_live(reps, ngx)
    finally:
        if ngx:
            ngx.stop()
        for r in reps:
            r.stop()


def run_live(reps, ngx):
    section("models: PUT to each replica directly, as an admin does")
    blob = model_bytes()
    for r in reps:
        st, doc = jrequest(r.port, "PUT", "/v1/models/m", blob)
        check(st == 201 and doc.get("version") == 1, f"PUT /v1/models/m on {r.name}: 201, "
              "version 1", f"{st} {doc!r:.200}")
    seen = set()
    for _ in range(6):
        st, doc = jrequest(ngx.port, "GET", "/v1/models/m")
        seen.add((st, doc.get("version") if isinstance(doc, dict) else None))
    check(seen == {(200, 1)}, "6 x GET /v1/models/m through nginx: 200, version 1, whichever "
          "replica answers", repr(seen))

    section("spread: predictions through nginx reach both replicas")
    N, x = 40, batch(8, seed=1)[0]
    before = [r.counter("predict") for r in reps]
    answers, lock = [], threading.Lock()

    def predict_worker(n):
        for _ in range(n):
            st, doc = jrequest(ngx.port, "POST", "/v1/models/m/predict", {"inputs": x})
            with lock:
                answers.append((st, json.dumps(doc.get("logits")) if st == 200 else doc))

    ts = [threading.Thread(target=predict_worker, args=(N // 4,)) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # A request is counted when it completes, just after its answer went out: wait for it.
    for _ in range(100):
        share = [r.counter("predict") - b for r, b in zip(reps, before)]
        if sum(share) >= N:
            break
        time.sleep(0.02)
    check(all(st == 200 for st, _ in answers) and len(answers) == N,
          f"{N} POST /predict through nginx (4 clients): all 200")
    check(len({a for _, a in answers}) == 1, "every replica gave the same logits")
    check(sum(share) == N and min(share) >= N // 4,
          f"both replicas answered a share: {REPLICAS[0]} {share[0]}, {REPLICAS[1]} {share[1]} "
          f"(their own /metrics; each >= {N // 4})", repr(share))

    section("jobs: an async PGD job through nginx, polled through nginx")
    xs, ys = batch(64, seed=2)
    job_req = {"inputs": xs, "labels": ys, "attack": "pgd", "norm": "linf", "epsilon": 0.05,
               "steps": 1500, "step_size": 0.002, "random_start": True, "seed": 3, "async": True}
    st, acc = jrequest(ngx.port, "POST", "/v1/models/m/attacks", job_req)
    check(st == 202, "POST /attacks {\"async\": true} through nginx: 202", f"{st} {acc!r:.200}")
    job = acc["job"]
    owner = next((r for r in reps if job.startswith(r.name + "-")), None)
    check(owner is not None and re.fullmatch(r"[0-9a-f]{32}", job[len(owner.name) + 1:]),
          f"the job id names its replica: {job}")
    other = next(r for r in reps if r is not owner)
    st, _ = request(other.port, "GET", f"/v1/jobs/{job}")
    check(st == 404, f"{other.name} does not know the job (404): polls need affinity")
    st, doc = jrequest(owner.port, "GET", f"/v1/jobs/{job}")
    check(st == 200 and doc["status"] in ("queued", "running"),
          f"{owner.name} holds it, {doc.get('status') if isinstance(doc, dict) else doc}")
    # Polls through nginx while both replicas are up: round-robin alone would send every
    # other one to the replica that answers 404.
    polls = [request(ngx.port, "GET", f"/v1/jobs/{job}")[0] for _ in range(8)]
    check(polls == [200] * 8, "8 polls through nginx with both replicas up: all 200 (routed "
          f"to {owner.name} by the id)", repr(polls))

    section(f"failover: a stream of attacks through nginx; SIGKILL {other.name} mid-run")
    # Each request is a short synchronous PGD (tens of ms), so the kill lands while requests
    # are in flight on the killed replica.
    sx, sy = batch(16, seed=4)
    stream_req = {"inputs": sx, "labels": sy, "attack": "pgd", "norm": "linf", "epsilon": 0.05,
                  "steps": 150, "step_size": 0.002, "random_start": True, "seed": 5}
    st, ref = jrequest(ngx.port, "POST", "/v1/models/m/attacks", stream_req)
    check(st == 200, "reference answer of the stream's request", f"{st} {ref!r:.200}")
    ref.pop("elapsed_ms", None)
    ref = json.dumps(ref, sort_keys=True)
    stop, results = threading.Event(), []
    owner_before = owner.counter("attacks")

    def stream_worker():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                st, doc = jrequest(ngx.port, "POST", "/v1/models/m/attacks", stream_req)
            except OSError as e:
                st, doc = -1, repr(e)
            if isinstance(doc, dict):
                doc.pop("elapsed_ms", None)
                same = json.dumps(doc, sort_keys=True) == ref
            else:
                same = False
            with lock:
                results.append((t0, time.monotonic(), st, same, doc if st != 200 else None))

    ts = [threading.Thread(target=stream_worker) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    # Kill while one of the stream's requests is computing on that replica, so that nginx has a
    # request in flight on it (sent, no answer yet) to retry.
    for _ in range(300):
        if other.metric("relureg_workers_busy") >= 1:
            break
        time.sleep(0.01)
    else:
        raise Failure(f"{other.name} never got a stream request")
    other_served = other.counter("attacks")
    t_kill = time.monotonic()
    other.proc.send_signal(signal.SIGKILL)
    other.proc.wait()
    check(other.proc.returncode == -signal.SIGKILL, f"{other.name} killed (SIGKILL) while "
          f"computing one, after answering {other_served} stream requests")

    polls, progress = [], []
    st, doc = jrequest(ngx.port, "GET", f"/v1/jobs/{job}")
    at_kill = f"{doc['status']} at {doc['progress']:.2f}" if st == 200 else st
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st, doc = jrequest(ngx.port, "GET", f"/v1/jobs/{job}")
        polls.append(st)
        if st != 200:
            break
        progress.append(doc["progress"])
        if doc["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    # the stream runs at least 1.5 s past the kill
    time.sleep(max(0.0, t_kill + 1.5 - time.monotonic()))
    stop.set()
    for t in ts:
        t.join()

    check(all(st == 200 for st in polls),
          f"{len(polls)} polls of GET /v1/jobs/{{id}} through nginx: all 200", repr(polls[-3:]))
    check(doc.get("status") == "done" and progress == sorted(progress) and progress[-1] == 1.0,
          f"the job ({at_kill} just after the kill) ran to done on {owner.name}, progress "
          f"rising {progress[0]:.2f} -> {progress[-1]:.2f}", f"{doc!r:.300}")
    res = doc["result"]
    check(len(res["success"]) == len(ys) and res["adversarial"]["shape"] == [len(ys), D],
          f"its result: adversarial [{len(ys)}, {D}], {sum(res['success'])}/{len(ys)} successful")

    bad = [r for r in results if r[2] != 200 or not r[3]]
    after = [r for r in results if r[0] > t_kill]
    during = [r for r in results if r[0] <= t_kill < r[1]]
    check(not bad, f"{len(results)} stream requests through nginx, {len(during)} in flight "
          f"through nginx at the kill and {len(after)} sent after it: every one 200 with the reference answer",
          repr([(st, str(doc)[:80]) for _, _, st, _, doc in bad[:3]]))
    check(len(after) >= 5, f"the stream kept going after the kill ({len(after)} requests)")
    for _ in range(100):
        served = owner.counter("attacks") - owner_before
        if served >= len(after):
            break
        time.sleep(0.02)
    check(served >= len(after), f"{owner.name} answered them ({served} attacks since the stream "
          f"began, >= the {len(after)} sent after the kill)")
    # nginx's error log names each failure on the dead replica: an answer cut off (the request
    # was sent: retried only thanks to non_idempotent) or a refused connect.
    seen = [ln for ln in ngx.error_log().splitlines()
            if f"127.0.0.1:{other.port}" in ln and "[error]" in ln]
    cut = [ln for ln in seen if "prematurely closed" in ln or "reset by peer" in ln]
    refused = [ln for ln in seen if "Connection refused" in ln]
    check(len(cut) >= 1, f"nginx passed on {len(cut)} POST(s) cut off by the kill and "
          f"{len(refused)} refused connect(s) to the other replica", "\n".join(seen[:5]))
    st, _ = request(ngx.port, "GET", "/v1/health/ready")
    check(st == 200, "GET /v1/health/ready through nginx: still 200")


def main():
    if not os.access(DAEMON, os.X_OK):
        print(f"test-scale: {DAEMON} is missing (make)", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="relureg-scale-")
    try:
        static_checks()
        live_checks(tmp)
        shards.local_checks(check, section, tmp)
        shards.client_checks(check, section, tmp, Replica, Nginx, REPLICAS)
    except Failure as e:
        print(f"  FAIL {e}", flush=True)
        for fn in ("nginx/error.log", f"{REPLICAS[0]}.log", f"{REPLICAS[1]}.log"):
            p = os.path.join(tmp, fn)
            if os.path.exists(p):
                with open(p) as f:
                    tail = f.read()[-1500:]
                print(f"--- {fn} (tail)\n{tail}", flush=True)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"test-scale: all checks passed in {time.monotonic() - T0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
