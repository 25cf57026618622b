# The two commands of the README: `make demo` and `make test`. Both create or update
# the virtualenv in the checkout first; nothing else needs to be installed by hand
# (Java 17 + Maven for the Kafka tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@echo ">> creating/updating virtualenv in $(VENV) (first run downloads torch: a few minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off -e ".[dev]"
	@touch $@

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m scripts.demo

clean:
	rm -rf $(VENV) .cache trafficrisk-data
