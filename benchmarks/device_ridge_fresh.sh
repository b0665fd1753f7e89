#!/usr/bin/env bash
# Issue #40's two evaluation-heavy tables on one GPU machine (2 CPU cores cannot afford them:
# a 300-epoch run at IPC 500 is about 50 minutes there).
#
#   bash benchmarks/device_ridge_fresh.sh RESULTS_DIR SECONDS
#
# 1. The label ridge at large sizes: on the bench's seeded images at IPC 500, 200 and 100 (in that
#    order), hard labels (`random`), least-squares labels under today's default ridge (`capped`:
#    the feature rule up to M = d / 2, then held; at M > 512 it equals `--ridge kernel --lam 0.05`)
#    and under the rule that was the default before issue #40 (`--ridge feature`, lam 0.1);
#    1 run each at IPC 500, 3 at IPC 200 and 100; after the default, least-squares labels under a
#    label ridge chosen by GCV and fixed stronger ones, --label-mu in RIDGE_MUS (default "gcv 0.1 0.3"),
#    before the `feature` rule.
# 2. krr-fresh at RFAD's scale: a fresh network and real batches every step, 10,000 steps at IPC 1,
#    10 and 50 at its default lr (0.03 at IPC 1, 0.01 from IPC 10; about 16 ms a step on an H200),
#    snapshots at 1000, 2000 and 5000; the last step scored 3 runs under the bench's protocol and
#    1 under RFAD's (`--protocol rfad`), then the 5000 and 2000 snapshots 3 runs each
#    (benchmarks/fresh_curve.py made the CPU curve to 2,000-5,000 steps).
# Every result is one JSON in RESULTS_DIR (skipped when present: the same command resumes);
# copy RESULTS_DIR to results/extra/ridge-fresh/ (each JSON names its device).
# PART=ridge or PART=fresh runs one half (default: both, ridge first); FRESH_IPCS picks the
# krr-fresh sizes (default "1 10 50"), so each size can run as its own process beside the others.
# The ridge starts at IPC 500 (the size never measured; 1 run per label rule there), then 200 and 100.
# krr-fresh writes its sets (snapshots and checkpoint included: a cut run resumes) under
# RESULTS_DIR/sets-fresh, which the caller keeps: what the GPU had no time to score is scored on CPU.
set -u -o pipefail
out=${1:?RESULTS_DIR}; budget=${2:?SECONDS}
export PART=${PART:-both} FRESH_IPCS=${FRESH_IPCS:-1 10 50} RIDGE_IPCS=${RIDGE_IPCS:-500 200 100} RIDGE_MUS=${RIDGE_MUS:-gcv 0.1 0.3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OUT_DIR=$out
mkdir -p "$out/sets"
echo "device_ridge_fresh: PART=$PART FRESH_IPCS=$FRESH_IPCS"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "$budget" bash -c '
set -e
ev() { [ -f "$OUT_DIR/$2.json" ] || python3 -m mgdd evaluate "$1" --runs "$3" --out "$OUT_DIR/$2.json" --quiet "${@:4}"; }
if [ "$PART" != fresh ]; then
for ipc in $RIDGE_IPCS; do
  s=$OUT_DIR/sets
  r=$([ $ipc = 500 ] && echo 1 || echo 3)
  [ -f $s/random-ipc$ipc.safetensors ] || python3 -m mgdd baseline random --dataset fashion-mnist --ipc $ipc --out $s/random-ipc$ipc.safetensors --quiet
  ev $s/random-ipc$ipc.safetensors random-ipc$ipc $r
  [ -f $s/ls-capped-ipc$ipc.safetensors ] || python3 -m mgdd baseline random+ls --dataset fashion-mnist --ipc $ipc --label-mu 1e-3 --out $s/ls-capped-ipc$ipc.safetensors --quiet
  ev $s/ls-capped-ipc$ipc.safetensors random+ls-capped-ipc$ipc $r
  for mu in $RIDGE_MUS; do  # the label ridge by GCV, and fixed stronger ones (experiments/label_ridge_gcv.py)
    [ -f $s/ls-capped-mu$mu-ipc$ipc.safetensors ] || python3 -m mgdd baseline random+ls --dataset fashion-mnist --ipc $ipc --label-mu $mu --out $s/ls-capped-mu$mu-ipc$ipc.safetensors --quiet
    ev $s/ls-capped-mu$mu-ipc$ipc.safetensors random+ls-capped-mu$mu-ipc$ipc $r
  done
  [ -f $s/ls-feature-ipc$ipc.safetensors ] || python3 -m mgdd baseline random+ls --dataset fashion-mnist --ipc $ipc --ridge feature --label-mu 1e-3 --out $s/ls-feature-ipc$ipc.safetensors --quiet
  ev $s/ls-feature-ipc$ipc.safetensors random+ls-feature0.1-ipc$ipc $r
done
fi
[ "$PART" = ridge ] && exit 0
mkdir -p $OUT_DIR/sets-fresh
for ipc in $FRESH_IPCS; do
  f=$OUT_DIR/sets-fresh/fresh-ipc$ipc.safetensors
  [ -f $f ] || python3 -m mgdd baseline krr-fresh --dataset fashion-mnist --ipc $ipc --steps 10000 \
      --snapshots 1000,2000,5000 --out $f --quiet --resume
  ev $f krr-fresh-ipc$ipc-step10000 3
  ev $f krr-fresh-ipc$ipc-step10000-rfad 1 --protocol rfad
  for st in 5000 2000; do ev ${f%.safetensors}-step$st.safetensors krr-fresh-ipc$ipc-step$st 3; done
done'
echo "device_ridge_fresh: rc $?"
