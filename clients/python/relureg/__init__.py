"""relureg: exact robustness regularizers of ReLU networks.

This package holds the HTTP client of reluregd (`Client`, `ProblemError`, `Job`,
`JobCancelled`; standard library only, numpy / torch used when importable), the PyTorch
exporter (`export`, `Residual`, `load`, `architecture`, `DropoutDropped`: model files as in
../shared/spec/model-format.md) and a small safetensors reader/writer (`relureg.safetensors`).
The exporter needs torch; without torch the client is still importable.

Bring your own model::

    import torch.nn as nn, relureg
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    c = relureg.Client("http://127.0.0.1:8080")
    c.put_model("mine", net, input_shape=[1, 28, 28], input_range=[0, 1])  # export + PUT
    data = relureg.export(net, [1, 28, 28])          # or the model file's bytes yourself
    net2, arch, meta = relureg.load(data)            # load returns (torch net, arch, metadata)

Install: ``pip install --no-index --no-build-isolation ./clients/python`` (clients/python/README.md).
"""
from .client import ROBUSTNESS_BLOCK, Client, Job, JobCancelled, ProblemError, merge_robustness

__all__ = ["Client", "Job", "JobCancelled", "ProblemError", "ROBUSTNESS_BLOCK", "merge_robustness"]

try:
    from .export import DropoutDropped, Residual, architecture, export, load
except ModuleNotFoundError as _e:  # torch is not installed: the client alone
    if _e.name != "torch":
        raise
else:
    __all__ += ["DropoutDropped", "Residual", "architecture", "export", "load"]
