"""Image folders and CIFAR-10 end to end, on tiny data the tests write: loading, conversion,
the on-disk cache, bad input, a training job, its reports and predict in colour."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import (
    BAND_COLOURS,
    CONF,
    FAST,
    IMAGE_CLASSES,
    band_picture,
    run_cli,
    save_in_mode,
    trust_cifar_files,
    write_cifar_dataset,
    write_image_folder,
)
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from cnnsweep.data import image_folder
from cnnsweep.data.images import Conversion, read_image
from cnnsweep.data.load import load_data, load_test_split
from cnnsweep.data.normalise import denormalise, to_float
from cnnsweep.data.types import DatasetError
from cnnsweep.predict import load_trained, main, prepare_image
from cnnsweep.train.job import run_job

# overrides of the image-folder jobs: 32x32 colour images, a model that takes them
FOLDER_JOB = ["data=image_folder", "data.image_size=32", "model=bn_cnn", "epochs=2"]


def folder_cfg(train_dir: Path, cache_dir: Path | None, **over) -> OmegaConf:
    cfg = OmegaConf.load(CONF / "data" / "image_folder.yaml")
    cfg.train_dir = str(train_dir)
    cfg.cache_dir = str(cache_dir) if cache_dir else None
    cfg.image_size = 32
    return OmegaConf.merge(cfg, over)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 24 images in 8 modes and many sizes, plus a text file and a broken JPEG."""
    return write_image_folder(tmp_path_factory.mktemp("photos") / "photos")


def compose_job(overrides: list[str], data_dir: Path) -> OmegaConf:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", overrides=[f"data_dir={data_dir}", *FAST, *overrides])
    GlobalHydra.instance().clear()
    return cfg


# --- loading and conversion -------------------------------------------------------------------


def test_image_folder_loads_with_folder_class_names(photos: Path, tmp_path: Path) -> None:
    data = load_data(folder_cfg(photos, tmp_path / "cache"), seed=0)
    assert data.class_names == list(IMAGE_CLASSES)
    assert sorted(Path(p).name for p in data.skipped) == ["broken.jpg", "notes.txt"]
    n = len(data.train) + len(data.val) + len(data.test)
    assert n == 72 and len(data.test) == 15  # 20% of each class's 24, rounded: 5 x 3
    assert data.train.images.shape[1:] == (3, 32, 32) and data.train.images.dtype == torch.float32
    assert torch.bincount(data.test.labels).tolist() == [5, 5, 5]  # held out per class
    # mean/std computed per channel on the training images: the training split is ~N(0, 1)
    assert isinstance(data.mean, list) and len(data.mean) == 3 and len(data.std) == 3
    x = torch.cat([data.train.images, data.val.images])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_test_split_is_the_same_for_every_seed(photos: Path, tmp_path: Path) -> None:
    cfg = folder_cfg(photos, tmp_path / "cache")
    a, b = load_data(cfg, seed=0), load_data(cfg, seed=1)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.val.labels, b.val.labels) or not torch.equal(
        a.val.images, b.val.images
    )
    assert torch.equal(load_test_split(cfg).images, a.test.images)  # predict's way, same images


def test_train_order_is_not_class_after_class(photos: Path, tmp_path: Path) -> None:
    data = load_data(folder_cfg(photos, tmp_path / "c", val_fraction=0), seed=0)
    first = data.train.labels[:15].tolist()
    assert len(set(first)) == 3  # shuffle=false must not train a whole class at a time


@pytest.mark.parametrize("mode", ["rgb", "rgba", "palette", "cmyk", "jpeg", "exif"])
def test_every_colour_mode_converts_to_the_right_colours(tmp_path: Path, mode: str) -> None:
    for k, colour in enumerate(BAND_COLOURS):
        path = save_in_mode(band_picture(k, (48, 40), seed=k), tmp_path / f"{k}", mode)
        x = read_image(path, Conversion(3, 32, "crop")).astype(int)
        assert x.shape == (3, 32, 32)
        rows = (x.max(axis=0) - x.min(axis=0)).mean(axis=1)  # the most colourful rows: the band
        band = int(rows.argmax())
        assert k * 32 // 3 <= band < k * 32 // 3 + 11, (mode, k, band)
        pixel = x[:, band, 16]
        assert int(np.argmax(pixel)) == int(np.argmax(colour)), (mode, k, pixel)


@pytest.mark.parametrize("mode", ["gray", "gray16", "rgb"])
def test_grayscale_conversion_keeps_the_band(tmp_path: Path, mode: str) -> None:
    path = save_in_mode(band_picture(1, (30, 60)), tmp_path / "x", mode)
    x = read_image(path, Conversion(1, 24, "stretch"))
    assert x.shape == (1, 24, 24)
    rows = x[0].mean(axis=1)
    assert 7 <= rows.argmax() <= 12 and rows.max() > 90  # 16-bit scaled, not clipped to white
    assert np.median(x) < 60  # the background stays dark


def test_crop_and_stretch(tmp_path: Path) -> None:
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:40] = (0, 255, 0)
    arr[:, 40:] = (0, 0, 255)
    Image.fromarray(arr).save(tmp_path / "wide.png")
    crop = read_image(tmp_path / "wide.png", Conversion(3, 12, "crop"))
    stretch = read_image(tmp_path / "wide.png", Conversion(3, 12, "stretch"))
    assert crop[1].min() > 200 and crop[0].max() < 30  # the short side fills it: green middle
    assert stretch[0, :, 0].min() > 200 and stretch[2, :, -1].min() > 200  # all three stripes


def test_grayscale_folder(photos: Path, tmp_path: Path) -> None:
    data = load_data(folder_cfg(photos, tmp_path / "cache", in_channels=1), seed=0)
    assert data.train.images.shape[1:] == (1, 32, 32) and len(data.mean) == 1


def test_separate_test_folder(tmp_path: Path) -> None:
    train = write_image_folder(tmp_path / "train", per_class=10, junk=False)
    test = write_image_folder(tmp_path / "test", per_class=4, junk=False)
    cfg = folder_cfg(train, tmp_path / "cache", test_dir=str(test), val_fraction=0)
    data = load_data(cfg, seed=0)
    assert (len(data.train), len(data.test), data.val) == (30, 12, None)


# --- the cache --------------------------------------------------------------------------------


def test_cache_is_used_then_rebuilt_when_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_image_folder(tmp_path / "photos", per_class=8)
    cache = tmp_path / "cache"
    cfg = folder_cfg(root, cache)
    first = load_data(cfg, seed=0)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    umask = os.umask(0)
    os.umask(umask)
    assert files[0].stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600

    converted = []
    real = image_folder._convert_folder
    monkeypatch.setattr(image_folder, "_convert_folder", lambda *a: converted.append(1) or real(*a))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnsweep.data.image_folder"):
        again = load_data(cfg, seed=0)
    assert converted == [] and "read from the cache" in caplog.text
    assert torch.equal(first.train.images, again.train.images) and again.skipped == first.skipped
    assert caplog.text.count("skipped ") == 2  # the skipped files are named on every load

    picture = next((root / "bird").glob("*.png"))
    save_in_mode(band_picture(2, (30, 30)), picture.with_suffix(""), "rgb")  # new content
    os.utime(picture, ns=(1, 1))  # and another mtime, whatever the clock's resolution
    load_data(cfg, seed=0)
    assert converted == [1] and len(list(cache.iterdir())) == 2
    assert not list(cache.glob(".*"))  # no temporary files left


def test_a_damaged_cache_is_converted_again(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "photos", per_class=6, junk=False)
    cfg = folder_cfg(root, tmp_path / "cache")
    first = load_data(cfg, seed=0)
    cached = next((tmp_path / "cache").iterdir())
    cached.write_bytes(cached.read_bytes()[:500])  # half a file (never made by the cache)
    assert torch.equal(load_data(cfg, seed=0).train.images, first.train.images)


def test_conversion_settings_are_part_of_the_cache_key(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "photos", per_class=6, junk=False)
    load_data(folder_cfg(root, tmp_path / "cache"), seed=0)
    gray = load_data(folder_cfg(root, tmp_path / "cache", in_channels=1), seed=0)
    assert gray.train.images.shape[1] == 1 and len(list((tmp_path / "cache").iterdir())) == 2


# --- bad input: one clear line each -----------------------------------------------------------


def one_line_error(cfg: OmegaConf, match: str) -> str:
    with pytest.raises(DatasetError, match=match) as info:
        load_data(cfg, seed=0)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    one_line_error(folder_cfg(tmp_path / "nowhere", None), r"nowhere does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(folder_cfg(tmp_path / "empty", None), r"empty has no class folders")


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "one", per_class=4, classes=("apple",), junk=False)
    one_line_error(folder_cfg(root, None), r"has 1 class folder \(apple\); .* at least 2")


def test_a_class_without_images(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "p", per_class=4, junk=False)
    (root / "empty_class").mkdir()
    one_line_error(folder_cfg(root, None), r"empty_class holds no readable images \(it is empty\)")
    (root / "empty_class" / "readme.txt").write_text("hello")
    one_line_error(folder_cfg(root, None), r"empty_class holds no readable .*1 file\(s\) skipped")


def test_channels_other_than_1_or_3(photos: Path) -> None:
    one_line_error(
        folder_cfg(photos, None, in_channels=4), r"in_channels=4 is not allowed.*1 .* or 3"
    )
    one_line_error(folder_cfg(photos, None, resize="zoom"), r"resize='zoom' is not allowed")


def test_test_fraction_must_leave_a_test_split(photos: Path) -> None:
    one_line_error(folder_cfg(photos, None, test_fraction=0), r"test_fraction=0 is not allowed")


def test_test_folder_with_other_classes(tmp_path: Path) -> None:
    train = write_image_folder(tmp_path / "train", per_class=4, junk=False)
    test = write_image_folder(
        tmp_path / "test", per_class=2, classes=("apple", "bird", "cat"), junk=False
    )
    one_line_error(
        folder_cfg(train, None, test_dir=str(test)),
        r"test_dir=.* has other classes .*missing: car; extra: cat",
    )


def test_class_names_that_do_not_match_the_folders(photos: Path) -> None:
    one_line_error(
        folder_cfg(photos, None, class_names=["a", "b", "c"], num_classes=3),
        r"class folders of .* are \['apple', 'bird', 'car'\]",
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_oversized_image_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_image_folder(tmp_path / "p", per_class=4, junk=False)
    big = np.zeros((100, 100, 3), dtype=np.uint8)
    Image.fromarray(big).save(root / "car" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 10000 px > 2x: PIL's bomb error
    with caplog.at_level(logging.WARNING):
        data = load_data(folder_cfg(root, None, image_size=8), seed=0)
    assert [Path(p).name for p in data.skipped] == ["huge.png"]
    assert "huge.png: too large" in caplog.text


def test_bad_folder_on_the_command_line_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = run_cli(
        ["data=image_folder", f"data.train_dir={tmp_path / 'empty'}", "epochs=1"], cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and "has no class folders" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


# --- a training job on a folder, its reports and predict ----------------------------------------


@pytest.fixture(scope="module")
def folder_job(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("folder_job")
    cache = tmp_path_factory.mktemp("cache")
    cfg = compose_job([*FOLDER_JOB, f"data.train_dir={photos}", f"data.cache_dir={cache}"], out)
    run_job(cfg, output_dir=out)
    return out


def test_job_trains_on_an_image_folder(folder_job: Path) -> None:
    row = json.loads((folder_job / "results.json").read_text())
    assert row["status"] == "completed", row["error"]
    assert row["class_names"] == list(IMAGE_CLASSES) and row["skipped_files"] == 2
    report = json.loads((folder_job / "classification_report.json").read_text())
    assert [k for k in report if k in IMAGE_CLASSES] == list(IMAGE_CLASSES)
    assert sum(report[c]["support"] for c in IMAGE_CLASSES) == 15
    ckpt = torch.load(folder_job / "model.pt", weights_only=True)
    assert ckpt["model"]["in_channels"] == 3 and ckpt["model"]["num_classes"] == 3
    assert len(ckpt["data"]["mean"]) == 3  # the computed normalisation travels with the weights


def colourful(path: Path) -> float:
    """How far a picture's pixels are from gray, on average (0 for a grayscale picture)."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB")).astype(int)
    return float((arr.max(axis=2) - arr.min(axis=2)).mean())


def test_colour_pictures(folder_job: Path) -> None:
    assert colourful(folder_job / "samples.png") > 5
    assert colourful(folder_job / "filters.png") > 5


def test_samples_show_true_colours() -> None:
    import matplotlib.pyplot as plt

    from cnnsweep.reports import samples_figure

    arr = np.stack([band_picture(k, (32, 32)).transpose(2, 0, 1) for k in range(3)])
    mean, std = [0.2, 0.3, 0.4], [0.2, 0.25, 0.3]
    x = to_float(torch.from_numpy(arr), mean, std, 3)
    assert torch.allclose(denormalise(x, mean, std) * 255, torch.from_numpy(arr).float(), atol=1e-3)
    fig = samples_figure(x, torch.arange(3), list(IMAGE_CLASSES), mean, std)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    plt.close(fig)
    assert np.allclose(shown * 255, arr[0].transpose(1, 2, 0), atol=1e-3)


def test_tensorboard_grid_in_true_colours(tmp_path: Path) -> None:
    """What the job logs as sample images: denormalised, they keep their colours."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnsweep.train.tensorboard import TensorBoardRun

    arr = np.stack([band_picture(k, (16, 16)).transpose(2, 0, 1) for k in range(3)])
    mean, std = [0.2, 0.3, 0.4], [0.2, 0.25, 0.3]
    x = to_float(torch.from_numpy(arr), mean, std, 3)
    run = TensorBoardRun(tmp_path)
    run.log_images("images", denormalise(x, mean, std), nrow=3)
    run.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    png = events.Images("images")[0].encoded_image_string
    grid = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    for k, colour in enumerate(BAND_COLOURS):  # make_grid puts 2 pixels around each image
        pixel = grid[2 + int(16 * k / 3) + 1, 2 + k * 18 + 8]
        # make_grid stretches the batch's range to 0-1: the same factor for every channel
        ratio = pixel / pixel.max() - np.array(colour) / max(colour)
        assert np.abs(ratio).max() < 0.05, (k, pixel, colour)


def test_predict_on_the_folder_job(folder_job: Path, tmp_path: Path, capsys) -> None:
    assert main([str(folder_job), "-n", "5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 correct" in out.replace("/5 correct", "5 correct")
    assert colourful(tmp_path / "predictions.png") > 5
    trained = load_trained(folder_job)
    photo = save_in_mode(band_picture(0, (200, 150)), tmp_path / "photo", "jpeg")
    x = prepare_image(photo, trained.data)
    assert x.shape == (3, 32, 32)
    pixels = denormalise(x.unsqueeze(0), trained.data["mean"], trained.data["std"])[0]
    top = pixels[:, 2:6, 8:24].mean(dim=(1, 2))
    assert top[0] > 0.7 and top[1] < 0.4 and top[2] < 0.4  # red stays red, not gray
    assert main([str(folder_job), str(photo)]) == 0
    assert capsys.readouterr().out.startswith(f"{photo}: ")


def test_predict_finds_a_relative_image_folder(
    folder_job: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A checkpoint with relative paths, run from elsewhere: the folder and its cache are found
    relative to where the job was started (the job folder's parents), never the current one."""
    project = tmp_path / "project"
    shutil.copytree(photos, project / "photos")
    job = project / "outputs" / "2026-11-22" / "18-07-43"
    job.mkdir(parents=True)
    ckpt = torch.load(folder_job / "model.pt", weights_only=True)
    ckpt["data"].update(train_dir="photos", cache_dir="data/cache")
    torch.save(ckpt, job / "model.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([str(job), "-n", "3", "--out", str(tmp_path / "out")]) == 0
    assert "/3 correct" in capsys.readouterr().out
    assert len(list((project / "data" / "cache").glob("*.npz"))) == 1
    assert list(elsewhere.iterdir()) == []


# --- CIFAR-10 in its own format ---------------------------------------------------------------


def cifar_cfg(root: Path, **over) -> OmegaConf:
    cfg = OmegaConf.load(CONF / "data" / "cifar10.yaml")
    cfg.root = str(root)
    return OmegaConf.merge(cfg, over)


def test_cifar10_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_cifar_dataset(tmp_path)
    trust_cifar_files(monkeypatch, root)
    data = load_data(cifar_cfg(root), seed=0)
    assert (len(data.train) + len(data.val), len(data.test)) == (100, 30)
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10
    ds = torchvision.datasets.CIFAR10(str(root), train=False)  # the same pixels, same order
    expected = to_float(torch.from_numpy(ds.data).permute(0, 3, 1, 2), data.mean, data.std, 3)
    assert torch.equal(data.test.images, expected) and data.test.labels.tolist() == ds.targets


def test_cifar10_failed_download_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError) as info:
        load_data(cifar_cfg(tmp_path / "data"), seed=0)
    msg = str(info.value)
    assert "\n" not in msg and "the download failed" in msg and "name resolution" in msg
    assert "cifar-10-python.tar.gz and unpack it in" in msg


def test_cifar10_corrupt_batch_is_refused(tmp_path: Path) -> None:
    root = write_cifar_dataset(tmp_path)  # md5s not trusted: torchvision's check fails
    with pytest.raises(DatasetError, match=r"CIFAR10 is missing or corrupt in .*download=false"):
        load_data(cifar_cfg(root, download=False), seed=0)


def test_job_and_predict_on_cifar10(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = write_cifar_dataset(tmp_path / "data")
    trust_cifar_files(monkeypatch, root)
    out = tmp_path / "job"
    run_job(compose_job(["data=cifar10", "model=bn_cnn", "epochs=2"], root), output_dir=out)
    row = json.loads((out / "results.json").read_text())
    assert row["status"] == "completed", row["error"]
    assert row["class_names"][-1] == "truck"
    assert colourful(out / "samples.png") > 5 and colourful(out / "filters.png") > 5
    assert main([str(out), "-n", "4", "--out", str(tmp_path)]) == 0
    assert "/4 correct" in capsys.readouterr().out


# --- symbolic links and memory ----------------------------------------------------------------


def test_a_broken_symbolic_link_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_image_folder(tmp_path / "f", per_class=6, junk=False)
    os.symlink("/nonexistent/x.png", root / "apple" / "broken.png")
    cfg = folder_cfg(root, tmp_path / "cache")
    for _ in range(2):  # converted, then read from the cache: skipped and named both times
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cnnsweep.data.image_folder"):
            data = load_data(cfg, seed=0)
        assert data.skipped == [str(root / "apple" / "broken.png")]  # the job's skipped_files
        assert caplog.text.count("skipped ") == 1
        assert "broken.png: broken symbolic link to /nonexistent/x.png" in caplog.text
        assert len(data.train) + len(data.val) + len(data.test) == 18


def test_a_symbolic_link_loop_counts_every_image_once(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "f", per_class=6, junk=False)
    os.symlink(".", root / "apple" / "again")  # a loop: apple/again/again/...
    os.symlink(root / "bird" / "bird_000.png", root / "bird" / "zz_same.png")  # one file twice
    more = tmp_path / "more"  # a link to another real folder is still followed
    more.mkdir()
    for i in range(2):
        save_in_mode(band_picture(2, (30, 30), seed=900 + i), more / f"extra_{i}", "rgb")
    os.symlink(more, root / "car" / "more")
    data = load_data(folder_cfg(root, None, val_fraction=0), seed=0)
    labels = torch.cat([data.train.labels, data.test.labels])
    assert torch.bincount(labels).tolist() == [6, 6, 8] and len(data.test) == 4
    images = torch.cat([data.train.images, data.test.images]).flatten(1)
    assert len(torch.unique(images, dim=0)) == len(images)  # no image on both sides


def test_a_folder_too_large_for_memory_is_refused_before_converting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_image_folder(tmp_path / "f", per_class=6, junk=False)
    cache = tmp_path / "cache"
    load_data(folder_cfg(root, cache), seed=0)
    assert image_folder.available_memory() > 0  # read from this machine
    converted = []
    monkeypatch.setattr(image_folder, "_convert_folder", lambda *a: converted.append(1))
    monkeypatch.setattr(image_folder, "available_memory", lambda: 1000)
    load_data(folder_cfg(root, cache), seed=0)  # a cache is read without the check
    monkeypatch.setattr(image_folder, "available_memory", lambda: 2 * 2**30)
    msg = one_line_error(  # 6 x 18 files x 3 x 4096 x 4096 bytes = 5.06 GiB
        folder_cfg(root, cache, image_size=4096), r"needs about 5\.1 GiB of memory at its peak"
    )
    assert msg.startswith(f"data.train_dir={root}: converting 18 images to RGB 4096x4096")
    assert "this machine has 2.0 GiB available; use a smaller data.image_size" in msg
    assert converted == [] and len(list(cache.iterdir())) == 1
