# Two commands a newcomer needs: `make run` (main job on the embedded dataset) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
OBJECTIVE ?= min_recall
OUT ?= runs/mnist_lt_$(OBJECTIVE)

.PHONY: run test venv bench clean-nbs notebooks data evidence

venv: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: venv
	mkdir -p $(OUT)
	$(VENV)/bin/papermill --log-output nbs/run.ipynb $(OUT)/run.ipynb -p objective $(OBJECTIVE) -p out_dir $(OUT)

# Fashion-MNIST for the fmnist_lt benchmarks: Debian's dataset-fashion-mnist package (or torchvision's download where
# there is internet), unpacked under the data root and checked by content
data: venv
	test -d /usr/share/datasets/fashion-mnist || (command -v apt-get >/dev/null && (apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist))) || true
	$(PY) -c "from selmix.data import fashion_arrays; a = fashion_arrays(download=True); print('fmnist_lt data ready:', [x.shape for x in a])"

# The Fashion-MNIST-LT evidence, resumable, a chunk at a time (hours on a CPU): the tuning and pre-training-length grids first, then CHUNK more
# runs of the evidence grid; each chunk adds its rows to the committed ones, and runs already committed are skipped (commit data/results/fmnist_*.csv)
CHUNK ?= 20
evidence: data
	$(PY) -m selmix.sweep fmnist_tuning --committed data/results/fmnist_tuning.csv && $(PY) -m selmix.sweep fmnist_tuning_s --committed data/results/fmnist_tuning.csv
	$(PY) -m selmix.sweep fmnist_pretrain_length --committed data/results/fmnist_pretrain_length.csv
	$(PY) -c "from selmix.finetune import TUNED; from selmix.sweep import TUNE_ARMS; t = TUNED.get('fmnist_lt', {}); assert set(t) >= set(TUNE_ARMS) and 's' in t['selmix'], 'set selmix.finetune.TUNED from the tuning rows first (nbs/evidence.ipynb shows the choice)'"
	$(PY) -m selmix.sweep fmnist_evidence --limit $(CHUNK) --committed data/results/fmnist_runs.csv
	$(PY) -c "from selmix.results import collect_evidence; print(collect_evidence('runs', 'data/results'))"

test: venv
	$(PY) tests/run_all.py

bench: venv
	$(PY) -m selmix.bench gain && $(PY) -m selmix.bench finetune

clean-nbs: venv
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean

# Execute every notebook in place, with its outputs (slow cells included), in reading order, then clean the metadata.
# The notebooks are committed executed; this regenerates them all (hours on a CPU: pre-training and the full runs), and
# stamps each code cell with the hash of its source, which `make test` compares (tests/test_structure.py).
NBDIR ?= nbs
NOTEBOOKS ?= $(notdir $(sort $(wildcard $(NBDIR)/[0-9]*.ipynb))) index.ipynb run.ipynb report.ipynb
NB_TIMEOUT ?= 14400
notebooks: venv
	$(VENV)/bin/nbdev_export
	cd $(NBDIR) && for nb in $(NOTEBOOKS); do echo "== executing $$nb"; \
	  $(abspath $(VENV))/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=$(NB_TIMEOUT) \
	    --ExecutePreprocessor.kernel_name=python3 $$nb || exit 1; \
	  $(abspath $(PY)) $(abspath tests/test_structure.py) $$nb; done
	$(VENV)/bin/nbdev_clean --fname $(NBDIR)
