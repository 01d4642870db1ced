# One command to set up and run the demo, one to run the tests (see README.md).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch first, so the range in pyproject.toml is already satisfied (no multi-GB CUDA wheel).
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.2,<3" --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -q -e ".[postgres,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/compliance demo

test: $(STAMP)
	$(BIN)/ruff check compliance sample_data tests scripts bench migrations
	$(BIN)/pytest -n 2 -q --durations=15

clean:
	rm -rf $(VENV) compliance-demo sample_data/generated
