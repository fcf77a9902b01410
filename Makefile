# The two set-up commands of the README: `make demo` and `make test`. Each creates the virtual
# environment on first use, installs the package with every extra at the versions pinned in
# constraints.txt (re-installing only when pyproject.toml or constraints.txt change; pip's cache is
# reused), and fetches the offline LLM (cached and sha256-verified in ~/.cache/frontdesk/models).
# Nothing is compiled: every package is a wheel (the offline LLM runs on xllamacpp, a prebuilt llama.cpp),
# so a fresh machine is ready in minutes. `make test-fast` skips the slow tests (the real local LLM).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.frontdesk-installed

.PHONY: demo test test-fast install model bench clean

demo: model
	$(BIN)/frontdesk demo

test: model
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

install: $(STAMP)

model: $(STAMP)
	$(BIN)/frontdesk models fetch

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing frontdesk[all]: prebuilt wheels, nothing to compile (2–5 min on a fresh machine) ..."
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Benchmark-scale runs on ../shared/datasets (or $$FRONTDESK_DATA); they rewrite BENCHMARKS.md tables.
bench: $(STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/multi_intent.py
	$(BIN)/python bench/tools_narrowing.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/reliability_llm.py
	$(BIN)/python bench/simulation.py
	$(BIN)/python bench/cascade.py
	$(BIN)/python bench/distill.py --teacher runs/bench-models/banking77-int8

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
