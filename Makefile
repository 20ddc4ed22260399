# The book and its checks. `make help` lists the targets.
# Notebook parameters, passed to every notebook by papermill:
PRESET      ?= auto     # auto | smoke | cpu | paper (auto: paper where its results exist, else cpu)
SEEDS       ?=          # comma-separated, e.g. SEEDS=0,1 (empty: each stage's preset seeds)
DEVICE      ?= auto     # auto | cpu | cuda | cuda:N
RESULTS_DIR ?= results  # results root, relative to the repository
RECOMPUTE   ?= False    # False | True | missing (run a page's stages when its results are missing)
RESULTS_DIR_OK ?= False # True: let RECOMPUTE write into a RESULTS_DIR outside results/ that scvae did not create

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tools run from the venv, and so does the notebooks' python3 kernel.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# The data: $SCVAE_DATA if set, else the shared folder ../shared/data, else data/ once
# `scvae data download` has filled it.
DATA_FOUND := $(wildcard $(CURDIR)/../shared/data) $(patsubst %/binarized_mnist,%,$(wildcard $(CURDIR)/data/binarized_mnist))
SCVAE_DATA ?= $(abspath $(firstword $(DATA_FOUND)))
ifneq ($(strip $(SCVAE_DATA)),)
export SCVAE_DATA
endif

NB_SOURCES := $(wildcard notebooks/*.md)
NB_EXECUTED := $(NB_SOURCES:.md=.ipynb)
# An executed notebook is out of date when its source, the package, a result file or a
# parameter changes. Checkpoints are excluded: they change during training, not results.
PY_SOURCES := $(wildcard scvae_core/*.py scvae_core/*/*.py)
RESULT_FILES := $(shell find $(RESULTS_DIR) -path '*/checkpoints' -prune -o -type f -print 2>/dev/null)
PARAMS_FILE := _build/notebook-params
# -r passes strings raw (no YAML surprises with cuda:0), -p turns True/False into booleans.
PM_PARAMS = -r preset $(strip $(PRESET)) -r device $(strip $(DEVICE)) -r results_dir $(strip $(RESULTS_DIR)) \
	-p recompute $(strip $(RECOMPUTE)) -p results_dir_ok $(strip $(RESULTS_DIR_OK)) -y "seeds: $(if $(strip $(SEEDS)),[$(strip $(SEEDS))],null)"

.PHONY: help venv notebooks book html pdf check-book test test-fast pytest chromium poppler fashion clean
.DEFAULT_GOAL := help

help: ## list the targets
	@echo "usage: make TARGET [PRESET=auto|smoke|cpu|paper] [SEEDS=0,1] [DEVICE=auto|cpu|cuda] [RESULTS_DIR=results] [RECOMPUTE=False|True|missing] [RESULTS_DIR_OK=False|True]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with the package and its book and test extras

# Reinstalls when pyproject.toml (the pins) changes. pip keeps the machine's own config
# (e.g. a constraints cap in /etc/xdg/pip), so no --isolated here.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[book,test]'
	@touch $@

notebooks: $(NB_EXECUTED) ## execute notebooks/*.md with papermill into notebooks/*.ipynb

# Rewritten only when a parameter changes, so that unchanged parameters re-run nothing.
$(PARAMS_FILE): FORCE
	@mkdir -p $(@D)
	@echo '$(PM_PARAMS)' | cmp -s - $@ || echo '$(PM_PARAMS)' > $@

# jupytext -> _build/nb/<name>.ipynb; papermill runs it from the repository root and the
# executed copy replaces notebooks/<name>.ipynb only when every cell succeeded.
notebooks/%.ipynb: notebooks/%.md $(STAMP) $(PY_SOURCES) $(RESULT_FILES) $(PARAMS_FILE)
	@mkdir -p _build/nb
	@echo "==> executing $<: preset=$(strip $(PRESET)) seeds=$(or $(strip $(SEEDS)),default) device=$(strip $(DEVICE)) results_dir=$(strip $(RESULTS_DIR)) recompute=$(strip $(RECOMPUTE))"
	@$(BIN)/jupytext --quiet --to ipynb --output _build/nb/$*.ipynb $<
	@$(BIN)/papermill --cwd . --progress-bar --kernel python3 $(PM_PARAMS) \
		_build/nb/$*.ipynb _build/nb/$*.run.ipynb \
		|| { echo "error: $< failed; the partly executed notebook is _build/nb/$*.run.ipynb" >&2; exit 1; }
	@mv _build/nb/$*.run.ipynb $@

# --all: a full rebuild, so that -W sees the warnings of unchanged pages too.
# -W --keep-going: every warning (a missing reference or citation, a bad toc entry, a
# missing image) fails the build, after all of them are reported. -n (nit-picky) adds
# warnings for every unresolved Python-domain reference; the book has none to resolve.
book: ## execute the notebooks, then build the book into _build/html
	@$(call timed,book,html)
	@echo "book: $(CURDIR)/_build/html/index.html"

html: notebooks
	$(BIN)/jupyter-book build . --all -W -n --keep-going

# The whole book as one page (jupyter-book's singlehtml builder), printed by headless Chromium.
# After `make book` the builder reuses its parsed pages; -W fails on any warning as `html` does.
pdf: notebooks chromium ## build the whole book as one PDF: _build/pdf/book.pdf
	$(BIN)/jupyter-book build . --builder singlehtml -W -n --keep-going
	$(BIN)/python -m scvae_core.book.bookpdf _build/singlehtml _build/pdf/book.pdf

check-book: ## check the built book's tables against results/ and data/paper_reported.json
	$(BIN)/python -m scvae_core.book.bookcheck _build/html

chromium: ## install Debian's chromium for the browser test (needs root)
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }

poppler: ## install Debian's poppler-utils (pdftotext, pdfinfo) for the PDF test (needs root)
	@command -v pdftotext >/dev/null || { apt-get update && apt-get install -y --no-install-recommends poppler-utils; }

fashion: ## install Debian's dataset-fashion-mnist, the Fashion-MNIST runs' data (needs root)
	@test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz || { apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist; }

test: ## build the book and its PDF from the committed results, then run every test (tiers unit, smoke, book)
	@$(call timed,test,pytest)

# One torch thread: the unit tests' tensors are tiny, and threads only add contention
# (measured on a loaded 2-core machine: 38 s wall with one thread, 83 s with two).
test-fast: $(STAMP) ## the unit tier only: no data, no book, no browser (under a minute)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -m unit

pytest: $(STAMP) chromium poppler fashion book pdf
	@test -n "$(SCVAE_DATA)" || echo "warning: no data folder (SCVAE_DATA unset, no ../shared/data, no data/):" \
		"the tests that train will fail; set SCVAE_DATA or run \`scvae data download\`" >&2
	$(BIN)/python -m pytest

clean: ## remove _build and the executed notebooks
	rm -rf _build notebooks/*.ipynb

# $(call timed,NAME,TARGET): make TARGET, then record its wall time as NAME's for `scvae bench`
# (_build/timings/NAME.json), so the performance appendix shows what `make book` and `make test` cost.
timed = start=$$(date +%s); $(MAKE) --no-print-directory $(2) && \
	$(BIN)/python -m scvae_core.bench.timing $(1) $$(( $$(date +%s) - start ))

.PHONY: FORCE
FORCE:
