# napari-smlm: two commands for a new machine (see README).
#   make demo   create .venv, install the package (CPU torch first), reconstruct the sample
#   make test   install the dev dependencies and run the whole test suite headless (what CI runs)
#   make test-fast   the same without the tests marked `slow` (training-heavy, benchmark quick run)
PYTHON ?= python3
VENV ?= .venv
# Override for a GPU build, e.g. make demo TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
PIP := $(VENV)/bin/python -m pip
PYTEST_ARGS ?=

.PHONY: demo test test-fast venv dev system-deps bench bench-quick screenshots clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[all]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[all,testing]"
	touch $@

venv: $(VENV)/.installed

dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/napari-smlm demo -o demo_output

system-deps:
	bash scripts/install_system_deps.sh

test: $(VENV)/.installed-dev system-deps
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev system-deps
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench-quick: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/run_all.py --quick

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/run_all.py

screenshots: $(VENV)/.installed-dev system-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/python scripts/make_screenshots.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
