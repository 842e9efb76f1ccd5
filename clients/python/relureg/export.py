"""PyTorch <-> relureg model files (../shared/spec/model-format.md).

`export` writes a `torch.nn.Sequential` of the layers relureg computes exactly (Linear,
Conv2d, ReLU, LeakyReLU, MaxPool2d, AvgPool2d, Flatten, BatchNorm1d/2d and `Residual`
blocks) as one safetensors file whose `__metadata__["relureg.architecture"]` describes the
network. relureg computes the network as in eval mode: nn.Identity is dropped silently, and
nn.Dropout (the identity in eval mode) is dropped with a `DropoutDropped` warning naming it.
It refuses, with a message naming the module, anything the format cannot express: a final
Softmax / LogSoftmax is refused with the advice to drop it (relureg works on logits and
applies the softmax itself), and an `input_shape` the network cannot take is refused naming
the shape and the module that failed. `load` rebuilds the torch network from such a file and
returns `(model, architecture, metadata)`.
"""
from __future__ import annotations

import collections
import json
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from . import safetensors

FORMAT = "relureg/1"
_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}


class DropoutDropped(UserWarning):
    """Warned by :func:`export` for each nn.Dropout it leaves out (dropout is the identity in
    eval mode, which is how relureg computes every network)."""


class Residual(nn.Module):
    """y = x + body(x); `body` is an nn.Sequential whose output shape equals its input's."""

    def __init__(self, body):
        super().__init__()
        if not isinstance(body, nn.Sequential):
            raise TypeError("Residual(body): body must be a torch.nn.Sequential")
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def _pair(v, what, path):
    if isinstance(v, int):
        return [v, v]
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(a, int) for a in v):
        return [int(v[0]), int(v[1])]
    raise ValueError(f"{path}: {what} {v!r} is not an int or a pair of ints")


def _layer(module, path, shape, input_shape):
    """The architecture entry of one module given its input shape (without batch), or None
    for a module that is dropped. Raises for anything the format cannot express."""
    kind = type(module).__name__
    if isinstance(module, nn.Identity):
        return None
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)):
        warnings.warn(f"{path}: {kind} is left out of the model file: relureg computes the "
                      "network in eval mode, where dropout is the identity", DropoutDropped,
                      stacklevel=4)
        return None
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        raise ValueError(f"{path}: {kind} is not supported: drop it from the network you export. "
                         "relureg works on the logits and applies the softmax itself "
                         "(predict answers probabilities, the regularizers and attacks use "
                         "softmax cross-entropy), as nn.CrossEntropyLoss does")
    if isinstance(module, nn.Linear):
        if len(shape) != 1:
            raise ValueError(f"{path}: Linear receives input of shape {list(shape)} (input_shape "
                             f"{input_shape}); relureg needs a flat input, add nn.Flatten() "
                             "before it")
        if shape[0] != module.in_features:
            raise ValueError(f"{path}: Linear expects {module.in_features} input features but "
                             f"receives {shape[0]} with input_shape {input_shape}; input_shape is "
                             "one sample's shape without the batch dimension")
        return {"type": "linear", "name": path, "in_features": module.in_features,
                "out_features": module.out_features, "bias": module.bias is not None}
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):
            raise ValueError(f"{path}: Conv2d padding={module.padding!r} is not supported; "
                             "give explicit padding")
        if module.padding_mode != "zeros":
            raise ValueError(f"{path}: Conv2d padding_mode={module.padding_mode!r} is not "
                             "supported (only 'zeros')")
        if tuple(module.dilation) != (1, 1):
            raise ValueError(f"{path}: Conv2d dilation {module.dilation} is not supported")
        if module.groups != 1:
            raise ValueError(f"{path}: Conv2d groups={module.groups} is not supported")
        if len(shape) != 3:
            raise ValueError(f"{path}: Conv2d needs a [C, H, W] input, gets {list(shape)}")
        if shape[0] != module.in_channels:
            raise ValueError(f"{path}: Conv2d expects {module.in_channels} input channels but "
                             f"receives {shape[0]} (shape {list(shape)}) with input_shape "
                             f"{input_shape}; input_shape is one sample's [C, H, W] without the "
                             "batch dimension")
        return {"type": "conv2d", "name": path, "in_channels": module.in_channels,
                "out_channels": module.out_channels,
                "kernel_size": _pair(module.kernel_size, "kernel_size", path),
                "stride": _pair(module.stride, "stride", path),
                "padding": _pair(module.padding, "padding", path),
                "bias": module.bias is not None}
    if isinstance(module, nn.ReLU):
        return {"type": "relu"}
    if isinstance(module, nn.LeakyReLU):
        return {"type": "leaky_relu", "negative_slope": float(module.negative_slope)}
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        if len(shape) != 3:
            raise ValueError(f"{path}: {kind} needs a [C, H, W] input, gets {list(shape)}")
        entry = {"kernel_size": _pair(module.kernel_size, "kernel_size", path),
                 "stride": _pair(module.stride if module.stride is not None else module.kernel_size,
                                 "stride", path),
                 "padding": _pair(module.padding, "padding", path),
                 "ceil_mode": bool(module.ceil_mode)}
        if isinstance(module, nn.MaxPool2d):
            if _pair(module.dilation, "dilation", path) != [1, 1]:
                raise ValueError(f"{path}: MaxPool2d dilation {module.dilation} is not supported")
            if module.return_indices:
                raise ValueError(f"{path}: MaxPool2d return_indices=True is not supported")
            return {"type": "maxpool2d", **entry}
        if module.divisor_override is not None:
            raise ValueError(f"{path}: AvgPool2d divisor_override is not supported")
        return {"type": "avgpool2d", **entry, "count_include_pad": bool(module.count_include_pad)}
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise ValueError(f"{path}: Flatten(start_dim={module.start_dim}, "
                             f"end_dim={module.end_dim}) is not supported (only 1, -1)")
        return {"type": "flatten"}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not module.track_running_stats or module.running_mean is None:
            raise ValueError(f"{path}: {kind} with track_running_stats=False is not supported "
                             "(relureg uses the running statistics)")
        want = 1 if isinstance(module, nn.BatchNorm1d) else 3
        if len(shape) != want:
            raise ValueError(f"{path}: {kind} receives input of shape {list(shape)}")
        return {"type": "batchnorm", "name": path, "num_features": module.num_features,
                "eps": float(module.eps), "affine": bool(module.affine)}
    raise ValueError(f"{path}: {kind} is not supported by relureg (supported: Linear, Conv2d, "
                     "ReLU, LeakyReLU, MaxPool2d, AvgPool2d, Flatten, BatchNorm1d/2d, Residual, "
                     "Dropout, Identity)")


def _layers(seq, prefix, x, input_shape):
    """Architecture entries of an nn.Sequential fed with x (a [1, ...] tensor); returns
    (entries, output)."""
    out = []
    for key, module in seq.named_children():
        path = f"{prefix}{key}"
        if isinstance(module, Residual):
            inner, y = _layers(module.body, f"{path}.body.", x, input_shape)
            if y.shape != x.shape:
                raise ValueError(f"{path}: Residual body maps {list(x.shape[1:])} to "
                                 f"{list(y.shape[1:])}; the shapes must match")
            if not inner:
                raise ValueError(f"{path}: Residual body has no layers relureg keeps")
            out.append({"type": "residual", "layers": inner})
            x = x + y
            continue
        if isinstance(module, nn.Sequential):
            raise ValueError(f"{path}: nested nn.Sequential is not supported outside Residual")
        entry = _layer(module, path, tuple(x.shape[1:]), input_shape)
        try:
            x = module(x)
        except RuntimeError as e:
            raise ValueError(f"{path}: {type(module).__name__} cannot take its input of shape "
                             f"{list(x.shape[1:])} (per sample) given input_shape "
                             f"{input_shape}: {str(e).splitlines()[0]}. input_shape is one "
                             "sample's shape without the batch dimension, e.g. [784] or "
                             "[1, 28, 28]") from None
        if entry is not None:
            out.append(entry)
    return out, x


def architecture(model: nn.Sequential, input_shape: Sequence[int], *,
                 num_classes: Optional[int] = None,
                 input_range: Optional[Sequence[float]] = None,
                 class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The architecture document (a dict) of `model` for inputs of `input_shape`."""
    if not isinstance(model, nn.Sequential):
        raise TypeError("export needs a torch.nn.Sequential")
    input_shape = [int(d) for d in input_shape]
    if len(input_shape) not in (1, 3) or min(input_shape) < 1:
        raise ValueError(f"input_shape {input_shape} must be one sample's shape without the "
                         "batch dimension: [d] or [C, H, W], e.g. [784] or [1, 28, 28]")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            dt = p.dtype if p is not None else torch.float32
            layers, y = _layers(model, "", torch.zeros([1] + input_shape, dtype=dt), input_shape)
    finally:
        model.train(was_training)
    if y.dim() != 2:
        raise ValueError(f"the network outputs shape {list(y.shape[1:])} per sample; relureg "
                         "needs [num_classes] logits")
    k = y.shape[1]
    if num_classes is not None and num_classes != k:
        raise ValueError(f"num_classes={num_classes} but the network outputs {k} logits")
    arch = {"format": FORMAT, "input_shape": input_shape, "num_classes": int(k)}
    if input_range is not None:
        lo, hi = (float(v) for v in input_range)
        if not lo < hi:
            raise ValueError("input_range must be [low, high] with low < high")
        arch["input_range"] = [lo, hi]
    if class_names is not None:
        if len(class_names) != k:
            raise ValueError(f"class_names has {len(class_names)} entries, the network {k} classes")
        arch["class_names"] = [str(c) for c in class_names]
    arch["layers"] = layers
    return arch


def export(model: nn.Sequential, input_shape: Sequence[int],
           path: Union[None, str, os.PathLike] = None, *, num_classes: Optional[int] = None,
           input_range: Optional[Sequence[float]] = None,
           class_names: Optional[Sequence[str]] = None,
           metadata: Optional[Mapping[str, str]] = None, dtype: str = "F32") -> bytes:
    """Writes `model` as a relureg model file; returns the bytes (and writes `path` if given).

    input_shape: one sample's shape without the batch dimension ([784], [1, 28, 28]).
    input_range: [low, high], the box valid inputs live in; attacks clip to it and the daemon
      refuses an epsilon larger than the box. dtype: "F32" (default), "F64", "F16" or "BF16"
      for the weights; batchnorm's num_batches_tracked stays int64. metadata: extra string
      entries for __metadata__. nn.Dropout is left out with a :class:`DropoutDropped` warning;
      a Softmax layer is refused (relureg applies the softmax itself).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}")
    arch = architecture(model, input_shape, num_classes=num_classes, input_range=input_range,
                        class_names=class_names)
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if name.endswith("num_batches_tracked"):
            tensors[name] = t.to(torch.int64).reshape([])
        else:
            tensors[name] = t.to(_DTYPES[dtype]).contiguous()
    meta = {"relureg.architecture": json.dumps(arch)}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("metadata must map strings to strings")
        if k == "relureg.architecture":
            raise ValueError("metadata may not override relureg.architecture")
        meta[k] = v
    data = safetensors.save(tensors, meta)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


# ---- load ----

def _module(entry):
    t = entry["type"]
    if t == "linear":
        return nn.Linear(entry["in_features"], entry["out_features"], bias=entry.get("bias", True))
    if t == "conv2d":
        return nn.Conv2d(entry["in_channels"], entry["out_channels"], tuple(entry["kernel_size"]),
                         stride=tuple(entry.get("stride", [1, 1])),
                         padding=tuple(entry.get("padding", [0, 0])), bias=entry.get("bias", True))
    if t == "relu":
        return nn.ReLU()
    if t == "leaky_relu":
        return nn.LeakyReLU(entry.get("negative_slope", 0.01))
    if t in ("maxpool2d", "avgpool2d"):
        k = tuple(entry["kernel_size"]) if isinstance(entry["kernel_size"], list) else entry["kernel_size"]
        s = entry.get("stride", k)
        s = tuple(s) if isinstance(s, list) else s
        p = entry.get("padding", 0)
        p = tuple(p) if isinstance(p, list) else p
        if t == "maxpool2d":
            return nn.MaxPool2d(k, s, p, ceil_mode=entry.get("ceil_mode", False))
        return nn.AvgPool2d(k, s, p, ceil_mode=entry.get("ceil_mode", False),
                            count_include_pad=entry.get("count_include_pad", True))
    if t == "flatten":
        return nn.Flatten()
    raise ValueError(f"unknown layer type {t!r}")


def _names(entries):
    for e in entries:
        if "name" in e:
            yield e["name"]
        if e["type"] == "residual":
            yield from _names(e["layers"])


def _build(entries, shape, prefix=""):
    """nn.Sequential for `entries` (the layers under state_dict prefix `prefix`) whose keys make
    state_dict names equal the entries' names."""
    mods = collections.OrderedDict()
    for i, entry in enumerate(entries):
        if entry["type"] == "residual":
            named = list(_names(entry["layers"]))
            key = named[0][len(prefix):].split(".")[0] if named else f"_residual{i}"
            mods[key] = Residual(_build(entry["layers"], shape, f"{prefix}{key}.body."))
        elif entry["type"] == "batchnorm":
            cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
            key = entry["name"][len(prefix):]
            mods[key] = cls(entry["num_features"], eps=entry.get("eps", 1e-5),
                            affine=entry.get("affine", True))
        else:
            m = _module(entry)
            key = entry["name"][len(prefix):] if "name" in entry else f"_{entry['type']}{i}"
            mods[key] = m
        if "." in key:
            raise ValueError(f"layer name {entry.get('name')!r} does not sit under {prefix!r}")
        # Track the per-sample shape so that a later batchnorm knows which variant it is.
        if not isinstance(mods[key], (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                shape = list(mods[key].eval()(torch.zeros([1] + shape)).shape[1:])
    return nn.Sequential(mods)


def load(data_or_path: Union[bytes, bytearray, memoryview, str, os.PathLike],
         dtype: torch.dtype = torch.float64
         ) -> Tuple[nn.Sequential, Dict[str, Any], Dict[str, str]]:
    """Rebuilds the torch network of a relureg model file (bytes or a path), in eval mode and
    in `dtype`; returns (model, architecture dict, metadata dict)."""
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        data = bytes(data_or_path)
    else:
        with open(data_or_path, "rb") as f:
            data = f.read()
    tensors, meta = safetensors.load(data)
    if "relureg.architecture" not in meta:
        raise ValueError("not a relureg model: __metadata__ lacks relureg.architecture")
    arch = json.loads(meta["relureg.architecture"])
    if arch.get("format") != FORMAT:
        raise ValueError(f"unsupported model format {arch.get('format')!r}")
    model = _build(arch["layers"], list(arch["input_shape"]))
    sd = model.state_dict()
    missing = [k for k in sd if k not in tensors and not k.endswith("num_batches_tracked")]
    extra = [k for k in tensors if k not in sd]
    if missing or extra:
        raise ValueError(f"tensors do not match the architecture: missing {missing}, extra {extra}")
    new = {}
    for k, v in sd.items():
        if k in tensors:
            t = tensors[k]
            new[k] = t if k.endswith("num_batches_tracked") else t.to(dtype)
        else:
            new[k] = v
    model = model.to(dtype)
    model.load_state_dict(new)
    return model.eval(), arch, meta
