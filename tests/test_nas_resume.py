"""Search runs are reproducible: same seed → bit-identical α and genotype at 2 threads, and
`search --resume` continues a stopped search to exactly the result of an uninterrupted one."""
import json

import pytest
import torch
import yaml

from apps.cli import main

from test_nas_search import MODEL, SEARCH, _config, shapes  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _search(cfg, out, *extra):
    assert main(["search", str(cfg), "--method", "sgas", "--out", str(out), "--no-progress",
                 *extra]) == 0
    log = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    return yaml.safe_load((out / "genotype.yaml").read_text()), log


def test_same_seed_same_alphas_and_genotype_at_two_threads(shapes, tmp_path, capsys):
    # 3 clouds a batch: two threads split one cloud's gathered rows between them, the case
    # where the gathers' gradients once took a different order (and rounding) every run
    cfg = _config(tmp_path / "c.yaml", shapes, model={**MODEL, "channels": 48, "k": 8},
                  search={**SEARCH, "batch_size": 3, "batch_increase": 0, "max_batches": 3})
    first, log1 = _search(cfg, tmp_path / "a", "--threads", "2")
    second, log2 = _search(cfg, tmp_path / "b", "--threads", "2")
    assert first == second
    assert [r["alpha"] for r in log1] == [r["alpha"] for r in log2]  # bit for bit (repr)
