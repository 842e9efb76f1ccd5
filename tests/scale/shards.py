"""make test-scale, sharded robustness evaluations (test_scale.py runs these sections):

  eval-static  docker/k8s/eval (Indexed Job, merge Job, PVC, kustomization) agrees with
               build/relureg-eval --help (flags, JOB_COMPLETION_INDEX, exit status 2), the
               Dockerfile (the binary is copied where the Job runs it, the dataset the Job
               reads is installed with WITH_DATASET=true), and with itself (--shards =
               completions = the merge's SHARDS, the parts directory, mounted volumes)
  eval-local   the Indexed Job's pods played by local processes with JOB_COMPLETION_INDEX
               set, on a small model (tests/scale/eval_model.py) and Fashion-MNIST test images:
               PGD on 448 images, N = 1, 3, 7 (shards run in a shuffled order): each merged
               report byte-identical to the unsharded run; AutoAttack (standard) on 128 images,
               N = 3 with shard 1 SIGKILLed part-way (no part left) and run again: the same
               report; the merge refuses a missing part and a part of another config; and the
               comparison can fail: one per-sample outcome changed in a part changes the report
  eval-client  the Python client's robustness(..., shards=4) through nginx in front of two
               daemons, one SIGKILLed while its shards run: shards re-sent to the survivor,
               and the answer equals the unsharded one (but elapsed_ms)
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import eval_model  # noqa: E402

EVAL = os.environ.get("RELUREG_EVAL", os.path.join(ROOT, "build", "relureg-eval"))
DATA = "/usr/share/datasets/fashion-mnist"


# ---- eval-static ----

def eval_help():
    text = subprocess.run([EVAL, "--help"], capture_output=True, text=True, check=True).stdout
    return text, set(re.findall(r"--([a-z][a-z-]*)", text))


def static_checks(check, section, yaml, dockerfile_stages):
    section("eval-static: docker/k8s/eval agrees with relureg-eval")
    text, flags = eval_help()
    check("JOB_COMPLETION_INDEX" in text, "relureg-eval --help documents JOB_COMPLETION_INDEX")
    check(re.search(r"\b2 usage error", text) is not None,
          "relureg-eval --help documents exit status 2 for usage errors")
    kdir = os.path.join(ROOT, "docker", "k8s", "eval")
    docs = {}
    for fn in sorted(os.listdir(kdir)):
        with open(os.path.join(kdir, fn)) as f:
            for d in yaml.safe_load_all(f):
                docs.setdefault(d["kind"], []).append((fn, d))
    kust = docs["Kustomization"][0][1]["resources"]
    check(sorted(kust) == sorted(fn for fn in os.listdir(kdir) if fn != "kustomization.yaml"),
          "k8s/eval: the kustomization lists every manifest there", repr(kust))
    jobs = {d["metadata"]["name"]: d for _, d in docs["Job"]}
    check(set(jobs) == {"relureg-eval", "relureg-eval-merge"},
          "k8s/eval: the Indexed Job relureg-eval and the merge Job", repr(sorted(jobs)))
    pvcs = {d["metadata"]["name"]: d for _, d in docs.get("PersistentVolumeClaim", [])}
    with open(os.path.join(ROOT, "docker", "k8s", "models-pvc.yaml")) as f:
        models_pvc = yaml.safe_load(f)["metadata"]["name"]

    job = jobs["relureg-eval"]
    spec = job["spec"]
    check(spec.get("completionMode") == "Indexed", "Job: completionMode Indexed")
    n = int(spec["completions"])
    check(1 <= int(spec.get("parallelism", n)) <= n, f"Job: {n} completions, parallelism <= it")
    check(int(spec.get("backoffLimitPerIndex", 0)) >= 1,
          "Job: backoffLimitPerIndex retries a failed shard on its own")
    pod = spec["template"]["spec"]
    check(pod["restartPolicy"] == "Never", "Job: restartPolicy Never (per-index backoff needs it)")
    rules = spec.get("podFailurePolicy", {}).get("rules", [])
    for r in rules:
        ec = r.get("onExitCodes")
        if ec:
            check(ec["containerName"] in [c["name"] for c in pod["containers"]] and
                  ec["values"] == [2] and r["action"] == "FailIndex",
                  "Job: podFailurePolicy fails an index on exit 2 (usage) of the container")
    sc = pod["securityContext"]
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "Job: non-root")
    c = pod["containers"][0]
    args = c["args"]
    check(args[0] == "run", "Job: relureg-eval run")
    given = {}
    i = 1
    while i < len(args):
        check(args[i].startswith("--") and args[i][2:] in flags,
              f"Job: {args[i]} is a flag of relureg-eval")
        given[args[i][2:]] = args[i + 1]
        i += 2
    check(int(given.get("shards", 0)) == n, f"Job: --shards {given.get('shards')} = completions")
    check("shard" not in given, "Job: no --shard (JOB_COMPLETION_INDEX, set by Kubernetes)")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu",
          "Job: OMP_NUM_THREADS from the CPU limit")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}

    def on_volume(path):
        return [vols[mounts[m]] for m in mounts if path.startswith(m.rstrip("/") + "/")]

    check(on_volume(given["model"]) == [models_pvc],
          f"Job: --model {given['model']} is on the models PVC ({models_pvc})")
    out = given["out"]
    res = on_volume(out)
    check(len(res) == 1 and res[0] in pvcs and "ReadWriteMany" in pvcs[res[0]]["spec"]["accessModes"],
          f"Job: --out {out} is on a ReadWriteMany PVC of k8s/eval", repr(res))
    check(given.get("data", DATA) == DATA, f"Job: --data is Debian's dataset path {DATA}")

    # the image: Dockerfile copies the binary to the command's path, WITH_DATASET installs it
    with open(os.path.join(ROOT, "docker", "Dockerfile")) as f:
        dtext = f.read()
    stages = dockerfile_stages(dtext)
    runtime = stages[-1][1]
    copies = " ".join(v for k, v in runtime if k == "COPY")
    check(c["command"] == ["/usr/local/bin/relureg-eval"] and "build/relureg-eval" in copies
          and "/usr/local/bin/" in copies, "Job: the image has /usr/local/bin/relureg-eval")
    check("strip" in " ".join(v for k, v in stages[0][1] if k == "RUN") and
          "relureg-eval" in " ".join(v for k, v in stages[0][1] if k == "RUN"),
          "Dockerfile: the build stage builds (and strips) relureg-eval")
    needed = lambda b: set(re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(  # noqa: E731
        ["readelf", "-d", b], capture_output=True, text=True, check=True).stdout))
    daemon = os.environ.get("RELUREGD", os.path.join(ROOT, "build", "reluregd"))
    check(needed(EVAL) <= needed(daemon), "relureg-eval needs no library beyond reluregd's "
          "(the runtime stage has those)", ", ".join(sorted(needed(EVAL) - needed(daemon))))
    rt_run = " ".join(v for k, v in runtime if k == "RUN")
    check(re.search(r'WITH_DATASET.*dataset-fashion-mnist', rt_run) is not None and
          subprocess.run(["dpkg", "-S", DATA], capture_output=True, text=True).stdout.startswith(
              "dataset-fashion-mnist"),
          f"Dockerfile: WITH_DATASET=true installs dataset-fashion-mnist, which owns {DATA}")
    check(c["image"] == "relureg:dataset" and "relureg:dataset" in
          open(os.path.join(kdir, "kustomization.yaml")).read(),
          "Job: image relureg:dataset, whose build (WITH_DATASET=true) the kustomization shows")

    merge = jobs["relureg-eval-merge"]
    mpod = merge["spec"]["template"]["spec"]
    mc = mpod["containers"][0]
    check(mc["command"] == c["command"] and mc["args"][0] == "merge" and mc["args"][1] == out,
          f"merge Job: relureg-eval merge {out}")
    margs = mc["args"][2:]
    check(all(a[2:] in flags for a in margs[::2]), "merge Job: flags of relureg-eval")
    init = mpod["initContainers"][0]
    ienv = {e["name"]: e.get("value") for e in init.get("env", [])}
    check(int(ienv.get("SHARDS", 0)) == n and f"{out}/part-*-of-$SHARDS.json" in
          " ".join(init["command"]), f"merge Job: waits for the {n} parts in {out}")
    mvols = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in mpod["volumes"]}
    for cc in (init, mc):
        mm = {m["mountPath"]: m["name"] for m in cc["volumeMounts"]}
        check(any(out.startswith(p.rstrip("/") + "/") and mvols[nm] == res[0]
                  for p, nm in mm.items()), f"merge Job {cc['name']}: the parts' PVC is mounted")
    report = margs[margs.index("--report") + 1]
    check(report.startswith(os.path.dirname(out)), f"merge Job: --report {report} on that PVC")


# ---- eval-local ----

def run(args):
    e = dict(os.environ)
    e.pop("JOB_COMPLETION_INDEX", None)
    return subprocess.run([EVAL] + args, capture_output=True, text=True, env=e)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def shards_run(check, common, n, out, order, threads="1"):
    """Shards `order` of n as local pods (JOB_COMPLETION_INDEX), two at a time."""
    procs = []
    for i in order:
        env = dict(os.environ, JOB_COMPLETION_INDEX=str(i), OMP_NUM_THREADS=threads)
        procs.append(subprocess.Popen([EVAL, "run"] + common + ["--shards", str(n), "--out", out],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
        if len(procs) >= 2:
            p = procs.pop(0)
            _, err = p.communicate()
            check(p.returncode == 0, "a shard ran", err)
    for p in procs:
        _, err = p.communicate()
        check(p.returncode == 0, "a shard ran", err)


def merge(d, report):
    return run(["merge", d, "--report", report])


def local_checks(check, section, tmp):
    section("eval-local: Indexed Job pods as local processes (JOB_COMPLETION_INDEX)")
    check(os.path.exists(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")),
          f"Fashion-MNIST in {DATA}", "missing: run `make deps` (Debian dataset-fashion-mnist)")
    t0 = time.monotonic()
    work = os.path.join(tmp, "eval")
    os.makedirs(work)
    model = os.path.join(work, "m.safetensors")
    with open(model, "wb") as f:
        f.write(eval_model.model_bytes())
    rng = random.Random(3)

    # PGD, 448 images (7 blocks of 64), N = 1, 3, 7
    pgd = ["--model", model, "--limit", "448", "--attack", "pgd", "--steps", "10",
           "--epsilons", "0.02,0.05,0.1"]
    full = os.path.join(work, "pgd.json")
    t = time.monotonic()
    r = run(["run"] + pgd + ["--threads", "2", "--report", full])
    t_full = time.monotonic() - t
    check(r.returncode == 0, f"unsharded PGD run on 448 images ({t_full:.1f} s)", r.stderr)
    rep = json.loads(read(full))
    ra = rep["robust_accuracy"]
    check(0 < ra[-1] < ra[0] <= rep["clean_accuracy"] and len(rep["per_sample_min_epsilon"]) == 448,
          f"the report has substance: clean {rep['clean_accuracy']:.3f}, robust {ra}")
    for n in (1, 3, 7):
        d = os.path.join(work, f"pgd-{n}")
        order = list(range(n))
        rng.shuffle(order)
        t = time.monotonic()
        shards_run(check, pgd, n, d, order)
        r = merge(d, os.path.join(work, f"pgd-{n}.json"))
        dt = time.monotonic() - t
        check(r.returncode == 0 and read(os.path.join(work, f"pgd-{n}.json")) == read(full),
              f"N = {n} (shards in order {order}, {dt:.1f} s): merged report byte-identical "
              "to the unsharded one", r.stderr)

    # The comparison can fail: one per-sample outcome changed in a part.
    bad = os.path.join(work, "pgd-bad")
    shutil.copytree(os.path.join(work, "pgd-3"), bad)
    p = os.path.join(bad, "part-1-of-3.json")
    doc = json.loads(read(p))
    b = doc["samples"]["broken"]
    k = next(i for i, v in enumerate(b) if v != "111")
    b[k] = "111"
    with open(p, "w") as f:
        json.dump(doc, f)
    r = merge(bad, os.path.join(work, "pgd-bad.json"))
    check(r.returncode == 0 and read(os.path.join(work, "pgd-bad.json")) != read(full),
          "self-check: a part with one sample's broken bits changed merges into another report")

    # The merge refuses a missing part and a part of another config.
    miss = os.path.join(work, "pgd-missing")
    shutil.copytree(os.path.join(work, "pgd-3"), miss)
    os.unlink(os.path.join(miss, "part-2-of-3.json"))
    r = merge(miss, os.path.join(work, "x.json"))
    check(r.returncode == 1 and "part-2-of-3.json is missing" in r.stderr and
          not os.path.exists(os.path.join(work, "x.json")),
          "merge refuses a missing part (exit 1, names it, writes nothing)", r.stderr)
    other = os.path.join(work, "pgd-other")
    shutil.copytree(os.path.join(work, "pgd-3"), other)
    r = run(["run"] + pgd + ["--seed", "1", "--shards", "3", "--shard", "2", "--out", other])
    check(r.returncode == 0, "a shard of another config (seed 1) written over part 2", r.stderr)
    r = merge(other, os.path.join(work, "x.json"))
    check(r.returncode == 1 and "config differs" in r.stderr,
          "merge refuses a part of another config", r.stderr)
    r = run(["run"] + pgd + ["--shards", "3", "--out", other])
    check(r.returncode == 2 and "JOB_COMPLETION_INDEX" in r.stderr,
          "run --shards without --shard or JOB_COMPLETION_INDEX: usage error (exit 2)", r.stderr)

    # AutoAttack (standard suite), 128 images, N = 3, shard 1 killed part-way and run again.
    aa = ["--model", model, "--offset", "1000", "--limit", "128", "--attack", "autoattack",
          "--queries", "300", "--epsilons", "0.03,0.1"]
    afull = os.path.join(work, "aa.json")
    t = time.monotonic()
    r = run(["run"] + aa + ["--threads", "1", "--report", afull])
    check(r.returncode == 0, f"unsharded AutoAttack run on 128 images ({time.monotonic() - t:.1f} s)",
          r.stderr)
    arep = json.loads(read(afull))
    check(any(arep["broken_by"]), "AutoAttack broke some samples: " + repr(
        {s: arep["broken_by"].count(s) for s in set(arep["broken_by"]) if s}))
    d = os.path.join(work, "aa-3")
    env = dict(os.environ, JOB_COMPLETION_INDEX="1", OMP_NUM_THREADS="1")
    p = subprocess.Popen([EVAL, "run"] + aa + ["--shards", "3", "--out", d], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    p.send_signal(signal.SIGKILL)
    p.wait()
    check(p.returncode == -signal.SIGKILL and not os.path.exists(os.path.join(d, "part-1-of-3.json")),
          "shard 1 of 3 SIGKILLed part-way: no part written (a pod lost mid-run)")
    r = merge(d, os.path.join(work, "x.json"))
    check(r.returncode == 1, "merge before the re-run: refused", r.stderr)
    shards_run(check, aa, 3, d, [2, 1, 0])
    r = merge(d, os.path.join(work, "aa-3.json"))
    check(r.returncode == 0 and read(os.path.join(work, "aa-3.json")) == read(afull),
          "shard 1 re-run (as Kubernetes would): merged report byte-identical to the unsharded "
          "one, broken_by and flags included", r.stderr)
    check(True, f"eval-local took {time.monotonic() - t0:.1f} s")


# ---- eval-client ----

def client_checks(check, section, tmp, Replica, Nginx, replicas):
    import relureg

    section("eval-client: robustness(shards=4) through nginx, one replica SIGKILLed mid-run")
    work = os.path.join(tmp, "eval-client")
    os.makedirs(work)
    reps = [Replica(n, work) for n in replicas]
    ngx = None
    try:
        ngx = Nginx(work, reps)
        blob = eval_model.model_bytes()
        for r in reps:
            relureg.Client(f"http://127.0.0.1:{r.port}", binary=False).put_model("e", blob)
        img, per = eval_model.idx_read(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"), 512)
        lab, _ = eval_model.idx_read(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz"), 512)
        x = [[[[img[i * per + r * 28 + c] / 255.0 for c in range(28)] for r in range(28)]]
             for i in range(512)]
        y = list(lab)

        sent = []

        class Counting(relureg.Client):
            def _compute(self, name, route, inputs, doc, *a, **kw):
                sent.append(doc.get("sample_offset"))
                return super()._compute(name, route, inputs, doc, *a, **kw)

        c = Counting(f"http://127.0.0.1:{ngx.port}", binary=False, timeout=120)
        eps = [0.02, 0.05, 0.1]
        atk = {"attack": "pgd", "steps": 100, "step_size": 0.005, "seed": 3}
        t = time.monotonic()
        ref = c.robustness("e", x, y, eps, atk, as_="list")
        t_ref = time.monotonic() - t
        check(0 < ref["robust_accuracy"][-1] < ref["clean_accuracy"],
              f"unsharded answer through nginx ({t_ref:.1f} s): robust accuracy {ref['robust_accuracy']}")
        sent.clear()
        t = time.monotonic()
        two = c.robustness("e", x, y, eps, atk, as_="list", shards=2, poll=0.05)
        t_two = time.monotonic() - t
        strip = lambda d: {k: v for k, v in d.items() if k != "elapsed_ms"}  # noqa: E731
        check(strip(two) == strip(ref), f"shards=2, both replicas up ({t_two:.1f} s): the "
              "unsharded answer")

        sent.clear()
        victim = reps[1]
        out = {}

        def sharded():
            try:
                out["doc"] = c.robustness("e", x, y, eps, atk, as_="list", shards=4, poll=0.05)
            except Exception as e:  # reported below
                out["error"] = e

        th = threading.Thread(target=sharded)
        th.start()
        for _ in range(1000):
            if victim.metric("relureg_workers_busy") >= 1:
                break
            time.sleep(0.01)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        th.join(timeout=300)
        check(victim.proc.returncode == -signal.SIGKILL,
              f"{victim.name} SIGKILLed while computing a shard")
        check("error" not in out and "doc" in out, "robustness(shards=4) returned",
              repr(out.get("error")))
        check(len(sent) > 4, f"{len(sent) - 4} shard(s) re-sent after the kill "
              f"(sample_offsets sent: {sent})")
        check(strip(out["doc"]) == strip(ref),
              "its answer equals the unsharded one (robust accuracy per epsilon, per-sample "
              "minimal epsilon, flags, call counts)")
        bad = dict(out["doc"], per_sample_min_epsilon=list(out["doc"]["per_sample_min_epsilon"]))
        k = next(i for i, v in enumerate(bad["per_sample_min_epsilon"]) if v is not None)
        bad["per_sample_min_epsilon"][k] = None
        check(strip(bad) != strip(ref), "self-check: one per-sample value changed is seen")
        print(f"  time unsharded {t_ref:.2f} s, shards=2 {t_two:.2f} s (two replicas)", flush=True)
    finally:
        if ngx:
            ngx.stop()
        for r in reps:
            r.stop()
