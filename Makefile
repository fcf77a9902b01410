# The two set-up commands of the README: `make demo` and `make test`. Each creates the virtual
# environment on first use and installs the package with the versions pinned in constraints.txt
# (re-installing only when pyproject.toml or constraints.txt change; pip's cache is reused).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.frontdesk-installed

.PHONY: demo test install bench clean

demo: $(STAMP)
	$(BIN)/frontdesk demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Benchmark-scale runs on ../shared/datasets (or $$FRONTDESK_DATA); they rewrite BENCHMARKS.md tables.
bench: $(STAMP)
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
