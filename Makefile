# Competition files -> fetch -> train -> predict -> submit. `make help` lists the targets.
# Targets are files where they can be, so a rerun skips finished work.

PRESET ?= baseline
RUN    ?= $(PRESET)
SET    ?=
COMPETITION ?= dogs-vs-cats-redux-kernels-edition
DATA   ?= data/$(COMPETITION)
FROM   ?=
LABELS ?=
MSG    ?= $(RUN) from make submit
# Messages reach the recipes through the environment, so quotes in them are kept as typed.
export MSG

PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KIT   := $(PY) -m kit
CONFIG_ARGS := --preset $(PRESET) $(if $(filter-out $(PRESET),$(RUN)),--set run=$(RUN)) \
               $(if $(filter-out data/$(COMPETITION),$(DATA)),--set data_dir=$(DATA)) $(foreach s,$(SET),--set $(s))
RUN_DIR    := runs/$(RUN)
SUBMISSION := submissions/$(RUN).csv
REPORT     := reports/$(RUN)/index.html
LAYER  ?=

.DEFAULT_GOAL := help
.PHONY: help demo test fetch train predict report score submit submissions clean clean-data venv bench

help: ## list the targets
	@echo "usage: make TARGET [PRESET=baseline|cpu|demo] [RUN=name] [SET='epochs=5 clip_low=0.01'] [FROM=dir]"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The virtual environment holds exactly requirements.lock, and is refreshed whenever the lock changes.
$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	@touch $@

venv: $(STAMP) ## create or refresh the virtual environment

demo: | $(STAMP) ## the whole pipeline on a synthetic competition (offline, no credentials)
	$(KIT) demo $(foreach s,$(SET),--set $(s))

test: | $(STAMP) ## run the test suite
	$(PY) -m pytest

$(DATA)/fetch.json: | $(STAMP)
	$(KIT) fetch $(if $(FROM),--from $(FROM)) $(CONFIG_ARGS)

fetch: | $(STAMP) ## download (kaggle client) or take FROM=dir, extract and index the competition
	$(KIT) fetch $(if $(FROM),--from $(FROM)) $(CONFIG_ARGS)

$(RUN_DIR)/metrics.json: $(DATA)/fetch.json
	$(KIT) train $(CONFIG_ARGS)

# The report follows the run, and its submission when there is one (or `make predict` is writing it).
$(REPORT): $(RUN_DIR)/metrics.json $(if $(filter predict,$(MAKECMDGOALS)),$(SUBMISSION),$(wildcard $(SUBMISSION)))
	$(KIT) report $(RUN)

train: $(REPORT) ## train the PRESET (skipped when the run is finished); writes its report
	@echo "report: $(REPORT)"

$(SUBMISSION): $(RUN_DIR)/metrics.json
	$(KIT) predict $(CONFIG_ARGS)

predict: $(SUBMISSION) $(REPORT) ## write submissions/RUN.csv, clipped and checked; refreshes the report
	@echo "report: $(REPORT)"

report: | $(STAMP) ## (re)build reports/RUN/index.html (default: the latest finished run; LAYER=name for activations)
	$(KIT) report $(if $(filter command line environment,$(origin RUN) $(origin PRESET)),$(RUN)) $(if $(LAYER),--layer $(LAYER))

score: $(SUBMISSION) ## log loss of the submission against LABELS=csv
	$(KIT) score $(SUBMISSION) --labels $(LABELS)

submit: $(SUBMISSION) ## check and upload submissions/RUN.csv to Kaggle, add it to the ledger (MSG='...')
	$(KIT) submit $(SUBMISSION) -m "$$MSG" $(CONFIG_ARGS)

submissions: | $(STAMP) ## refresh public scores from Kaggle and print the submissions ledger
	$(KIT) submissions $(CONFIG_ARGS)

clean-data: | $(STAMP) ## flag anomalous training images: reports/clean/ and DATA/exclusions.csv (CHECKS=...)
	$(KIT) clean --preset $(if $(filter baseline,$(PRESET)),cpu,$(PRESET)) $(if $(CHECKS),--checks $(CHECKS)) \
	  $(if $(filter-out data/$(COMPETITION),$(DATA)),--set data_dir=$(DATA)) $(foreach s,$(SET),--set $(s))

bench: | $(STAMP) ## benchmarks on ../shared/data: loading, extraction, cost shape, levers, cleaning, fine-tuning, the cpu preset's bar
	cd bench && $(abspath $(PY)) loading.py && $(abspath $(PY)) extraction.py && $(abspath $(PY)) cost_shape.py \
	  && $(abspath $(PY)) cpu_levers.py && $(abspath $(PY)) lite_levers.py && $(abspath $(PY)) clean_imagenet.py \
	  && $(abspath $(PY)) cpu_finetune.py && $(abspath $(PY)) lite_finetune.py && $(abspath $(PY)) cpu_preset.py

# Kaggle kernels: kernels/<name>/ is generated from the kit (`make kernels`), pushed under your username.
KERNEL ?=
DIRS   ?=
WAIT   ?=
KERNEL_MSG = $(if $(filter command line environment,$(origin MSG)),$(MSG),kernel $(KERNEL) from make kernel-submit)
export KERNEL_MSG
.PHONY: kernels kernel-push kernel-status kernel-output kernel-submit blend

kernels: | $(STAMP) ## rebuild kernels/<name>/ (script + kernel-metadata.json) for every Kaggle kernel
	$(KIT) kernels build

kernel-push: | $(STAMP) ## push kernels/KERNEL to Kaggle as your private GPU kernel (KERNEL=gpu-modern)
	$(KIT) kernels push $(KERNEL)

kernel-status: | $(STAMP) ## the Kaggle status of KERNEL (WAIT=1 polls until it has finished)
	$(KIT) kernels status $(KERNEL) $(if $(WAIT),--wait)

kernel-output: | $(STAMP) ## download KERNEL's output to submissions/KERNEL/, its submission to submissions/KERNEL.csv
	$(KIT) kernels output $(KERNEL) $(CONFIG_ARGS)

kernel-submit: | $(STAMP) ## submit submissions/KERNEL.csv through the ledger (MSG='...')
	$(KIT) kernels submit $(KERNEL) -m "$$KERNEL_MSG" $(CONFIG_ARGS)

blend: | $(STAMP) ## blend kernel outputs or runs into submissions/blend.csv (DIRS='submissions/a submissions/b')
	$(KIT) blend $(DIRS) $(CONFIG_ARGS)

clean: ## delete runs and reports (never the data or submissions)
	rm -rf runs reports
