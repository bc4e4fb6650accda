# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.napari-acs-installed

.PHONY: demo test env lock demo-model compare clean screenshots

LOCKS := requirements/lock.txt requirements/lock-nodeps.txt

# (Re)install only when the install inputs changed; the lock files pin every package.
$(STAMP): pyproject.toml $(LOCKS) scripts/setup_env.sh
	VENV=$(VENV) bash scripts/setup_env.sh
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/napari-acs demo

test: $(STAMP)
	$(PY) -m pytest

# Re-resolve the lock files from pyproject.toml, constraints.txt and requirements/nodeps.in
# (after changing a dependency, or to move to newer versions; then `make test` and commit).
# Triton (a torch dependency on Linux) is left out: napari-acs compiles no kernels, and its
# LLVM crashes a napari process whose OpenGL runs on Mesa (napari_acs/_napari/_workers.py).
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.10 \
	--custom-compile-command "make lock" --no-emit-package triton
lock:
	test -x $(VENV)/bin/uv || VENV=$(VENV) bash scripts/setup_env.sh
	$(UV_COMPILE) pyproject.toml --extra test -c constraints.txt -o requirements/lock.txt
	$(UV_COMPILE) requirements/nodeps.in --no-deps -o requirements/lock-nodeps.txt

# Re-train the shipped demo checkpoint (about 30 min on 2 CPU cores).
DEMO_TRAIN = $(VENV)/bin/napari-acs finetune runs/demo_cohort --out runs/demo_model --epochs 8 \
	--steps-per-epoch 40 --patch-size 96 --batch-size 2 --lr 2e-3 --seed 0 --overwrite
demo-model: $(STAMP)
	$(VENV)/bin/napari-acs sample-cohort runs/demo_cohort --n 20 --seed 0 --overwrite
	$(DEMO_TRAIN)
	$(PY) scripts/package_demo_model.py runs/demo_model --command "$(DEMO_TRAIN)"

# The ACS-vs-3D experiment of benchmarks/RESULTS.md (about 17 min on 2 CPU cores).
compare: $(STAMP)
	$(VENV)/bin/napari-acs sample-cohort runs/compare_cohort --n 20 --seed 1 --overwrite
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/napari-acs compare runs/compare_cohort --out runs/compare_20 \
		--patch-size 96 --batch-size 2 --epochs 4 --steps-per-epoch 25 --seed 0 --overwrite \
		--arms acs_imagenet 3d_scratch

clean:
	rm -rf build *.egg-info .pytest_cache

# Refresh docs/screenshots/ from the tests that take them (`make test` saves them in a temporary folder).
screenshots: $(STAMP)
	NAPARI_ACS_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/test_napari_io.py tests/test_ortho.py tests/test_widgets.py
