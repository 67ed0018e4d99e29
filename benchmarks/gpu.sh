#!/bin/bash
# The GPU checks, for a machine with CUDA (no test or benchmark needs one; these are the ones that say
# something there). Steps, most wanted first, each printing as it goes under its own time limit, so a run
# cut short still says what it measured; the output also goes to $LOG (default $OUT/gpu-check.log where
# $OUT is set, else ./gpu-check.log). The whole run ends within $BUDGET seconds (default 540: a lent machine
# runs a command 10 minutes at most, and its 15 minutes include a 2-3 minute start): a step's limit is cut
# to what is left, and a step with less than a minute left is skipped, saying so (name it in a next command).
#   interaction  (150 s) interaction sampling on CUDA: batched against per-sample guidance
#   image        (150 s) the image pipeline on the full-size SD 1.5 architecture in fp16 against diffusers'
#                pipeline, s/image (the random weights are built on the CPU first)
#   motion       (90 s)  the motion model's in-betweening on CUDA against the spline engine
#   tests        (240 s) the tests marked gpu (CUDA against the CPU) and those whose code runs on CUDA when
#                it is there (training through accelerate, the GL renderer on NVIDIA's EGL), a line per test;
#                last: the limits add up to more than the budget, and this step says something cut short
#   compiled     (540 s, only when named, alone) image with channels_last + torch.compile: the UNet and
#                ControlNet are compiled 5 times (ours, diffusers' call, TAS's backward), minutes each
# It first checks that CUDA and every package the steps import are there (the lent machines have no
# diffusers, pykdtree, trimesh, pyzmq...: benchmarks/gpu_wheels.sh fetches them here as wheels to carry, and
# says how to install them there) and stops at once if not.
#
#   PYTHONPATH=backend:shared:. [PYTHON=.venv/bin/python] [LOG=...] [BUDGET=s] bash benchmarks/gpu.sh [STEP ...]
#
# DRY=1 runs every step (compiled too) on the CPU at the smallest sizes, in about 2 minutes: run it here before
# spending GPU time; it catches what crashes anywhere, not what crashes on CUDA alone.
set -u
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
dry=${DRY:-}
budget=${BUDGET:-540}
exec > >(tee -a "${LOG:-${OUT:+$OUT/}gpu-check${dry:+-dry}.log}") 2>&1
started=$(date +%s)
failed=()
skipped=()
run() {  # run NAME LIMIT COMMAND...
    local name=$1 limit=$2 left=$(( budget - ($(date +%s) - started) )); shift 2
    echo; echo "=== $name ($(( $(date +%s) - started )) s)"
    if [ "$left" -lt 60 ]; then
        echo "=== $name: skipped, $left s of the $budget s budget left (run it alone: bash benchmarks/gpu.sh $name)"
        skipped+=("$name"); return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    # -k: a process stuck in a CUDA call may not end on TERM
    timeout -k 10 "$limit" "$@" || { echo "=== $name: exit status $? (124: past its $limit s)"; failed+=("$name"); }
}
steps=("$@"); [ ${#steps[@]} -eq 0 ] && steps=(interaction image motion tests ${dry:+compiled})
tests=(tests/test_mano_model.py tests/test_anatomy.py tests/test_evaluation_penetration.py
       tests/test_interaction_sampling.py tests/test_training_loop.py tests/test_image_train.py
       tests/test_image_pipeline.py tests/test_image_conditioning.py tests/test_render_camera.py
       tests/test_gpu_paths.py)
if [ -n "$dry" ]; then  # the smallest sizes, on the CPU: every step's code path
    device=(--device cpu --threads 0)
    interaction=(--samples 20 --per-sample-samples 5 --repeats 1)
    motion=(--frames 40 --repeats 1)
    image=(--device cpu --dtype float32 --steps 2 --repeats 1)  # the tests' tiny SD (full size: minutes on a CPU)
    pytest_args=(-m gpu)  # collects every test of the list; runs the gpu ones, which skip without CUDA
    compile=(--compile-backend eager)  # traced by dynamo, recompilations and all, but not compiled (minutes)
else
    device=(--device cuda --threads 0)
    interaction=(--samples 1000 --per-sample-samples 100 --repeats 2)
    motion=(--repeats 3)
    image=(--full --device cuda --dtype float16 --steps 20 --repeats 3)
    pytest_args=()
    compile=()
fi
# CUDA, and every package the steps import, before any step: a missing one costs seconds, not a step's minutes
"$py" - "$dry" <<'EOF' || { echo "=== stopped: fix the above first"; exit 1; }
import importlib, importlib.util, sys
import torch
print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA", flush=True)
missing = [m for m in ("numpy", "scipy", "diffusers", "transformers", "accelerate", "safetensors", "PIL", "zmq",
                       "psutil", "trimesh", "pykdtree", "manifold3d", "moderngl", "cachetools", "tqdm", "matplotlib",
                       "pytest", "hypothesis", "pycocotools", "smplx") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing packages: {' '.join(missing)} (pyzmq for zmq, pillow for PIL, smplx==0.1.28 as pyproject "
             "pins it): on a lent GPU machine, carry the wheels of benchmarks/gpu_wheels.sh")
for name in ("diffusers", "transformers", "accelerate"):
    print(name, importlib.import_module(name).__version__)
for name in ("handforge.engines.interaction.pipeline", "handforge.engines.motion.synthesis",
             "handforge.engines.image.loading", "handforge.engines.image.pipeline", "tests.support.tiny_sd"):
    importlib.import_module(name)  # (PYTHONPATH=backend:shared:. is needed for these)
if not sys.argv[1] and not torch.cuda.is_available():
    sys.exit("no CUDA: these are the GPU checks (DRY=1 runs them on the CPU)")
EOF
for step in "${steps[@]}"; do
    case $step in
        interaction) run interaction 150 "$py" benchmarks/interaction.py "${device[@]}" "${interaction[@]}" ;;
        image) run image 150 "$py" benchmarks/image.py "${image[@]}" ;;
        tests) run tests 240 "$py" -m pytest -p no:cacheprovider -v --tb=short "${pytest_args[@]}" "${tests[@]}" ;;
        motion) run motion 90 "$py" benchmarks/motion.py "${device[@]}" "${motion[@]}" ;;
        compiled) run compiled 540 "$py" benchmarks/image.py "${image[@]}" --fast "${compile[@]}" ;;
        *) echo "unknown step $step: choose from interaction image motion tests compiled"; failed+=("$step") ;;
    esac
done
summary="${failed[*]:+; failed: ${failed[*]}}${skipped[*]:+; skipped: ${skipped[*]}}"
echo; echo "=== done ($(( $(date +%s) - started )) s)$summary"
exec >&- 2>&-; wait  # (tee's last lines)
[ ${#failed[@]} -eq 0 ] && [ ${#skipped[@]} -eq 0 ]
