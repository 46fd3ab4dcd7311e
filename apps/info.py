"""Show what pointgcn can build: graph convs, blocks, norms, activations, aggregators, models."""
from __future__ import annotations

HELP = "list the available convs, blocks, norms, activations, aggregators and models"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    import json

    from pointgcn.models import MODELS
    from pointgcn.nn import ACTS, AGGREGATORS, CONVS, NORMS

    table = {"convs": sorted(CONVS), "blocks": ["plain", "res", "dense", "res+", "rev"],
             "norms": list(NORMS), "acts": list(ACTS), "aggregators": list(AGGREGATORS),
             "models": sorted(MODELS)}
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        for key, values in table.items():
            print(f"{key:12s} {', '.join(values)}")
    return 0
