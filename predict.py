"""Predict with a trained job: `python predict.py outputs/<date>/<time> [IMAGE ...]`."""

import sys

from cnnsweep.predict import main

if __name__ == "__main__":
    sys.exit(main())
