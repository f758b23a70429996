# Everything runs inside .venv; `make setup` creates it (idempotent).
PY := .venv/bin/python
DATA_PKG := /usr/share/datasets/fashion-mnist
ARGS ?=

.PHONY: setup data train test lint format bench bench-grid bench-search aggregate tensorboard search dashboard predict clean

setup: .venv/.installed data

.venv/.installed: pyproject.toml
	test -d .venv || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev]'
	touch $@

# Fashion-MNIST offline: Debian's package (needs root); online, torchvision downloads it itself
data:
	@if [ ! -d $(DATA_PKG) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) || \
	     echo "dataset-fashion-mnist not installed: torchvision will try to download"; \
	  else echo "not root: run 'sudo apt-get install -y dataset-fashion-mnist', or let torchvision download"; fi; \
	fi

train: setup
	$(PY) train.py $(ARGS)

lint: .venv/.installed
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: .venv/.installed
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

test: setup lint
	$(PY) -m pytest -q $(ARGS)

bench: setup
	$(PY) scripts/bench.py $(ARGS)

clean:
	rm -rf outputs multirun results bench_out .pytest_cache
