"""Assembled models from config, the registry, and checkpoint I/O (incl. official DeepGCN)."""
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .deepgcn import DeepGCN  # registers "deepgcn"
from .registry import MODELS, build_model

__all__ = ["DeepGCN", "MODELS", "build_model", "load_checkpoint", "read_checkpoint",
           "save_checkpoint"]
