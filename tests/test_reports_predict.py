"""Per-job pictures and reports, and predict.py on a tiny job's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from cnnsweep.job import run_job
from cnnsweep.predict import PredictError, load_trained, main, prepare_image

PICTURES = ["plot.png", "samples.png", "filters.png", "confusion_matrix.png"]
FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@pytest.mark.parametrize("name", PICTURES)
def test_job_writes_valid_pictures(tiny_job: Path, name: str) -> None:
    with Image.open(tiny_job / name) as img:
        img.verify()
        assert img.format == "PNG" and img.width > 200 and img.height > 150


def test_classification_report_has_every_class(tiny_job: Path) -> None:
    report = json.loads((tiny_job / "classification_report.json").read_text())
    assert [k for k in report if k in FASHION] == FASHION
    assert sum(report[c]["support"] for c in FASHION) == 100  # the tiny test split
    row = json.loads((tiny_job / "results.json").read_text())
    assert report["accuracy"] == pytest.approx(row["test_acc"])
    text = (tiny_job / "classification_report.txt").read_text()
    assert "precision" in text and "Ankle boot" in text


def test_reports_switch_turns_pictures_off(compose_cfg, tmp_path: Path) -> None:
    run_job(compose_cfg(["reports=false"]), output_dir=tmp_path)
    assert (tmp_path / "results.json").exists()
    assert not [p for p in PICTURES if (tmp_path / p).exists()]


def test_predict_random_test_images(tiny_job: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tiny_job), "-n", "6", "--seed", "1", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if "predicted" in line]
    assert len(rows) == 6 and all("true" in r for r in rows)
    assert any(line.endswith("/6 correct") for line in lines)
    with Image.open(tmp_path / "predictions.png") as img:
        assert img.format == "PNG"
    main([str(tiny_job / "model.pt"), "-n", "6", "--seed", "1", "--out", str(tmp_path)])
    assert [r for r in capsys.readouterr().out.splitlines() if "predicted" in r] == rows  # seeded


def band_image(path: Path, k: int, dark_on_light: bool, size: tuple[int, int] = (90, 70)) -> Path:
    """A larger, coloured version of the tiny dataset's class-k picture (a horizontal band)."""
    w, h = size
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    row = int((1 + k * 26 // 10) / 28 * h)
    arr[row : row + max(2, h // 9), int(w * 0.15) : int(w * 0.85)] = (250, 240, 230)
    if dark_on_light:
        arr = 255 - arr
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_prepare_image_looks_like_the_dataset(
    tiny_job: Path, tmp_path: Path, dark_on_light: bool
) -> None:
    trained = load_trained(tiny_job)
    x = prepare_image(band_image(tmp_path / "img.png", 3, dark_on_light), trained.data)
    assert x.shape == (1, 28, 28)
    pixels = x * trained.data["std"] + trained.data["mean"]
    assert pixels[0, 0, 0] < 0.1  # background dark after conversion, whatever the input
    assert pixels.max() > 0.8  # the object light


def test_predict_image_files_prints_top3(tiny_job: Path, tmp_path: Path, capsys) -> None:
    files = [
        str(band_image(tmp_path / "a.png", 2, False)),
        str(band_image(tmp_path / "b.jpg", 7, True)),
    ]
    assert main([str(tiny_job), *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    for line, f in zip(out, files):
        assert line.startswith(f + ": ")
        guesses = line.split(": ", 1)[1].split(", ")
        assert len(guesses) == 3 and all(g.rsplit(" ", 1)[0] in FASHION for g in guesses)
        probs = [float(g.rsplit(" ", 1)[1].rstrip("%")) for g in guesses]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 100.05


def test_not_a_job_dir(tmp_path: Path) -> None:
    with pytest.raises(PredictError, match="is a job dir without model.pt"):
        load_trained(tmp_path)
    with pytest.raises(PredictError, match="no such file"):
        load_trained(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(PredictError, match="junk.pt is not a readable checkpoint"):
        load_trained(tmp_path / "junk.pt")


def test_mismatched_checkpoint(tiny_job: Path, tmp_path: Path) -> None:
    ckpt = torch.load(tiny_job / "model.pt", weights_only=True)
    ckpt["model"]["name"] = "lenet"  # network weights under a lenet config
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(PredictError, match="weights do not fit model 'lenet'"):
        load_trained(tmp_path)


def test_non_image_file(tiny_job: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(PredictError, match="notes.png cannot be read as an image"):
        prepare_image(tmp_path / "notes.png", load_trained(tiny_job).data)


def test_predict_cli_errors_are_one_line(tiny_job: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for args, needle in (
        ([str(tmp_path)], "is a job dir without model.pt"),
        ([str(tiny_job), str(tmp_path / "notes.txt")], "cannot be read as an image"),
    ):
        res = run_cli(args, cwd=tmp_path, script="predict.py")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.startswith("error: ") and needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
