# `make` alone prints the targets; `make demo` needs nothing but Python 3.11+. `make build`, `make test`,
# `make invoke` and `make bench` also need a CPython 3.13, the Lambda runtime's (tools/lambda-python finds it).
# Every target documents itself with a `## ...` comment on its line: that is what `make help` prints.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SCAN_VENV := .venv-scan
LAMBDA_VENV := .venv-lambda
LAMBDA_PYTHON_TOOL := tools/lambda-python
# uv builds the virtualenvs: from its cache in seconds, and with nothing cached it fetches many packages at once
# (pip took one to three minutes for the four, even from a warm cache). It is pinned, and pip installs it on first use.
UV_VERSION := 0.13.9
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
# Every virtualenv is compiled at install: no test process compiles moto or botocore from source, even where
# PYTHONDONTWRITEBYTECODE keeps Python from saving what it compiles, and cold-start figures never include compiling.
UV_INSTALL := $(UV) pip install --quiet --compile-bytecode

# A value given on the command line (APP=..., ENV=..., ARGS=..., a port, a function setting) is data, never make or
# shell text: it keeps its text as written (make expands no $(...) in it) and reaches its command through the
# environment, quoted ("$$APP"), or as an argument list (ARGS, split by the tool itself), so no backquote or $(...)
# in a value runs. Recipes therefore never paste such a value into a command: they test it ($(if $(APP),...)) and
# hand it over as "$$APP".
# The values the operator targets take (a function setting for `make serve` is taken from the command line alone).
OPERATOR_VALUES := ENV PARAMS DRY_RUN URL APP SCOPE FUNCTION REGION PROFILE STACK TABLE SECRET_PREFIX LOCAL ARGS \
  CALLERS SINCE EVENT GATEWAY_PORT MOTO_PORT TOKEN_STUB_PORT
literal_value = $(eval override $(1) := $$(value $(1)))$(eval export $(1))
$(foreach name,$(.VARIABLES),$(if $(filter command line,$(origin $(name))),$(call literal_value,$(name))))
$(foreach name,$(OPERATOR_VALUES),$(if $(filter environment,$(origin $(name))),$(call literal_value,$(name))))

.DEFAULT_GOAL := help
.PHONY: help demo check test lint unit integration artifact validate scan build deploy-check deploy serve invoke bench tokens apps smoke clean

help: ## this list
	@echo "Sangoma CX token vending: make TARGET"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## (.*)$$/  \1\t\2/' | expand -t 16

$(UV):  # -qq: errors only (pip warns about its index settings and running as root)
	@$(PYTHON) -m pip install --quiet --quiet --disable-pip-version-check --target $(UV_DIR) "uv==$(UV_VERSION)" >&2

# The virtualenvs are made on first use, and made again when what they install changes. Each says what it installs
# (uv --quiet is silent meanwhile); their output goes to stderr, so that `make invoke`'s stdout stays the function's
# answer.
$(VENV)/.installed: pyproject.toml layers/client/pyproject.toml $(UV)
	@echo "installing $(VENV): pytest, moto, boto3, Powertools, ruff, mypy, cfn-lint, awscurl (under a minute)" >&2
	@$(UV) venv --quiet --clear --python $(PYTHON) $(VENV) >&2
	@$(UV_INSTALL) --python $(VENV)/bin/python ".[dev]" --editable ./layers/client >&2  # edits show at once
	@touch $@

# SAM CLI pins libraries the dev set disagrees with: it lives in a venv of its own. --seed: the dependencies
# layer's build (layers/dependencies/Makefile) runs this venv's pip to fetch the runtime's wheels.
$(SAM_VENV)/.installed: pyproject.toml $(UV)
	@echo "installing $(SAM_VENV): the AWS SAM CLI (under a minute)" >&2
	@$(UV) venv --quiet --clear --seed --python $(PYTHON) $(SAM_VENV) >&2
	@$(UV_INSTALL) --python $(SAM_VENV)/bin/python ".[sam]" >&2
	@touch $@

# checkov, too, pins libraries the dev set disagrees with: a venv of its own.
$(SCAN_VENV)/.installed: pyproject.toml $(UV)
	@echo "installing $(SCAN_VENV): checkov, the template security scanner (under a minute)" >&2
	@$(UV) venv --quiet --clear --python $(PYTHON) $(SCAN_VENV) >&2
	@$(UV_INSTALL) --python $(SCAN_VENV)/bin/python ".[scan]" >&2
	@touch $@

# The Lambda python3.13 runtime's own packages (boto3 at its release, awslambdaric) on CPython 3.13:
# what runs the built artifact here (make invoke, the artifact test, make bench).
$(LAMBDA_VENV)/.installed: devstack/lambda-runtime-requirements.txt $(LAMBDA_PYTHON_TOOL) $(UV)
	@echo "installing $(LAMBDA_VENV): the Lambda runtime's boto3 and awslambdaric on CPython 3.13 (under a minute)" >&2
	@python313=$$($(LAMBDA_PYTHON_TOOL) --which) && $(UV) venv --quiet --clear --python "$$python313" $(LAMBDA_VENV) >&2
	@$(UV_INSTALL) --python $(LAMBDA_VENV)/bin/python --no-deps -r devstack/lambda-runtime-requirements.txt >&2
	@touch $@

demo: $(VENV)/.installed ## vend one token through the real handler against an embedded local stack
	$(PY) -m devstack.demo

# The inner loop: the fast tests are the unit tests that need no local stack and start no process (tests/conftest.py
# marks them); the README's Testing section says how a test becomes one.
check: lint ## the inner loop, under a minute: ruff, mypy --strict and the fast tests (rules, in-process fakes)
	$(PY) -m pytest -m fast -q

# One line per stage with its time (tools/stage); a new stage is one more line here. The virtualenvs install side
# by side (mostly waiting on the package index), and the tests on the local stack run on TEST_WORKERS pytest-xdist
# workers, each with a moto server and a stub token endpoint of its own.
STAGE := tools/stage
SUBMAKE := $(MAKE) --no-print-directory
TEST_WORKERS ?= 3
test: ## everything CI runs, a line per stage: virtualenvs, check, templates, build, deploy-check, stack, artifact
	@$(STAGE) virtualenvs $(SUBMAKE) --silent -j4 $(VENV)/.installed $(SAM_VENV)/.installed $(SCAN_VENV)/.installed $(LAMBDA_VENV)/.installed
	@$(STAGE) check $(SUBMAKE) check
	@$(STAGE) templates $(SUBMAKE) -j2 --output-sync=target validate scan
	@$(STAGE) build $(SUBMAKE) --silent build
	@$(STAGE) deploy-check $(SUBMAKE) --silent deploy-check
	@$(STAGE) stack $(PY) -m pytest -m "not fast" -n $(TEST_WORKERS) --dist worksteal tests/unit tests/integration
	@$(STAGE) artifact $(PY) -m pytest tests/artifact

lint: $(VENV)/.installed ## ruff and mypy --strict
	$(VENV)/bin/ruff check functions devstack tests tools layers bench
	$(VENV)/bin/mypy

validate: $(VENV)/.installed $(SAM_VENV)/.installed ## sam validate --lint and cfn-lint on template.yaml
	$(SAM) validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml

# Every finding left is explained by a suppression comment in template.yaml.
scan: $(VENV)/.installed $(SCAN_VENV)/.installed ## template security scan: checkov, cfn-lint serverless rules
	$(SCAN_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation --file template.yaml
	$(VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml

unit: $(VENV)/.installed ## the unit tests alone
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed $(SAM_VENV)/.installed ## the integration tests alone (local stack on 127.0.0.1)
	$(PY) -m pytest tests/integration

artifact: $(VENV)/.installed build $(LAMBDA_VENV)/.installed ## the built artifact's tests alone (3.13, runtime client)
	$(PY) -m pytest tests/artifact

# Operator commands (quiet: what they print is their answer): AWS with your own credentials (REGION=, PROFILE=, STACK= or
# TABLE=), or LOCAL=1 for `make serve`'s stack.
# Cached tokens, soonest expiry first (never the token); CALLERS=1 adds who received each (audit log, SINCE=7d).
tokens: $(VENV)/.installed ## cached tokens: STACK=name or TABLE=name (AWS), or LOCAL=1; CALLERS=1 SINCE=7d
	@$(PY) -m tools.list_tokens $(if $(TABLE),--table "$$TABLE") $(if $(STACK),--stack "$$STACK") $(if $(LOCAL),--local) \
	  $(if $(REGION),--region "$$REGION") $(if $(PROFILE),--profile "$$PROFILE") $(if $(APP),--app "$$APP") \
	  $(if $(CALLERS),--callers) $(if $(SINCE),--since "$$SINCE")

apps: $(VENV)/.installed ## app secrets: ARGS="validate FILE | put APP FILE | show APP | list | check APP ... | remove APP"
	@$(PY) -m tools.apps --make-args $(if $(LOCAL),--local) $(if $(STACK),--stack "$$STACK") \
	  $(if $(SECRET_PREFIX),--prefix "$$SECRET_PREFIX") $(if $(REGION),--region "$$REGION") $(if $(PROFILE),--profile "$$PROFILE")

smoke: $(VENV)/.installed ## vend once with your own AWS credentials, check the alias live: URL=VendingUrl APP=app SCOPE="a b" [REGION=r]
	@$(PY) -m tools.smoke --url "$$URL" --app "$$APP" --scope "$$SCOPE" $(if $(REGION),--region "$$REGION") \
	  $(if $(PROFILE),--profile "$$PROFILE") $(if $(FUNCTION),--function "$$FUNCTION")

# Fixed ports (events/env.json names the moto and stub ones); override: make serve GATEWAY_PORT=9000. The function's
# settings are make variables too, for rehearsals: make serve SECRET_CACHE_SECONDS=1 MAX_MINTS_PER_CALLER_PER_HOUR=2
GATEWAY_PORT ?= 8710
MOTO_PORT ?= 8711
TOKEN_STUB_PORT ?= 8712
export GATEWAY_PORT MOTO_PORT TOKEN_STUB_PORT
serve: $(VENV)/.installed ## local stack + SigV4 gateway on 127.0.0.1 until Ctrl-C (GATEWAY_PORT ..., SECRET_CACHE_SECONDS ...)
	$(PY) -m devstack.serve --gateway-port "$$GATEWAY_PORT" --moto-port "$$MOTO_PORT" --token-port "$$TOKEN_STUB_PORT"

# Compiles the bytecode with CPython 3.13: stops, saying how to get one, where there is none. Runs only when a
# source changed since the last build; its output goes to stderr (make invoke's stdout is the function's answer).
BUILT := .aws-sam/build/template.yaml
BUILD_DIR = $(abspath $(dir $(BUILT)))
export SAM BUILD_DIR
BUILD_SOURCES := template.yaml samconfig.toml $(LAMBDA_PYTHON_TOOL) $(shell find functions layers -type f \
	-not -path '*/__pycache__/*' -not -path '*.egg-info/*' -not -path 'layers/client/build/*' -not -name '*.pyc')
$(BUILT): $(BUILD_SOURCES) $(SAM_VENV)/.installed
	@echo "sam build: the function and its layers, into .aws-sam/build" >&2
	@PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" "$$SAM" build >&2
	@touch $@

build: $(BUILT) ## sam build (when a source changed): the function and layers, with 3.13 bytecode, into .aws-sam/build

# What the SAM transform makes of the built template for each parameter set that matters (defaults, each
# samconfig.toml env, SnapStart, DetailedTracing, a private API, secret keys), checked: one line per set.
deploy-check: build ## the built template through the SAM transform per parameter set, each result checked
	$(SAM_VENV)/bin/python -m tools.deploy_check

# Stops before building on a missing or unknown ENV, or a PARAMS name the template lacks; never needs Docker.
# ENV and PARAMS are read from the environment, so PARAMS's quotes stay as written.
deploy: $(SAM_VENV)/.installed ## build, then sam deploy with the build's Revision: ENV=dev [PARAMS="Key=Value ..."] [DRY_RUN=1]
	@$(SAM_VENV)/bin/python -m tools.deploy check "$$ENV" --params "$$PARAMS"
	$(MAKE) --no-print-directory build
	$(SAM_VENV)/bin/python -m tools.deploy run "$$ENV" --params "$$PARAMS" --sam "$$SAM" --build-dir "$$BUILD_DIR" \
	  $(if $(DRY_RUN),--dry-run)

# Like `sam local invoke`, without Docker: against `make serve`'s stack when it runs, else an embedded one.
EVENT ?= events/vend.json
export EVENT
# Its stdout is the function's answer alone (pipe it to jq); log lines, REPORT and any build go to stderr.
invoke: $(VENV)/.installed build $(LAMBDA_VENV)/.installed ## run the built function once on 3.13 under the runtime client: EVENT=events/vend.json
	@$(PY) -m devstack.invoke "$$EVENT"

# The cold start and warm figures run the built artifact, so it builds first.
bench: $(VENV)/.installed build $(LAMBDA_VENV)/.installed ## the performance figures, printed as one table (a few minutes)
	$(PY) -m bench

clean: ## remove build output and tool caches (not the virtualenvs)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
