"""The model-choice options shared by `segment` and `classify` (argparse only, no imports of
torch, so `--help` stays fast); `pointgcn.export.serve.predictor_from_args` reads them."""
from __future__ import annotations

from pathlib import Path

from apps.paths import Input


def add_source_arguments(parser) -> None:
    """--weights / --onnx / --budget-ms, shared by segment and classify."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Input(str), help="checkpoint path or shipped model name")
    src.add_argument("--onnx", type=Input(), help="exported model (runs in onnxruntime)")
    src.add_argument("--budget-ms", type=float, metavar="MS",
                     help="pick the most accurate shipped/--candidates model whose p95 latency "
                          "here fits MS milliseconds (measured once, cached)")
    parser.add_argument("--candidates", nargs="+", type=Input(), metavar="JSON",
                        help="with --budget-ms: extra manifests / search candidates.json files")
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx",
                        help="with --budget-ms: the runtime to measure and serve with")
    parser.add_argument("--points", type=int, metavar="N",
                        help="with --budget-ms: points per forward pass to budget for "
                             "(default: 4096 for segment, 1024 for classify)")
