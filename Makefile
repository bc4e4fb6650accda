# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.napari-acs-installed

.PHONY: demo test test-fast env benchmarks screenshots clean

# (Re)install only when the install inputs changed.
$(STAMP): pyproject.toml constraints.txt scripts/setup_env.sh
	VENV=$(VENV) bash scripts/setup_env.sh
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/napari-acs demo

test: $(STAMP)
	$(PY) -m pytest

benchmarks: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build *.egg-info .pytest_cache
