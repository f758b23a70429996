"""Export a job's kept weights: `python export.py outputs/<date>/<time> [--format onnx]`."""

from cnnsweep.commands import exit_without_teardown
from cnnsweep.export import main

if __name__ == "__main__":
    exit_without_teardown(main())
