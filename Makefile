# The two set-up commands of the README: `make demo` and `make test`. Each creates the virtual
# environment on first use, installs the package with every extra at the versions pinned in
# constraints.txt (re-installing only when pyproject.toml or constraints.txt change; pip's cache is
# reused), and fetches the offline LLM (cached and sha256-verified in ~/.cache/frontdesk/models).
# On a fresh machine the first install compiles llama.cpp (llama-cpp-python): 8–18 minutes on 2 cores.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.frontdesk-installed
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: demo test install model bench clean

demo: model
	$(BIN)/frontdesk demo

test: model
	$(BIN)/python -m pytest -q

install: $(STAMP)

model: $(STAMP)
	$(BIN)/frontdesk models fetch

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing frontdesk[all] (the first time this compiles llama.cpp: 8-18 minutes on 2 cores) ..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Benchmark-scale runs on ../shared/datasets (or $$FRONTDESK_DATA); they rewrite BENCHMARKS.md tables.
bench: $(STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/multi_intent.py
	$(BIN)/python bench/tools_narrowing.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/simulation.py
	$(BIN)/python bench/cascade.py
	$(BIN)/python bench/distill.py --teacher runs/bench-models/banking77-int8

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
