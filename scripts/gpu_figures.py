"""scripts/gpu_figures.sh's helper: the machine, the set-up, and each step's figures.

Standard library only (it runs before the set-up has installed anything, under the Python that
holds torch). ``gpu_figures.sh`` runs each step as a whole process and then calls ``record``,
which reads the step's log and output folder, appends the step to ``<run>/steps.json`` and
rewrites the figures section of ``--out`` between the markers below (appended when absent), so a
run stopped half-way still leaves the figures of the steps that finished.

    python scripts/gpu_figures.py machine --run DIR --mode full
    python scripts/gpu_figures.py setup --site DIR --wheels DIR --data DIR --data-src DIR...
    python scripts/gpu_figures.py record --run DIR --out FILE --name grid --rc 0 \
        --start T0 --end T1 --cap 240 -- python train.py -m ...
    python scripts/gpu_figures.py paste /path/to/copy/BENCHMARKS.md   # its section into ours
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- gpu-figures:start -->", "<!-- gpu-figures:end -->"
# the packages train.py and bench.py import at run time besides torch, torchvision and numpy
NEEDED = ("hydra", "omegaconf", "yaml", "hydra_plugins.hydra_joblib_launcher", "joblib", "tqdm",
          "tensorboard", "matplotlib", "PIL")  # fmt: skip
# Hydra's plugin scan imports these in every process: without them, warnings (and faster starts)
WANTED = ("optuna", "submitit", "hydra_plugins.hydra_optuna_sweeper",
          "hydra_plugins.hydra_submitit_launcher")  # fmt: skip
TITLES = {
    "setup": "set-up (packages, data)",
    "grid": "seed grid as typed (one process)",
    "grid_jobs": "seed grid, joblib jobs sharing the device",
    "fast": "`experiment=fashion_mnist_fast`",
    "bench": "`scripts/bench.py`",
    "best": "`experiment=fashion_mnist_best`",
}
GOALS = {  # step: (goal as printed, the figure it compares, the limit)
    "grid": ("≤ 30 s", "wall", 30.0),
    "grid_jobs": ("≤ 30 s", "wall", 30.0),
    "fast": ("93% in ≤ 30 s", "t93", 30.0),
    "bench": ("bn_cnn, batch 100: ≤ 0.25 s per epoch", "bn_cnn_100", 0.25),
}
ERROR = re.compile(r"error|exception|traceback|failed|killed|refused", re.IGNORECASE)


# --- the machine --------------------------------------------------------------------------------


def machine(args: argparse.Namespace) -> int:
    """<run>/machine.json: date, commit, GPU, versions; on a GPU mode, no CUDA is an error."""
    import torch

    cuda = torch.cuda.is_available()
    if args.mode != "quick" and not cuda:
        print("error: no CUDA GPU here (torch.cuda.is_available() is False); on the CPU, run "
              "bash scripts/gpu_figures.sh --quick", file=sys.stderr)  # fmt: skip
        return 2
    gpu = _output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) if cuda else ""
    if cuda and not gpu:
        gpu = torch.cuda.get_device_name(0)
    commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if commit:
        dirty = _output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
        commit = f"`{commit}`" + (" plus local changes" if dirty else "")
    elif (Path(args.carry) / "commit.txt").exists():  # a copy of the tree without .git
        built = (Path(args.carry) / "commit.txt").read_text().strip()
        commit = f"`{built}` (when the carry was built)"
    info = {
        "date": datetime.date.today().isoformat(),
        "commit": commit or "unknown (no git here)",
        "device": ", ".join(gpu.splitlines()) if cuda else f"no GPU: {_cpu_name()}",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpus": len(os.sched_getaffinity(0)),
        "mode": args.mode,
        "budget": args.budget,
        "work": args.work,
    }
    Path(args.run).mkdir(parents=True, exist_ok=True)
    (Path(args.run) / "machine.json").write_text(json.dumps(info, indent=2))
    print(f"machine: {info['device']}, torch {info['torch']}, Python {info['python']}, "
          f"{info['cpus']} CPU cores; commit {info['commit']}")  # fmt: skip
    return 0


def _output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
    except (OSError, AttributeError):
        return "CPU"


# --- the set-up: packages from the wheelhouse where missing, the data ---------------------------


def _missing(modules: tuple[str, ...]) -> list[str]:
    """The modules a fresh interpreter (PYTHONPATH as set) cannot find."""
    code = ("import importlib.util as u, json, sys\n"
            "def has(m):\n    try:\n        return u.find_spec(m) is not None\n"
            "    except ImportError:\n        return False\n"
            "print(json.dumps([m for m in sys.argv[1:] if not has(m)]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True)
    return json.loads(proc.stdout)


def setup(args: argparse.Namespace) -> int:
    missing = _missing(NEEDED + WANTED)
    wheels = sorted(Path(args.wheels).glob("*.whl")) if args.wheels else []
    if missing and wheels:
        print(f"missing {', '.join(missing)}: installing {len(wheels)} wheels into {args.site}")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                        "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                        "--disable-pip-version-check", "--target", args.site, *map(str, wheels)],
                       check=True)  # fmt: skip
        print(f"setup: installed {len(wheels)} wheels "
              f"({', '.join(w.name.split('-')[0] for w in wheels)})")  # fmt: skip
        missing = _missing(NEEDED + WANTED)
    elif not missing:
        print("setup: every package there")
    lacking = [m for m in missing if m in NEEDED]
    if lacking:
        print(f"error: missing {', '.join(lacking)}: build the wheelhouse with "
              f"bash scripts/gpu_wheels.sh and carry {args.wheels}", file=sys.stderr)  # fmt: skip
        return 1
    if missing:
        print(f"setup: without {', '.join(missing)} (Hydra's plugin scan warns)")
    first = "train-images-idx3-ubyte"
    source = next((d for d in args.data_src if list(Path(d).glob(f"{first}*"))), None)
    if source is None:
        print(f"error: no Fashion-MNIST files in any of {args.data_src}", file=sys.stderr)
        return 1
    code = ("import sys, hydra, omegaconf, cnnsweep.train.job\n"  # what every step imports
            "from cnnsweep.data.torchvision_sets import load_torchvision\n"
            "(x, _), (t, _) = load_torchvision('FashionMNIST', sys.argv[1], False, sys.argv[2])\n"
            "print(f'setup: {len(x)} + {len(t)} images, hydra-core {hydra.__version__}, "
            "omegaconf {omegaconf.__version__}')")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, args.data, source], check=True)
    print(f"setup: data from {source}")
    return 0


# --- a step's figures ---------------------------------------------------------------------------


def last_error(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    hits = [line for line in lines if ERROR.search(line)]
    return ((hits or lines or ["(no output)"])[-1])[:200]


def bench_figures(log: str) -> dict:
    """bench.py's tables (kept as printed) and the bn_cnn row at batch 100."""
    keep = [line for line in log.splitlines()
            if line.startswith(("|", "torch ")) or re.match(r"\d\. ", line)]  # fmt: skip
    header, rows, fig = None, [], {}
    for line in keep:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == ["model", "batch"]:
            header = cells
        elif header and len(cells) == len(header) and cells[0] != "---":
            rows.append(cells)
    for cells in rows:
        if cells[:2] == ["bn_cnn", "100"]:
            times = {k.replace(" (default)", ""): v for k, v in zip(header[2:], cells[2:])}
            numbers = {float(v): k for k, v in times.items() if _is_number(v)}
            if numbers:  # the fastest knob is the one the goal is met with
                fig["bn_cnn_100"] = min(numbers)
                fig["knob"] = numbers[min(numbers)]
            each = ", ".join(f"{k} {v}" for k, v in times.items())
            fig["figure"] = f"bn_cnn, batch 100: {each} s per epoch"
    if rows:
        fig.setdefault("figure", f"{rows[0][0]}, batch {rows[0][1]}: {', '.join(rows[0][2:])}")
        fig["figure"] += f" ({len(rows)} model/batch rows below)"
    fig["ok"] = bool(rows)
    fig["detail"] = "\n".join(_blank_before_tables(keep))
    return fig


def grid_figures(out: Path, mode: str, cmd: list[str]) -> dict:
    """How many of the sweep's jobs completed, where, and their test accuracies."""
    expected = math.prod(len(v.split(",")) for k, _, v in (w.partition("=") for w in cmd)
                         if "," in v and not k.startswith("hydra"))  # fmt: skip
    rows = [json.loads(p.read_text()) for p in sorted(out.rglob("results.json"))]
    done = [r for r in rows if r.get("status") == "completed"]
    devices = sorted({str(r.get("device")) for r in done})
    fig = {"figure": f"{len(done)}/{expected} jobs completed", "ok": len(done) == expected}
    if done:
        accs = [r["test_acc"] for r in done]
        threads = done[0].get("threads")
        fig["figure"] += (f" on {', '.join(devices)}, {threads} thread{'s' * (threads != 1)} "
                          f"per job; test acc {min(accs):.1%} to {max(accs):.1%}")  # fmt: skip
    if len(done) < len(rows):
        fig["error"] = next(str(r.get("error")) for r in rows if r not in done)
    elif mode != "quick" and not all(d.startswith("cuda") for d in devices):
        fig.update(ok=False, error=f"ran on {', '.join(devices)}, not on the GPU")
    return fig


def preset_figures(out: Path, wall: float, t93: bool) -> dict:
    """The final test accuracy and, with ``t93``, the time to 93% test accuracy as
    bench_accuracy.py reads it: the wall time until the end of the first epoch that reached it."""
    results = sorted(out.rglob("results.json"))
    epochs_file = sorted(out.rglob("epochs.json"))
    if not epochs_file:
        return {"figure": "no epoch finished", "ok": False}
    epochs = json.loads(epochs_file[0].read_text())
    row = json.loads(results[0].read_text()) if results else None
    accs = [(e["epoch"], e.get("test_accuracy")) for e in epochs]
    last, planned = epochs[-1]["epoch"], epochs[-1].get("epochs", "?")
    if row is None:  # stopped (by the budget): the epochs it finished
        acc = accs[-1][1]
        return {"figure": f"stopped after {last} of {planned} epochs: "
                          f"test acc {_pct(acc)} at epoch {last}", "ok": True}  # fmt: skip
    startup = wall - row["run_duration"]  # imports, data, the job's set-up
    hit = next(((startup + e["run duration"], e["epoch"]) for e in epochs
                if (e.get("test_accuracy") or 0) >= 0.93), None)  # fmt: skip
    best = max((a for _, a in accs if a is not None), default=None)
    fig = {"ok": row.get("status") == "completed", "t93": hit[0] if hit else math.inf}
    reached = (f"93% test acc at {hit[0]:.1f} s (epoch {hit[1]}); " if hit
               else f"93% not reached (best epoch {_pct(best)}); ")  # fmt: skip
    fig["figure"] = (f"{reached * t93}final test acc {_pct(row.get('test_acc'))} after "
                     f"{row.get('epochs_run')} of {planned} epochs "
                     f"on {row.get('device')}")  # fmt: skip
    if not fig["ok"]:
        fig["error"] = str(row.get("error"))
    return fig


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.2%}"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _blank_before_tables(lines: list[str]) -> list[str]:
    """Markdown paragraphs: a blank line between lines, except between a table's rows."""
    out = []
    for line in lines:
        if out and not (line.startswith("|") and out[-1].startswith("|")):
            out.append("")
        out.append(line)
    return out


def figures(name: str, out: Path, log: str, mode: str, wall: float, cmd: list[str]) -> dict:
    if name == "setup":
        said = re.findall(r"^setup: (.*)$", log, re.MULTILINE)
        return {"figure": "; ".join(said) or "-", "ok": True}
    if name == "bench":
        return bench_figures(log)
    if name.startswith("grid"):
        return grid_figures(out, mode, cmd)
    return preset_figures(out, wall, t93=name == "fast")


def record(args: argparse.Namespace) -> int:
    run, mode = Path(args.run), json.loads((Path(args.run) / "machine.json").read_text())["mode"]
    wall = args.end - args.start
    step = {"name": args.name, "cmd": shown(args.cmd, args.run), "rc": args.rc, "wall": wall}
    if args.skipped:
        step.update(status="skipped", figure=args.skipped, wall=None)
    else:
        log_file = run / f"{args.name}.log"
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        try:
            fig = figures(args.name, run / args.name, log, mode, wall, args.cmd)
        except Exception as e:  # unattended on a lent GPU: say it, keep the other steps' figures
            fig = {"figure": "-", "ok": False, "error": f"reading its figures: {e!r}"}
        timed_out = args.rc in (124, 137)
        ok = fig.pop("ok") and args.rc == 0
        if timed_out and args.partial_ok:
            status = "stopped by the budget"
        elif ok:
            status = "ok"
        else:
            status = "failed"
            fig.setdefault("error", f"stopped at its limit of {args.cap} s" if timed_out
                           else "stopped from outside (a signal)" if args.rc == 143
                           else last_error(log))  # fmt: skip
        step.update(fig, status=status)
    steps_file = run / "steps.json"
    steps = json.loads(steps_file.read_text()) if steps_file.exists() else []
    steps = [s for s in steps if s["name"] != args.name] + [step]
    steps_file.write_text(json.dumps(steps, indent=2, default=str))
    write_section(Path(args.out), render(run))
    wall_text = f"{wall:.1f} s" if step["wall"] is not None else "-"
    print(f"{args.name}: {step['status']} ({wall_text}): {step['figure']}"
          + (f"\n  last error: {step['error']}" if step.get("error") else ""))  # fmt: skip
    return 1 if step["status"] == "failed" else 0


def shown(cmd: list[str], run: str) -> str:
    """The command as a user types it from the repository root."""
    work = str(Path(run).parent)
    words = ["python" if i == 0 and "python" in Path(w).name else w for i, w in enumerate(cmd)]
    words = [w.replace(f"{REPO}/", "").replace(work, "$WORK") for w in words]
    return " ".join(w if w and " " not in w else repr(w) for w in words)


# --- the section --------------------------------------------------------------------------------


def render(run: Path) -> str:
    info = json.loads((run / "machine.json").read_text())
    steps = json.loads((run / "steps.json").read_text()) if (run / "steps.json").exists() else []
    mode = info["mode"]
    title = {
        "full": "GPU figures",
        "first-pass": "GPU figures, first pass (tiny sizes: proves each step runs)",
        "quick": "GPU figures, --quick on the CPU (tiny sizes: a test, not figures)",
    }
    failed = sum(s["status"] == "failed" for s in steps)
    total = sum(s["wall"] or 0 for s in steps)
    flag = {"full": "", "first-pass": " --first-pass", "quick": " --quick"}[mode]
    lines = [
        f"## {info['date']}: {title[mode]}",
        "",
        f"- Commit: {info['commit']}.",
        f"- Machine: {info['device']}; torch {info['torch']}, Python {info['python']}, "
        f"{info['cpus']} CPU cores.",
        f"- Command: `bash scripts/gpu_figures.sh{flag}` (budget {info['budget']} s): "
        f"{len(steps)} steps in {total:.0f} s, {failed} failed; each step is timed as a whole "
        "process.",
        "",
        "| step | figure | wall | goal (one H100-class GPU) | status |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        figure = s["figure"] + (f"; last error: `{s['error']}`" if s.get("error") else "")
        wall = "-" if s["wall"] is None else f"{s['wall']:.1f} s"
        lines.append(f"| {TITLES.get(s['name'], s['name'])} | {_cell(figure)} | {wall} "
                     f"| {_goal(s, mode)} | {s['status']} |")  # fmt: skip
    bench = next((s for s in steps if s["name"] == "bench" and s.get("detail")), None)
    if bench:
        lines += ["", "`scripts/bench.py` as it printed (seconds per 60000-image epoch):", "",
                  bench["detail"]]  # fmt: skip
    lines += ["", f"The commands, from the repository root (`$WORK` = `{_rel(info['work'])}`; "
              "each step runs in its own folder `$WORK/run/<step>`, where Hydra's `outputs/` and "
              "`multirun/` land, with `CNNSWEEP_DATA_DIR=$WORK/data` and "
              "`PYTHONPATH=src:$WORK/site`):", "", "```"]  # fmt: skip
    lines += [s["cmd"] for s in steps if s["name"] != "setup"] + ["```"]
    return "\n".join(lines)


def _goal(step: dict, mode: str) -> str:
    if step["name"] not in GOALS:
        return ""
    text, key, limit = GOALS[step["name"]]
    value = step.get(key)
    if mode != "full" or step["status"] != "ok" or value is None:
        return text
    knob = f" ({step['knob']})" if step.get("knob") else ""
    return f"{text}: **{'meets' if value <= limit else 'misses'}**{knob}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rel(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def write_section(out: Path, section: str) -> None:
    """Replace what lies between the markers, or append the section with its markers."""
    text = out.read_text() if out.exists() else ""
    block = f"{START}\n{section}\n{END}"
    i, j = text.find(START), text.find(END)
    if 0 <= i < j:
        text = text[:i] + block + text[j + len(END) :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    if out.exists():
        shutil.copymode(out, tmp)
    os.replace(tmp, out)


def paste(args: argparse.Namespace) -> int:
    """The section of a copy (a GPU machine's $OUT/BENCHMARKS.md) into BENCHMARKS.md."""
    text = Path(args.source).read_text()
    i, j = text.find(START), text.find(END)
    if not 0 <= i < j:
        print(f"error: {args.source} has no {START} ... {END} section", file=sys.stderr)
        return 1
    write_section(Path(args.out), text[i + len(START) : j].strip("\n"))
    print(f"the figures of {args.source} are in {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("machine")
    p.add_argument("--run", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--mode", choices=["full", "first-pass", "quick"], required=True)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--carry", default=str(REPO / "bench_out/gpu_carry"))
    p = sub.add_parser("setup")
    p.add_argument("--site", required=True)
    p.add_argument("--wheels", default="")
    p.add_argument("--data", required=True)
    p.add_argument("--data-src", nargs="+", required=True)
    p = sub.add_parser("record")
    for name in ("--run", "--out", "--name"):
        p.add_argument(name, required=True)
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--end", type=float, default=0.0)
    p.add_argument("--cap", type=int, default=0)
    p.add_argument("--partial-ok", action="store_true", help="its time limit is the budget")
    p.add_argument("--skipped", default="", help="not run: why")
    p.add_argument("cmd", nargs="*")
    p = sub.add_parser("paste", help="copy the figures section of SOURCE into --out")
    p.add_argument("source")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    commands = {"machine": machine, "setup": setup, "record": record, "paste": paste}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
