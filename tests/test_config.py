"""Config composition: every group option composes, resolves and builds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from conftest import CONF, run_cli

from cnnsweep.models import build_model, model_spec
from cnnsweep.train.job import build_optimizer, hyperparameters, validate

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml"))


def test_groups_have_the_documented_options() -> None:
    assert MODELS == ["bn_cnn", "cnn", "lenet", "network", "resnet"]
    assert DATA == ["cifar10", "csv", "fashion_mnist", "image_folder", "kmnist", "mnist"]
    assert OPTIMIZERS == ["adam", "adamw", "sgd"]


@pytest.mark.parametrize("model,data,optimizer", itertools.product(MODELS, DATA, OPTIMIZERS))
def test_every_combination_composes_and_builds(compose_cfg, model, data, optimizer) -> None:
    extra = {
        "csv": ["data.train_csv=train.csv", "data.test_csv=test.csv"],
        # an image folder's classes come from its folders; here they are given, as predict does
        "image_folder": ["data.train_dir=photos", "data.class_names=[a,b,c]", "data.num_classes=3"],
    }.get(data, [])
    cfg = compose_cfg(
        [f"model={model}", f"data={data}", f"optimizer={optimizer}", "lr=0.05", *extra]
    )
    validate(cfg)
    hp = hyperparameters(cfg)
    assert (hp["model"], hp["data"], hp["optimizer"], hp["lr"]) == (model, data, optimizer, 0.05)
    assert len(cfg.data.class_names) == cfg.data.num_classes == cfg.model.num_classes
    net = build_model(**model_spec(cfg.model))
    opt = build_optimizer(cfg.optimizer, net)
    assert opt.param_groups[0]["lr"] == 0.05
    assert type(opt).__name__.lower() == optimizer


def test_top_level_knobs_reach_the_groups(compose_cfg) -> None:
    cfg = compose_cfg(["lr=0.001", "batch_size=1000", "shuffle=false", "optimizer=sgd"])
    assert (cfg.batch_size, cfg.shuffle, cfg.optimizer.lr) == (1000, False, 0.001)
    assert cfg.optimizer.momentum == 0.9


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    res = run_cli(["--cfg", "job", "model=lenet", "lr=0.01"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "name: lenet" in res.stdout and "lr: 0.01" in res.stdout
    assert "class_names:" in res.stdout
    assert not (tmp_path / "outputs").exists()  # printing a config trains nothing


def test_unknown_group_option_lists_the_available_ones(tmp_path: Path) -> None:
    res = run_cli(["model=vgg"], cwd=tmp_path)
    assert res.returncode != 0
    assert "Could not find 'model/vgg'" in res.stderr
    for option in MODELS:
        assert option in res.stderr


def test_optimizer_targets_are_limited_to_torch_optim(compose_cfg) -> None:
    cfg = compose_cfg(["optimizer._target_=os.system"])
    with pytest.raises(Exception, match="os.system"):
        build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
