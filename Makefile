# Two commands a newcomer needs: `make run` (main job on the embedded dataset) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
OBJECTIVE ?= min_recall
OUT ?= runs/mnist_lt_$(OBJECTIVE)

.PHONY: run test venv bench clean-nbs

venv: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: venv
	mkdir -p $(OUT)
	$(VENV)/bin/papermill --log-output nbs/run.ipynb $(OUT)/run.ipynb -p objective $(OBJECTIVE) -p out_dir $(OUT)

test: venv
	$(PY) tests/run_all.py

bench: venv
	$(PY) -m selmix.bench gain && $(PY) -m selmix.bench finetune

clean-nbs: venv
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean
