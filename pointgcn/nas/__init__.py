"""Architecture search for point-cloud GCNs: the SGAS search space (cells of 9 mixed edges over
10 graph ops), SGAS's greedy decisions, LC-NAS's latency-constrained loss, latency collection
and the latency regressor. Importing this package registers the model name "nas"."""
from .genotype import EDGES, ENCODING_DIM, N_EDGES, N_OPS, Genotype, load_genotype, save_genotype
from .network import NASNetwork, SearchNetwork
from .ops import PRIMITIVES

__all__ = ["EDGES", "ENCODING_DIM", "N_EDGES", "N_OPS", "Genotype", "load_genotype",
           "save_genotype", "NASNetwork", "SearchNetwork", "PRIMITIVES"]
