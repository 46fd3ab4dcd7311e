"""Graph convs, aggregators, norms and DeepGCN blocks on dense `(B, C, N)` tensors.

Every module is imported here, so the registries (`CONVS`, `BLOCKS`, `AGGREGATORS`) hold all
of the package's convs, blocks and aggregators as soon as any part of it is imported.
"""
from .aggregators import Aggregator, make_aggregator
from .base import GraphConv, gather_neighbors, graph_for
from .blocks import DenseBlock, PlainBlock, ResBlock, ResPlusBlock, make_backbone, make_block
from .convs import Conv1x1, GATConv, GINConv, RSAGEConv, SAGEConv, SemiGCNConv
from .edge import EdgeConv, MRConv
from .fixed_point import SolverStats, anderson
from .gen import GENConv
from .norm_act import ACTS, NORMS, PostProcess, make_act, make_norm
from .registry import AGGREGATORS, BLOCKS, CONVS, conv_option_defaults, make_conv
from .reversible import RevBlock, RevStack, TiedRevStack
from .deq import DEQ, deq_layers, resolve_deq, unrolled  # after reversible: listed last

__all__ = [
    "AGGREGATORS", "Aggregator", "BLOCKS", "CONVS", "Conv1x1", "DEQ", "DenseBlock", "EdgeConv",
    "GATConv", "GENConv", "GINConv", "GraphConv", "MRConv", "ACTS", "NORMS", "PlainBlock",
    "PostProcess", "RSAGEConv", "ResBlock", "ResPlusBlock", "RevBlock", "RevStack", "SAGEConv",
    "SemiGCNConv", "SolverStats", "TiedRevStack", "anderson", "conv_option_defaults",
    "deq_layers", "gather_neighbors", "graph_for", "make_act", "make_aggregator",
    "make_backbone", "make_block", "make_conv", "make_norm", "resolve_deq", "unrolled",
]
