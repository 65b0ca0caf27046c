# The course's two commands: `make lab` and `make test`. Both share one set-up step that creates
# .venv when it is missing (or when a requirements file changed) and warms optimum-quanto.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.coursekit-installed
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lab test unit nbtest execute bench release browser train-lm clean

setup: $(STAMP)
	@$(BIN)/python -m coursekit.warmup

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): requirements.txt requirements-torch.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name coursekit --display-name "Python (coursekit)" >/dev/null
	@touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

# Unit tests, every notebook under strict nbval (stored outputs compared), and every notebook
# again in JupyterLab under headless Chromium with its widgets driven (tests/browser), in one run.
# The browser part installs Debian's chromium when it is missing and this runs as root; without
# root it says what to install and those tests skip.
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
NBVAL     := --nbval --nbval-current-env --nbval-cell-timeout=600

test: setup
	@tests/browser/setup.sh --optional
	$(BIN)/python -m pytest -q $(NBVAL) tests $(NOTEBOOKS)

unit: setup
	$(BIN)/python -m pytest -q --ignore=tests/browser tests

nbtest: setup
	$(BIN)/python -m pytest -q $(NBVAL) $(NOTEBOOKS)

# Re-execute the master notebooks in place (after a change to coursekit or a notebook).
execute: setup
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=300 notebooks/*.ipynb

train-lm: setup
	$(BIN)/python scripts/train_lm.py

clean:
	rm -rf $(VENV) .pytest_cache

# Speed, memory and accuracy against the alternatives: benchmarks/results/report.md
bench: setup
	$(BIN)/python -m benchmarks.run

# Learner copies (solutions stubbed out) where the Colab badges point; a test fails when stale.
release: setup
	$(BIN)/coursekit release notebooks --out notebooks/learner

# Only the browser part of `make test`: every notebook in JupyterLab under headless Chromium.
browser: setup
	tests/browser/setup.sh
	$(BIN)/python -m pytest -q -m browser tests/browser
