"""The training recipe: augmentation, schedules, EMA, TTA, early stopping, the new models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from cnnsweep.data.load import load_data
from cnnsweep.data.types import Split
from cnnsweep.models import (
    build_model,
    count_params,
    first_convs,
    forward_flops,
    min_image_size,
)
from cnnsweep.predict import load_trained
from cnnsweep.train.augment import build_augment, erase, hflip, shift
from cnnsweep.train.job import ConfigError, run_job, validate
from cnnsweep.train.loop import Recipe, evaluate, train_one_epoch, tta_views
from cnnsweep.train.monitor import Monitor
from cnnsweep.train.schedule import build_scheduler
from cnnsweep.train.whitening import whiten_first_conv, whitening_filters

QUIET = ["reports=false", "tensorboard.graph=false", "tensorboard.histograms=false"]
FILL = torch.tensor([-1.0])


def dot_image(row: int, col: int, size: int = 8) -> torch.Tensor:
    """One channel of background (-1) with a single bright pixel."""
    image = torch.full((1, 1, size, size), -1.0)
    image[0, 0, row, col] = 5.0
    return image


def where(image: torch.Tensor) -> tuple[int, int]:
    flat = int(image[0, 0].argmax())
    return flat // image.shape[-1], flat % image.shape[-1]


def test_flip_mirrors_and_shift_moves_within_range_padding_with_background() -> None:
    g = torch.Generator().manual_seed(0)
    assert where(hflip(dot_image(2, 1), 1.0, g)[0:1]) == (2, 6)
    assert torch.equal(hflip(dot_image(2, 1), 0.0, g), dot_image(2, 1))
    moves = set()
    for _ in range(200):
        out = shift(dot_image(4, 4), 2, FILL, g)
        r, c = where(out)
        moves.add((r - 4, c - 4))
        assert out.shape == (1, 1, 8, 8) and (out == -1.0).sum() == 63  # background shifted in
    assert moves == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    # a pixel at the border moved out: the image is all background
    edge = [shift(dot_image(0, 0), 2, FILL, g) for _ in range(100)]
    assert any(bool((e == -1.0).all()) for e in edge)


def test_erase_fills_a_square_of_background() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(50, 3, 16, 16)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = erase(images, 1.0, 4, fill, g)
    for image in out:
        erased = image[0] == -1.0
        assert 1 <= int(erased.sum()) <= 16  # 4x4, fewer where clipped at a border
        for ch, value in enumerate((-1.0, -2.0, -3.0)):  # per channel, the same square
            assert torch.equal(image[ch] == value, erased)
    assert torch.equal(erase(images, 0.0, 4, fill, g), images)


@pytest.mark.parametrize("name", ["shift_flip", "shift_flip_erase"])
def test_augment_keeps_shape_dtype_device_order_and_is_seeded(name: str) -> None:
    cfg = OmegaConf.create({"name": name, "shift": 2, "flip": 0.5, "erase": 0.5, "erase_size": 4})
    augment = build_augment(cfg, torch.tensor([0.0, 0.0]))
    images = torch.randn(64, 2, 12, 12)
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert a.shape == images.shape and a.dtype == images.dtype and a.device == images.device
    assert torch.equal(a, b) and not torch.equal(a, augment(images, torch.Generator()))
    # each output comes from the image at the same index (labels stay aligned)
    signature = images.abs().sum((1, 2, 3))
    assert (a.abs().sum((1, 2, 3)) <= signature + 1e-4).all()
    assert build_augment(OmegaConf.create({"name": "none"}), torch.zeros(1)) is None


def test_training_batches_are_augmented_evaluation_batches_never() -> None:
    from cnnsweep.train.ema import EMA  # noqa: F401  (the state's optional parts)
    from cnnsweep.train.state import TrainState

    calls = []

    def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(len(images))
        return images

    model = build_model("cnn", width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = build_scheduler(OmegaConf.create({"name": "constant"}), opt, 1, 3)
    state = TrainState(model, opt, sched, Monitor(), torch.Generator(), torch.Generator())
    split = Split(torch.randn(30, 1, 28, 28), torch.randint(0, 10, (30,)))
    train_one_epoch(state, split, Recipe(batch_size=10, augment=augment), progress=False)
    assert calls == [10, 10, 10]
    evaluate(model, split)
    assert calls == [10, 10, 10]


def lrs(name: str, epochs: int = 4, steps: int = 10, **params) -> list[float]:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = build_scheduler(OmegaConf.create({"name": name, **params}), opt, epochs, steps)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_follow_their_curves() -> None:
    assert set(lrs("constant")) == {0.1}
    one = lrs("onecycle", pct_start=0.25, div_factor=25.0, final_div_factor=1000.0)
    assert one[0] == pytest.approx(0.1 / 25) and max(one) == pytest.approx(0.1)
    assert one.index(max(one)) == 10 and one[-1] < 0.1 / 100  # peak at 25% of 40 steps
    assert all(a <= b for a, b in zip(one[:10], one[1:11]))
    assert all(a >= b for a, b in zip(one[10:], one[11:]))
    cos = lrs("cosine", warmup_epochs=1.0, min_lr_factor=0.0)
    assert cos[0] == pytest.approx(0.01) and cos[9] == pytest.approx(0.1)
    assert cos[-1] < 0.001 and cos[25] < cos[15]
    step = lrs("step", step_size=2, gamma=0.1)
    assert step[:20] == [0.1] * 20 and step[20:] == pytest.approx([0.01] * 20)


def test_a_short_job_logs_its_learning_rate_per_epoch(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["scheduler=onecycle", "epochs=4", *QUIET])
    run_job(cfg, output_dir=tmp_path)
    rows = json.loads((tmp_path / "epochs.json").read_text())
    lr = [r["lr_now"] for r in rows]
    assert lr[0] > lr[-1] and max(lr) <= 0.001 and lr[-1] < 0.001 / 100


def test_monitor_stops_after_patience_epochs_without_improvement() -> None:
    monitor = Monitor("val_acc", patience=2)
    script = [0.5, 0.6, 0.6, 0.55, 0.7, 0.69, 0.68]
    stopped = None
    for epoch, value in enumerate(script, 1):
        monitor.update(epoch, value)
        if monitor.should_stop:
            stopped = epoch
            break
    assert stopped == 4 and monitor.best_epoch == 2  # ties keep the earlier epoch
    loss = Monitor("val_loss")
    for epoch, value in enumerate([1.0, 0.5, 0.7], 1):
        loss.update(epoch, value)
    assert loss.best_epoch == 2 and not loss.should_stop  # no patience: never stops


def test_early_stopping_ends_the_job_and_the_row_says_when(
    compose_cfg, tmp_path: Path, monkeypatch
) -> None:
    import cnnsweep.train.job as job

    script = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    real = job.evaluate_epoch

    def scripted(*args, **kwargs):
        return real(*args, **kwargs) | {"val_accuracy": next(script)}

    monkeypatch.setattr(job, "evaluate_epoch", scripted)
    run_job(compose_cfg(["epochs=6", "early_stopping.patience=2", *QUIET]), tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and row["stopped_early_at"] == 4
    assert row["epochs_run"] == 4 and row["best_epoch"] == 2 and row["val_acc"] == 0.6


def test_ema_weights_differ_from_the_raw_ones_and_are_saved(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["ema=on", "ema.decay=0.9", "keep_best=false", "checkpoint.keep=true",
                       "epochs=2", *QUIET])  # fmt: skip
    run_job(cfg, output_dir=tmp_path)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    raw, ema = last["model"], last["ema"]["model"]
    name = "features.0.weight"
    assert not torch.equal(raw[name], ema[name])
    assert all(torch.equal(saved[k], ema[k]) for k in saved)


def test_tta_changes_the_test_logits_and_not_the_training(compose_cfg, tmp_path: Path) -> None:
    rows = {}
    for tta in (False, True):
        run_job(compose_cfg([f"tta={tta}", *QUIET]), output_dir=tmp_path / str(tta))
        rows[tta] = json.loads((tmp_path / str(tta) / "results.json").read_text())
    for key in ("train_loss", "val_loss", "val_acc"):
        assert rows[False][key] == rows[True][key]
    assert rows[False]["test_loss"] != rows[True]["test_loss"]
    assert rows[True]["tta"] is True and rows[False]["tta"] is False


def test_shifted_tta_views_move_each_image_one_way_and_average(compose_cfg, tmp_path) -> None:
    batch = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    views = tta_views(batch, flip=True, shift=1)
    assert len(views) == 6 and views[1].equal(batch.flip(3))
    assert all(v.shape == batch.shape for v in views)
    assert views[2][0, 0, 1:, 1:].equal(batch[0, 0, :3, :3])  # moved down and right
    assert views[3][0, 0, :3, :3].equal(batch[0, 0, 1:, 1:])  # moved up and left
    assert views[4][0, 0, 1:, 1:].equal(batch.flip(3)[0, 0, :3, :3])  # the mirror image, moved
    assert views[2][0, 0, 0, 1:].equal(batch[0, 0, 0, :3])  # the border row repeated
    assert len(tta_views(batch, flip=False, shift=0)) == 1
    rows = {}
    for px in (0, 1):
        run_job(compose_cfg(["tta=true", f"tta_shift={px}", *QUIET]), tmp_path / str(px))
        rows[px] = json.loads((tmp_path / str(px) / "results.json").read_text())
    assert rows[0]["val_loss"] == rows[1]["val_loss"] and rows[1]["tta_shift"] == 1
    assert rows[0]["test_loss"] != rows[1]["test_loss"]


def test_first_depth_sets_the_first_stage_apart() -> None:
    lean = build_model("cnn", width=8, depth=2, first_depth=1)
    convs = [m for m in lean.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16, 32, 32]
    assert forward_flops(lean, 1, 28) < forward_flops(build_model("cnn", width=8, depth=2), 1, 28)
    assert lean(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_pool_before_bn_normalises_the_pooled_maps(compose_cfg, tmp_path: Path) -> None:
    """Each stage ends conv -> pool -> BN -> ReLU: the same parameters, BatchNorm on maps a
    quarter the size, a model that rebuilds from its checkpoint; off, the order is as before."""
    torch.manual_seed(0)
    plain = build_model("cnn", width=8, depth=2, first_depth=1)
    torch.manual_seed(0)
    pooled = build_model("cnn", width=8, depth=2, first_depth=1, pool_before_bn=True)
    first_stage = {m: " ".join(type(x).__name__ for x in m.features[:4]) for m in (plain, pooled)}
    assert first_stage[pooled] == "Conv2d MaxPool2d BatchNorm2d ReLU"
    assert first_stage[plain] == "Conv2d BatchNorm2d MaxPool2d ReLU"
    assert count_params(pooled) == count_params(plain)
    x = torch.randn(4, 1, 28, 28)
    assert pooled(x).shape == (4, 10) and not torch.allclose(pooled(x), plain(x))
    cfg = compose_cfg(["model=cnn", "model.width=8", "model.pool_before_bn=true", *QUIET])
    run_job(cfg, output_dir=tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and row["pool_before_bn"] is True
    trained = load_trained(tmp_path)
    assert isinstance(trained.model.features[1], torch.nn.MaxPool2d)


def test_whitened_first_conv_decorrelates_patches_and_never_trains(
    compose_cfg, tmp_path: Path
) -> None:
    """The first conv's first filters map the images' patches to unit-variance, uncorrelated
    values, the rest are their negatives; a job keeps them as they were and stores them."""
    torch.manual_seed(0)
    images = torch.randn(200, 1, 12, 12).cumsum(-1)  # neighbouring pixels strongly correlated
    conv = torch.nn.Conv2d(1, 24, 3, padding=1, bias=False)
    filters = whitening_filters(images, conv)
    assert filters.shape == (24, 1, 3, 3)
    torch.testing.assert_close(filters[9:18], -filters[:9])
    torch.testing.assert_close(filters[18:], filters[:6])
    out = torch.nn.functional.conv2d(images, filters[:9], padding=1)
    cov = torch.cov(out.transpose(0, 1).reshape(9, -1))
    torch.testing.assert_close(cov, torch.diag(cov.diagonal()), atol=0.02, rtol=0)
    assert 0.9 < cov.diagonal().min() and cov.diagonal().max() < 1.02

    cfg = compose_cfg(["model=cnn", "model.width=8", "model.first_conv=whitened", *QUIET])
    run_job(cfg, output_dir=tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and row["first_conv"] == "whitened"
    fresh = build_model("cnn", width=8)
    whiten_first_conv(fresh, load_data(cfg.data, cfg.seed).train.images)
    stored = load_trained(tmp_path).model.features[0].weight  # after 3 epochs of training
    torch.testing.assert_close(stored, fresh.features[0].weight)
    convs = first_convs(fresh)
    assert not convs[0].weight.requires_grad and convs[1].weight.requires_grad


@pytest.mark.parametrize("name", ["cnn", "resnet"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_new_models_build_for_both_shapes(name: str, channels: int, size: int) -> None:
    model = build_model(name, in_channels=channels, num_classes=7, image_size=size)
    assert model(torch.randn(4, channels, size, size)).shape == (4, 7)
    assert forward_flops(model, channels, size) > 1_000_000


def test_parameter_counts_and_knobs() -> None:
    # 3x3 convs 1->32->64->128 (no bias) + BatchNorm + a 128->10 head
    expected = 9 * (32 + 32 * 64 + 64 * 128) + 2 * (32 + 64 + 128) + 128 * 10 + 10
    assert count_params(build_model("cnn")) == expected
    deeper = build_model("cnn", width=48, depth=2)
    assert count_params(deeper) > 2 * count_params(build_model("cnn", width=48))
    assert 260_000 < count_params(build_model("resnet")) < 280_000  # ResNet-20
    assert min_image_size({"name": "cnn", "stages": 3}) == 8
    with pytest.raises(ValueError, match="resnet depth=21 is not allowed"):
        build_model("resnet", depth=21)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_checkpoints_of_new_models_round_trip_through_predict(
    compose_cfg, tmp_path: Path, name: str
) -> None:
    cfg = compose_cfg([f"model={name}", "model.width=8", *QUIET])
    run_job(cfg, output_dir=tmp_path)
    trained = load_trained(tmp_path)
    assert type(trained.model).__name__.lower() == name
    x = torch.randn(3, 1, 28, 28)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    twin = build_model(**state["model"])
    twin.load_state_dict(state["state_dict"])
    torch.testing.assert_close(trained.model(x), twin.eval()(x))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["label_smoothing=-0.1"], "label_smoothing=-0.1 is not allowed"),
        (["label_smoothing=1.0"], "label_smoothing=1.0 is not allowed"),
        (["ema=on", "ema.decay=1.5"], "ema.decay=1.5 is not allowed"),
        (["ema=on", "ema.decay=0"], "ema.decay=0 is not allowed"),
        (["augment.name=rotate"], "augment.name='rotate' is not allowed"),
        (["scheduler.name=poly"], "scheduler.name='poly' is not allowed"),
        (["model=cnn", "model.width=0"], "model.width=0 is not allowed"),
        (["model=cnn", "model.dropout=1.0"], "model.dropout=1.0 is not allowed"),
        (["early_stopping.patience=0"], "early_stopping.patience=0 is not allowed"),
        (["monitor=test_acc"], "monitor='test_acc' is not allowed"),
        (["model=resnet", "model.depth=21"], "resnet depth=21 is not allowed"),
        (["model=cnn", "model.stages=4", "data.image_size=12"],
         "data.image_size=12 is too small for model 'cnn': it takes images of at least 16x16"),
        (["precision=fp8"], "precision='fp8' is not allowed"),
        (["compile=maybe"], "compile='maybe' is not allowed: use true or false"),
        (["tta_shift=-1"], "tta_shift=-1 is not allowed: tta_shift must be an integer >= 0"),
        (["tta_shift=0.5"], "tta_shift=0.5 is not allowed"),
        (["model=cnn", "model.first_depth=0"], "model.first_depth=0 is not allowed"),
        (["model=cnn", "model.pool_before_bn=maybe"],
         "model.pool_before_bn='maybe' is not allowed: use true or false"),
        (["model=cnn", "model.first_conv=fixed"],
         "model.first_conv='fixed' is not allowed: use one of ['trained', 'whitened']"),
    ],
)  # fmt: skip
def test_bad_recipe_values_are_one_line_errors(
    compose_cfg, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bf16_is_refused_on_a_cpu_without_it(compose_cfg, monkeypatch) -> None:
    import cnnsweep.train.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="precision=bf16 is not allowed on this CPU"):
        validate(compose_cfg(["precision=bf16", "device=cpu"]))
    with pytest.raises(ConfigError, match="precision=fp16 is not allowed on cpu"):
        validate(compose_cfg(["precision=fp16", "device=cpu"]))
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    validate(compose_cfg(["precision=bf16", "device=cpu"]))


def test_the_recipe_mixes_on_the_command_line(compose_cfg, tmp_path: Path) -> None:
    """The issue's example, shrunk: every piece on at once trains and is recorded."""
    recipe = ["model=cnn", "model.width=8", "augment=shift_flip_erase", "scheduler=cosine",
              "label_smoothing=0.1", "ema=on", "tta=true", "optimizer=sgd",
              "optimizer.weight_decay=5e-4"]  # fmt: skip
    cfg = compose_cfg([*recipe, "epochs=2", *QUIET])
    value = run_job(cfg, output_dir=tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and value == row["val_acc"]
    assert (row["model"], row["augment"], row["scheduler"]) == ("cnn", "shift_flip_erase", "cosine")
    assert (row["label_smoothing"], row["ema"], row["tta"], row["width"]) == (0.1, 0.999, True, 8)
    assert row["params"] == count_params(build_model("cnn", width=8))
    assert row["flops"] == forward_flops(build_model("cnn", width=8), 1, 28)


@pytest.mark.slow
def test_a_compiled_job_trains_like_the_eager_one(compose_cfg, tmp_path: Path) -> None:
    """compile=true (inductor on the CPU here; CUDA graphs on a GPU): same job, same numbers
    up to floating-point order."""
    rows = {}
    for compiled in (False, True):
        cfg = compose_cfg(["model=cnn", "model.width=8", f"compile={compiled}", *QUIET])
        run_job(cfg, output_dir=tmp_path / str(compiled))
        rows[compiled] = json.loads((tmp_path / str(compiled) / "results.json").read_text())
    assert rows[True]["status"] == "completed"
    assert rows[True]["train_loss"] == pytest.approx(rows[False]["train_loss"], rel=1e-3)
    assert rows[True]["val_acc"] == pytest.approx(rows[False]["val_acc"], abs=0.02)


PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_composes_and_trains(compose_cfg, preset, tmp_path: Path) -> None:
    """A preset is an ordinary job: it validates, trains (one epoch of tiny data here) and
    writes a row that says what it used; command-line values after it still win."""
    cfg = compose_cfg([f"experiment={preset}", *QUIET])
    validate(cfg)
    assert cfg.epochs == 1 and cfg.model.name == "cnn" and cfg.scheduler.name == "onecycle"
    run_job(cfg, output_dir=tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and row["tta"] is True and row["params"] > 0


def test_the_recipe_search_sweeps_keys_the_job_has() -> None:
    """Every key hparams_search=fashion_mnist_recipe sweeps exists in the composed job config
    (a typo would otherwise add a key no code reads, and the search would tune nothing)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", ["hparams_search=fashion_mnist_recipe"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    params = cfg.hydra.sweeper.params
    assert len(params) >= 6
    for key in params:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
    # its warm start is the 10-minute preset's recipe, named as the space names it, in the space
    (point,) = cfg.hydra.sweeper.enqueue
    assert set(point) == set(params)
    with initialize_config_dir(config_dir=str(CONF)):
        fast = compose("config", ["experiment=fashion_mnist_10min"])
    GlobalHydra.instance().clear()
    for key, value in point.items():
        assert OmegaConf.select(fast, key) == value, key
        space = str(params[key])
        if space.startswith("choice("):
            assert str(value) in space, key
        else:  # interval(low, high), tagged log or not
            low, high = (float(x) for x in space.split("interval(")[1].rstrip(")").split(","))
            assert low <= value <= high, key
