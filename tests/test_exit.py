"""A finished command leaves without Python's module teardown, and loses nothing doing so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# a program with what a normal exit looks after: an atexit handler, a thread still writing,
# a log file, and output with no newline yet in the stdout buffer
PROGRAM = """
import atexit, logging, sys, threading, time
from pathlib import Path
from cnnsweep.commands import exit_without_teardown
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()
logging.basicConfig(filename=out / "log.txt", level=logging.INFO)
logging.info("the last line")
sys.stdout.write("no newline yet")
exit_without_teardown(int(sys.argv[2]))
"""


def run(tmp_path: Path, *python_args: str, code: int = 0) -> subprocess.CompletedProcess:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    return subprocess.run(
        [sys.executable, *python_args, str(script), str(tmp_path), str(code)],
        capture_output=True,
        text=True,
    )


def test_the_exit_runs_threads_atexit_and_flushes_and_keeps_the_code(tmp_path: Path) -> None:
    proc = run(tmp_path, code=3)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "no newline yet"
    assert (tmp_path / "thread").read_text() == "done"  # waited for, as Python does
    assert (tmp_path / "atexit").read_text() == "ran"
    assert "the last line" in (tmp_path / "log.txt").read_text()


def test_a_profiler_still_writes_its_profile(tmp_path: Path) -> None:
    """cProfile writes after the program returns: under it the usual exit is kept."""
    stats = tmp_path / "program.prof"
    proc = run(tmp_path, "-m", "cProfile", "-o", str(stats))
    assert proc.returncode == 0, proc.stderr
    assert stats.stat().st_size > 0
    assert (tmp_path / "atexit").read_text() == "ran"
