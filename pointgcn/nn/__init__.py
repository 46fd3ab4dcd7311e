"""Graph convs, aggregators, norms and DeepGCN blocks on dense `(B, C, N)` tensors."""
from .aggregators import AGGREGATORS, Aggregator
from .base import GraphConv, gather_neighbors
from .blocks import DenseBlock, PlainBlock, ResBlock, ResPlusBlock, make_block
from .convs import Conv1x1, GATConv, GINConv, RSAGEConv, SAGEConv, SemiGCNConv
from .edge import EdgeConv, MRConv
from .gen import GENConv
from .norm_act import ACTS, NORMS, PostProcess, make_act, make_norm
from .registry import CONVS, make_conv
from .reversible import RevBlock, RevStack

__all__ = [
    "AGGREGATORS", "Aggregator", "GraphConv", "gather_neighbors", "DenseBlock", "PlainBlock",
    "ResBlock", "ResPlusBlock", "make_block", "Conv1x1", "GATConv", "GINConv", "RSAGEConv",
    "SAGEConv", "SemiGCNConv", "EdgeConv", "MRConv", "GENConv", "ACTS", "NORMS", "PostProcess",
    "make_act", "make_norm", "CONVS", "make_conv", "RevBlock", "RevStack",
]
