# Two commands for a new user: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-long test-fast lint bench clean install browser

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import lightning_sr, lightning, hydra, torch" && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## train the embedded default end to end (CPU ok, about 4 minutes), then evaluate it
	$(BIN)/python train.py hydra.run.dir=outputs/demo
	$(BIN)/python evaluate.py ckpt_path=outputs/demo/checkpoints/last.ckpt hydra.run.dir=outputs/demo/eval
	@echo "demo: metrics in outputs/demo/metrics.json, samples in outputs/demo/samples/"

# Two phases: everything but the timed end-to-end defaults on 2 workers (pytest-xdist), then the timed defaults
# alone (they measure a user's wall time on all cores: nothing else may run beside them). Exit status 5 = "no test
# selected" (PYTEST_ARGS picked tests of one phase only) is not a failure.
test: $(STAMP)  ## the test suite (slow tests included, long ones not; under 12 minutes on 2 CPU cores)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not solo and not long" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -q -m "solo and not long" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-long: $(STAMP)  ## make test, then the multi-minute timed runs behind documented figures (e.g. the video default)
	$(MAKE) test
	$(BIN)/python -m pytest -q -m long $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not solo" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lightning_sr tests bench train.py evaluate.py

bench: $(STAMP)
	$(BIN)/python bench/train_step.py

browser:  ## headless Chromium for the report.html browser test (Debian/Ubuntu; needs root)
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

clean:
	rm -rf outputs multirun .pytest_cache
