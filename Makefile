# New users: `make demo` and `make test` need nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test lint unit integration validate build serve bench tokens clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) ".[dev]"
	touch $@

# SAM CLI pins libraries the dev set disagrees with: it lives in a venv of its own.
$(SAM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_FLAGS) ".[sam]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m devstack.demo

test: lint validate
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check functions devstack tests
	$(VENV)/bin/mypy

validate: $(VENV)/.installed $(SAM_VENV)/.installed
	$(SAM) validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration

build: $(SAM_VENV)/.installed
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM) build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
