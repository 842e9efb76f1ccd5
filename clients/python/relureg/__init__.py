"""relureg: exact robustness regularizers of ReLU networks.

This package holds the PyTorch exporter (`export`, `Residual`, `load`, model files as in
../shared/spec/model-format.md) and a small safetensors reader/writer. It needs torch only.
"""
from .export import Residual, architecture, export, load

__all__ = ["Residual", "architecture", "export", "load"]
