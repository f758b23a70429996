# Everything runs inside .venv; `make setup` creates it (idempotent). The targets that only use
# the venv (aggregate, tensorboard, dashboard, predict) need it to exist, never reinstall it.
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_PKG := /usr/share/datasets/fashion-mnist
ARGS ?=

.PHONY: setup data train lr-find test lint format bench bench-grid bench-search bench-busy bench-lr-find bench-export bench-accuracy bench-host bench-profile bench-gpu gpu-carry aggregate tensorboard mlflow search dashboard predict export clean slurm-up slurm-down postgres-up postgres-down test-cluster

setup: $(VENV)/.installed data

$(VENV)/.installed: $(ROOT)pyproject.toml $(ROOT)constraints.txt
	test -d $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c $(ROOT)constraints.txt -e '$(ROOT).[dev,postgres,export,mlflow,wandb]'
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

# the learning-rate range test for the configured model and optimizer: make lr-find ARGS="model=bn_cnn"
lr-find: setup
	$(PY) train.py lr_find=true $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: setup lint
	$(PY) -m pytest -q $(ARGS)

bench: setup
	$(PY) scripts/bench.py $(ARGS)

# Optuna search (conf/hparams_search/fashion_mnist_optuna.yaml); again: continues the same study
SEARCH ?= fashion_mnist_optuna
search: setup
	$(PY) train.py -m hparams_search=$(SEARCH) $(ARGS)

# the Optuna dashboard on a study storage: make dashboard [PORT=8080] [STORAGE=sqlite:///studies/x.db]
# (or STORAGE=journal:///studies/x.log, a journal file; or postgresql://user@host/db, password in ~/.pgpass)
PORT ?= 8080
HOST ?= 127.0.0.1
STORAGE ?= sqlite:///studies/fashion_mnist.db
dashboard: | $(VENV)/.installed
	@case "$(STORAGE)" in \
	  journal:///*) set -- "$(patsubst journal:///%,%,$(STORAGE))" --storage-class JournalFileStorage ;; \
	  *) set -- "$(STORAGE)" ;; \
	esac; \
	echo "optuna-dashboard: http://$(HOST):$(PORT)"; \
	exec $(VENV)/bin/optuna-dashboard "$$@" --host $(HOST) --port $(PORT)

# three searches of the recipe space at an equal budget (the plugin's, random, this repo's
# default): best accuracy, minutes to the plugin's best, best_so_far.png; ARGS=--pruners: pruners
bench-search: setup
	$(PY) scripts/bench_search.py $(ARGS)

# the MLflow UI on the runs of logger=[...,mlflow], on 127.0.0.1 only: make mlflow [MLFLOW_PORT=5000]
MLFLOW_URI ?= sqlite:///mlflow.db
MLFLOW_PORT ?= 5000
mlflow: | $(VENV)/.installed
	@echo "MLflow UI on $(MLFLOW_URI): http://$(HOST):$(MLFLOW_PORT)"
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI) --host $(HOST) --port $(MLFLOW_PORT)

# every job's results (multirun/ and outputs/, or DIRS) merged into results/: runs, epochs, summary.md, plots
DIRS ?=
aggregate: | $(VENV)/.installed
	$(PY) -m cnnsweep.aggregate $(DIRS) $(ARGS)

# TensorBoard on the newest sweep (or LOGDIR=...), on 127.0.0.1 only: make tensorboard [TB_PORT=6006]
LOGDIR ?=
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006
tensorboard: | $(VENV)/.installed
	@logdir="$(LOGDIR)"; \
	if [ -z "$$logdir" ]; then logdir=$$($(PY) -m cnnsweep.paths sweep); fi; \
	if [ -z "$$logdir" ] && [ -d outputs ]; then logdir=outputs; fi; \
	if [ -z "$$logdir" ]; then echo "no sweep under multirun/: run python train.py -m ... first"; exit 1; fi; \
	echo "TensorBoard on $$logdir: http://$(TB_HOST):$(TB_PORT)"; \
	$(VENV)/bin/tensorboard --logdir "$$logdir" --host $(TB_HOST) --port $(TB_PORT)

# the learning-rate finder's suggestion against the seeds' 0.01 and 0.001 (network and bn_cnn, Adam)
bench-lr-find: setup
	$(PY) scripts/bench_lr_find.py $(ARGS)

# inference latency: PyTorch eager vs ONNX Runtime, batch 1 and 256 (network, bn_cnn, the fast preset's model)
bench-export: setup
	$(PY) scripts/bench_export.py $(ARGS)

# how busy the 2 slots of a 2-at-a-time search are: asynchronous trials against batches
bench-busy: setup
	$(PY) scripts/bench_busy.py $(ARGS)

# time to 90/91/92/93% test accuracy: seed 003's recipe vs experiment=fashion_mnist_fast, same run

bench-accuracy: setup
	$(PY) scripts/bench_accuracy.py $(ARGS)

# two jobs started together on this machine (threads=auto, every core each) against one alone
bench-host: setup
	$(PY) scripts/bench_host_jobs.py $(ARGS)

# where a recipe's epoch goes: augmentation, forward, backward, optimizer, evaluation (ARGS: train.py overrides)
bench-profile: setup
	$(PY) scripts/bench_profile.py $(ARGS)

# the GPU figures into BENCHMARKS.md (docs/gpu.md): ARGS=--first-pass (tiny, on the GPU) or --quick (CPU);
# no setup: the GPU machine has no package index (make gpu-carry here builds what it needs)
bench-gpu:
	bash scripts/gpu_figures.sh $(ARGS)
gpu-carry:
	bash scripts/gpu_wheels.sh

# the seed's 8-run grid, 3 epochs on Fashion-MNIST: train.py -m vs the seed's loop (ARGS=--quick: 2 runs, 1 epoch)
bench-grid: setup
	$(PY) scripts/bench_grid.py $(ARGS)

# the newest job with a model.pt unless JOB=<job dir or model.pt> is given
JOB ?= $(shell $(PY) -m cnnsweep.paths job 2>/dev/null)
predict: | $(VENV)/.installed
	@test -n "$(JOB)" || { echo "no trained job found: run 'make train' first or give JOB=<dir>"; exit 2; }
	$(PY) predict.py $(JOB) $(ARGS)

# the newest trained job (or JOB=...) as JOB/model.onnx and JOB/model.ts, checked against PyTorch
export: | $(VENV)/.installed
	@test -n "$(JOB)" || { echo "no trained job found: run 'make train' first or give JOB=<dir>"; exit 2; }
	$(PY) export.py $(JOB) $(ARGS)

clean:
	rm -rf outputs multirun results bench_out .pytest_cache

# a one-node Slurm cluster and a local PostgreSQL on this machine (root: they install and start
# system daemons), to try hydra/launcher=slurm and shared studies; docs/clusters-and-studies.md
slurm-up:
	$(ROOT)scripts/cluster/slurm_up.sh
slurm-down:
	$(ROOT)scripts/cluster/slurm_up.sh --stop
postgres-up:
	$(ROOT)scripts/cluster/postgres_up.sh
postgres-down:
	$(ROOT)scripts/cluster/postgres_up.sh --stop

# only the tests against the real cluster and database (they skip, saying why, where none runs)
test-cluster: setup
	$(PY) -m pytest -q -m cluster -rs $(ARGS)
