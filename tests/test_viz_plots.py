"""Result plots: the metrics.jsonl format, non-blank PNGs that change with their data, MAPE and
the Pareto front against independent computations."""
import itertools
import json

import numpy as np
import pytest
from matplotlib.image import imread

from pointgcn.errors import FormatError, InputError
from pointgcn.viz.plots import (mape, pareto_front, plot_class_iou, plot_confusion,
                                plot_latency_fit, plot_pareto, plot_training_curves, read_metrics)


def pixels(path):
    img = imread(str(path))[..., :3]
    assert img.std() > 0.05, f"{path} looks blank"
    return img


def write_run(folder, epochs=4, drift=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for e in range(1, epochs + 1):
        for s in range(3):
            lines.append({"epoch": e, "step": (e - 1) * 3 + s + 1, "split": "train",
                          "loss": 2.0 / (e + s / 3) + drift, "oa": 0.5 + 0.1 * e,
                          "lr": 1e-3 * 0.9 ** e})
        lines.append({"epoch": e, "step": e * 3, "split": "val", "loss": 2.2 / e,
                      "miou": 0.3 + 0.05 * e, "time": 12.5, "note": "text values are ignored"})
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    return lines


def test_read_metrics_parses_and_validates(tmp_path):
    lines = write_run(tmp_path / "run")
    assert read_metrics(tmp_path / "run") == lines
    assert read_metrics(lines) == lines
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"epoch": 1, "split": "train", "loss": 1}\n\n{"epoch": 2, "split": \n')
    with pytest.raises(FormatError, match=r"bad.jsonl:3: not a JSON object"):
        read_metrics(bad)
    with pytest.raises(FormatError, match="string 'split'"):
        read_metrics([{"epoch": 1, "loss": 1.0}])
    with pytest.raises(FormatError, match="neither 'epoch' nor 'step'"):
        read_metrics([{"split": "val", "loss": 1.0}])
    with pytest.raises(InputError, match="no such metrics file"):
        read_metrics(tmp_path / "empty_run_dir_that_does_not_exist")


def test_training_curves_change_with_the_data(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", drift=0.5)
    a = pixels(plot_training_curves(tmp_path / "a", tmp_path / "a.png", size=(900, 600)))
    b = pixels(plot_training_curves(tmp_path / "b", tmp_path / "b.png", size=(900, 600)))
    assert a.shape == (600, 900, 3)
    assert not np.array_equal(a, b)
    with pytest.raises(InputError, match="no numeric metric"):
        plot_training_curves([{"epoch": 1, "split": "train"}], tmp_path / "c.png")


def test_confusion_matrix_shows_row_normalised_values(tmp_path):
    names = ["ceiling", "floor", "wall"]
    m = np.array([[50, 5, 0], [2, 40, 8], [0, 10, 90]])
    scaled_row = m * np.array([[3], [1], [1]])   # same row-normalised matrix
    other = np.array([[10, 40, 5], [2, 40, 8], [0, 10, 90]])
    img = [pixels(plot_confusion(x, names, tmp_path / f"{i}.png", title="t"))
           for i, x in enumerate((m, scaled_row, other))]
    assert np.array_equal(img[0], img[1])
    assert not np.array_equal(img[0], img[2])
    raw = [pixels(plot_confusion(x, names, tmp_path / f"raw{i}.png", normalize=False, title="t"))
           for i, x in enumerate((m, scaled_row))]
    assert not np.array_equal(raw[0], raw[1])
    with pytest.raises(InputError, match="K×K"):
        plot_confusion(np.ones((2, 3)), names, tmp_path / "x.png")


def test_class_iou_bars(tmp_path):
    names = ["a", "b", "c", "d"]
    a = pixels(plot_class_iou([0.9, 0.5, np.nan, 0.2], names, tmp_path / "a.png"))
    b = pixels(plot_class_iou([0.9, 0.5, 0.7, 0.2], names, tmp_path / "b.png"))
    assert not np.array_equal(a, b)
    with pytest.raises(InputError, match="4 IoU values for 3 class names"):
        plot_class_iou([0.1] * 4, names[:3], tmp_path / "c.png")


def test_mape_and_latency_plot(tmp_path):
    assert mape([10, 20, 40], [11, 18, 40]) == pytest.approx((0.1 + 0.1 + 0) / 3 * 100)
    with pytest.raises(InputError, match="positive"):
        mape([0, 1], [1, 1])
    rng = np.random.default_rng(0)
    meas = rng.uniform(5, 50, 40)
    pixels(plot_latency_fit(meas, meas * rng.normal(1, 0.05, 40), tmp_path / "lat.png"))


def test_pareto_front_matches_brute_force(tmp_path):
    rng = np.random.default_rng(4)
    lat, acc = rng.uniform(1, 100, 60), rng.uniform(0.5, 0.95, 60)
    dominated = {i for i, j in itertools.permutations(range(60), 2)
                 if lat[j] <= lat[i] and acc[j] >= acc[i] and (lat[j] < lat[i] or acc[j] > acc[i])}
    front = pareto_front(lat, acc)
    assert set(front.tolist()) == set(range(60)) - dominated
    assert np.all(np.diff(lat[front]) > 0) and np.all(np.diff(acc[front]) > 0)
    a = pixels(plot_pareto(lat, acc, tmp_path / "p.png", names=[f"m{i}" for i in range(60)]))
    acc2 = acc.copy()
    acc2[front[0]] = 0.4  # knocks a model off the front → a different picture
    assert not np.array_equal(a, pixels(plot_pareto(lat, acc2, tmp_path / "q.png",
                                                    names=[f"m{i}" for i in range(60)])))
