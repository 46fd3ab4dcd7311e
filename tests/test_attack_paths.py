"""Attack corpus, outputs: no stage replaces a file it reads or a file of another kind, leaves
partial files, stale temps or empty folders behind, or ends in a traceback (issue 11)."""
import argparse
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model, tiny_room_checkpoint, tree_bytes

from apps.cli import build_parser, main
from apps.paths import Input, Output, OutputFolder
from pointgcn.errors import InputError
from pointgcn.io import PointCloud, write_ply
from pointgcn.io.atomic import atomic_path, clean_stale, protect, unprotect_all
from pointgcn.models import build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seg_weights(tmp_path_factory):
    return tiny_room_checkpoint(tmp_path_factory.mktemp("w") / "seg.pt", 128, 0.5)


def refused(argv, capsys, message: str) -> None:
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], (argv, err)


def test_every_stage_declares_its_file_arguments():
    """The central check (apps/paths.py) only sees arguments typed Input/Output/OutputFolder:
    a stage adding a path argument without one would bypass it."""
    fileish = {"input", "path", "out", "png", "json", "md", "csv", "config", "checkpoint",
               "ckpt", "weights", "onnx", "models", "data", "src", "resume", "latreg",
               "genotype", "manifest", "candidates", "check_data", "compare"}

    def walk(parser, where):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{where} {name}")
            elif action.nargs != 0 and (action.dest in fileish or action.type is Path):
                yield where, action

    undeclared = [f"{where} {action.dest}" for where, action in walk(build_parser(), "pointgcn")
                  if not isinstance(action.type, (Input, Output, OutputFolder))]
    assert undeclared == []


def test_outputs_never_replace_inputs_or_other_kinds(seg_weights, tmp_path, capsys):
    lat = tmp_path / "lat.jsonl"
    lat.write_text('{"encoding": [0]}\n' * 3)
    ply = tmp_path / "in.ply"
    write_ply(ply, PointCloud(np.random.default_rng(0).random((50, 3)).astype(np.float32)))
    (tmp_path / "notes.ply").write_text("my notes, not a cloud\n")
    (tmp_path / "m.json").write_text('{"rows": 1}\n')
    (tmp_path / "cfg.yaml").write_text("data: {}\n")
    os.link(ply, tmp_path / "hard.ply")
    os.symlink(ply, tmp_path / "soft.ply")
    (tmp_path / "folder.png").mkdir()
    before = tree_bytes(tmp_path)
    seg = ["segment", ply, "--weights", seg_weights]
    cases = [
        (["latency", "fit", lat, "--out", lat], "must name a .pt file"),
        (["latency", "fit", lat, "--out", tmp_path / "r.pt", "--json", lat], "must name a .json"),
        (["latency", "fit", lat, "--out", tmp_path / "r.pt", "--png", lat], "must name a .png"),
        (["latency", "fit", tmp_path / "m.json", "--out", tmp_path / "m.pt"], "is also"),
        (["latency", "fit", lat, "--out", tmp_path / "r.pt", "--json", tmp_path / "cfg.yaml"],
         "must name a .json"),
        (["latency", "collect", "--out", tmp_path / "folder.png", "--n", "1"], ".jsonl"),
        (seg + ["--out", tmp_path / "notes.ply"], "is not a .ply file of ours"),
        (seg + ["--out", tmp_path / "hard.ply"], "is also"),
        (seg + ["--out", tmp_path / "soft.ply"], "is also"),
        (seg + ["--out", tmp_path / "o.ply", "--png", tmp_path / "folder.png"], "it is a folder"),
        (seg + ["--out", tmp_path / "o.ply", "--png", tmp_path / "o.ply"], "is also"),
        (["eval", tmp_path / "cfg.yaml", "--ckpt", seg_weights, "--json", seg_weights],
         "must name a .json"),
        (["bench", seg_weights, "--json", tmp_path / "cfg.yaml"], "must name a .json"),
        (["export", seg_weights, "--out", ply], "must name a .onnx"),
        (["train", tmp_path / "cfg.yaml", "--out", tmp_path / "cfg.yaml"], "is also"),
        (["data", "synth", "rooms", "--out", tmp_path / "notes.ply"], "is not a folder"),
        (["viz", ply, "--png", tmp_path / "soft.ply"], "must name a .png"),
    ]
    for argv, message in cases:
        refused(argv, capsys, message)
    assert tree_bytes(tmp_path) == before


def test_derived_outputs_are_checked_too(seg_weights, tmp_path, capsys):
    """export writes <out>.parity.json; a file of another kind there stops it before work."""
    (tmp_path / "m.parity.json").write_bytes(b"\x00\x01binary")
    before = tree_bytes(tmp_path)
    refused(["export", seg_weights, "--out", tmp_path / "m.onnx", "--no-parity"], capsys,
            "the parity report")
    assert tree_bytes(tmp_path) == before


def _shipped_copy(tmp_path, monkeypatch) -> Path:
    """The shipped room model, its card and the manifest, copied: the repository's own weights
    are never at risk in these tests."""
    import shutil

    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("manifest.json", "synth-rooms.pt", "synth-rooms.md"):
        shutil.copy(REPO / "weights" / name, folder / name)
    monkeypatch.setenv("POINTGCN_WEIGHTS", str(folder))
    return folder


def _labelled_cloud() -> PointCloud:
    """A cloud adapt would train on (coloured, two classes labelled): without the checks
    the stage would run and write."""
    rng = np.random.default_rng(0)
    return PointCloud(rng.random((60, 3)).astype(np.float32),
                      rng.random((60, 3)).astype(np.float32), labels=np.arange(60) % 2)


def test_shipped_weights_are_inputs_of_every_stage(tmp_path, monkeypatch, capsys):
    """A shipped model named (or used as the default, or not used at all) is read from its
    checkpoint, card and the manifest: no stage may write them."""
    shipped = _shipped_copy(tmp_path, monkeypatch)
    ply = tmp_path / "in.ply"
    write_ply(ply, _labelled_cloud())
    lat = tmp_path / "lat.jsonl"
    lat.write_text('{"encoding": [0]}\n' * 3)
    before = tree_bytes(tmp_path)
    adapt = ["adapt", "--labels", ply, "--no-progress"]
    refused(adapt + ["--weights", "synth-rooms", "--out", shipped / "synth-rooms.pt"], capsys,
            "is shipped model synth-rooms's checkpoint")
    refused(adapt + ["--out", shipped / "synth-rooms.pt"], capsys,  # the default model
            "is shipped model synth-rooms's checkpoint")
    refused(["bench", "synth-rooms", "--json", shipped / "manifest.json"], capsys,
            "is the shipped weights' manifest")
    refused(["bench", "synth-rooms", "--md", shipped / "synth-rooms.md"], capsys,
            "is shipped model synth-rooms's model card")
    refused(["latency", "fit", lat, "--out", shipped / "synth-rooms.pt"], capsys,
            "is shipped model synth-rooms's checkpoint")
    assert tree_bytes(tmp_path) == before


def test_companion_outputs_are_checked_with_their_output(tmp_path, monkeypatch, capsys):
    """adapt writes OUT.md beside OUT.pt: a card that would replace one of its inputs (here
    --classes) or a shipped card is refused before any work."""
    shipped = _shipped_copy(tmp_path, monkeypatch)
    ply = tmp_path / "in.ply"
    write_ply(ply, _labelled_cloud())
    (tmp_path / "mine.md").write_text("a\nb\n")
    (tmp_path / "notes.md").write_bytes(b"\x00\x01 not text")
    before = tree_bytes(tmp_path)
    adapt = ["adapt", "--weights", "synth-rooms", "--labels", ply, "--no-progress"]
    refused(adapt + ["--classes", tmp_path / "mine.md", "--out", tmp_path / "mine.pt"], capsys,
            "the model card")
    refused(adapt + ["--out", tmp_path / "notes.pt"], capsys, "the model card")
    os.symlink(shipped / "synth-rooms.md", tmp_path / "linked.md")
    refused(adapt + ["--out", tmp_path / "linked.pt"], capsys, "shipped model synth-rooms")
    os.remove(tmp_path / "linked.md")
    assert tree_bytes(tmp_path) == before


def test_atomic_path_refuses_a_protected_input(tmp_path):
    src = tmp_path / "in.json"
    src.write_text("{}")
    protect(src)
    try:
        with pytest.raises(InputError, match="is an input of this run"):
            with atomic_path(tmp_path / "sub" / ".." / "in.json") as tmp:
                tmp.write_text("replaced")
    finally:
        unprotect_all()
    assert src.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json"]


def test_failed_write_leaves_no_folders_and_errors_name_the_users_path(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a" / "b" / "c.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
    real_open = os.open

    def denied(path, *a, **k):
        if ".tmp" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(InputError) as e:
        with atomic_path(tmp_path / "d" / "out.txt") as tmp:
            tmp.write_text("x")
    assert str(e.value) == f"cannot write {tmp_path / 'd' / 'out.txt'}: Permission denied"
    assert list(tmp_path.iterdir()) == []


def test_failed_segment_creates_no_output_folder(seg_weights, tmp_path, capsys):
    cls_cfg = {"model": tiny_model(in_channels=3, n_classes=5, task="classification")}
    save_checkpoint(tmp_path / "cls.pt", build_model(cls_cfg).eval(), cls_cfg)
    ply = tmp_path / "in.ply"
    write_ply(ply, PointCloud(np.random.default_rng(0).random((50, 3)).astype(np.float32)))
    refused(["segment", ply, "--weights", tmp_path / "cls.pt", "--out",
             tmp_path / "new" / "dir" / "o.ply"], capsys, "classification model")
    assert not (tmp_path / "new").exists()


KILLED_WRITER = """
import sys, time
from pointgcn.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(60)
"""


def test_kill_during_write_keeps_the_old_file_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old checkpoint")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert target.read_bytes() == b"old checkpoint" and len(leftovers) == 1
    assert leftovers[0].startswith(".last.pgcn-") and leftovers[0].endswith(".tmp.pt")
    live = tmp_path / f".last.pgcn-{leftovers[0].split('-')[1]}-{os.getpid()}-0000abcd.tmp.pt"
    live.write_bytes(b"a live writer's temp")  # this process is alive: never touched
    foreign = tmp_path / ".last.user-notes.tmp.pt"
    foreign.write_bytes(b"not ours")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new checkpoint")
    assert target.read_bytes() == b"new checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.pt", live.name,
                                                                 foreign.name])
    assert clean_stale(tmp_path, ".last.") == []


def test_stale_partial_folder_of_a_killed_prepare_is_removed(tmp_path):
    from pointgcn.io.atomic import _HOST, atomic_folder

    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    stale = tmp_path / f".out.partial-pgcn-{_HOST}-{dead}-0badf00d"
    (stale / "Area_1").mkdir(parents=True)
    with atomic_folder(tmp_path / "out") as stage:
        (stage / "done.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unreadable_inputs_are_one_line_errors(seg_weights, tmp_path, capsys):
    fifo = tmp_path / "pipe.ply"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.ply"
    os.symlink(loop, loop)
    device = tmp_path / "random.ply"
    os.symlink("/dev/urandom", device)
    seg = ["--weights", seg_weights, "--out", tmp_path / "o.ply"]
    refused(["segment", fifo] + seg, capsys, "not a regular file")
    refused(["segment", device] + seg, capsys, "not a regular file")
    refused(["segment", loop] + seg, capsys, "broken or looping link")
    refused(["data", "info", loop], capsys, "")
    ply = tmp_path / "in.ply"
    write_ply(ply, PointCloud(np.random.default_rng(0).random((50, 3)).astype(np.float32)))
    refused(["segment", ply, "--weights", seg_weights, "--out", loop], capsys,
            "broken or looping link")
    assert not (tmp_path / "o.ply").exists()


def test_broken_pipe_is_quiet(monkeypatch, capsys):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return sys.__stdout__.fileno()

    saved = os.dup(1)
    try:
        monkeypatch.setattr(sys, "stdout", ClosedPipe())
        assert main(["info"]) == 141
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o755])
def test_atomic_replace_keeps_the_file_mode(tmp_path, mode):
    """Re-running a stage over its earlier output keeps that file's permissions (e.g. a
    group-shared 0640 result); a new file gets the umask's mode, like `open`."""
    target = tmp_path / "pred.ply"
    target.write_bytes(b"old")
    os.chmod(target, mode)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(os.stat(target).st_mode) == mode
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(tmp_path / "fresh.ply") as tmp:
        tmp.write_bytes(b"new")
    assert stat.S_IMODE(os.stat(tmp_path / "fresh.ply").st_mode) == 0o666 & ~umask
