# Two commands for a new user: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-long test-matrix test-research test-fast lint bench clean install browser browser-if-possible

$(BIN)/python:
	$(PY) -m venv $(VENV)

# pip's output goes to a log; the one harmless warning ("... is ignored: it is neither a file nor a directory") is
# filtered from what is shown, and pip's own exit status decides: an install failure stops here with its message.
PIP = $(BIN)/python -m pip install -q
define pip_install
	@$(PIP) $(1) >$(VENV)/pip.log 2>&1; s=$$?; grep -v "is ignored: it is neither" $(VENV)/pip.log; \
	  if [ $$s -ne 0 ]; then echo "error: pip install $(1) failed (exit $$s); full log: $(VENV)/pip.log" >&2; fi; exit $$s
endef

$(STAMP): pyproject.toml | $(BIN)/python
	$(call pip_install,--upgrade pip)
	$(call pip_install,-e '.[dev]')
	$(BIN)/python -c "import lightning_sr, lightning, hydra, torch" && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## train the embedded default end to end (CPU ok, about 4 minutes), then evaluate it
	$(BIN)/python train.py hydra.run.dir=outputs/demo
	$(BIN)/python evaluate.py ckpt_path=outputs/demo/checkpoints/last.ckpt hydra.run.dir=outputs/demo/eval
	@echo "demo: metrics in outputs/demo/metrics.json, samples in outputs/demo/samples/"

# One pytest run on 2 workers (pytest-xdist): every test but the `long` ones (the timed end-to-end defaults, which
# measure a user's wall time and so run alone under `make test-long`), the `matrix` ones (tests/matrix: every
# module x every compression, `make test-matrix`) and the `research` ones (`make test-research`). pytest's own exit
# status decides, 5 ("no test selected", e.g. a mistyped PYTEST_ARGS=-k) included. A hung test fails after pyproject's pytest timeout (600 s);
# --durations=15 lists the slowest tests. The browser test renders report.html in Chromium: `browser-if-possible`
# installs it where it can (root with apt-get), else the test is skipped with its reason in the -ra summary.
PYTEST_RUN = $(BIN)/python -m pytest -q --durations=15
test: $(STAMP) browser-if-possible  ## the test suite (slow tests included, long ones not; under 12 minutes on 2 CPU cores)
	$(PYTEST_RUN) -n 2 --dist loadgroup -m "not long and not matrix and not research" $(PYTEST_ARGS)

# The path matrix (tests/matrix, docs/testing.md): every module x every compression as a single process, as a
# multirun through the report and under DDP on 2 CPU processes, every refused combination as its one-line error.
# --no-loadscope-reorder: xdist keeps the collection order, which tests/conftest.py sorts by measured cost (longest
# first); by default it would order the row groups by their number of tests.
test-matrix: $(STAMP)  ## the path matrix (under 30 minutes on 2 CPU cores)
	$(PYTEST_RUN) -n 2 --dist loadgroup --no-loadscope-reorder -m matrix $(PYTEST_ARGS)

# The research programme's one command at toy budgets (sweeps/cpu_results.sh smoke, docs/results.md): every
# question's jobs, reports and results document, then the same command again, which must train nothing.
test-research: $(STAMP)  ## sweeps/cpu_results.sh smoke, as two tests on 2 workers (about 12 minutes on 2 CPU cores)
	$(PYTEST_RUN) -n 2 --dist loadgroup -m research $(PYTEST_ARGS)

test-long: $(STAMP)  ## make test, then the multi-minute timed runs behind documented figures, alone (no other test beside them)
	$(MAKE) test
	$(PYTEST_RUN) -m long $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not long and not matrix and not research" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lightning_sr tests bench train.py evaluate.py

bench: $(STAMP)
	$(BIN)/python bench/train_step.py

browser:  ## headless Chromium for the report.html browser test (Debian/Ubuntu; needs root)
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# make test's soft variant: install Chromium where this machine allows it, otherwise say why and go on (the browser
# test then shows as skipped, with its reason, in pytest's summary).
browser-if-possible:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "note: Chromium missing and not root: the report.html browser test will be skipped (sudo make browser)"; \
	elif ! command -v apt-get >/dev/null; then echo "note: Chromium missing and no apt-get: the report.html browser test will be skipped"; \
	else apt-get update -q && apt-get install -y -q chromium || echo "note: apt-get install chromium failed: the report.html browser test will be skipped"; fi

clean:
	rm -rf outputs multirun .pytest_cache
