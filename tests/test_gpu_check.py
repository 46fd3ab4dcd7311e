"""benchmarks/gpu_check.py: one line and exit 2 without a GPU; every stage runs (toy sizes,
`--smoke`) from the source tree with open3d and trimesh unavailable, as on the GPU machines."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("open3d", "trimesh", "laspy"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["benchmarks/gpu_check.py", *sys.argv[1:]]
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
"""


def _run(*args):
    env = {**os.environ, "PYTHONPATH": "."}
    return subprocess.run([sys.executable, "-c", BLOCKED, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_one_line_and_exit_2():
    out = _run()
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"gpu_check: no CUDA GPU is available to torch {torch.__version__} here; run it on a "
        "machine with one"]


def test_every_stage_runs_at_toy_sizes(tmp_path):
    out = _run("--smoke", "--md", str(tmp_path / "t.md"))
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "t.md").read_text()
    assert "FAILED" not in table
    for stage in ("ResGCN-28 training step", "eager forward", "kNN", "res vs rev",
                  "SGAS search epoch", "latency collect (2 archs)"):
        assert f"| {stage}" in table or stage in table, stage
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert all(line.count(" | ") == 4 for line in rows), rows  # five cells a row
