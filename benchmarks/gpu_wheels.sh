#!/bin/bash
# The Python packages gpu.sh needs that a lent GPU machine's image lacks (it has torch, transformers, accelerate,
# scipy, pillow, pytest...; not these), downloaded here as wheels for its Python 3.12 on x86-64 into .whl/
# (git-ignored; about 11 MB, within the 64 MiB a device call carries with the repository), and the EGL/GL loader
# libraries the GL renderer's tests need there (NVIDIA's EGL is found through libglvnd) as Debian packages into
# .gl/. Then the device call names ".whl" and ".gl" in carry and its command begins with
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig;
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:backend:shared:. && bash benchmarks/gpu.sh
# gpu.sh's opening check names anything still missing at once.
set -eu
cd "$(dirname "$0")/.."
rm -rf .whl .gl
platforms=()
for tag in manylinux1 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_26 manylinux_2_27 manylinux_2_28 \
           manylinux_2_31 manylinux_2_34; do
    platforms+=(--platform "${tag}_x86_64")
done
# diffusers as pyproject pins it; importlib-metadata and zipp: diffusers' own needs the image lacks; pycocotools:
# the export the guidance training test writes; glcontext:
# moderngl's EGL context; smplx as pyproject's mano extra pins it: tests/test_mano_model.py's reference
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "diffusers~=0.42.1" pykdtree trimesh pyzmq manifold3d moderngl glcontext cachetools \
    importlib-metadata zipp pycocotools "smplx==0.1.28"
ls .whl
du -sh .whl
mkdir -p .gl /tmp/gpu-apt-lists/partial
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpu-apt-lists)
apt-get "${apt[@]}" update -qq
(cd .gl && apt-get "${apt[@]}" download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
ls .gl
du -sh .gl
