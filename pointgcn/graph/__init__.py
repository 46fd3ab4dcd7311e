"""Neighbour graphs on dense batched point features: kNN, dilation, stochastic dilation."""
from .knn import knn, knn_export, export_mode, is_exporting
from .dilated import DilatedKnn, dilate

__all__ = ["knn", "knn_export", "export_mode", "is_exporting", "DilatedKnn", "dilate"]
