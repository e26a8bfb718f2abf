# New users: `make demo` and `make test` need nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SCAN_VENV := .venv-scan
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test lint unit integration validate scan build serve bench tokens clean

$(VENV)/.installed: pyproject.toml layers/client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) ".[dev]"
	$(VENV)/bin/pip install $(PIP_FLAGS) --editable ./layers/client  # edits show without a reinstall
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
	$(VENV)/bin/ruff check functions devstack tests tools layers bench
	$(VENV)/bin/mypy

validate: $(VENV)/.installed $(SAM_VENV)/.installed
	$(SAM) validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml

# Template security scan: checkov, and cfn-lint with the serverless rules. Every
# finding left is explained by a suppression comment in template.yaml.
scan: $(VENV)/.installed $(SCAN_VENV)/.installed
	$(SCAN_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation --file template.yaml
	$(VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml

# Cached tokens, soonest expiry first (never the token): `make tokens TABLE=name` against
# AWS (or $TOKEN_TABLE_NAME), `make tokens LOCAL=1` against `make serve`'s local stack.
tokens: $(VENV)/.installed
	PYTHONPATH=functions $(PY) -m tools.list_tokens $(if $(TABLE),--table $(TABLE)) $(if $(LOCAL),--local)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration

# The local stack and a SigV4 gateway standing in for API Gateway, until Ctrl-C.
# Fixed ports (events/env.json names the moto and stub ones); override: make serve GATEWAY_PORT=9000
GATEWAY_PORT ?= 8710
MOTO_PORT ?= 8711
TOKEN_STUB_PORT ?= 8712
serve: $(VENV)/.installed
	$(PY) -m devstack.serve --gateway-port $(GATEWAY_PORT) --moto-port $(MOTO_PORT) --token-port $(TOKEN_STUB_PORT)

build: $(SAM_VENV)/.installed
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM) build

# Issue 6's six figures on the embedded local stack, one table (a few minutes). Sizes
# come from `sam build`, so it builds first.
bench: $(VENV)/.installed build
	$(PY) -m bench

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
