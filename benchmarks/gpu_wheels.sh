#!/usr/bin/env bash
# The wheels a lent GPU machine lacks, for its Python 3.12 on x86-64, into .whl/ (git-ignored).
#
#   bash benchmarks/gpu_wheels.sh          # here, where package registries can be reached
#
# The GPU image has torch, torchvision, accelerate, numpy, pandas, matplotlib, scipy, scikit-learn,
# huggingface-hub, safetensors, rich and pytest, but not what genzoo adds: diffusers, normflows,
# torch-fidelity, mlxtend, and diffusers' importlib_metadata with its lazy-importer. Each is pinned
# to the version in this project's virtualenv, the one the tests ran with. benchmarks/gpu_check.sh
# installs them there with pip --no-index --target.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PACKAGES=(diffusers torch-fidelity mlxtend importlib_metadata lazy-importer)  # pure Python: one wheel fits any platform
SOURCE_ONLY=(normflows)  # publishes no wheel: built here from its source distribution (pure Python too)

version() { "$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"; }

rm -rf .whl
mkdir -p .whl
for pkg in "${PACKAGES[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any \
        -d .whl "$pkg==$(version "$pkg")"
done
for pkg in "${SOURCE_ONLY[@]}"; do
    "$PY" -m pip wheel -q --no-deps -w .whl "$pkg==$(version "$pkg")"
done
ls -l .whl
du -sh .whl
