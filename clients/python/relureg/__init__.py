"""relureg: exact robustness regularizers of ReLU networks.

This package holds the HTTP client of reluregd (`Client`, `ProblemError`, `Job`,
`JobCancelled`; standard library only, numpy / torch used when importable), the PyTorch
exporter (`export`, `Residual`, `load`, `architecture`: model files as in
../shared/spec/model-format.md) and a small safetensors reader/writer (`relureg.safetensors`).
The exporter needs torch; without torch the client is still importable.
"""
from .client import Client, Job, JobCancelled, ProblemError

__all__ = ["Client", "Job", "JobCancelled", "ProblemError"]

try:
    from .export import Residual, architecture, export, load
except ModuleNotFoundError as _e:  # torch is not installed: the client alone
    if _e.name != "torch":
        raise
else:
    __all__ += ["Residual", "architecture", "export", "load"]
