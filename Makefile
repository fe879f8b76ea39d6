# mdeas — `make help` lists the targets. Every target sets itself up (a .venv with the package, editable).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
ARGS ?=
LOGDIR ?= outputs
PYTHON ?= python3

.PHONY: help install train test test-all lint format tensorboard dashboard-shots bench leaderboard gpu-wheels gpu-check clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv: torch (TORCH_SPEC, default torch==2.13.0), the package (editable), dev tools

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

train: install ## train the default recipe on generated data (extra overrides: make train ARGS="...")
	THP_MEM_ALLOC_ENABLE=1 $(PY) -m mdeas.train $(ARGS)

test: install ## run the fast tests, one process per CPU core (pytest-xdist), one thread each
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -q -n auto

test-all: install ## run every test, slow ones included, one process per CPU core
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

dashboard-shots: install ## tiny run, then Time Series/Images/HPARAMS screenshots in outputs/dashboard-shots/shots (needs chromium)
	rm -rf outputs/dashboard-shots
	$(PY) -m mdeas.train hydra.run.dir=outputs/dashboard-shots trainer.max_epochs=3 data.synth.num_samples=96 data.batch_size=16 data.num_workers=0 trainer.log_every_n_steps=1
	$(PY) experiments/dashboard_shots.py --logdir outputs/dashboard-shots --out outputs/dashboard-shots/shots

bench: install ## data-path, indexing and training-step benchmarks (GPU: make bench ARGS="--device cuda --batch 64")
	$(PY) -m experiments.bench_data
	$(PY) -m experiments.bench_index
	$(PY) -m experiments.bench_train $(ARGS)

leaderboard: install ## every preset × loss at an equal budget; appends to experiments/RESULTS.md
	$(PY) -m experiments.leaderboard --results

tensorboard: install ## TensorBoard over the runs in LOGDIR (default outputs; LOGDIR=multirun for sweeps)
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --bind_all

gpu-wheels: install ## download what a GPU machine without network lacks into wheels/ (needs network)
	$(PY) -m experiments.gpu_check --download-wheels wheels/

gpu-check: ## on the GPU machine (no .venv): CUDA tests, best chain, benchmarks -> gpu_check/summary.md
	$(PYTHON) -m experiments.gpu_check --out gpu_check $(ARGS)

clean: ## remove runs, caches and build files (keeps .venv)
	rm -rf outputs multirun data/cache .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
