# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.napari-acs-installed

.PHONY: demo test env lock demo-model compare compare-seg compare-mgmt clean screenshots

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

# Re-train the shipped demo checkpoint (about 45 min on 2 CPU cores): stage 1 learns the task
# from ImageNet weights; stage 2 fine-tunes it with modality dropout (random sequences zeroed)
# so that it segments from a subset of the sequences (benchmarks/RESULTS.md, "Missing sequences").
DEMO_TRAIN = $(VENV)/bin/napari-acs finetune runs/demo_cohort --out runs/demo_model --epochs 8 \
	--steps-per-epoch 40 --patch-size 96 --batch-size 2 --lr 2e-3 --seed 0 --overwrite
DEMO_DROPOUT = $(VENV)/bin/napari-acs finetune runs/demo_cohort --init runs/demo_model/best.safetensors \
	--out runs/demo_dropout --epochs 3 --steps-per-epoch 40 --patch-size 96 --batch-size 2 --lr 1e-3 \
	--seed 0 --modality-dropout 0.3 --overwrite
demo-model: $(STAMP)
	$(VENV)/bin/napari-acs sample-cohort runs/demo_cohort --n 20 --seed 0 --overwrite
	$(DEMO_TRAIN)
	$(DEMO_DROPOUT)
	$(PY) scripts/package_demo_model.py runs/demo_dropout --checkpoint last.safetensors \
		--out napari_acs/sample_data/demo_model --command "$(DEMO_TRAIN); then $(DEMO_DROPOUT)"

# The ACS-vs-3D experiment of benchmarks/RESULTS.md (about 17 min on 2 CPU cores).
compare: $(STAMP)
	$(VENV)/bin/napari-acs sample-cohort runs/compare_cohort --n 20 --seed 1 --overwrite
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/napari-acs compare runs/compare_cohort --out runs/compare_20 \
		--patch-size 96 --batch-size 2 --epochs 4 --steps-per-epoch 25 --seed 0 --overwrite \
		--arms acs_imagenet 3d_scratch

# The paper's claim re-measured (benchmarks/RESULTS.md; about 1 h each on 2 CPU cores): four arms
# (ACS + ImageNet, ACS scratch, 3D scratch, 3D with inflated ImageNet kernels) x three seeds.
FOUR_ARMS = --arms acs_imagenet acs_scratch 3d_scratch 3d_inflated --seeds 0 1 2
compare-seg: $(STAMP)
	$(VENV)/bin/napari-acs sample-cohort runs/compare_cohort24 --n 24 --seed 1 --overwrite
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/napari-acs compare runs/compare_cohort24 --out runs/compare_seg24 \
		--patch-size 64 --batch-size 2 --epochs 4 --steps-per-epoch 50 --seed 0 --overwrite $(FOUR_ARMS)
compare-mgmt: $(STAMP)
	$(VENV)/bin/napari-acs sample-cohort runs/compare_cohort48 --n 48 --seed 2 --overwrite
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/napari-acs compare runs/compare_cohort48 --out runs/compare_mgmt48 \
		--task classification --patch-size 64 --batch-size 4 --epochs 20 --val-fraction 0.25 --seed 0 \
		--overwrite $(FOUR_ARMS)

clean:
	rm -rf build *.egg-info .pytest_cache

# Refresh docs/screenshots/ from the tests that take them (`make test` saves them in a temporary folder).
screenshots: $(STAMP)
	NAPARI_ACS_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/test_napari_io.py tests/test_ortho.py tests/test_widgets.py
