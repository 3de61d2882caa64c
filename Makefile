# Saliency Maps in Medical Imaging — the two commands a learner needs:
#   make course   run every notebook headless and render it to HTML in build/
#   make test     unit tests + every notebook under nbval in fast mode (offline)
# Each target calls the cross-platform entry point `python -m course_utils TASK` (Windows users
# run that directly; there is no need for make). It creates .venv from requirements/lock.txt first;
# a .venv made by another Python is rebuilt. Choose the interpreter with PYTHON=python3.13.

PYTHON ?= python3
RUN    := $(PYTHON) -m course_utils

.PHONY: install test unit nbval course course-core book lab prefetch doctor stage benchmark lock clean

install test unit nbval course lab:
	$(RUN) $@

## make course-core: only the core path (sections not marked Optional), rendered into build/core/.
course-core:
	$(RUN) course --core

## make book: the rendered course book (a static website) from the notebooks `make course` ran.
book:
	test -d build || $(RUN) course
	$(RUN) book

## make prefetch / doctor / stage: run inside the course's venv (created if missing).
## make stage: before a workshop, fetch every asset and train every model into data/ (1-1.5 hours on 2 cores).
prefetch doctor stage:
	$(RUN) $@

benchmark:
	$(RUN) install
	.venv/bin/python benchmarks/run_notebooks.py

## make lock: regenerate requirements/lock.txt from pyproject.toml (needs `pip install uv`).
lock:
	uv pip compile pyproject.toml --extra tensorflow --extra test --extra lab --extra book --universal --generate-hashes \
	    --python-version 3.11 --no-header --annotation-style line -o requirements/lock.txt

## make clean: remove rendered notebooks and the virtual environment.
clean:
	rm -rf build .pytest_cache .venv
