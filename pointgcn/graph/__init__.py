"""Neighbour graphs on dense batched point features: kNN, dilation, stochastic dilation, and
PyG-style `edge_index` graphs of ragged batches (`knn_graph`)."""
from .knn import (knn, knn_export, export_mode, float64_scores, is_exporting, point_mask,
                  active_mask)
from .dilated import DilatedKnn, dilate, knn_modules, min_points
from .pyg import dense_batch, knn_graph

__all__ = ["knn", "knn_export", "export_mode", "float64_scores", "is_exporting", "point_mask",
           "active_mask", "DilatedKnn", "dilate", "knn_modules", "min_points", "dense_batch",
           "knn_graph"]
