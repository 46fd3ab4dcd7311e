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
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: pointgcn") and msg in err[0], err
