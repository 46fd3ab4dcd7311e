"""The model-choice options shared by `segment` and `classify` (argparse only at import time, so
`--help` stays fast), and `predictor_from_args`, which turns them into a predictor."""
from __future__ import annotations

import sys
from pathlib import Path

from apps.cli import add_device_argument
from apps.paths import Input
from pointgcn.tasks import DEFAULT_POINTS


def add_source_arguments(parser) -> None:
    """--weights / --onnx / --budget-ms and where the model runs (--device, --provider), shared
    by segment and classify."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--weights", type=Input(str),
                     help="checkpoint path or shipped model name (default: the shipped model "
                          "for the task, named when used)")
    src.add_argument("--onnx", type=Input(), help="exported model (runs in onnxruntime)")
    src.add_argument("--budget-ms", type=float, metavar="MS",
                     help="pick the most accurate shipped/--candidates model whose p95 latency "
                          "on --device fits MS milliseconds (measured once, cached)")
    parser.add_argument("--candidates", nargs="+", type=Input(), metavar="JSON",
                        help="with --budget-ms: extra manifests / search candidates.json files")
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx",
                        help="with --budget-ms: the runtime to measure and serve with")
    parser.add_argument("--points", type=int, metavar="N",
                        help="with --budget-ms: points per forward pass to budget for "
                             f"(default: {DEFAULT_POINTS['segmentation']} for segment, "
                             f"{DEFAULT_POINTS['classification']} for classify)")
    add_device_argument(parser)
    add_provider_argument(parser)


def add_provider_argument(parser) -> None:
    """--provider for stages that may run onnxruntime (pointgcn.export.runtime)."""
    parser.add_argument("--provider", choices=("cpu", "cuda"),
                        help="onnxruntime execution provider (default: follows --device; cuda "
                             "needs onnxruntime-gpu: pip install 'pointgcn[gpu]')")


def add_harmonise_arguments(parser) -> None:
    """--up-axis / --units / --no-harmonise (pointgcn.engine.harmonise), shared by segment and
    classify."""
    parser.add_argument("--up-axis", choices=("auto", "x", "y", "z"), default="auto",
                        help="the input's up axis; auto (default) estimates it and says what "
                             "it chose; the model's view is turned to its own up axis")
    parser.add_argument("--units", choices=("auto", "m", "cm", "mm", "in", "ft"),
                        default="auto", help="scenes: the input's units (auto: the plausible "
                                             "unit whose spacing and height fit a room best; "
                                             "asks when two fit alike)")
    parser.add_argument("--no-harmonise", action="store_true",
                        help="feed the input as it is: no turning, no scaling, colourless "
                             "clouds get mid grey")


def preflight(args, cloud, cfg, confidence=None, show: bool = True):
    """Harmonise `cloud` to the model of run config `cfg`; print the preflight block."""
    from pointgcn.models.conventions import conventions_of
    from pointgcn.engine.harmonise import harmonise

    conv = conventions_of(cfg)
    pf = harmonise(cloud, conv, up=args.up_axis, units=args.units,
                   enabled=not args.no_harmonise, confidence=confidence)
    if show and pf.lines:
        print(f"preflight (the model: {conv.describe()}):")
        for line in pf.lines:
            print(f"  {line}")
    return pf


def predictor_from_args(args, task: str):
    """(predictor, run config) for --weights / --onnx / --budget-ms, or the task's default
    shipped model (saying which, in one line on stderr: stdout holds only results, so
    `--csv`/`--json` tables can be piped)."""
    from pointgcn.export.budget import within_budget
    from pointgcn.export.serve import open_model

    if getattr(args, "budget_ms", None) is not None:
        points = args.points or DEFAULT_POINTS[task]
        model, reason = within_budget(args.budget_ms, task=task, points=points,
                                      runtime=args.runtime, threads=args.threads,
                                      candidates=args.candidates or (), device=args.device)
        print(reason, file=sys.stderr)
    else:
        source = args.onnx or args.weights or shipped_default(task, "--weights, --onnx or "
                                                                    "--budget-ms")
        model = open_model(source, device=args.device, provider=args.provider,
                           threads=args.threads)
    return model.predictor(), model.run_config


def shipped_default(task: str, alternatives: str) -> str:
    """The shipped model serving `task` when none is named, said in one line on stderr (a
    note, not a result); an error naming the `alternatives` (flags) when none is shipped."""
    from pointgcn.errors import InputError
    from pointgcn.export.serve import default_model

    name = default_model(task)
    if name is None:
        raise InputError(f"no shipped model for {task}; give {alternatives}")
    print(f"note: using the shipped model {name} (the default for {task}; --weights to choose "
          "another)", file=sys.stderr)
    return name
