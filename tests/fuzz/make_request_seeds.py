#!/usr/bin/python3
"""Seeds for fuzz_request: a Content-Type selector byte, then a request body (JSON with nested
arrays and KServe objects, and a safetensors request), stdlib only."""
import json
import os
import struct
import sys


def st(tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "nested": b"\x00" + json.dumps({"inputs": [[0.1, 0.2], [0.3, 0.4]], "labels": [1, 0]}).encode(),
        "kserve": b"\x00" + json.dumps({"inputs": {"shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                                       "labels": {"shape": [2], "datatype": "INT64", "data": [0, 1]},
                                       "regularizers": [{"name": "jacobian"}]}).encode(),
        "binary": b"\x01" + st({"/inputs": ("F32", [1, 2], struct.pack("<2f", 0.5, -1)),
                                "/labels": ("I64", [1], struct.pack("<q", 3))},
                               {"relureg.request": json.dumps({"regularizers": [{"name": "curvature"}]})}),
        "form": b"\x02" + b'{"inputs": [[[1e39]]]}',
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
