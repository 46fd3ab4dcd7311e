"""Assembled models from config, the registry, and checkpoint I/O (incl. official DeepGCN).
A checkpoint is opened as a ready model by `pointgcn.export.open_model`."""
from .checkpoint import read_checkpoint, save_checkpoint
from .deepgcn import DeepGCN  # registers "deepgcn"
from .registry import MODELS, build_model

__all__ = ["DeepGCN", "MODELS", "build_model", "read_checkpoint", "save_checkpoint"]
