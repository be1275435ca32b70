#!/bin/bash
# The checks and figures that need a CUDA GPU, in one go (about 6 min on one H100; the scale group
# took 83 s, the memory group 89 s): the gpu tests, the scale group (training at 256-4096 envs,
# Memo vs GRU inference at 16k, also through the fixed-buffer stepper replayed from a CUDA graph),
# the memory group on the GPU, a torch.profiler breakdown of one Memo PPO iteration at 4096 envs,
# and a 2-rank NCCL smoke job if there are two GPUs. A failing step is reported and the rest still
# run, so one call brings back every figure that can be had.
#
#   bash experiments/gpu_checks.sh [OUTPUT_DIR]      # default bench_results/gpu-<date>
set -euo pipefail
out=${1:-bench_results/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
python=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
failed=()
"$python" -m pytest -m gpu -q 2>&1 | tee "$out/pytest-gpu.txt" || failed+=("gpu tests")
"$python" -m memo_rl bench --gpu --output "$out/scale.json" 2>&1 | tee "$out/scale.txt" || failed+=("scale bench")
"$python" -m memo_rl bench --only memory --device cuda --output "$out/memory.json" 2>&1 | tee "$out/memory.txt" \
    || failed+=("memory bench")
"$python" experiments/profile_update.py dark_key_to_door_memo --envs 4096 --device cuda --rows 15 \
    > "$out/profile-memo.txt" 2>&1 || failed+=("profile")
if [ "$(nvidia-smi --list-gpus | wc -l)" -ge 2 ]; then
    "$python" -m torch.distributed.run --standalone --nproc_per_node=2 -m memo_rl train dark_key_to_door_memo \
        env.num_envs=256 train.total_steps=2000000 run.dir="$out/ddp-memo" 2>&1 | tail -n 5 | tee "$out/ddp.txt" \
        || failed+=("2-rank run")
fi
echo "wrote $out"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
