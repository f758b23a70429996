"""Every completed row says what its kept model costs at inference: ms per image at batch 1,
images per second at batch 256, on the job's device and threads; latency=false leaves it out."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cnnsweep.models import build_model
from cnnsweep.train.latency import inference_speed


def test_inference_speed_times_batch_1_and_256_in_eval_mode() -> None:
    model = build_model("network", num_classes=10, in_channels=1).train()
    speed = inference_speed(model, (1, 28, 28), torch.device("cpu"))
    assert not model.training  # BatchNorm and dropout as at inference
    assert speed["latency_batch"] == 1 and speed["throughput_batch"] == 256
    assert 0 < speed["latency_ms"] < 1000 and speed["throughput_ips"] > 1
    # a batch of 256 costs more than one image, and less than 256 separate calls would
    assert speed["throughput_ips"] > 1000 / speed["latency_ms"] / 4


def test_a_completed_row_carries_the_inference_columns(tiny_job: Path) -> None:
    row = json.loads((tiny_job / "results.json").read_text())
    assert row["status"] == "completed"
    assert row["latency_ms"] > 0 and row["throughput_ips"] > 0
    assert (row["latency_batch"], row["throughput_batch"]) == (1, 256)
    assert row["device"] == "cpu" and row["threads"] >= 1


def test_latency_false_leaves_the_columns_empty(compose_cfg, tmp_path: Path) -> None:
    from cnnsweep.train.job import run_job

    run_job(compose_cfg(["latency=false", "reports=false"]), output_dir=tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and row["latency_ms"] is None
    assert row["throughput_ips"] is None
