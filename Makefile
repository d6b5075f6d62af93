# Two commands set everything up: `make run` (the app) and `make test` (the suite).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: run test bench install kernels-check gpu-check styles clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/pip install "$(TORCH)" -e ".[dev,cuda]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/stylecam

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q --durations=15

# Every kernel checked without a GPU (Triton interpreter, NVRTC builds, g++-emulated CUDA C), with a summary.
kernels-check: $(STAMP)
	$(BIN)/python -m kernels.check

# On a CUDA machine: every GPU number at once (GPU tests, kernel and pipeline benchmarks, fp16
# fidelity, NVENC recording), a verdict per line, in gpu-check.json; at most ~8 minutes.
gpu-check: $(STAMP)
	$(BIN)/python -m ui.gpu_check --json gpu-check.json

bench: $(STAMP)
	$(BIN)/stylecam bench --source assets/demo/demo.mp4 --size 640x480 --frames 300 --json bench.json

# Rebuild the shipped style packs from training/recipes/*.json (fetch teachers, distil, evaluate,
# check targets, then swap packs in). ARGS="--only paintings --minutes 60" narrows or lengthens it.
styles: $(STAMP)
	nice -n 10 $(BIN)/python -m training.recipes.build $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
