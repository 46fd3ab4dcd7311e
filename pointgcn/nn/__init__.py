"""Graph convs, aggregators, norms and DeepGCN blocks on dense `(B, C, N)` tensors.

Every module is imported here, so the registries (`CONVS`, `BLOCKS`, `AGGREGATORS`) hold all
of the package's convs, blocks and aggregators as soon as any part of it is imported.
"""
from .aggregators import Aggregator, make_aggregator
from .base import GraphConv, gather_neighbors, graph_for
from .blocks import DenseBlock, PlainBlock, ResBlock, ResPlusBlock, make_block
from .convs import Conv1x1, GATConv, GINConv, RSAGEConv, SAGEConv, SemiGCNConv
from .edge import EdgeConv, MRConv
from .gen import GENConv
from .norm_act import ACTS, NORMS, PostProcess, make_act, make_norm
from .registry import AGGREGATORS, BLOCKS, CONVS, conv_option_defaults, make_conv
from .reversible import RevBlock, RevStack

__all__ = [
    "AGGREGATORS", "Aggregator", "BLOCKS", "CONVS", "Conv1x1", "DenseBlock", "EdgeConv",
    "GATConv", "GENConv", "GINConv", "GraphConv", "MRConv", "ACTS", "NORMS", "PlainBlock",
    "PostProcess", "RSAGEConv", "ResBlock", "ResPlusBlock", "RevBlock", "RevStack", "SAGEConv",
    "SemiGCNConv", "conv_option_defaults", "gather_neighbors", "graph_for", "make_act",
    "make_aggregator", "make_block", "make_conv", "make_norm",
]
