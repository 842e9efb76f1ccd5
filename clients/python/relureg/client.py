"""Python client of reluregd, the relureg HTTP daemon (REST API v1, api/openapi.yaml).

Standard library only; numpy and torch are used when they are importable::

    import relureg
    c = relureg.Client("http://127.0.0.1:8080")
    out = c.predict("mlp", x)                       # x: torch tensor, numpy array or nested lists
    r = c.regularizers("mlp", x, y, ["input_gradient", {"name": "jacobian"}])
    r["regularizers"][0]["grad_parameters"]["0.weight"]   # a torch tensor when x is one

Tensors in, tensors out
    ``inputs`` may be nested lists, a numpy array or a torch tensor (any float dtype and device;
    it is sent as float32, the precision the daemon computes in). ``labels`` and
    ``target_labels`` may be lists, numpy arrays or torch tensors of integers. Every tensor of
    the answer (``logits``, ``probabilities``, ``jacobian``, ``adversarial``, ``grad_inputs``,
    each ``grad_parameters`` entry, dataset ``images``) comes back as a float32 torch tensor
    when ``inputs`` was a torch tensor (on the CPU), a float32 numpy array when it was a numpy
    array, nested lists otherwise. Every compute method takes ``as_="torch" | "numpy" |
    "list"`` to choose explicitly. Per-sample arrays of scalars (``predictions``, ``success``,
    ``per_sample``, ``certified_radius``, ...) stay Python lists, with ``None`` where the JSON
    answer has ``null`` (a +inf radius). Non-finite tensor values that JSON renders as ``null``
    come back as NaN.

Transport
    With ``binary=None`` (the default) requests and answers travel as safetensors
    (``application/vnd.safetensors``, model-format.md "Requests and responses in binary")
    whenever numpy or torch is importable, and as JSON otherwise; ``binary=True`` /
    ``binary=False`` force one. Both give the same numbers (the binary path skips the
    float->text conversion). One keep-alive HTTP connection per client, reopened when the
    server has closed it; calls from several threads are serialized on it (use one client per
    thread for parallel requests).

Errors
    Every answer outside 2xx raises :class:`ProblemError` carrying the RFC 9457 problem
    (``status``, ``type``, ``title``, ``detail``, ``field``). A 503 with ``Retry-After`` (queue
    full, not ready, draining) is retried up to ``retries`` times (default 3), sleeping what
    ``Retry-After`` says; a 503 without it, and a 503 ``/problems/timeout`` (the request ran
    past the daemon's ``--timeout-s``), are not retried -- send long requests with
    ``wait=False`` instead, async jobs are not bound by that timeout. The JS client
    (clients/js/relureg.js) follows the same rule. A daemon that cannot be reached raises
    ``ConnectionError`` naming the URL; no answer within ``timeout`` raises ``TimeoutError``.

Async jobs
    Every compute method takes ``wait=True``; with ``wait=False`` the request is sent with
    ``"async": true`` and a :class:`Job` is returned at once (``.status()``, ``.wait()``,
    ``.cancel()``). ``robustness(..., progress=callback)`` runs as a job too and calls
    ``callback(fraction)`` while it waits. A job that ends ``cancelled`` makes ``wait()`` raise
    :class:`JobCancelled` (a failed one raises its :class:`ProblemError`); the JS client
    rejects with its ``JobCancelled`` the same way.
"""
from __future__ import annotations

import array
import http.client
import importlib
import importlib.util
import json
import math
import os
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is optional
    _np = None

__all__ = ["Client", "Job", "ProblemError", "JobCancelled", "Tensor", "Labels", "Doc"]

#: A tensor as the client takes it: nested lists of numbers, a numpy array or a torch tensor.
Tensor = Any
#: Integer labels: a list of ints, or a numpy array / torch tensor of integers.
Labels = Union[Sequence[int], Any]
#: A JSON document (an answer of the daemon, tensors converted as chosen by ``as_``).
Doc = Dict[str, Any]
#: ``"torch"``, ``"numpy"`` or ``"list"``: what the answer's tensors become.
Format = Optional[str]

BIN = "application/vnd.safetensors"
_JSON = "application/json"
_FORMATS = ("torch", "numpy", "list")
# safetensors dtype -> (numpy dtype, array typecode, torch dtype name)
_DT = {
    "F32": ("<f4", "f", "float32"), "F64": ("<f8", "d", "float64"),
    "I64": ("<i8", "q", "int64"), "I32": ("<i4", "i", "int32"),
    "U8": ("|u1", "B", "uint8"), "BOOL": ("|b1", "B", "bool"),
}


def _torch():
    """The torch module, imported on first use (None when it is not installed)."""
    t = sys.modules.get("torch")
    if t is not None:
        return t
    if not _have_torch():
        return None
    return importlib.import_module("torch")


def _have_torch():
    if sys.modules.get("torch") is not None:
        return True
    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # a module without a spec in sys.modules
        return False


def _is_torch(x):
    t = sys.modules.get("torch")  # a torch tensor means torch is already imported
    return t is not None and isinstance(x, t.Tensor)


def _is_torch_module(x):
    t = sys.modules.get("torch")
    return t is not None and isinstance(x, t.nn.Module)


def _is_numpy(x):
    return _np is not None and isinstance(x, (_np.ndarray, _np.generic))


# ---- errors ----

class ProblemError(Exception):
    """An answer outside 2xx. ``status`` is the HTTP status, ``problem`` the RFC 9457 problem
    document (``type``, ``title``, ``status``, ``detail``, ``field`` when the daemon names the
    request member at fault); ``type``, ``title``, ``detail``, ``field`` are shortcuts.
    ``headers`` holds the answer's headers (e.g. ``X-Request-Id``)."""

    def __init__(self, status: int, problem: Optional[Mapping[str, Any]],
                 headers: Optional[Mapping[str, str]] = None) -> None:
        self.status = int(status)
        self.problem = dict(problem or {})
        self.headers = dict(headers or {})
        self.type = self.problem.get("type")
        self.title = self.problem.get("title") or http.client.responses.get(self.status, "Error")
        self.detail = self.problem.get("detail") or self.problem.get("error") or ""
        self.field = self.problem.get("field")
        super().__init__(str(self))

    def __str__(self) -> str:
        s = f"{self.status} {self.title}"
        if self.detail:
            s += f": {self.detail}"
        if self.field:
            s += f" (field {self.field!r})"
        return s


class JobCancelled(Exception):
    """Raised by :meth:`Job.wait` when the job ended cancelled (``job`` is its last status)."""

    def __init__(self, job: Doc) -> None:
        self.job = job
        super().__init__(f"job {job.get('job')} was cancelled")


# ---- tensors ----

def _flatten(obj):
    """(shape, flat list) of a nested list/tuple of numbers."""
    shape = []
    o = obj
    while isinstance(o, (list, tuple)):
        shape.append(len(o))
        if not o:
            break
        o = o[0]
    flat = []

    def walk(o, d):
        if d == len(shape):
            if isinstance(o, (list, tuple)):
                raise ValueError("ragged nested list: not a tensor")
            flat.append(o)
            return
        if not isinstance(o, (list, tuple)) or len(o) != shape[d]:
            raise ValueError("ragged nested list: not a tensor")
        for v in o:
            walk(v, d + 1)

    walk(obj, 0)
    return shape, flat


def _nest(flat, shape):
    """Nested lists of the row-major `flat` with `shape`."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = 1
    for d in shape[1:]:
        step *= d
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _f32(x):
    """(shape, little-endian float32 bytes) of lists, a numpy array or a torch tensor."""
    if _is_torch(x):
        t = x.detach().to("cpu", _torch().float32).contiguous()
        if _np is not None:
            return list(t.shape), t.numpy().astype("<f4", copy=False).tobytes()
        x = t.tolist()
        if not isinstance(x, list):
            return [], struct.pack("<f", x)
    if _np is not None:
        a = _np.ascontiguousarray(_np.asarray(x, dtype="<f4"))
        return list(a.shape), a.tobytes()
    shape, flat = _flatten(x)
    a = array.array("f", [float(v) for v in flat])
    if sys.byteorder == "big":  # pragma: no cover
        a.byteswap()
    return shape, a.tobytes()


def _json_tensor(x):
    """A request tensor in JSON: nested lists as given, arrays/tensors as a KServe-v2 object."""
    if _is_torch(x):
        t = x.detach().to("cpu", _torch().float32)
        return {"shape": list(t.shape), "datatype": "FP32", "data": t.reshape(-1).tolist()}
    if _is_numpy(x):
        a = _np.asarray(x, dtype=_np.float32)
        return {"shape": list(a.shape), "datatype": "FP32", "data": a.reshape(-1).tolist()}
    return x


def _ints(x):
    """Labels as a list of Python ints (lists, numpy arrays and torch tensors accepted)."""
    if x is None:
        return None
    if _is_torch(x) or _is_numpy(x):
        x = x.tolist()
    if isinstance(x, int):
        return x
    return [int(v) for v in x]


def _dumps(doc):
    """JSON text of a request document; numpy / torch scalars and arrays become numbers and
    lists. NaN and infinities raise ValueError (the daemon would answer 400)."""
    def default(o):
        if _is_numpy(o) or _is_torch(o):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON serializable")
    return json.dumps(doc, allow_nan=False, default=default)


def _read_body(r):
    """The answer's body. A large one with a known length is read straight into one
    preallocated bytearray (no chunk list, no join): binary answers' tensors are then views of
    it, with no copy per tensor."""
    n = r.length
    if n is None or n < (1 << 16):
        return r.read()
    buf = bytearray(n)
    mv = memoryview(buf)
    pos = 0
    while pos < n:
        k = r.readinto(mv[pos:])
        if not k:
            raise http.client.IncompleteRead(bytes(mv[:pos]), n - pos)
        pos += k
    return buf


def _writable(raw):
    """raw as a writable buffer: itself when it is a view of a bytearray, else a copy."""
    if isinstance(raw, memoryview) and not raw.readonly:
        return raw
    return bytearray(raw)


def _from_bytes(dt, shape, raw, fmt):
    """A binary answer tensor as `fmt`."""
    if dt not in _DT:
        raise ValueError(f"the answer holds a tensor of unsupported dtype {dt}")
    npdt, code, tdt = _DT[dt]
    numel = 1
    for d in shape:
        numel *= d
    if fmt == "numpy":
        return _np.frombuffer(_writable(raw), dtype=npdt).reshape(shape)
    if fmt == "torch":
        torch = _torch()
        if numel == 0:
            return torch.empty(shape, dtype=getattr(torch, tdt))
        return torch.frombuffer(_writable(raw), dtype=getattr(torch, tdt)).reshape(shape)
    a = array.array(code)
    a.frombytes(bytes(raw))
    if sys.byteorder == "big":  # pragma: no cover
        a.byteswap()
    flat = a.tolist()
    if dt == "BOOL":
        flat = [bool(v) for v in flat]
    return _nest(flat, list(shape))


def _from_json(obj, fmt):
    """A JSON answer tensor {"shape", "datatype", "data"} as `fmt` (null -> NaN)."""
    shape = list(obj["shape"])
    nan = float("nan")
    data = [nan if v is None else v for v in obj["data"]]
    if fmt == "numpy":
        return _np.array(data, dtype=_np.float32).reshape(shape)
    if fmt == "torch":
        torch = _torch()
        return torch.tensor(data, dtype=torch.float32).reshape(shape)
    return _nest(array.array("f", data).tolist(), shape)  # the float32 values, as in binary


def _is_tensor_obj(v):
    return isinstance(v, dict) and set(v) == {"shape", "datatype", "data"}


def _convert(doc, fmt):
    """Replaces every answer tensor object in a JSON document with a `fmt` tensor."""
    if _is_tensor_obj(doc):
        return _from_json(doc, fmt)
    if isinstance(doc, dict):
        return {k: _convert(v, fmt) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_convert(v, fmt) for v in doc]
    return doc


def _st_save(tensors, metadata):
    """safetensors bytes of {name: (dtype, shape, raw bytes)} with a string metadata dict."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def _st_load(data):
    """({name: (dtype, shape, memoryview)}, metadata) of safetensors bytes."""
    if len(data) < 8:
        raise ValueError("binary answer shorter than its safetensors header length")
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        raise ValueError("binary answer: safetensors header runs past the end")
    header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        if not 0 <= b <= e <= len(body):
            raise ValueError(f"binary answer: tensor {name!r} lies outside the data")
        out[name] = (info["dtype"], list(info["shape"]), body[b:e])
    return out, meta


def _pointer_set(doc, pointer, value):
    """Sets the RFC 6901 `pointer` in `doc` (creating missing objects on the way)."""
    toks = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    cur = doc
    for i, tok in enumerate(toks):
        last = i == len(toks) - 1
        if isinstance(cur, list):
            k = int(tok)
            while len(cur) <= k:
                cur.append({})
            if last:
                cur[k] = value
            else:
                cur = cur[k]
        else:
            if last:
                cur[tok] = value
            else:
                cur = cur.setdefault(tok, {})


# ---- sharded robustness ----

#: The daemon computes a robustness report in blocks of this many samples by global index
#: (``sample_offset`` + row; librelureg's RR_ROBUSTNESS_BLOCK): shards of whole blocks
#: reproduce the whole batch's per-sample outcomes bit for bit.
ROBUSTNESS_BLOCK = 64


def _r9(v):
    """v as the daemon prints it (JSON_REAL_PRECISION(9)) and json parses it back."""
    return float("%.9g" % v)


def merge_robustness(parts: Sequence[Doc], per_sample: bool = False) -> Doc:
    """The robustness answer of a whole batch from the answers of its shards, in sample order,
    each sent with ``per_sample: true`` and ``sample_offset`` (the row of its first sample;
    shards of whole :data:`ROBUSTNESS_BLOCK` blocks). The summary is
    rr_robustness_summarize's (lib/attack/report.c) operation for operation on the exact
    per-sample doubles, then rounded as the daemon prints it: the answer equals the unsharded
    one (``gradient_calls`` / ``forward_calls`` are the shards' sums, counted per block as the
    whole batch's are; ``elapsed_ms`` is the first shard's). per_sample keeps the merged
    per-sample outcomes in the answer."""
    keys = ("correct", "zero_gradient", "nonfinite_gradient", "broken", "deepfool_rho",
            "certified_radius", "broken_by")
    s = {k: [v for p in parts for v in p["per_sample"][k]] for k in keys}
    eps = [float(e) for e in parts[0]["epsilons"]]
    B, E = len(s["correct"]), len(eps)
    correct = zero = nonfinite = rho_n = black = cert = 0
    rho_sum = rsum = 0.0
    ra, mine = [0.0] * E, []
    for i in range(B):
        ok = s["correct"][i]
        correct += ok
        zero += s["zero_gradient"][i]
        nonfinite += s["nonfinite_gradient"][i]
        rho = float(s["deepfool_rho"][i])
        if ok and not math.isnan(rho):
            rho_sum += rho
            rho_n += 1
        r = float(s["certified_radius"][i])
        rsum += r if math.isfinite(r) else 0.0
        black += s["broken_by"][i] == "square"
        m = math.nan if ok else 0.0
        for e in range(E):
            br = not ok or s["broken"][i][e]
            if not br:
                ra[e] += 1.0
            if ok and br:
                if math.isnan(m) or eps[e] < m:
                    m = eps[e]
                if eps[e] < r * (1.0 - 1e-4):
                    cert += 1
        mine.append(m)
    n = float(B)
    ra = [v / n for v in ra]
    flags = {"zero_gradient_fraction": zero / n, "nonfinite_gradient_fraction": nonfinite / n,
             "black_box_only": black, "certified_broken": cert,
             "non_monotone": any(eps[f] > eps[e] and ra[f] > ra[e]
                                 for e in range(E) for f in range(E))}
    flags["flagged"] = (flags["zero_gradient_fraction"] > 0.1
                        or flags["nonfinite_gradient_fraction"] > 0.1
                        or black > 0.002 * n or flags["non_monotone"] or cert > 0)
    for k in ("zero_gradient_fraction", "nonfinite_gradient_fraction"):
        flags[k] = _r9(flags[k])
    out = {k: v for k, v in parts[0].items() if k not in ("per_sample", "sample_offset")}
    out.update(
        clean_accuracy=_r9(correct / n),
        robust_accuracy=[_r9(v) for v in ra],
        deepfool_rho=_r9(rho_sum / rho_n) if rho_n else None,
        mean_certified_radius=_r9(rsum / n) if math.isfinite(rsum / n) else None,
        per_sample_min_epsilon=[None if math.isnan(m) else _r9(m) for m in mine],
        flags=flags,
        gradient_calls=sum(p["gradient_calls"] for p in parts),
        forward_calls=sum(p["forward_calls"] for p in parts))
    if "broken_by" in parts[0]:
        out["broken_by"] = s["broken_by"]
    if per_sample:
        out["per_sample"] = s
    return out


# ---- jobs ----

class Job:
    """An async job of the daemon (``GET /v1/jobs/{id}``, ``DELETE`` cancels).

    ``id`` is the job id. :meth:`status` returns the job document (``status``: queued /
    running / done / failed / cancelled, ``progress`` in [0, 1], ``result`` when done,
    ``error`` when failed) with the result's tensors converted like the synchronous answer
    would be; :meth:`wait` polls until the job ends and returns the result.
    """

    def __init__(self, client: "Client", job_id: str, as_: str = "list") -> None:
        self.client = client
        self.id = job_id
        self.as_ = as_
        self._last = {"job": job_id, "status": "queued", "progress": 0.0}

    def __repr__(self):
        return f"<relureg.Job {self.id} {self._last.get('status')}>"

    def _doc(self, doc):
        doc = dict(doc)
        if "result" in doc:
            doc["result"] = _convert(doc["result"], self.as_)
        self._last = doc
        return doc

    def status(self) -> Doc:
        """The job document now (one ``GET /v1/jobs/{id}``)."""
        return self._doc(self.client._call("GET", f"/v1/jobs/{self.id}"))

    @property
    def progress(self) -> float:
        """The progress seen by the last :meth:`status`/:meth:`wait` poll, in [0, 1]."""
        return self._last.get("progress", 0.0)

    def done(self) -> bool:
        """True once the job has ended (done, failed or cancelled); polls once."""
        return self.status()["status"] in ("done", "failed", "cancelled")

    def wait(self, poll: float = 0.2, progress: Optional[Callable[[float], None]] = None,
             timeout: Optional[float] = None) -> Any:
        """Polls every `poll` seconds until the job ends; returns its result (the answer the
        synchronous request would have given). `progress(fraction)` is called with each new
        progress value seen (and 1.0 at the end). Raises :class:`ProblemError` with the job's
        problem when it failed, :class:`JobCancelled` when it was cancelled, TimeoutError when
        `timeout` seconds pass first (the job keeps running)."""
        t0 = time.monotonic()
        seen = None
        while True:
            doc = self.status()
            p = doc.get("progress")
            if progress is not None and p is not None and p != seen:
                seen = p
                progress(p)
            st = doc["status"]
            if st == "done":
                return doc.get("result")
            if st == "failed":
                err = doc.get("error") or {}
                raise ProblemError(err.get("status", 500), err)
            if st == "cancelled":
                raise JobCancelled(doc)
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TimeoutError(f"job {self.id} still {st} after {timeout} s")
            time.sleep(poll)

    def cancel(self) -> Doc:
        """Asks the daemon to cancel the job (``DELETE /v1/jobs/{id}``); returns the job
        document after the request (a job that already finished keeps its result)."""
        return self._doc(self.client._call("DELETE", f"/v1/jobs/{self.id}"))


# ---- the client ----

class Client:
    """A client of one reluregd.

    base_url: the daemon's address (a path prefix is kept, for a daemon behind a proxy).
    token: the bearer token, sent as ``Authorization: Bearer`` (the daemon needs it for
      ``put_model`` and ``delete_model`` when it runs with ``--token-file``).
    timeout: socket timeout in seconds for each request (compute requests wait for the answer).
    binary: None = safetensors transport when numpy or torch is importable, JSON otherwise;
      True / False force it.
    retries: how many times a 503 with ``Retry-After`` is retried (0 disables).

    Usable as a context manager; :meth:`close` closes the connection.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8080", token: Optional[str] = None,
                 timeout: float = 300, binary: Optional[bool] = None, retries: int = 3) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"base_url {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._host, self._port = u.scheme, u.hostname, u.port
        self._prefix = u.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.binary = (_np is not None or _have_torch()) if binary is None else bool(binary)
        self.retries = int(retries)
        self._conn = None
        self._lock = threading.Lock()

    def __repr__(self):
        return f"relureg.Client({self.base_url!r}, binary={self.binary})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Closes the keep-alive connection (a later call opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- HTTP ----

    def _connection(self):
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def _once(self, method, path, body, headers):
        """One exchange on the keep-alive connection; reopens it once when the server had
        closed it while idle."""
        for attempt in (0, 1):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                try:
                    conn.request(method, self._prefix + path, body=body, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    if reused:
                        raise  # a stale connection: reopen below
                    # a fresh connection: the daemon answered early (413) and closed; read it
                r = conn.getresponse()
                data = _read_body(r)
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    conn.close()
                return r.status, hdrs, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                conn.close()
                self._conn = None
                if not reused or attempt:
                    raise
            except BaseException:
                conn.close()
                self._conn = None
                raise

    def _request(self, method, path, body=None, headers=None, retries=None):
        """(status, lower-cased headers, body bytes) of a 2xx answer; raises ProblemError
        otherwise, after retrying 503s that carry Retry-After (`retries` times, default the
        client's)."""
        retries = self.retries if retries is None else retries
        h = {"User-Agent": "relureg-python"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        tries = 0
        while True:
            with self._lock:
                try:
                    status, hdrs, data = self._once(method, path, body, h)
                except TimeoutError as e:
                    raise TimeoutError(f"{method} {self.base_url}{path}: no answer within "
                                       f"{self.timeout} s (Client(timeout=...))") from e
                except OSError as e:  # refused, unknown host, unreachable network
                    raise ConnectionError(
                        f"cannot reach reluregd at {self.base_url} ({method} {path}): {e}. Is "
                        "the daemon running (`make run` or build/reluregd), on that host and "
                        "port?") from e
            if 200 <= status < 300:
                return status, hdrs, data
            problem = None
            try:
                problem = json.loads(data) if data else None
            except ValueError:
                pass
            if not isinstance(problem, dict):
                problem = {"status": status, "title": http.client.responses.get(status, "Error"),
                           "detail": data[:300].decode("utf-8", "replace").strip()}
            if (status == 503 and "retry-after" in hdrs and tries < retries
                    and problem.get("type") != "/problems/timeout"):
                tries += 1
                try:
                    wait = max(0.0, float(hdrs["retry-after"]))
                except ValueError:
                    wait = 1.0
                time.sleep(wait)
                continue
            raise ProblemError(status, problem, hdrs)

    def _call(self, method, path, doc=None):
        """A JSON request and a JSON answer (None for an empty body)."""
        body, h = None, {"Accept": _JSON}
        if doc is not None:
            body = _dumps(doc).encode("utf-8")
            h["Content-Type"] = _JSON
        st, hdrs, data = self._request(method, path, body, h)
        return json.loads(data) if data else None

    def request(self, method: str, path: str, doc: Optional[Doc] = None) -> Any:
        """Escape hatch: any route of the API (``path`` starts with ``/``) with a JSON body;
        returns the decoded JSON answer, tensors left as JSON objects."""
        return self._call(method, path, doc)

    @staticmethod
    def _model_path(name, suffix=""):
        return "/v1/models/" + urllib.parse.quote(str(name), safe="") + suffix

    def _decode(self, hdrs, data, fmt):
        ct = hdrs.get("content-type", "").split(";")[0].strip()
        if ct == BIN:
            tensors, meta = _st_load(data)
            doc = json.loads(meta.get("relureg.response", "{}"))
            doc = _convert(doc, fmt)
            for ptr, (dt, shape, raw) in tensors.items():
                _pointer_set(doc, ptr, _from_bytes(dt, shape, raw, fmt))
            return doc
        return _convert(json.loads(data), fmt) if data else None

    def _fmt(self, as_, inputs):
        if as_ is None:
            as_ = "torch" if _is_torch(inputs) else "numpy" if _is_numpy(inputs) else "list"
        if as_ not in _FORMATS:
            raise ValueError(f"as_ must be one of {_FORMATS}, not {as_!r}")
        if as_ == "numpy" and _np is None:
            raise RuntimeError("as_='numpy' needs numpy")
        if as_ == "torch" and _torch() is None:
            raise RuntimeError("as_='torch' needs torch")
        return as_

    def _compute(self, name, route, inputs, doc, as_=None, wait=True, progress=None, poll=0.2):
        """POST /v1/models/{name}/{route} with `inputs` and the other members of `doc`
        (None values dropped)."""
        fmt = self._fmt(as_, inputs)
        doc = {k: v for k, v in doc.items() if v is not None}
        for k in ("labels", "target_labels"):
            if k in doc:
                doc[k] = _ints(doc[k])
        run_async = not wait or progress is not None
        if run_async:
            doc["async"] = True
        path = self._model_path(name, "/" + route)
        if self.binary:
            shape, raw = _f32(inputs)
            body = _st_save({"/inputs": ("F32", shape, raw)},
                            {"relureg.request": _dumps(doc)})
            h = {"Content-Type": BIN, "Accept": BIN}
        else:
            doc["inputs"] = _json_tensor(inputs)
            body = _dumps(doc).encode("utf-8")
            h = {"Content-Type": _JSON, "Accept": _JSON}
        st, hdrs, data = self._request("POST", path, body, h)
        if st == 202:
            job = Job(self, json.loads(data)["job"], fmt)
            return job.wait(poll=poll, progress=progress) if wait else job
        return self._decode(hdrs, data, fmt)

    # ---- models ----

    def models(self) -> List[Doc]:
        """The loaded models: a list of ``{"name", "version", "input_shape", "num_classes",
        "parameter_count", "layers", "loaded_at"}``, sorted by name (``GET /v1/models``)."""
        return self._call("GET", "/v1/models")["models"]

    def model(self, name: str) -> Doc:
        """One model's metadata and architecture (``GET /v1/models/{name}``)."""
        return self._call("GET", self._model_path(name))

    def put_model(self, name: str, model: Any, input_shape: Optional[Sequence[int]] = None,
                  **export_kwargs: Any) -> Doc:
        """Uploads or atomically replaces model `name` (``PUT /v1/models/{name}``).

        model: a path to a model file (str or os.PathLike), the file's bytes, or a
          ``torch.nn.Sequential``, which goes through :func:`relureg.export` first with
          `input_shape` (required then: one sample's shape, e.g. ``[784]`` or ``[1, 28, 28]``)
          and `export_kwargs` (``input_range``, ``class_names``, ``dtype``, ...).
        Returns the daemon's answer: the model summary plus ``created`` (True for a new model)
        and ``version``, the number to pin in later compute requests.
        """
        if isinstance(model, (bytes, bytearray, memoryview, str, os.PathLike)):
            if input_shape is not None or export_kwargs:
                raise TypeError("input_shape and export arguments apply to a torch module only")
            if isinstance(model, (str, os.PathLike)):
                with open(model, "rb") as f:
                    data = f.read()
            else:
                data = bytes(model)
        elif _is_torch_module(model):
            if input_shape is None:
                raise ValueError("put_model of a torch module needs input_shape")
            from .export import export
            data = export(model, input_shape, **export_kwargs)
        else:
            raise TypeError("put_model takes a path, bytes or a torch.nn.Sequential")
        st, hdrs, body = self._request("PUT", self._model_path(name), data,
                                       {"Content-Type": BIN, "Accept": _JSON})
        return json.loads(body)

    def delete_model(self, name: str) -> None:
        """Unloads model `name` (``DELETE /v1/models/{name}``; requests in flight finish)."""
        self._request("DELETE", self._model_path(name))

    def weights(self, name: str) -> bytes:
        """The model file as uploaded, byte-identical (``GET /v1/models/{name}/weights``);
        ``net, arch, meta = relureg.load(data)`` rebuilds the torch network from it."""
        return self._request("GET", self._model_path(name, "/weights"))[2]

    def ready(self) -> bool:
        """True when the daemon is ready to serve (``GET /v1/health/ready``); False when it
        answers 503 (starting or draining). No retry."""
        try:
            self._request("GET", "/v1/health/ready", None, {"Accept": _JSON}, retries=0)
            return True
        except ProblemError as e:
            if e.status == 503:
                return False
            raise

    # ---- compute ----
    # Common keyword arguments of every compute method:
    #   version: pin the model version (409 ProblemError when the model is at another one).
    #   as_: "torch" | "numpy" | "list" for the answer's tensors (default: like `inputs`).
    #   wait: False sends the request as an async job and returns a Job at once.
    #   **options: further request members, passed as they are (e.g. "seed"); the daemon
    #   answers 422 to members it does not know.

    def predict(self, name: str, inputs: Tensor, version: Optional[int] = None, *,
                as_: Format = None, wait: bool = True, **options: Any) -> Any:
        """``POST /v1/models/{name}/predict``: ``logits`` and ``probabilities`` ([B, K]
        tensors), ``predictions`` (B ints) and ``activation_pattern_hash`` (B hex strings: equal
        ⇔ same linear region), plus ``model``, ``version``, ``elapsed_ms``. A single sample
        without the batch dimension is answered as a batch of one."""
        return self._compute(name, "predict", inputs, dict(options, version=version),
                             as_, wait)

    def jacobian(self, name: str, inputs: Tensor, of: str = "logits",
                 version: Optional[int] = None, *, as_: Format = None, wait: bool = True,
                 **options: Any) -> Any:
        """``POST /v1/models/{name}/jacobian``: ``jacobian`` [B, K, ...input_shape] of the
        logits (``of="logits"``) or of the log-probabilities (``of="log_probabilities"``)."""
        return self._compute(name, "jacobian", inputs, dict(options, of=of, version=version),
                             as_, wait)

    def regularizers(self, name: str, inputs: Tensor, labels: Labels,
                     regularizers: Iterable[Union[str, Mapping[str, Any]]] = ("input_gradient",),
                     gradients: Iterable[str] = ("inputs", "parameters"), reduction: str = "mean",
                     version: Optional[int] = None, *, as_: Format = None, wait: bool = True,
                     **options: Any) -> Any:
        """``POST /v1/models/{name}/regularizers``: values and gradients of regularizers.

        regularizers: entries as in api.md, each a dict (``{"name": "jacobian", "estimator":
          "projection", "projections": 1, "seed": 0}``) or just a name (``"cross_lipschitz"``).
        gradients: any of ``"inputs"``, ``"parameters"`` (``()`` for values only).
        reduction: ``"mean"`` or ``"sum"`` over the batch (values and gradients).
        Returns the answer: ``loss`` (``value``, ``per_sample``: softmax cross-entropy) and
        ``regularizers``, a list in request order of ``{"name", ...options, "value",
        "per_sample", "grad_inputs"?, "grad_parameters"?}`` where ``grad_inputs`` is a tensor
        shaped like `inputs` and ``grad_parameters`` maps each model tensor name
        (``state_dict`` keys) to a tensor.
        """
        regs = [{"name": r} if isinstance(r, str) else dict(r) for r in regularizers]
        doc = dict(options, labels=labels, regularizers=regs, gradients=list(gradients),
                   reduction=reduction, version=version)
        return self._compute(name, "regularizers", inputs, doc, as_, wait)

    def connections(self, name: str, inputs: Tensor, labels: Labels, h: Optional[float] = None,
                    version: Optional[int] = None, *, as_: Format = None, wait: bool = True,
                    **options: Any) -> Any:
        """``POST /v1/models/{name}/connections``: per-sample arrays ``jacobian_fro2``,
        ``centered_jacobian_fro2``, ``input_gradient_norm2``, ``input_gradient_bound``,
        ``hessian_trace``, ``hessian_max_eigenvalue``, ``residual_norm2``, ``curvature_fd``,
        ``curvature_hessian``, ``curvature_ratio``, ``left_region`` (math.md, "The
        connections"); `h` is the finite-difference step (daemon default 1.5)."""
        return self._compute(name, "connections", inputs,
                             dict(options, labels=labels, h=h, version=version), as_, wait)

    def attack(self, name: str, inputs: Tensor, labels: Labels, attack: str = "pgd",
               version: Optional[int] = None, *, as_: Format = None, wait: bool = True,
               **options: Any) -> Any:
        """``POST /v1/models/{name}/attacks``: adversarial examples.

        attack: ``fgsm``, ``pgd``, ``bim``, ``deepfool``, ``cw_l2``, ``jsma``, ``ead``, ``zoo``,
          ``apgd_ce``, ``apgd_t``, ``fab_t``, ``square``, or the ensemble ``autoattack``
          (``suite`` ``standard`` or ``fast``; answers ``broken_by``). options: its hyperparameters
          (``norm``, ``epsilon``, ``steps``, ``step_size``, ``random_start``, ``restarts``,
          ``targeted`` with ``target_labels``, ``seed``, ...; defaults in math.md "Attacks").
        Returns ``adversarial`` (a tensor shaped like `inputs`), ``perturbation_norms``
        (``l2``, ``linf`` lists), ``success``, ``predictions`` (on the adversarial inputs),
        ``iterations`` and the hyperparameters used.
        """
        return self._compute(name, "attacks", inputs,
                             dict(options, attack=attack, labels=labels, version=version),
                             as_, wait)

    def certify(self, name: str, inputs: Tensor, labels: Optional[Labels] = None,
                norm: str = "l2", version: Optional[int] = None, *, as_: Format = None,
                wait: bool = True, **options: Any) -> Any:
        """``POST /v1/models/{name}/certify``: the linear-region certificate per sample:
        ``predictions``, ``decision_distance``, ``region_distance``, ``certified_radius`` (min
        of the two; ``None`` = +inf), ``exact``, and ``adversarial`` (a tensor: the class-flipping
        point for exact samples, the input elsewhere). With `labels` the radius is about the
        true label (0 for a misclassified sample)."""
        return self._compute(name, "certify", inputs,
                             dict(options, labels=labels, norm=norm, version=version), as_, wait)

    def robustness(self, name: str, inputs: Tensor, labels: Labels, epsilons: Iterable[float],
                   attack: Union[None, str, Mapping[str, Any]] = None, norm: str = "linf",
                   wait: bool = True, progress: Optional[Callable[[float], None]] = None,
                   version: Optional[int] = None, *, as_: Format = None, poll: float = 0.2,
                   shards: int = 1, retries: int = 3, **options: Any) -> Any:
        """``POST /v1/models/{name}/robustness``: a robustness report over a labelled batch.

        epsilons: the radii (in `norm`) to report robust accuracy at.
        attack: the attack and its options as a dict (``{"attack": "pgd", "steps": 40,
          "step_size": 0.01, "seed": 0}``; a string is the attack's name); default pgd.
        Returns ``clean_accuracy``, ``robust_accuracy`` (aligned with `epsilons`),
        ``deepfool_rho``, ``mean_certified_radius``, ``per_sample_min_epsilon``, ``flags``
        (the gradient-masking checks) and, for autoattack, ``broken_by``.

        wait=False returns a :class:`Job` at once (``job.wait(progress=...)`` later). With
        `progress` the request runs as a job too and ``progress(fraction)`` is called while
        this call waits (polling every `poll` seconds).

        shards=N (> 1) splits the batch into N slices of whole blocks of
        :data:`ROBUSTNESS_BLOCK` samples and sends each as an async job with ``sample_offset``
        and ``per_sample`` through this client's base URL (behind a load balancer, the
        replicas share them). A shard whose job vanished (its replica died: 404, 502, 503,
        504 or no connection, while creating or polling it) is sent again, at most `retries`
        times per shard; its answer is the same wherever it runs. The per-sample outcomes are
        merged with the daemon's summary arithmetic (rr_robustness_summarize, in the same
        order), so the answer equals the unsharded one exactly (``gradient_calls`` and
        ``forward_calls`` are the shards' sums, which are the whole batch's: they are counted
        per block); ``elapsed_ms`` is this call's wall time. Needs ``wait=True``.
        """
        if attack is None:
            attack = {"attack": "pgd"}
        elif isinstance(attack, str):
            attack = {"attack": attack}
        doc = dict(options, labels=labels, epsilons=[float(e) for e in epsilons],
                   attack=dict(attack), norm=norm, version=version)
        if shards > 1:
            if not wait or "sample_offset" in options:
                raise ValueError("shards > 1 needs wait=True and no sample_offset")
            return self._robustness_sharded(name, inputs, doc, shards, retries, progress, poll)
        return self._compute(name, "robustness", inputs, doc, as_, wait, progress, poll)

    def _robustness_sharded(self, name, inputs, doc, shards, retries, progress, poll):
        """robustness(shards=N): N async jobs through the base URL, re-sent when their replica
        vanishes, merged exactly (merge_robustness)."""
        labels = _ints(doc["labels"])
        B = len(labels)
        nb = -(-B // ROBUSTNESS_BLOCK)
        cut = [min(B, (i * nb // shards) * ROBUSTNESS_BLOCK) for i in range(shards)] + [B]
        ranges = [(lo, hi) for lo, hi in zip(cut, cut[1:]) if hi > lo]
        want_samples = bool(doc.get("per_sample"))
        lost = (404, 502, 503, 504)

        def submit(k):
            lo, hi = ranges[k]
            d = dict(doc, labels=labels[lo:hi], sample_offset=lo, per_sample=True)
            for attempt in range(retries + 1):
                try:
                    return self._compute(name, "robustness", inputs[lo:hi], d, "list", False)
                except ProblemError as e:
                    if e.status not in lost or attempt == retries:
                        raise
                except ConnectionError:
                    if attempt == retries:
                        raise
                time.sleep(min(2.0, poll * 2 ** attempt))

        t0 = time.monotonic()
        jobs = {k: submit(k) for k in range(len(ranges))}
        resent = {k: 0 for k in jobs}
        results, prog = {}, {k: 0.0 for k in jobs}
        while jobs:
            for k in list(jobs):
                try:
                    st = jobs[k].status()
                except (ProblemError, ConnectionError) as e:
                    if isinstance(e, ProblemError) and e.status not in lost:
                        raise
                    resent[k] += 1
                    if resent[k] > retries:
                        raise
                    prog[k] = 0.0
                    jobs[k] = submit(k)  # the replica vanished: the same answer elsewhere
                    continue
                prog[k] = st.get("progress") or 0.0
                if st["status"] == "done":
                    results[k] = st["result"]
                    prog[k] = 1.0
                    del jobs[k]
                elif st["status"] == "failed":
                    err = st.get("error") or {}
                    raise ProblemError(err.get("status", 500), err)
                elif st["status"] == "cancelled":
                    raise JobCancelled(st)
            if progress is not None:
                progress(sum(prog[k] * (hi - lo) for k, (lo, hi) in enumerate(ranges)) / B)
            if jobs:
                time.sleep(poll)
        out = merge_robustness([results[k] for k in range(len(ranges))], want_samples)
        out["elapsed_ms"] = (time.monotonic() - t0) * 1000.0
        return out

    def job(self, job_id: str, as_: str = "list") -> Job:
        """A :class:`Job` handle for an existing job id (e.g. one sent by another process)."""
        return Job(self, job_id, self._fmt(as_, None))

    # ---- datasets ----

    def dataset(self, name: str = "fashion-mnist", split: str = "test", offset: int = 0,
                limit: int = 16, *, as_: Format = None) -> Doc:
        """``GET /v1/datasets/{name}/{split}``: ``images`` (a tensor [n, 1, 28, 28] in [0, 1]),
        ``labels`` (a list of n ints), ``offset`` and ``class_names``. `limit` is at most 256:
        the daemon answers a larger one with 422 (:class:`ProblemError`, field ``limit``), as
        it does an `offset` past the split's end. `as_` defaults to numpy when numpy is
        importable, else lists."""
        fmt = self._fmt(as_ or ("numpy" if _np is not None else "list"), None)
        q = urllib.parse.urlencode({"offset": int(offset), "limit": int(limit)})
        path = (f"/v1/datasets/{urllib.parse.quote(name, safe='')}/"
                f"{urllib.parse.quote(split, safe='')}?{q}")
        st, hdrs, data = self._request("GET", path, None, {"Accept": BIN if self.binary else _JSON})
        return self._decode(hdrs, data, fmt)
