"""Graph convs by name; one place that knows which options each conv takes."""
from __future__ import annotations

from ..errors import ConfigError
from .base import GraphConv
from .convs import Conv1x1, GATConv, GINConv, RSAGEConv, SAGEConv, SemiGCNConv
from .edge import EdgeConv, MRConv
from .gen import GENConv

CONVS = {
    "edge": EdgeConv, "mr": MRConv, "gin": GINConv, "sage": SAGEConv, "rsage": RSAGEConv,
    "gat": GATConv, "semi_gcn": SemiGCNConv, "conv1x1": Conv1x1, "gen": GENConv,
}
# Options from the model config that only some convs take.
_EXTRA = {"gen": ("aggr", "t", "learn_t", "p", "learn_p", "msg_norm", "learn_msg_scale",
                  "mlp_layers"),
          "gat": ("heads",), "gin": ("eps", "train_eps")}


def make_conv(kind: str, in_channels: int, out_channels: int, norm: str = "batch",
              act: str = "relu", bias: bool = True, act_first: bool = False,
              **options) -> GraphConv:
    """Build conv `kind`; `options` not used by that conv are ignored (one config, many convs)."""
    kind = kind.lower()
    if kind not in CONVS:
        raise ConfigError(f"conv must be one of {sorted(CONVS)}, got {kind!r}")
    extra = {k: v for k, v in options.items() if k in _EXTRA.get(kind, ())}
    return CONVS[kind](in_channels, out_channels, norm=norm, act=act, bias=bias,
                       act_first=act_first, **extra)
