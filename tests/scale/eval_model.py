"""A small, meaningful Fashion-MNIST model without training or torch: the nearest-class-mean
classifier (logit_k = m_k . x - |m_k|^2 / 2, m_k the mean training image of class k, about 70 %
test accuracy) written as a ReLU MLP 784-20-10 (relu(z) - relu(-z) = z) in relureg's model
format. Attacks have something to do on it and it runs in milliseconds."""
import array
import gzip
import json
import os
import struct
import sys

DATA = "/usr/share/datasets/fashion-mnist"


def idx_read(path, n):
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        per = 1
        for d in dims[1:]:
            per *= d
        return f.read(min(n, dims[0]) * per), per


def class_means(data=DATA, n=3000):
    img, per = idx_read(os.path.join(data, "train-images-idx3-ubyte.gz"), n)
    lab, _ = idx_read(os.path.join(data, "train-labels-idx1-ubyte.gz"), n)
    sums, counts = [[0.0] * per for _ in range(10)], [0] * 10
    for i, y in enumerate(lab):
        row, s = img[i * per:(i + 1) * per], sums[y]
        for d in range(per):
            s[d] += row[d]
        counts[y] += 1
    return [[v / 255.0 / max(counts[k], 1) for v in sums[k]] for k in range(10)]


def model_file(arch, tensors):
    """A model file: safetensors of float32 tensors [(name, shape, values)] with the
    architecture in its metadata (model-format.md)."""
    header, blobs, off = {"__metadata__": {"relureg.architecture": json.dumps(arch)}}, [], 0
    for name, shape, vals in tensors:
        b = array.array("f", vals)
        if sys.byteorder != "little":
            b.byteswap()
        b = b.tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def model_bytes(data=DATA):
    M = class_means(data)
    c = [-0.5 * sum(v * v for v in m) for m in M]
    w1 = [v for m in M for v in m] + [-v for m in M for v in m]  # [20, 784]
    b1 = c + [-v for v in c]
    w2 = [(1.0 if j == k else -1.0 if j == k + 10 else 0.0) for k in range(10) for j in range(20)]
    b2 = [0.0] * 10
    arch = {"format": "relureg/1", "input_shape": [1, 28, 28], "num_classes": 10,
            "input_range": [0.0, 1.0],
            "layers": [{"type": "flatten"},
                       {"type": "linear", "name": "1", "in_features": 784, "out_features": 20},
                       {"type": "relu"},
                       {"type": "linear", "name": "3", "in_features": 20, "out_features": 10}]}
    tensors = [("1.weight", [20, 784], w1), ("1.bias", [20], b1), ("3.weight", [10, 20], w2),
               ("3.bias", [10], b2)]
    return model_file(arch, tensors)

if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(model_bytes())
