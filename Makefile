# Saliency Maps in Medical Imaging — the two commands a learner needs:
#   make course   run every notebook headless and render it to HTML in build/
#   make test     unit tests + every notebook under nbval in fast mode (offline)
# Both create the virtual environment (.venv) first if it is missing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Quiet TensorFlow's C++ logging and hide GPUs (the course is CPU-first and deterministic).
export TF_CPP_MIN_LOG_LEVEL ?= 3
export CUDA_VISIBLE_DEVICES ?=
export PYTHONHASHSEED ?= 0
export KERAS_BACKEND ?= tensorflow

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: install test unit nbval course lab prefetch doctor benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

## make test: everything CI checks, offline, in fast mode.
test: install
	COURSE_OFFLINE=1 COURSE_FAST=1 $(PY) -m pytest tests $(NOTEBOOKS) \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

unit: install
	COURSE_OFFLINE=1 $(PY) -m pytest tests -p no:cacheprovider

nbval: install
	COURSE_OFFLINE=1 COURSE_FAST=1 $(PY) -m pytest $(NOTEBOOKS) --nbval-lax --nbval-current-env \
	    --nbval-cell-timeout=900 --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

## make course: execute every notebook (full mode unless COURSE_FAST=1) and render HTML to build/.
course: install
	$(PY) -m course_utils render --out build $(NOTEBOOKS)

lab: install
	$(VENV)/bin/jupyter lab notebooks

prefetch: install
	$(PY) -m course_utils prefetch

doctor: install
	$(PY) -m course_utils doctor

benchmark: install
	$(PY) benchmarks/run_notebooks.py

clean:
	rm -rf build .pytest_cache
