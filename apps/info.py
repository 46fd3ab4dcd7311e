"""Show what pointgcn can build: every registry (convs, blocks, aggregators, models, data sets)
and the norms and activations."""
from __future__ import annotations

HELP = "list the available convs, blocks, norms, activations, aggregators, models and data sets"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    import json

    from pointgcn.data.build import DATASETS
    from pointgcn.models import MODELS
    from pointgcn.nn import ACTS, AGGREGATORS, BLOCKS, CONVS, NORMS

    table = {"convs": sorted(CONVS.names()), "blocks": BLOCKS.names(), "norms": list(NORMS),
             "acts": list(ACTS), "aggregators": AGGREGATORS.names(),
             "models": sorted(MODELS.names()), "datasets": DATASETS.names()}
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        for key, values in table.items():
            print(f"{key:12s} {', '.join(values)}")
    return 0
