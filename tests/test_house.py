"""The shape of the code a newcomer relies on: small modules, a short job, no import cycle, one
schema that a new knob is added to in one line, and links between the docs that land."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

from conftest import REPO

from cnnsweep import schema
from cnnsweep.results.cli import aggregate
from cnnsweep.results.load import load_runs
from cnnsweep.train.job import run_job

sys.path.insert(0, str(REPO / "scripts"))
import import_graph  # noqa: E402

MAX_MODULE_LINES = 350
MAX_RUN_JOB_LINES = 60


def test_no_module_is_over_350_lines() -> None:
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text().splitlines())
        for p in sorted((REPO / "src").rglob("*.py"))
    }
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_run_job_fits_on_one_screen() -> None:
    tree = ast.parse((REPO / "src/cnnsweep/train/job.py").read_text())
    (node,) = [n for n in tree.body if getattr(n, "name", None) == "run_job"]
    assert node.end_lineno - node.lineno + 1 <= MAX_RUN_JOB_LINES


def test_no_import_cycle_between_packages_or_modules() -> None:
    for by_package in (True, False):
        assert import_graph.cycles(import_graph.graph(by_package)) == []
    packages = import_graph.graph(by_package=True)
    assert "train" not in packages["sweep"] | packages["results"] | packages["data"]


def test_a_new_knob_is_one_schema_line(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    """A knob added to ``schema.KNOBS`` alone reaches the row, the HParams entry, the
    configuration's identity, the epoch-independent leaderboard columns."""
    monkeypatch.setitem(schema.KNOBS, "mixup", "mixup")
    quiet = ["reports=false", "tensorboard.graph=false", "tensorboard.histograms=false"]
    for value in (0.2, 0.4):
        run_job(compose_cfg([*quiet, f"+mixup={value}"]), tmp_path / f"mixup{value}")
    rows = [json.loads((tmp_path / f"mixup{v}" / "results.json").read_text()) for v in (0.2, 0.4)]
    assert [r["mixup"] for r in rows] == [0.2, 0.4]
    runs = load_runs(tmp_path)
    assert sorted(runs["mixup"]) == [0.2, 0.4] and runs["config_id"].nunique() == 2
    report = aggregate([tmp_path], tmp_path / "res")
    header = (tmp_path / "res" / "runs.csv").read_text().splitlines()[0].split(",")
    assert header.index("mixup") < header.index("train_loss")  # among the knobs, not after
    assert "mixup" in (tmp_path / "res" / "summary.md").read_text()  # it varies: a column
    assert report["runs"][0]["mixup"] in (0.2, 0.4)


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped,
    spaces as hyphens. A ``# comment`` in a code block is no heading."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    titles = re.findall(r"^#+ (.+)$", text, flags=re.M)
    names = [re.sub(r"[^\w\- ]", "", title.strip().lower()) for title in titles]
    return {name.replace(" ", "-") for name in names}


def test_every_link_to_a_heading_in_the_docs_lands_on_one() -> None:
    pages = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
            linked = (page.parent / target).resolve() if target else page
            if not linked.is_file() or anchor not in heading_anchors(linked):
                broken.append(f"{page.relative_to(REPO)}: {target}#{anchor}")
    assert broken == []
