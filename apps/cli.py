"""`pointgcn <stage> …`: dispatch to the stage modules in apps/.

Each stage module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`,
and may define `SETTINGS`: {library setting: the option's dest} where the stage names one of
the library's settings otherwise (see `flag_names`).
Bad input (`pointgcn.errors.InputError`) ends with one line `error: …` and exit code 2; a
library setting the message names is said as the stage's flag for it. The library's progress
lines (logging INFO) go to stdout as they are, its warnings to stderr as `note: …`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from pointgcn.errors import InputError

# Stage name → module in apps/. Order is the order shown by --help.
STAGES = {
    "data": "apps.data",
    "train": "apps.train",
    "eval": "apps.evaluate",
    "analyze": "apps.analyze",
    "segment": "apps.segment",
    "classify": "apps.classify",
    "adapt": "apps.adapt",
    "export": "apps.export",
    "bench": "apps.bench",
    "latency": "apps.latency",
    "search": "apps.search",
    "viz": "apps.viz",
    "info": "apps.info",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `error: …` and exit 2 like any bad input."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _whole_number(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number ≥ {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {value}")
        return value
    return parse


positive_int = _whole_number(1)  # counts such as --threads
positive_int.__doc__ = "argparse type for counts such as --threads: an integer ≥ 1."
seed_int = _whole_number(0)  # --seed (every stage): numpy's generators take ≥ 0
seed_int.__doc__ = "argparse type for --seed: a whole number ≥ 0, as numpy's generators take."


def add_device_argument(parser) -> None:
    """--device for every stage that runs a model (checked by pointgcn.engine.device)."""
    parser.add_argument("--device", metavar="DEVICE",
                        help="auto (CUDA when available; the default unless a config sets "
                             "device:), cpu, cuda or cuda:N")


def _check_device(args) -> None:
    """--device and --provider name a device this machine has, before any stage runs."""
    if getattr(args, "device", None) is not None:
        from pointgcn.engine.device import device_name
        device_name(args.device)
    if getattr(args, "provider", None) == "cuda":
        from pointgcn.export.runtime import resolve_provider
        resolve_provider("cuda")


def _stages() -> dict:
    return {name: importlib.import_module(path) for name, path in STAGES.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pointgcn",
        description="Deep graph convolutional networks for 3D point clouds: build kNN graphs, "
                    "train and run DeepGCN / searched models, export to ONNX.",
        epilog="Run `pointgcn <stage> --help` for the options of one stage.")
    parser.add_argument("--version", action="version", version="pointgcn 0.1.0")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name, mod in _stages().items():
        p = sub.add_parser(name, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p, _settings=getattr(mod, "SETTINGS", {}))
    return parser


def flag_names(args) -> dict[str, str]:
    """{library setting: the chosen stage's flag}: each option under its dest, and the
    stage's `SETTINGS` (e.g. the library's `overrides` are `--model-config` here)."""
    from apps.paths import chosen_actions

    flags = {a.dest: max(a.option_strings, key=len)
             for a in chosen_actions(args._parser, args) if a.option_strings}
    flags.update({setting: flags[dest] for setting, dest in args._settings.items()
                  if dest in flags})
    return flags


class _Progress(logging.Handler):
    """The library's progress lines (logging INFO) on stdout, as they are."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            print(record.getMessage(), flush=True)


class _Notes(logging.Handler):
    """The library's warnings (logging) as `note: …` lines on stderr, the CLI's voice."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr)


def _route_library_logs() -> None:
    log = logging.getLogger("pointgcn")
    if not any(isinstance(h, _Notes) for h in log.handlers):
        log.addHandler(_Progress(logging.INFO))
        log.addHandler(_Notes(logging.WARNING))
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: list[str] | None = None) -> int:
    from apps.paths import check_paths
    from pointgcn.io.atomic import unprotect_all

    _route_library_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        unprotect_all()  # only this run's inputs are protected, and only during the run
        check_paths(args._parser, args)
        _check_device(args)
        return int(args._run(args) or 0)
    except InputError as e:
        print(f"error: {e.renamed(flag_names(args))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `pointgcn data info … | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # the environment, not the code: a full disk, a permission, …
        where = f" {e.filename}:" if getattr(e, "filename", None) else ""
        print(f"error:{where} {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        unprotect_all()


if __name__ == "__main__":
    sys.exit(main())
