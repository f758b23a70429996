"""Export: a job's kept weights as ONNX and TorchScript, normalisation built in, class names in
the metadata, logits checked against PyTorch on real test images, and predict.py on them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import run_cli

from cnnsweep.exported import read_metadata
from cnnsweep.predict import load_trained, random_test_images

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_job: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the tiny job, exported to both formats by the command a user types."""
    job = tmp_path_factory.mktemp("export") / "job"
    shutil.copytree(tiny_job, job)
    proc = run_cli([str(job)], job.parent, script="export.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return job, proc.stdout


def test_both_formats_are_written_and_checked_against_pytorch(exported) -> None:
    job, out = exported
    lines = out.splitlines()
    assert lines[0].startswith(f"wrote {job / 'model.onnx'} (onnx, opset 18); logits vs PyTorch")
    assert lines[1].startswith(f"wrote {job / 'model.ts'} (torchscript); logits vs PyTorch")
    for line in lines[:2]:
        diff = float(line.split("max abs difference ")[1].split()[0])
        assert diff <= 1e-4 and line.endswith("(ok)")
    assert lines[2] == ("input: float32 NCHW images, pixel values in [0, 1]; normalisation built "
                        "in; output: logits")  # fmt: skip


def test_onnx_takes_raw_pixels_of_any_batch_and_gives_pytorchs_logits(exported) -> None:
    job, _ = exported
    trained = load_trained(job)
    images, _ = random_test_images(trained, 7, seed=3)  # normalised, as predict prepares them
    mean, std = trained.data["mean"], trained.data["std"]
    pixels = (images * torch.tensor(std).reshape(1, -1, 1, 1)
              + torch.tensor(mean).reshape(1, -1, 1, 1)).float()  # fmt: skip
    session = onnxruntime.InferenceSession(str(job / "model.onnx"),
                                           providers=["CPUExecutionProvider"])  # fmt: skip
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("images", "logits")
    logits = session.run(None, {"images": pixels.numpy()})[0]
    assert logits.shape == (7, 10)
    with torch.no_grad():
        expected = trained.model(images).numpy()
    assert np.abs(logits - expected).max() < 1e-4
    model = onnx.load(str(job / "model.onnx"))
    assert model.opset_import[0].version == 18


def test_metadata_reads_back_with_the_class_names(exported) -> None:
    job, _ = exported
    for name in ("model.onnx", "model.ts"):
        meta = read_metadata(job / name)
        assert meta["class_names"] == FASHION and meta["model"]["name"] == "network"
        assert meta["data"]["mean"] == load_trained(job).data["mean"]
        assert meta["input"].startswith("float32 NCHW images, pixel values in [0, 1]")


@pytest.mark.parametrize("name", ["model.onnx", "model.ts"])
def test_predict_runs_on_an_exported_model_as_on_the_job(exported, name: str) -> None:
    job, _ = exported
    args = ["-n", "8", "--seed", "2", "--out", str(job / f"pred_{name}")]
    from_job = run_cli([str(job), *args], job, script="predict.py")
    from_file = run_cli([str(job / name), *args], job, script="predict.py")
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    picked = [line for line in from_file.stdout.splitlines() if "predicted" in line]
    assert len(picked) == 8
    assert picked == [line for line in from_job.stdout.splitlines() if "predicted" in line]
    assert (job / f"pred_{name}" / "predictions.png").is_file()


def test_a_file_that_is_not_an_export_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_text("not a model")
    proc = run_cli([str(tmp_path / "model.onnx")], tmp_path, script="predict.py")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"error: {tmp_path / 'model.onnx'} is not a model exported by export.py")
    missing = run_cli([str(tmp_path / "none")], tmp_path, script="export.py")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"error: {tmp_path / 'none'} is no such file; give a job dir (holding model.pt) or a "
        "checkpoint"
    )
