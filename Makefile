# Competition files -> fetch -> train -> predict -> submit. `make help` lists the targets.
# Targets are files where they can be, so a rerun skips finished work.

# The virtual environment comes first: the latest-run lookup below runs its Python, so PY must be defined
# before anything expands it (as a user types the command, nothing sets PY on the command line).
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KIT   := $(PY) -m kit

# Defaults: `make train` trains the cpu preset; `make predict`, `score` and `submit` without PRESET or RUN
# follow the most recently finished run (as `make report` does), so they act on the run the user just made.
# RUN= on predict, score or submit names a finished run; only `make train` makes a new one.
PRESET ?= cpu
# COMPETITION=slug on any target: Dogs vs. Cats Redux's runs, submissions and reports keep today's folders;
# every other competition's sit under its slug (kit/config.py's competition_paths, the same rule).
REDUX       := dogs-vs-cats-redux-kernels-edition
COMPETITION ?= $(REDUX)
OTHER       := $(filter-out $(REDUX),$(COMPETITION))
RUNS        := runs$(if $(OTHER),/$(COMPETITION))
SUBMISSIONS := submissions$(if $(OTHER),/$(COMPETITION))
REPORTS     := reports$(if $(OTHER),/$(COMPETITION))
DIRS_ARGS   := $(if $(OTHER),--runs-dir $(RUNS))
NAMED      := $(filter command line environment,$(origin RUN) $(origin PRESET))
RUN_NAMED  := $(filter command line environment,$(origin RUN))
TRAINING   := $(filter train,$(MAKECMDGOALS))
FOLLOW_LATEST := $(if $(NAMED)$(TRAINING),,$(filter predict score submit,$(MAKECMDGOALS)))
LATEST_RUN     = $(if $(wildcard $(PY)),$(shell $(PY) -m kit runs --latest $(DIRS_ARGS) 2>/dev/null))
ifneq ($(FOLLOW_LATEST),)
RUN := $(LATEST_RUN)
ifneq ($(RUN),)
$(info make: $(firstword $(FOLLOW_LATEST)) follows the latest finished run, RUN=$(RUN) (set RUN=name or PRESET=name for another))
else
undefine RUN
FOLLOW_LATEST :=
endif
endif
RUN    ?= $(PRESET)
SET    ?=
DATA   ?= data/$(COMPETITION)
FROM   ?=
LABELS ?=
MSG    ?= $(RUN) from make submit
# Messages reach the recipes through the environment, so quotes in them are kept as typed.
export MSG

COMPETITION_ARGS := $(if $(OTHER),--set competition=$(COMPETITION)) \
                    $(if $(filter-out data/$(COMPETITION),$(DATA)),--set data_dir=$(DATA))
CONFIG_ARGS := --preset $(PRESET) $(if $(filter-out $(PRESET),$(RUN)),--set run=$(RUN)) $(COMPETITION_ARGS) \
               $(foreach s,$(SET),--set $(s))
ifneq ($(filter score,$(MAKECMDGOALS)),)
ifeq ($(LABELS),)
$(error make score needs LABELS=FILE.csv, the true labels (columns id and label))
endif
endif
RUN_DIR    := $(RUNS)/$(RUN)
SUBMISSION := $(SUBMISSIONS)/$(RUN).csv
REPORT     := $(REPORTS)/$(RUN)/index.html
REPORT_ARGS := $(DIRS_ARGS) $(if $(OTHER),--reports-dir $(REPORTS))
LAYER  ?=

.DEFAULT_GOAL := help
.PHONY: help demo test fetch train predict report score submit submissions clean clean-data venv bench FORCE

help: ## list the targets
	@echo "usage: make TARGET [PRESET=name] [RUN=name] [SET='epochs=5 clip_low=0.01'] [FROM=dir] [COMPETITION=slug]"
	@echo "  COMPETITION: the Kaggle slug (default $(REDUX)); another one's runs, submissions and reports go under <slug>/"
	@echo "  PRESET: cpu (default), gpu-classic, gpu-modern, baseline (the from-scratch CNN), cnn-cpu, demo"
	@echo "  RUN: defaults to PRESET; predict, score and submit without either follow the latest finished run"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The virtual environment holds exactly requirements.lock, and is refreshed whenever the lock changes.
$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	@touch $@

venv: $(STAMP) ## create or refresh the virtual environment (.venv, from requirements.lock)

# requirements.txt holds the run-time ranges, requirements-dev.txt adds the tests' and tools'; requirements.lock
# the exact versions both resolve to today.
UV        := $(VENV)/bin/uv
LOCK_ARGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line

lock: | $(STAMP) ## re-resolve requirements-dev.txt (it includes requirements.txt) to the newest versions, into requirements.lock
	$(UV) pip compile requirements-dev.txt --upgrade $(LOCK_ARGS) -o requirements.lock

# test-oldest / test-latest: a venv of their own at each end of the ranges, then the fast tests in it.
# $(1): the venv's suffix, $(2): uv's resolution strategy.
define test_at_range_end
rm -rf .venv-$(1)
$(UV) venv --quiet --python $(PYTHON_BOOT) .venv-$(1)
$(UV) pip compile requirements-dev.txt --resolution $(2) $(LOCK_ARGS) -o .venv-$(1)/resolved.txt
$(UV) pip install --quiet --python .venv-$(1)/bin/python -r .venv-$(1)/resolved.txt
.venv-$(1)/bin/python -m pytest -m "not slow" -p no:cacheprovider
endef
.PHONY: lock test-oldest test-latest

test-oldest: | $(STAMP) ## the fast tests on the lowest versions the ranges allow (.venv-oldest)
	$(call test_at_range_end,oldest,lowest-direct)

test-latest: | $(STAMP) ## the fast tests on the newest versions the ranges allow (.venv-latest)
	$(call test_at_range_end,latest,highest)

demo: | $(STAMP) ## the whole pipeline on a synthetic competition (offline, no credentials)
	$(KIT) demo $(foreach s,$(SET),--set $(s))

test: | $(STAMP) ## run the test suite
	$(PY) -m pytest

$(DATA)/fetch.json: | $(STAMP)
	$(KIT) fetch $(if $(FROM),--from $(FROM)) $(CONFIG_ARGS)

fetch: | $(STAMP) ## download (kaggle client) or take FROM=dir, extract and index the competition
	$(KIT) fetch $(if $(FROM),--from $(FROM)) $(CONFIG_ARGS)

# The kit, not make, decides whether a run is done: it knows what shaped the run (settings, data, weights),
# so `kit train` is always asked (FORCE) and answers at once when the run is finished with these settings.
# It leaves metrics.json untouched then, so nothing downstream is redone.
# A followed run is finished already, and RUN= without `train` names a finished run: neither is trained here.
ifneq ($(FOLLOW_LATEST),)
$(RUN_DIR)/metrics.json: ;
else ifneq ($(RUN_NAMED),)
ifeq ($(TRAINING),)
$(RUN_DIR)/metrics.json: | $(STAMP)
	@$(KIT) runs $(RUN) $(DIRS_ARGS)
else
$(RUN_DIR)/metrics.json: FORCE $(DATA)/fetch.json
	$(KIT) train $(CONFIG_ARGS)
endif
else
$(RUN_DIR)/metrics.json: FORCE $(DATA)/fetch.json
	$(KIT) train $(CONFIG_ARGS)
endif

# The report follows the run, and its submission when there is one (or `make predict` is writing it).
$(REPORT): $(RUN_DIR)/metrics.json $(if $(filter predict,$(MAKECMDGOALS)),$(SUBMISSION),$(wildcard $(SUBMISSION)))
	$(KIT) report $(RUN) $(REPORT_ARGS)

train: $(REPORT) ## train the PRESET (says so and does nothing when finished with these settings); writes its report
	@echo "report: $(REPORT)"

# predict, score and submit always ask `kit predict` too (a new clip is a new file); it rewrites the submission
# only when the run or the settings changed. `make train` alone refreshes a submission only when the run did.
$(SUBMISSION): $(RUN_DIR)/metrics.json $(if $(filter predict score submit,$(MAKECMDGOALS)),FORCE)
	$(KIT) predict $(CONFIG_ARGS)

predict: $(SUBMISSION) $(REPORT) ## write submissions/RUN.csv, clipped and checked; refreshes the report
	@echo "report: $(REPORT)"

report: | $(STAMP) ## (re)build reports/RUN/index.html (default: the latest finished run; LAYER=name for activations)
	$(KIT) report $(if $(NAMED),$(RUN)) $(if $(LAYER),--layer $(LAYER)) $(REPORT_ARGS)

score: $(SUBMISSION) ## the submission scored against LABELS=csv (id and label columns; another COMPETITION: its own columns and metric)
	$(KIT) score $(SUBMISSION) --labels $(LABELS) $(if $(OTHER),--task $(DATA)/task.json)

submit: $(SUBMISSION) ## check and upload submissions/RUN.csv to Kaggle, add it to the ledger (MSG='...')
	$(KIT) submit $(SUBMISSION) -m "$$MSG" $(CONFIG_ARGS)

submissions: | $(STAMP) ## refresh public scores from Kaggle and print the submissions ledger
	$(KIT) submissions $(CONFIG_ARGS)

clean-data: | $(STAMP) ## flag anomalous training images: reports/clean/ and DATA/exclusions.csv (CHECKS=...)
	$(KIT) clean --preset $(if $(filter baseline,$(PRESET)),cpu,$(PRESET)) $(if $(CHECKS),--checks $(CHECKS)) \
	  $(if $(OTHER),--report-dir $(REPORTS)/clean) $(COMPETITION_ARGS) $(foreach s,$(SET),--set $(s))

bench: | $(STAMP) ## benchmarks on ../shared/data: loading, extraction, cost shape, levers, cleaning, fine-tuning, the cpu preset's bar
	cd bench && $(abspath $(PY)) loading.py && $(abspath $(PY)) extraction.py && $(abspath $(PY)) cost_shape.py \
	  && $(abspath $(PY)) cpu_levers.py && $(abspath $(PY)) lite_levers.py && $(abspath $(PY)) clean_imagenet.py \
	  && $(abspath $(PY)) cpu_finetune.py && $(abspath $(PY)) lite_finetune.py && $(abspath $(PY)) cpu_preset.py && $(abspath $(PY)) holdout.py \
	  && $(abspath $(PY)) real_layouts.py && $(abspath $(PY)) every_layout.py

# Kaggle kernels: kernels/<name>/ is generated from the kit (`make kernels`), pushed under your username.
KERNEL ?=
ONLY   ?=
DIRS   ?=
WAIT   ?=
KERNEL_MSG = $(if $(filter command line environment,$(origin MSG)),$(MSG),kernel $(KERNEL) from make kernel-submit)
export KERNEL_MSG
.PHONY: kernels kernel-push kernel-status kernel-output kernel-submit blend

kernels: | $(STAMP) ## rebuild kernels/<name>/ (script + kernel-metadata.json) for every Kaggle kernel
	$(KIT) kernels build $(COMPETITION_ARGS)

kernel-push: | $(STAMP) ## push kernels/KERNEL as your private GPU kernel (KERNEL=gpu-modern [ONLY=convnext_small])
	$(KIT) kernels push $(KERNEL) $(if $(ONLY),--only $(ONLY)) $(COMPETITION_ARGS)

kernel-status: | $(STAMP) ## the Kaggle status of KERNEL (WAIT=1 polls until it has finished)
	$(KIT) kernels status $(KERNEL) $(if $(WAIT),--wait) $(COMPETITION_ARGS)

kernel-output: | $(STAMP) ## download KERNEL's output to submissions/kernels/KERNEL/, its submission to submissions/kernels/KERNEL.csv
	$(KIT) kernels output $(KERNEL) $(CONFIG_ARGS)

kernel-submit: | $(STAMP) ## submit submissions/kernels/KERNEL.csv, from KERNEL's latest output, through the ledger (MSG='...')
	$(KIT) kernels submit $(KERNEL) -m "$$KERNEL_MSG" $(CONFIG_ARGS)

blend: | $(STAMP) ## blend kernel outputs or runs into submissions/blend.csv (DIRS='submissions/kernels/a runs/b')
	$(KIT) blend $(DIRS) $(CONFIG_ARGS)

clean: ## delete runs and reports (never the data or submissions; COMPETITION=slug: that competition's only)
	rm -rf $(RUNS) $(REPORTS)

# --- issue 14: the GPU path (training input benchmark, GPU check, Kaggle's image) --------------------
.PHONY: bench-train-input
bench: bench-train-input
bench-train-input: | $(STAMP) ## images/s into model.fit at 384 px, augmented: the pixel cache + tf.data against ImageBatches
	cd bench && $(abspath $(PY)) train_input.py

.PHONY: gpu-check
gpu-check: | $(STAMP) ## on a GPU machine: one epoch of gpu-modern's fine-tuning on the real photos, input against model rates
	cd bench && $(abspath $(PY)) gpu_check.py

.PHONY: test-kaggle-image
test-kaggle-image: | $(STAMP) ## the kernel tests and the fast suite on Kaggle's GPU image versions (kaggle-image.txt, .venv-kaggle)
	rm -rf .venv-kaggle
	$(UV) venv --quiet --python $(PYTHON_BOOT) .venv-kaggle
	$(UV) pip compile kaggle-image.txt requirements-dev.txt $(LOCK_ARGS) -o .venv-kaggle/resolved.txt
	$(UV) pip install --quiet --python .venv-kaggle/bin/python -r .venv-kaggle/resolved.txt
	.venv-kaggle/bin/python -c "import sys, tensorflow as tf, keras; print('kaggle image:', sys.version.split()[0], 'tensorflow', tf.__version__, 'keras', keras.__version__)" 2>/dev/null
	MAKEFLAGS= .venv-kaggle/bin/python -m pytest tests/test_kernels.py tests/test_kaggle_image.py -p no:cacheprovider
	MAKEFLAGS= .venv-kaggle/bin/python -m pytest -m "not slow" -p no:cacheprovider
