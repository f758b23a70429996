"""Export a job's kept weights: `python export.py outputs/<date>/<time> [--format onnx]`."""

import sys

from cnnsweep.export import main

if __name__ == "__main__":
    sys.exit(main())
