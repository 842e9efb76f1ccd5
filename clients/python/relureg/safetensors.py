"""Minimal safetensors reader and writer for torch tensors (no dependency beyond torch).

Layout (huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON, then
the tensors' bytes, little-endian, row-major. The writer pads the header with spaces to a
multiple of 8 and orders tensors by descending element size, then name, as the reference
writer does; the reader checks what relureg's C reader checks.
"""
import json
import struct

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def _to_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    # A view as bytes keeps the native (little-endian on every platform torch supports) layout.
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def save(tensors, metadata=None):
    """tensors: {name: torch.Tensor}; metadata: {str: str} or None. Returns the file bytes."""
    items = []
    for name, t in tensors.items():
        if t.dtype not in NAMES:
            raise ValueError(f"tensor {name!r}: dtype {t.dtype} cannot be written")
        items.append((name, t))
    items.sort(key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, off = {}, [], 0
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    for name, t in items:
        b = _to_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def load(data):
    """Parses safetensors bytes; returns ({name: tensor}, {metadata}). Raises ValueError."""
    data = bytes(data)
    if len(data) < 8:
        raise ValueError("safetensors data shorter than its 8-byte header length")
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        raise ValueError(f"safetensors header length {n} runs past the end of the data")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ must be an object of strings")
    body = data[8 + n:]
    spans, out = [], {}
    for name, info in header.items():
        dt = DTYPES.get(info.get("dtype"))
        if dt is None:
            raise ValueError(f"tensor {name!r}: unsupported dtype {info.get('dtype')!r}")
        shape = info["shape"]
        b, e = info["data_offsets"]
        numel = 1
        for d in shape:
            numel *= d
        size = torch.empty(0, dtype=dt).element_size()
        if e - b != numel * size or b < 0 or e > len(body):
            raise ValueError(f"tensor {name!r}: data_offsets [{b}, {e}] do not fit its shape")
        spans.append((b, e, name))
        raw = bytearray(body[b:e])
        if dt == torch.bool:
            t = torch.frombuffer(raw, dtype=torch.uint8).to(torch.bool) if raw else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(shape).clone()
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise ValueError(f"tensor {name!r} does not start where the previous one ends")
        pos = e
    if pos != len(body):
        raise ValueError("the tensors do not cover the data section exactly")
    return out, meta
