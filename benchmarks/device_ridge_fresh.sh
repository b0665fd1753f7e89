#!/usr/bin/env bash
# Issue #40's two evaluation-heavy tables on one GPU machine (2 CPU cores cannot afford them:
# a 300-epoch run at IPC 500 is about 50 minutes there).
#
#   bash benchmarks/device_ridge_fresh.sh RESULTS_DIR SECONDS
#
# 1. The label ridge at large sizes: on the bench's seeded images at IPC 100, 200 and 500, hard
#    labels (`random`), least-squares labels under the ridge that was the default before issue #40
#    (`--ridge feature`, lam 0.1) and under today's default (`capped`: the feature rule up to
#    M = d / 2, then held; at M > 512 it equals `--ridge kernel --lam 0.05`); 3 runs each.
# 2. krr-fresh at RFAD's scale: a fresh network and real batches every step, 10,000 steps at IPC 1,
#    10 and 50 at its default lr (0.03 at IPC 1, 0.01 from IPC 10; about 16 ms a step on an H200),
#    snapshots at 200, 500, 1000, 2000 and 5000, 3 runs each
#    (benchmarks/fresh_curve.py made the CPU curve to 2,000-5,000 steps).
# Every result is one JSON in RESULTS_DIR (skipped when present: the same command resumes);
# copy RESULTS_DIR to results/extra/ridge-fresh/ (each JSON names its device).
set -u -o pipefail
out=${1:?RESULTS_DIR}; budget=${2:?SECONDS}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OUT_DIR=$out
mkdir -p "$out/sets"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "$budget" bash -c '
set -e
ev() { [ -f "$OUT_DIR/$2.json" ] || python3 -m mgdd evaluate "$1" --runs "$3" --out "$OUT_DIR/$2.json" --quiet; }
for ipc in 100 200 500; do
  s=$OUT_DIR/sets
  [ -f $s/random-ipc$ipc.safetensors ] || python3 -m mgdd baseline random --dataset fashion-mnist --ipc $ipc --out $s/random-ipc$ipc.safetensors --quiet
  ev $s/random-ipc$ipc.safetensors random-ipc$ipc 3
  [ -f $s/ls-feature-ipc$ipc.safetensors ] || python3 -m mgdd baseline random+ls --dataset fashion-mnist --ipc $ipc --ridge feature --out $s/ls-feature-ipc$ipc.safetensors --quiet
  ev $s/ls-feature-ipc$ipc.safetensors random+ls-feature0.1-ipc$ipc 3
  [ -f $s/ls-capped-ipc$ipc.safetensors ] || python3 -m mgdd baseline random+ls --dataset fashion-mnist --ipc $ipc --out $s/ls-capped-ipc$ipc.safetensors --quiet
  ev $s/ls-capped-ipc$ipc.safetensors random+ls-capped-ipc$ipc 3
done
for ipc in 1 10 50; do
  f=$OUT_DIR/sets/fresh-ipc$ipc.safetensors
  [ -f $f ] || python3 -m mgdd baseline krr-fresh --dataset fashion-mnist --ipc $ipc --steps 10000 \
      --snapshots 200,500,1000,2000,5000 --out $f --quiet --resume
  for st in 200 500 1000 2000 5000; do ev ${f%.safetensors}-step$st.safetensors krr-fresh-ipc$ipc-step$st 3; done
  ev $f krr-fresh-ipc$ipc-step10000 3
done'
echo "device_ridge_fresh: rc $?"
