"""Neighbour graphs on dense batched point features: kNN, dilation, stochastic dilation."""
from .knn import knn, knn_export, export_mode, float64_scores, is_exporting
from .dilated import DilatedKnn, dilate, knn_modules, min_points

__all__ = ["knn", "knn_export", "export_mode", "float64_scores", "is_exporting", "DilatedKnn",
           "dilate", "knn_modules", "min_points"]
