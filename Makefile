# New users: `make demo` and `make test` need nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SCAN_VENV := .venv-scan
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test lint unit integration validate scan build serve bench tokens clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) ".[dev]"
	touch $@

# SAM CLI pins libraries the dev set disagrees with: it lives in a venv of its own.
$(SAM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_FLAGS) ".[sam]"
	touch $@

# checkov, too, pins libraries the dev set disagrees with: a venv of its own.
$(SCAN_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install $(PIP_FLAGS) ".[scan]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m devstack.demo

test: lint validate scan
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check functions devstack tests
	$(VENV)/bin/mypy

validate: $(VENV)/.installed $(SAM_VENV)/.installed
	$(SAM) validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml

# Template security scan: checkov, and cfn-lint with the serverless rules. Every
# finding left is explained by a suppression comment in template.yaml.
scan: $(VENV)/.installed $(SCAN_VENV)/.installed
	$(SCAN_VENV)/bin/checkov --quiet --compact --framework cloudformation --file template.yaml
	$(VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml

# Cached tokens, soonest expiry first (never the token). TABLE=name against AWS; the
# local stack's table by default when AWS_ENDPOINT_URL points at it.
tokens: $(VENV)/.installed
	$(PY) -m tools.list_tokens $(if $(TABLE),--table $(TABLE))

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration

build: $(SAM_VENV)/.installed
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM) build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
