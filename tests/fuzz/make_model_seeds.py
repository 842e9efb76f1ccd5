#!/usr/bin/python3
"""Writes small valid model files (every layer type) as seeds for fuzz_model, stdlib only."""
import json
import os
import random
import struct
import sys


def safetensors(tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        blob = struct.pack(f"<{n}f", *[random.uniform(-1, 1) for _ in range(n)])
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode()
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def arch(shape, K, layers):
    return {"relureg.architecture": json.dumps(
        {"format": "relureg/1", "input_shape": shape, "num_classes": K, "layers": layers})}


SEEDS = {
    "mlp": ([4], 3, [{"type": "linear", "name": "0", "in_features": 4, "out_features": 5},
                     {"type": "leaky_relu", "negative_slope": 0.1},
                     {"type": "batchnorm", "name": "2", "num_features": 5},
                     {"type": "linear", "name": "3", "in_features": 5, "out_features": 3}],
            [("0.weight", [5, 4]), ("0.bias", [5]), ("2.weight", [5]), ("2.bias", [5]),
             ("2.running_mean", [5]), ("2.running_var", [5]), ("3.weight", [3, 5]), ("3.bias", [3])]),
    "cnn": ([1, 6, 6], 2, [{"type": "conv2d", "name": "0", "in_channels": 1, "out_channels": 2,
                            "kernel_size": [3, 3], "padding": [1, 1]},
                           {"type": "relu"},
                           {"type": "maxpool2d", "kernel_size": [3, 3], "stride": [2, 2],
                            "padding": [1, 1], "ceil_mode": True},
                           {"type": "avgpool2d", "kernel_size": [2, 2], "count_include_pad": False},
                           {"type": "flatten"},
                           {"type": "linear", "name": "5", "in_features": 2, "out_features": 2}],
            [("0.weight", [2, 1, 3, 3]), ("0.bias", [2]), ("5.weight", [2, 2]), ("5.bias", [2])]),
    "residual": ([3], 3, [{"type": "residual", "layers": [
                              {"type": "linear", "name": "0.body.0", "in_features": 3,
                               "out_features": 3, "bias": False},
                              {"type": "relu"}]}],
                 [("0.body.0.weight", [3, 3])]),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    random.seed(0)
    for name, (shape, K, layers, tensors) in SEEDS.items():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(safetensors(tensors, arch(shape, K, layers)))


if __name__ == "__main__":
    main()
