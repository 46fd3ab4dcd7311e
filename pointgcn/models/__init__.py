"""Assembled models from config, the registry, and checkpoint I/O (incl. official DeepGCN)."""
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .registry import MODELS, build_model, register

__all__ = ["build_model", "register", "MODELS", "load_checkpoint", "read_checkpoint",
           "save_checkpoint"]
