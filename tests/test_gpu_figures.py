"""scripts/gpu_figures.sh: its --quick mode runs every step on the CPU (so the GPU script cannot
rot) and writes a figure for each into the file it is given, nowhere else; without a GPU the full
mode refuses; scripts/gpu_wheels.sh is valid bash."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FMNIST_DEBIAN, REPO

sys.path.insert(0, str(REPO / "scripts"))
import gpu_figures  # noqa: E402

SCRIPT = REPO / "scripts/gpu_figures.sh"
START, END = gpu_figures.START, gpu_figures.END


def run_script(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"},
    )


def files_under(*folders: Path) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*")}


def table_rows(section: str) -> dict[str, list[str]]:
    """The figures table (the section's first): step title -> [figure, wall, goal, status]."""
    table = section[section.index("| step |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
@pytest.mark.skipif(
    not FMNIST_DEBIAN.is_dir() and not (REPO / "data/FashionMNIST/raw").is_dir(),
    reason="needs the real Fashion-MNIST (make setup)",
)
def test_quick_mode_writes_a_figure_for_every_step(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\nabove\n\n{START}\nold figures\n{END}\n\nbelow\n")
    repo_outputs = [REPO / "outputs", REPO / "multirun"]
    before = files_under(*repo_outputs)

    proc = run_script("--quick", "--out", str(out), "--work", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nabove\n\n") and text.endswith(f"{END}\n\nbelow\n")
    assert text.count(START) == 1 and "old figures" not in text
    section = text.split(START)[1].split(END)[0]
    assert re.search(r"^## \d{4}-\d\d-\d\d: GPU figures, --quick", section, re.MULTILINE)
    assert re.search(r"- Commit: .+\n- Machine: .+torch \d+\.\d+", section)
    rows = table_rows(section)
    assert list(rows) == list(gpu_figures.TITLES.values())  # every step, in the script's order
    for title, (figure, wall, _goal, status) in rows.items():
        assert status == "ok", (title, figure)
        assert re.fullmatch(r"\d+\.\d s", wall), (title, wall)
    grid, jobs, fast, bench, best = (rows[gpu_figures.TITLES[k]][0] for k in
                                     ("grid", "grid_jobs", "fast", "bench", "best"))  # fmt: skip
    assert re.match(r"2/2 jobs completed on cpu, \d+ threads? per job; test acc \d", grid)
    assert re.match(r"2/2 jobs completed on cpu, \d+ threads? per job; test acc \d", jobs)
    assert re.search(r"93% not reached .*final test acc \d+\.\d\d% after 1 of 1 epochs", fast)
    assert re.match(r"bn_cnn, batch 100: fp32 \d+\.\d\d, bf16 (\d+\.\d\d|refused), "
                    r"compile=true \d+\.\d\d s per epoch", bench)  # fmt: skip
    assert re.match(r"final test acc \d+\.\d\d% after 1 of 1 epochs on cpu", best)
    assert "| bn_cnn | 100 |" in section  # bench.py's own table, as it printed
    assert "python train.py -m lr=0.01,0.001 batch_size=1000 shuffle=true" in section
    assert "python scripts/bench.py --root $WORK/data --device cpu --quick" in section

    assert files_under(*repo_outputs) == before  # Hydra's folders stayed in the work folder
    assert list((tmp_path / "work/run/grid").rglob("multirun/*/*/0/results.json"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_the_full_mode_refuses_without_a_gpu(tmp_path: Path) -> None:
    """CPU figures never land in BENCHMARKS.md as GPU ones."""
    out = tmp_path / "BENCHMARKS.md"
    proc = run_script("--out", str(out), "--work", str(tmp_path / "work"), timeout=120)
    assert proc.returncode == 2
    assert "no CUDA GPU here" in proc.stderr.splitlines()[-1]
    assert not out.exists()


def test_the_section_is_replaced_between_the_markers_or_appended(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\nintro\n")
    gpu_figures.write_section(page, "one")
    assert page.read_text() == f"# Benchmarks\n\nintro\n\n{START}\none\n{END}\n"
    gpu_figures.write_section(page, "two")
    assert page.read_text() == f"# Benchmarks\n\nintro\n\n{START}\ntwo\n{END}\n"
    copy = tmp_path / "copy.md"  # a GPU machine's $OUT/BENCHMARKS.md
    copy.write_text(f"other text\n{START}\nthree\n{END}\n")
    args = argparse.Namespace(source=str(copy), out=str(page))
    assert gpu_figures.paste(args) == 0
    assert page.read_text() == f"# Benchmarks\n\nintro\n\n{START}\nthree\n{END}\n"


def test_the_scripts_are_valid_bash() -> None:
    for script in ("gpu_figures.sh", "gpu_wheels.sh"):
        proc = subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], capture_output=True)
        assert proc.returncode == 0, proc.stderr
    assert "--first-pass" in run_script("--help", timeout=30).stdout


def test_a_failed_step_shows_its_last_error_line_and_a_stopped_one_what_it_finished(
    tmp_path: Path,
) -> None:
    run, out = tmp_path / "run", tmp_path / "B.md"
    run.mkdir()
    info = {
        "date": "2026-12-02",
        "commit": "`abc1234`",
        "device": "NVIDIA H200",
        "torch": "2.11",
        "python": "3.12.3",
        "cpus": 16,
        "mode": "full",
        "budget": 300,
        "work": str(tmp_path),
    }
    (run / "machine.json").write_text(json.dumps(info))
    (run / "grid.log").write_text("[HYDRA] Launching 8 jobs\nValueError: bad thing\nexiting\n")
    epochs = [{"epoch": k, "epochs": 60, "run duration": 2.0 * k, "test_accuracy": 0.9 + k / 1000}
              for k in (1, 2)]  # fmt: skip
    (run / "best" / "outputs").mkdir(parents=True)  # killed by the budget: epoch rows, no row
    (run / "best" / "outputs" / "epochs.json").write_text(json.dumps(epochs))

    def record(name: str, rc: int, **kw) -> int:
        args = {
            "run": str(run),
            "out": str(out),
            "name": name,
            "rc": rc,
            "start": 0.0,
            "end": 12.5,
            "cap": 240,
            "partial_ok": False,
            "skipped": "",
            "cmd": [],
            **kw,
        }
        return gpu_figures.record(argparse.Namespace(**args))

    assert record("grid", 1, cmd=["python", "train.py", "-m", "lr=0.01,0.001"]) == 1
    assert record("best", 124, partial_ok=True) == 0
    rows = table_rows(out.read_text())
    figure, wall, goal, status = rows[gpu_figures.TITLES["grid"]]
    assert status == "failed" and "last error: `ValueError: bad thing`" in figure
    assert (figure.startswith("0/2 jobs completed"), wall, goal) == (True, "12.5 s", "≤ 30 s")
    figure, _, _, status = rows[gpu_figures.TITLES["best"]]
    assert status == "stopped by the budget"
    assert figure == "stopped after 2 of 60 epochs: test acc 90.20% at epoch 2"
    assert record("best", 0, skipped="skipped: the budget is spent (10 s of 300 s left)") == 0
    assert table_rows(out.read_text())[gpu_figures.TITLES["best"]][1:] == ["-", "", "skipped"]
