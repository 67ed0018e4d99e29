#!/bin/bash
# The GPU checks in one run, for a machine with CUDA (no test or benchmark needs one; these are the ones
# that say something there). Every step has its own time limit and prints as it goes, so a run cut short
# still says what it measured; the whole run's output also goes to ${LOG:-gpu-check.log}.
#
#   PYTHONPATH=backend:shared:. bash benchmarks/gpu.sh        # 10-20 minutes on one H200
#
# 1. the tests marked gpu (CUDA against the CPU) and the ones whose code runs on CUDA when it is there
#    (training through accelerate, the GL renderer on NVIDIA's EGL), one line per test;
# 2. interaction sampling on CUDA: batched against per-sample guidance (issue: interaction);
# 3. the image pipeline on the full-size SD 1.5 architecture in fp16 against diffusers' pipeline, then
#    with channels_last + torch.compile (its compilation alone takes minutes).
set -u
export PYTHONUNBUFFERED=1
exec > >(tee -a "${LOG:-gpu-check.log}") 2>&1
started=$(date +%s)
step() { echo; echo "=== $1 ($(( $(date +%s) - started )) s)"; }
step "device"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
step "tests"
timeout 300 python3 -m pytest -p no:cacheprovider -v --tb=short \
  tests/test_mano_model.py tests/test_anatomy.py tests/test_evaluation_penetration.py tests/test_interaction_sampling.py \
  tests/test_training_loop.py tests/test_image_train.py tests/test_image_pipeline.py tests/test_image_conditioning.py \
  tests/test_render_camera.py
step "interaction sampling on cuda"
timeout 150 python3 benchmarks/interaction.py --device cuda --threads 0 --samples 1000 --per-sample-samples 100 --repeats 2
step "image pipeline, full size, fp16"
timeout 150 python3 benchmarks/image.py --full --device cuda --dtype float16 --steps 20 --repeats 3
step "image pipeline, full size, fp16, channels_last + torch.compile"
timeout 420 python3 benchmarks/image.py --full --device cuda --dtype float16 --steps 20 --repeats 3 --fast
step "done"
