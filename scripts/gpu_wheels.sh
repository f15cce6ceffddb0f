#!/usr/bin/env bash
# Wheels of what toonclip needs and a CUDA image with torch, lightning, timm and opencv lacks,
# for an offline GPU machine (Python 3.12, x86-64), into DIR (default .whl/, git-ignored).
# The versions are this repository's tested ones. On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
DIR=${1:-.whl}
PY=${PY:-3.12}
mkdir -p "$DIR"
for pkg in segmentation-models-pytorch==0.6.0 albumentations==2.0.8 albucore==0.0.24 \
  simsimd==6.5.16 stringzilla==5.3.2 pydantic==2.14.4 pydantic-core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 hydra-core==1.3.8 omegaconf==2.3.1; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DIR" "$pkg" \
  || python3 -m pip download -q --no-deps --python-version "$PY" --implementation cp \
    --platform any --only-binary=:all: -d "$DIR" "$pkg"
done
# omegaconf 2.3 needs antlr4 4.9.*, published as a source archive only: build its (pure Python) wheel.
python3 -m pip wheel -q --no-deps -w "$DIR" antlr4-python3-runtime==4.9.3
ls "$DIR"
