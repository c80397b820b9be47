# relctl: two commands for a newcomer.
#   make demo   bring up the staging lab and run the main job end to end
#               (make demo DB=postgresql: ledger on a shared PostgreSQL database)
#   make test   lint, type-check and run the whole test suite on a real lab
VENV      ?= .venv
# Debian's own Python (3.11.2 on Debian 12), the interpreter `apt install pipx` users get,
# whatever else comes first on PATH.
PYTHON    ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
DEMO_DIR  ?= /var/tmp/relctl-demo
DB        ?= sqlite
RELCTL     = $(VENV)/bin/relctl --state-dir $(DEMO_DIR)

.PHONY: demo test deps venv lint unit integration artifacts bench clean

deps:
	@bash scripts/install-deps.sh

$(VENV)/.installed: pyproject.toml
	@if [ -x $(VENV)/bin/python ] && [ "$$($(VENV)/bin/python -c 'import sys; print(sys.base_prefix)')" != "$$($(PYTHON) -c 'import sys; print(sys.base_prefix)')" ]; then \
	  echo "$(VENV) was made by another Python: making it again with $(PYTHON)"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

artifacts: venv
	$(VENV)/bin/python examples/ledger/build.py --out build/artifacts

demo: deps venv artifacts
	@DEMO_DIR=$(DEMO_DIR) VENV=$(VENV) bash scripts/demo$(if $(filter postgresql,$(DB)),_postgresql).sh

lint: venv
	$(VENV)/bin/ruff check controller tests examples bench scripts
	$(VENV)/bin/mypy controller
	# the host agent runs under each host's Python: its stated minimum (protocol.MIN_PYTHON)
	$(VENV)/bin/vermin --no-tips --violations -t=3.8- controller/agent/
	$(VENV)/bin/ansible-lint -q playbooks/ controller/playbooks/ examples/notes/playbooks/

unit: venv
	$(VENV)/bin/pytest -q tests/unit

integration: deps venv artifacts
	$(VENV)/bin/pytest -q tests/integration

# Two workers (pytest-xdist): each module whole, in order, on one worker, on its own lab
# addresses (the session lab: one per worker, tests/integration/conftest.py); the dearest
# modules first (tests/conftest.py, MODULE_SECONDS); the wall time is printed at the end.
test: deps venv artifacts lint
	$(VENV)/bin/python scripts/timed.py make test -- $(VENV)/bin/pytest -q --durations=15 \
	  -n 2 --dist loadfile --no-loadscope-reorder

bench: deps venv artifacts
	$(VENV)/bin/python bench/lab_up.py
	$(VENV)/bin/python bench/deploy_tuning.py

clean:
	-$(RELCTL) lab down
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
