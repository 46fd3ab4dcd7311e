"""The CLI lists every stage and each stage's --help works."""
import pytest

from apps.cli import STAGES, build_parser, main


def test_top_level_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STAGES)


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_help(stage, capsys):
    with pytest.raises(SystemExit) as e:
        main([stage, "--help"])
    assert e.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 3


@pytest.mark.parametrize("argv,msg", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["segment"], "the following arguments are required"),
    (["segment", "a.ply", "--out", "b.ply", "--threads", "0"], "--threads: must be ≥ 1, got 0"),
    (["train", "c.yaml", "--threads", "-3"], "--threads: must be ≥ 1, got -3"),
    (["export", "m.pt", "--threads", "two"], "expected a whole number ≥ 1, got 'two'"),
    (["data", "synth", "rooms", "--n", "x"], "pointgcn data synth: argument --n"),
    (["train", "c.yaml", "--seed", "-1"], "--seed: must be ≥ 0, got -1"),
    (["classify", "a.ply", "--seed", "1.5"], "--seed: expected a whole number ≥ 0"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: pointgcn") and msg in err[0], err


def test_every_seed_is_a_whole_number_at_least_0():
    """Seeds feed numpy's generators, which refuse negatives with a traceback: every stage's
    --seed takes the one argparse type that says so in one line."""
    import argparse

    def walk(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)
            elif action.dest == "seed":
                yield action

    seeds = list(walk(build_parser()))
    assert len(seeds) >= 9  # data synth/prepare, train, search, segment, classify, adapt, …
    for action in seeds:
        assert action.type("0") == 0 and action.type("7") == 7
        with pytest.raises(argparse.ArgumentTypeError):
            action.type("-1")
