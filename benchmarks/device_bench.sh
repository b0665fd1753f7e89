#!/usr/bin/env bash
# The bench on one GPU machine, in one run (docs/results.md "Results on one GPU").
#
#   bash benchmarks/device_bench.sh RESULTS_DIR SECONDS
#
# First the CUDA paths a user touches, on tiny settings (the quick bench preset, distill,
# evaluate, a two-step meta-training), so a broken path stops the run within a minute or two;
# then the fmnist bench and the digits28 bench, each with --device "$DEVICE", while SECONDS last.
# A bench cut off by the budget is resumable: the same command with the same RESULTS_DIR on the
# same kind of device continues it. DEVICE=cpu runs the same script without a GPU (default cuda).
# Data: $MGDD_DATA (Fashion-MNIST's IDX files in fashion-mnist/, the MNIST subset in mnist/);
# digits comes with scikit-learn. SMOKE=0 skips the smoke checks (a rerun on a machine whose
# paths were just checked); PRESETS picks the benches and their order (default "fmnist digits28").
set -u -o pipefail
out=${1:?RESULTS_DIR}; budget=${2:?SECONDS}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
mgdd() { python3 -m mgdd "$@"; }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))'

smoke=$(mktemp -d)
[ "${SMOKE:-1}" = 0 ] && echo "device_bench: smoke checks skipped (SMOKE=0)" || (
    set -e -x
    mgdd bench --preset quick --out "$smoke/quick" --device "$DEVICE" --quiet > "$smoke/quick.md"
    grep -q "every stage ran on $DEVICE" "$smoke/quick.md"
    mgdd distill --dataset fashion-mnist --ipc 10 --steps 5 --out "$smoke/fm10" --device "$DEVICE" --quiet
    mgdd evaluate "$smoke/fm10/ipc10.safetensors" --dataset fashion-mnist --runs 1 --epochs 20 --quiet
    mgdd meta-train --source mnist --algorithm unrolled --passes 2 --meta-steps 2 --tasks-per-step 2 \
        --ipc-range 1,5 --pool-size 2 --out "$smoke/meta" --device "$DEVICE" --quiet
) > "$out/smoke.log" 2>&1
rc=$?
if [ "${SMOKE:-1}" != 0 ]; then
    cat "$out/smoke.log"
    [ $rc -eq 0 ] || { echo "device_bench: the smoke checks on $DEVICE failed (rc $rc); no bench run"; exit 1; }
    echo "device_bench: smoke checks passed after $(( $(date +%s) - t0 )) s"
fi

for preset in ${PRESETS:-fmnist digits28}; do
    s=$(left)
    [ "$s" -gt 30 ] || { echo "device_bench: no time left for $preset"; break; }
    start=$(date +%s)
    timeout "$s" python3 -m mgdd bench --preset "$preset" --out "$out/$preset" --device "$DEVICE" --resume --quiet \
        > "$out/$preset.log" 2>&1
    echo "device_bench: $preset rc $? after $(( $(date +%s) - start )) s"
done
