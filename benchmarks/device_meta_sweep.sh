#!/usr/bin/env bash
# Issue #16 on one GPU machine: is the shipped generator held back by its size or by its
# meta-training? One change per run, all side by side on the one GPU, then every generator scored
# the same way on Fashion-MNIST (which no run sees):
#
#   bash benchmarks/device_meta_sweep.sh OUT SECONDS
#
# Runs (the shipped recipe, mgdd/pretrained/meta-mnist/config.json, with one change each):
#   gpu-control   none (the recipe re-run on the GPU: how far GPU nondeterminism alone moves it)
#   width96       --generator-width 96   (4x the body's weights)
#   blocks8       --generator-blocks 8   (twice the depth, dilations 1,2,...)
#   tasks8        --tasks-per-step 8     (4x the tasks a meta-step averages: a less noisy meta-gradient)
# Each is stopped with SIGTERM at 55% of SECONDS if not finished (the step in flight finishes, the
# checkpoint is written) and then closed where it stopped (--resume --meta-steps DONE writes the
# model; config.json records the steps it got). meta-log.json has every run's loss per step, so
# runs cut at different steps still compare at equal steps.
# Then each generator, and the shipped one, makes IPC 1 / 10 / 50 at K = 0 (seed 0, its own passes)
# and each set is evaluated with the default protocol, 3 runs: the bench's K = 0 cells.
# Data: $MGDD_DATA as for device_bench.sh. A CPU check of the script itself:
# DEVICE=cpu META_STEPS=3 RUNS=1 EPOCHS=1 IPCS=1,2. Everything written lies under OUT.
set -u -o pipefail
out=${1:?OUT}; budget=${2:?SECONDS}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$out/sets" "$out/evals"
# shellcheck source=benchmarks/device_common.sh
source "$(dirname "$0")/device_common.sh"

recipe="--source mnist --algorithm unrolled --passes 4 --tasks-per-step 2 --ipc-range 1,30 --checkpoint-every 10"
declare -A change=([gpu-control]="" [width96]="--generator-width 96" [blocks8]="--generator-blocks 8"
                   [tasks8]="--tasks-per-step 8")
runs="gpu-control width96 blocks8 tasks8"
stop=$(( budget * 55 / 100 ))
for r in $runs; do
    # shellcheck disable=SC2086  # the recipe and the change are word lists
    timeout -s TERM -k 30 "$stop" python3 -m mgdd meta-train $recipe ${change[$r]} --meta-steps "${META_STEPS:-300}" \
        --out "$out/$r" --device "$DEVICE" --quiet > "$out/$r.log" 2>&1 &
done
wait
for r in $runs; do
    [ -f "$out/$r/model.safetensors" ] && continue
    done_steps=$(python3 -c "import json, sys; print(len(json.load(open(sys.argv[1]))['history']))" "$out/$r/meta-log.json" 2>/dev/null)
    [ -n "$done_steps" ] && [ "$done_steps" -gt 0 ] || { echo "meta_sweep: $r has no checkpoint"; continue; }
    # shellcheck disable=SC2086
    python3 -m mgdd meta-train $recipe ${change[$r]} --meta-steps "$done_steps" --resume --out "$out/$r" \
        --device "$DEVICE" --quiet >> "$out/$r.log" 2>&1 && echo "meta_sweep: $r closed at step $done_steps"
done
echo "meta_sweep: meta-training done at $(( $(date +%s) - t0 )) s"
tail -n 1 "$out"/*.log

IPCS=${IPCS:-1,10,50}
# the shipped generator first alone: it computes Fashion-MNIST's feature moments the others then read from the cache
[ "$(left)" -gt 20 ] && timeout "$(( $(left) - 10 ))" python3 -m mgdd generate meta --dataset fashion-mnist --ipc 1 \
    --seed 0 --out "$out/sets/warm.safetensors" --device "$DEVICE" --quiet > /dev/null
k0_score meta shipped "$out" > "$out/score-shipped.log" 2>&1 &
for r in $runs; do
    [ -f "$out/$r/model.safetensors" ] && k0_score "$out/$r" "$r" "$out" > "$out/score-$r.log" 2>&1 &
done
wait
cat "$out"/score-*.log
python3 - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for f in sorted((out / "evals").glob("*.json")):
    name, ipc = f.stem.rsplit("-ipc", 1)
    r = json.loads(f.read_text())
    rows.setdefault(name, {})[int(ipc)] = f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}"
for name, cells in rows.items():
    steps = ""
    cfg = out / name / "config.json"
    if cfg.exists():
        steps = f" ({json.loads(cfg.read_text())['metadata']['meta_steps']} meta-steps)"
    print(f"{name}{steps}: " + ", ".join(f"IPC {i} {v}" for i, v in sorted(cells.items())))
EOF
rm -rf "$out/sets"
