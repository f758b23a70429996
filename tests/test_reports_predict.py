"""Per-job pictures and reports, and predict.py on a tiny job's checkpoint."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from cnnsweep.predict import PredictError, load_trained, main, prepare_image
from cnnsweep.reports import class_report
from cnnsweep.train.job import run_job

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


@pytest.mark.parametrize("case", ["balanced", "a class never predicted", "classes missing"])
def test_classification_report_matches_scikit_learn(case: str) -> None:
    """The report is computed here (importing scikit-learn took seconds of every first job):
    the same text, the same numbers, the same confusion matrix as scikit-learn's."""
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(3)
    y_true = torch.randint(0, 10, (500,), generator=gen)
    y_pred = torch.where(
        torch.rand(500, generator=gen) < 0.6, y_true, torch.randint(0, 10, (500,), generator=gen)
    )
    if case == "a class never predicted":
        y_pred[y_pred == 4] = 5
    elif case == "classes missing":
        y_true, y_pred = y_true[:12] % 3, y_pred[:12]
    text, table, matrix = class_report(y_true, y_pred, FASHION)
    kwargs = {"labels": list(range(10)), "target_names": FASHION, "zero_division": 0, "digits": 4}
    t, p = y_true.numpy(), y_pred.numpy()
    assert text == metrics.classification_report(t, p, **kwargs)
    expected = metrics.classification_report(t, p, output_dict=True, **kwargs)
    assert list(table) == list(expected)
    assert table["accuracy"] == pytest.approx(expected["accuracy"])
    for name, row in expected.items():
        if name != "accuracy":
            assert table[name] == pytest.approx(row), name
    assert (matrix == metrics.confusion_matrix(t, p, labels=list(range(10)))).all()


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
    huge = huge_png(tmp_path / "huge.png")
    for args, needle in (
        ([str(tmp_path)], "is a job dir without model.pt"),
        ([str(tiny_job), str(tmp_path / "notes.txt")], "cannot be read as an image"),
        ([str(tiny_job), str(huge)], "huge.png cannot be read as an image"),
    ):
        res = run_cli(args, cwd=tmp_path, script="predict.py")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.startswith("error: ") and needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def huge_png(path: Path, side: int = 40000) -> Path:
    """A small file whose PNG header announces side x side pixels: PIL refuses it as a
    decompression bomb before decoding anything."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    body = (
        chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_oversized_image_is_one_line(tiny_job: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tiny_job), str(huge_png(tmp_path / "huge.png"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "too large" in err and "decompression bomb" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("tone", [20, 235])
def test_transparent_png_keeps_its_object(tiny_job: Path, tmp_path: Path, tone: int) -> None:
    """A dark (or light) band on a transparent page, the page's hidden colour black: dropping the
    alpha channel loses a dark object; compositing keeps either as a light object on black."""
    arr = np.zeros((70, 90, 4), dtype=np.uint8)  # transparent black
    arr[30:38, 13:77] = (tone, tone, tone, 255)
    Image.fromarray(arr, "RGBA").save(tmp_path / "icon.png")
    trained = load_trained(tiny_job)
    x = prepare_image(tmp_path / "icon.png", trained.data)
    pixels = (x * trained.data["std"] + trained.data["mean"])[0]
    assert pixels[0, 0] < 0.1 and pixels[-1, -1] < 0.1  # a dark page, as the dataset's
    band = pixels[12:15, 5:22]  # rows 30-38 of 70 -> padded to 90 -> 28: rows 12-14
    assert band.mean() > 0.6, pixels
    assert (pixels > 0.5).sum() < 120  # the object, not the whole picture


def job_with_relative_root(tiny_job: Path, job_dir: Path) -> Path:
    """A copy of the tiny job's checkpoint as older versions saved it: data.root = "data"."""
    job_dir.mkdir(parents=True)
    ckpt = torch.load(tiny_job / "model.pt", weights_only=True)
    ckpt["data"]["root"] = "data"
    torch.save(ckpt, job_dir / "model.pt")
    return job_dir


@pytest.mark.parametrize(
    "layout", ["outputs/2026-11-22/18-07-43", "multirun/2026-11-22/18-12-29/3"]
)
def test_relative_data_root_is_found_from_the_job_folder(
    tiny_job: Path, tiny_root: Path, tmp_path: Path, monkeypatch, capsys, layout: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(tiny_root / "FashionMNIST", project / "data" / "FashionMNIST")
    job = job_with_relative_root(tiny_job, project / layout)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([str(job), "-n", "4", "--out", str(tmp_path / "out")]) == 0
    assert "/4 correct" in capsys.readouterr().out
    assert list(elsewhere.iterdir()) == []  # nothing copied or downloaded here


def test_data_not_found_names_where_it_looked(
    tiny_job: Path, tiny_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    job = job_with_relative_root(tiny_job, tmp_path / "lonely")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([str(job), "-n", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "data/FashionMNIST" in err and str(job) in err and str(elsewhere) in err
    assert "--data-dir" in err and "nothing was downloaded" in err
    assert list(elsewhere.iterdir()) == []
    out = tmp_path / "out"
    assert main([str(job), "-n", "4", "--data-dir", str(tiny_root), "--out", str(out)]) == 0
    assert (out / "predictions.png").exists()
