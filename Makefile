# One-command set-up: `make demo` and `make test` create .venv and install what is missing.
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
WITH_CLUSTER ?= 0
APT_LIBS    := libusb-1.0-0 libvulkan1 mesa-vulkan-drivers
STAMP       := $(VENV)/.pointgcn-installed

.PHONY: setup apt-libs cluster demo test bench clean

setup: apt-libs $(STAMP)
ifeq ($(WITH_CLUSTER),1)
setup: cluster
endif

# Open3D needs libusb to import and Vulkan + a Mesa driver to render headless.
apt-libs:
	@missing=""; for p in $(APT_LIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then echo "apt: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	  else echo "note: not root; please install$$missing (Open3D import/rendering needs them)"; fi; \
	fi

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# torch first, pinned, so pip takes the CPU wheel from local disk instead of a CUDA build.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,ortx]'
	touch $(STAMP)

cluster: $(STAMP)
	@$(PY) -c "import torch_cluster" 2>/dev/null || \
	  (echo "building torch_cluster from source (~6.5 min, cached by pip afterwards)"; \
	   $(PIP) install -q --no-build-isolation torch-cluster)

demo: setup
	$(PY) -m apps.demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
