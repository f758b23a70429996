#!/usr/bin/env bash
# Build bench_out/gpu_carry/: what a GPU machine without a package index needs to run
# scripts/gpu_figures.sh, carried there beside the working tree (docs/gpu.md):
#   wheels/         the pure-Python packages train.py imports that such a machine lacks, for
#                   CPython 3.12 on x86-64 Linux, at constraints.txt's versions; gpu_figures.sh
#                   installs them (pip --no-index --no-deps --target) only where one is missing
#   fashion-mnist/  the four *-ubyte.gz files (from Debian's dataset-fashion-mnist package)
#   commit.txt      the commit they were built at (the copy there may have no .git)
#
#   bash scripts/gpu_wheels.sh [DIR]     # default DIR: bench_out/gpu_carry (git-ignored)
#   GPU_WHEELS_EXTRA="tqdm tensorboard" bash scripts/gpu_wheels.sh   # a machine lacking more
#
# The list fits the GPU image of docs/gpu.md, which already has torch, torchvision, numpy,
# pillow, PyYAML, joblib, tqdm, tensorboard, matplotlib, scikit-learn and scipy. It stays small:
# the carried files travel under a 64 MiB limit (the data is 31 MB of it).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRY=${1:-$REPO/bench_out/gpu_carry}
DATA_SRC=${DATA_SRC:-/usr/share/datasets/fashion-mnist}
if [[ -n ${PYTHON:-} ]]; then PY=$PYTHON
elif [[ -x $REPO/.venv/bin/python ]]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
# Hydra, its joblib launcher, and what Hydra's plugin scan imports in every process (the Optuna
# sweeper and the submitit launcher with their needs): SQLAlchemy is the one compiled wheel
PACKAGES=(hydra-core omegaconf hydra-joblib-launcher hydra-optuna-sweeper hydra-submitit-launcher
  submitit optuna sqlalchemy alembic mako colorlog)
read -ra EXTRA <<<"${GPU_WHEELS_EXTRA:-}"
LIMIT=$((64 * 1024 * 1024))

rm -rf "$CARRY/wheels"
mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -c "$REPO/constraints.txt" -d "$CARRY/wheels" \
  "${PACKAGES[@]}" "${EXTRA[@]}"

for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
  t10k-labels-idx1-ubyte; do
  if [[ -f $DATA_SRC/$name.gz ]]; then cp -p "$DATA_SRC/$name.gz" "$CARRY/fashion-mnist/"
  elif [[ -f $REPO/data/FashionMNIST/raw/$name ]]; then
    gzip -c "$REPO/data/FashionMNIST/raw/$name" >"$CARRY/fashion-mnist/$name.gz"
  else echo "no $name(.gz) in $DATA_SRC or data/FashionMNIST/raw: make setup" >&2; exit 1; fi
done
git -C "$REPO" rev-parse --short HEAD >"$CARRY/commit.txt" 2>/dev/null || rm -f "$CARRY/commit.txt"

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
TREE=$(cd "$REPO" && git ls-files -z --cached --others --exclude-standard 2>/dev/null |
  du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1) || TREE=0
SIZE=$(du -sb "$CARRY" | cut -f1)
for f in "$CARRY"/wheels/*.whl; do echo "  $(basename "$f"): $(mb "$(stat -c %s "$f")")"; done
echo "$CARRY: $(mb "$SIZE") (wheels $(mb "$(du -sb "$CARRY/wheels" | cut -f1)"), data" \
  "$(mb "$(du -sb "$CARRY/fashion-mnist" | cut -f1)")); with the tree's $(mb "${TREE:-0}"):" \
  "$(mb $((SIZE + ${TREE:-0}))) of the $(mb "$LIMIT") that may travel"
if ((SIZE + ${TREE:-0} > LIMIT)); then
  echo "over the 64 MiB that may travel: carry less" >&2
  exit 1
fi
