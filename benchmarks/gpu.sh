#!/bin/bash
# The GPU checks, for a machine with CUDA (no test or benchmark needs one; these are the ones that say
# something there). Each step has its own time limit and prints as it goes, so a run cut short still says
# what it measured; the output also goes to $LOG (default gpu-check.log). Steps, in order, each under
# 10 minutes (name some to run only those, e.g. on a machine lent 10 minutes a command):
#   tests        the tests marked gpu (CUDA against the CPU) and those whose code runs on CUDA when it is
#                there (training through accelerate, the GL renderer on NVIDIA's EGL), a line per test
#   interaction  interaction sampling on CUDA: batched against per-sample guidance
#   motion       the motion model's in-betweening on CUDA against the spline engine
#   image        the image pipeline on the full-size SD 1.5 architecture in fp16 against diffusers' pipeline
#   compiled     the same with channels_last + torch.compile (its compilation alone takes minutes)
#
#   PYTHONPATH=backend:shared:. [PYTHON=.venv/bin/python] [LOG=...] bash benchmarks/gpu.sh [STEP ...]
set -u
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
exec > >(tee -a "${LOG:-gpu-check.log}") 2>&1
started=$(date +%s)
failed=()
run() {  # run NAME LIMIT COMMAND...
    local name=$1 limit=$2; shift 2
    echo; echo "=== $name ($(( $(date +%s) - started )) s)"
    timeout "$limit" "$@" || { echo "=== $name: exit status $? (124: past its $limit s)"; failed+=("$name"); }
}
steps=("$@"); [ ${#steps[@]} -eq 0 ] && steps=(tests interaction motion image compiled)
"$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
for step in "${steps[@]}"; do
    case $step in
        tests) run tests 540 "$py" -m pytest -p no:cacheprovider -v --tb=short \
                   tests/test_mano_model.py tests/test_anatomy.py tests/test_evaluation_penetration.py \
                   tests/test_interaction_sampling.py tests/test_training_loop.py tests/test_image_train.py \
                   tests/test_image_pipeline.py tests/test_image_conditioning.py tests/test_render_camera.py ;;
        interaction) run interaction 300 "$py" benchmarks/interaction.py --device cuda --threads 0 --samples 1000 \
                         --per-sample-samples 100 --repeats 2 ;;
        motion) run motion 200 "$py" benchmarks/motion.py --device cuda --threads 0 ;;
        image) run image 300 "$py" benchmarks/image.py --full --device cuda --dtype float16 --steps 20 --repeats 3 ;;
        compiled) run compiled 570 "$py" benchmarks/image.py --full --device cuda --dtype float16 --steps 20 --repeats 3 \
                      --fast ;;
        *) echo "unknown step $step: choose from tests interaction motion image compiled"; failed+=("$step") ;;
    esac
done
echo; echo "=== done ($(( $(date +%s) - started )) s)${failed[*]:+; failed: ${failed[*]}}"
exec >&- 2>&-; wait  # (tee's last lines)
[ ${#failed[@]} -eq 0 ]
