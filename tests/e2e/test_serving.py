"""Serving many clients at once (server/sched.h, server/cost.h): tiny requests inline with no 503
under default flags, interactive requests unhurt by a long async job, admission by deadline with
a Retry-After close to the real wait, a burst far beyond capacity answered by fast 503s, and the
cost model's figures in /metrics. Bounded in count and time, loopback only."""
import http.client
import json
import os
import re
import sys
import threading
import time
import unittest

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TINY = json.dumps({"inputs": [[0.1 * i for i in range(12)]]}).encode()


def stream(d, path, body, stop, out, min_count=0, timeout=10):
    """POSTs body on one keep-alive connection until stop is set (and at least min_count times);
    appends (status, seconds, retry_after, problem type or None) to out."""
    conn = http.client.HTTPConnection(d.host, d.port, timeout=timeout)
    n = 0
    try:
        while not stop.is_set() or n < min_count:
            t0 = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                b = r.read()
                kind = json.loads(b).get("type") if r.status >= 400 else None
                out.append((r.status, time.monotonic() - t0, r.getheader("Retry-After"), kind))
            except (OSError, http.client.HTTPException) as e:
                out.append((f"error: {e!r}", time.monotonic() - t0, None, None))
                conn.close()
                conn = http.client.HTTPConnection(d.host, d.port, timeout=timeout)
            n += 1
    finally:
        conn.close()


def run_streams(d, n_conn, path, body, per_conn):
    stop, outs = threading.Event(), [[] for _ in range(n_conn)]
    stop.set()  # each sends exactly per_conn requests
    ts = [threading.Thread(target=stream, args=(d, path, body, stop, outs[i], per_conn))
          for i in range(n_conn)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return [a for o in outs for a in o]


def metric(d, name, **labels):
    st, h, b = d.request("GET", "/metrics")
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(sel) + r"\}" if sel else "") + r" (\S+)"
    m = re.search(pat, b.decode())
    return float(m.group(1)) if m else None


class Interactive(unittest.TestCase):
    def test_32_connections_of_tiny_predictions_get_no_503_with_default_flags(self):
        d = harness.Daemon()
        try:
            res = run_streams(d, 32, "/v1/models/mlp/predict", TINY, per_conn=40)
            codes = {}
            for st, *_ in res:
                codes[st] = codes.get(st, 0) + 1
            self.assertEqual(codes, {200: 32 * 40}, codes)
            # They ran inline: no hand-off to a worker for a request this small.
            self.assertEqual(metric(d, "relureg_queue_started_total", lane="interactive"), 0)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_tiny_predictions_while_an_autoattack_job_runs(self):
        d = harness.Daemon(extra=("--max-batch", "4096", "--max-steps", "10000"))
        try:
            # About a second of AutoAttack on 2 cores (small epsilons: most samples run every
            # attack to the end), so that the job overlaps the stream on any machine.
            torch.manual_seed(5)
            x = (torch.rand(2048, 12) * 2 - 1).tolist()
            y = torch.randint(0, 4, (2048,)).tolist()
            job = {"inputs": x, "labels": y, "epsilons": [0.01, 0.02], "seed": 3, "async": True,
                   "attack": {"attack": "autoattack", "suite": "standard"}}

            def run_job():
                st, h, doc = d.json("POST", "/v1/models/mlp/robustness", job)
                self.assertEqual(st, 202, doc)
                return doc["job"]

            def wait(job_id, limit=120):
                t_end = time.monotonic() + limit
                while time.monotonic() < t_end:
                    st, h, doc = d.json("GET", f"/v1/jobs/{job_id}")
                    if doc["status"] not in ("queued", "running"):
                        return doc
                    time.sleep(0.05)
                self.fail(f"job {job_id} still running after {limit} s")

            jid = run_job()
            stop, outs = threading.Event(), [[] for _ in range(16)]
            ts = [threading.Thread(target=stream, args=(d, "/v1/models/mlp/predict", TINY, stop,
                                                        outs[i], 5)) for i in range(16)]
            for t in ts:
                t.start()
            time.sleep(0.2)
            _, _, mid = d.json("GET", f"/v1/jobs/{jid}")
            done = wait(jid)
            stop.set()
            for t in ts:
                t.join()
            res = [a for o in outs for a in o]
            bad = [r for r in res if r[0] != 200]
            self.assertEqual(mid["status"], "running", "the job must overlap the stream")
            self.assertEqual(done["status"], "done", done)
            self.assertEqual(bad, [], f"{len(bad)} of {len(res)} predictions failed")
            self.assertGreater(len(res), 16 * 5)
            lat = sorted(r[1] for r in res)
            p99 = lat[int(0.99 * (len(lat) - 1))]
            self.assertLess(p99, 0.25, f"p99 {p99 * 1e3:.1f} ms over {len(lat)} predictions")
            # The same job alone gives the same report.
            alone = wait(run_job())
            for k in ("robust_accuracy", "clean_accuracy", "per_sample_min_epsilon", "broken_by",
                      "flags"):
                self.assertEqual(done["result"].get(k), alone["result"].get(k), k)
        finally:
            self.assertEqual(d.stop(), 0)


class Admission(unittest.TestCase):
    def slow_request(self, steps):
        torch.manual_seed(7)
        x = (torch.rand(64, 1, 8, 8)).tolist()
        # PGD that never succeeds early (a tiny epsilon), so its time is steps x restarts.
        return {"inputs": x, "labels": [0] * 64, "attack": "pgd", "epsilon": 1e-4,
                "steps": steps, "restarts": 1, "random_start": False}

    def test_unmeetable_deadline_is_refused_at_once_with_the_real_wait(self):
        # Everything interactive (--long-ms high), two workers of one thread each.
        d = harness.Daemon(extra=("--workers", "2", "--threads", "2", "--long-ms", "600000",
                                  "--max-steps", "100000"))
        try:
            # Teach the cost model this class: a few runs alone.
            req = self.slow_request(300)
            for _ in range(3):
                st, h, b = d.request("POST", "/v1/models/cnn/attacks", req)
                self.assertEqual(st, 200, b[:300])
            t = time.monotonic()
            st, h, b = d.request("POST", "/v1/models/cnn/attacks", req)
            one = time.monotonic() - t
            # Scale the request so that one takes about 1.5 s.
            steps = max(300, int(300 * 1.5 / one))
            long_req = self.slow_request(steps)
            st, h, b = d.request("POST", "/v1/models/cnn/attacks", long_req)  # learn it
            self.assertEqual(st, 200, b[:300])
            finish = []

            def occupy():
                d.request("POST", "/v1/models/cnn/attacks", long_req)
                finish.append(time.monotonic())

            ts = [threading.Thread(target=occupy) for _ in range(2)]
            t_start = time.monotonic()
            for th in ts:
                th.start()
            time.sleep(0.3)  # both are running now
            probe = dict(self.slow_request(300), timeout_ms=400)
            t0 = time.monotonic()
            st, h, b = d.request("POST", "/v1/models/cnn/attacks", probe)
            dt = time.monotonic() - t0
            for th in ts:
                th.join()
            self.assertEqual(st, 503, b[:300])
            self.assertLess(dt, 0.1, "refused at once, not after waiting")
            doc = json.loads(b)
            self.assertEqual(doc["type"], "/problems/queue-full")
            self.assertIn("deadline", doc["detail"])
            real_wait = min(finish) - t0
            retry = int(h["Retry-After"])
            # Retry-After is whole seconds: one second for the rounding, and a quarter of the
            # wait for the estimate's error (a loaded machine runs slower than it learned).
            self.assertLessEqual(abs(retry - real_wait), 1.0 + 0.25 * real_wait,
                                 f"Retry-After {retry} s, real wait {real_wait:.2f} s "
                                 f"(runs took {min(finish) - t_start:.2f} s)")
            # Nothing expired unrun; the refusal is counted.
            self.assertGreaterEqual(metric(d, "relureg_queue_refused_total", reason="deadline"), 1)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_a_burst_far_beyond_capacity_gets_fast_503s_not_timeouts(self):
        d = harness.Daemon(extra=("--workers", "2", "--threads", "2", "--max-steps", "100000"))
        try:
            # Each about 0.15 s on two workers: 48 at once are far more than 1.5 s holds.
            req = json.dumps(dict(self.slow_request(2000), timeout_ms=1500)).encode()
            res = run_streams(d, 48, "/v1/models/cnn/attacks", req, per_conn=3)
            codes = {}
            for st, *_ in res:
                codes[st] = codes.get(st, 0) + 1
            self.assertEqual(set(codes) - {200, 503}, set(), codes)
            self.assertIn(503, codes, codes)
            self.assertIn(200, codes, codes)
            # A refusal comes at once. A request admitted on an estimate that proved short is
            # answered at its deadline (expired in the queue, or cancelled while running), not
            # later: nothing waits past its deadline plus the scheduler's tick and the answer.
            refused = [r for r in res if r[3] == "/problems/queue-full"]
            late = [r for r in res if r[3] == "/problems/timeout"]
            self.assertTrue(refused, codes)
            self.assertEqual([r for r in refused if r[1] > 0.5], [], "refusals must come at once")
            self.assertEqual([r for r in late if r[1] > 1.5 + 0.5], [], "answered by the deadline")
            self.assertEqual([r for r in res if r[0] == 200 and r[1] > 1.5 + 0.5], [])
            self.assertTrue(all(r[2] for r in res if r[0] == 503), "every 503 has Retry-After")
            self.assertTrue(d.alive())
            st, h, b = d.request("GET", "/v1/health/ready")
            self.assertEqual(st, 200)
        finally:
            self.assertEqual(d.stop(), 0)


class CostModel(unittest.TestCase):
    def test_costs_are_estimated_measured_and_shown(self):
        d = harness.Daemon()
        try:
            x = (torch.rand(16, 1, 8, 8)).tolist()
            for _ in range(3):
                st, h, b = d.request("POST", "/v1/models/cnn/regularizers",
                                     {"inputs": x, "labels": [0] * 16,
                                      "regularizers": [{"name": "jacobian"}],
                                      "gradients": ["parameters"]})
                self.assertEqual(st, 200, b[:200])
            cls = "regularizers/jac+params"
            self.assertEqual(metric(d, "relureg_cost_observations_total", **{"class": cls}), 3)
            est = metric(d, "relureg_cost_estimated_seconds_total", **{"class": cls,
                                                                        "estimator": "learned"})
            meas = metric(d, "relureg_compute_seconds_total", **{"class": cls})
            self.assertGreater(est, 0)
            self.assertGreater(meas, 0)
            self.assertIsNotNone(metric(d, "relureg_cost_model_gflops", threads="1"))
            for lane in ("interactive", "batch"):
                self.assertIsNotNone(metric(d, "relureg_queue_depth", lane=lane))
            # The access log shows each request's class, estimate and measured time.
            d.log.flush()
            with open(d.log.name) as f:
                log = f.read()
            self.assertRegex(log, r"POST /v1/models/cnn/regularizers 200 .* cost="
                                  r"regularizers/jac\+params:[0-9.]+ms/[0-9.]+ms")
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
