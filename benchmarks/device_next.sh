#!/usr/bin/env bash
# What a lent GPU runs next, in the order of what it settles, on one budget:
#   0. issues #39 and #40's bench rerun: the fmnist bench with the shipped (herding-start)
#      generator, the capped label ridge and the one-shot rows (benchmarks/device_bench.sh,
#      PRESETS=fmnist, no smoke checks), into results/h200/fmnist-v3; the CPU folder
#      results/fmnist-v2 cannot be resumed (made with the earlier ridge) and a new CPU bench is
#      ~18 h. Resumable: cells committed from a cut-off run are copied in first and continued;
#   1. issue #40's unmeasured goal row: the bench's sets under RFAD's own evaluation, krr-pixel
#      first (against RFAD's published 78.6 / 87.0 / 88.8), then the generator and random+ls
#      (benchmarks/device_protocols.sh);
#   2. issue #41's shapes table on a GPU: every stage at 100 x 32 px, 200 x 64 px and
#      10 x 128 px, IPC 1, 10 and 50 (benchmarks/device_shapes.sh);
#   3. issue #40's label ridge at IPC 100-500 and krr-fresh to 10,000 steps
#      (benchmarks/device_ridge_fresh.sh).
#
#   bash benchmarks/device_next.sh OUT SECONDS
#
# Issue #39's GPU meta-training (the shipped recipe at 8 tasks a step, scored at K = 0) takes a
# whole budget of its own: benchmarks/device_meta.sh.
#
# Shares of SECONDS: 60% for the bench, then 45% / 35% / the rest of what is left (a part that
# finishes early leaves its time to the next). The cells go to a work folder, then into OUT/device-next.tgz with the log (the device
# tool brings back 8 files at most), so OUT must be the tool's $OUT. Before the call, here:
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# and the call: command "bash benchmarks/device_next.sh $OUT 520", carry ["data",
# "runs/protocols/sets"], timeout_s 600. Unpack with `tar xzf device-next.tgz`; each part's
# folder says where its cells belong (bench/fmnist -> results/h200/fmnist-v3 (on an H100:
# results/h100/fmnist-v3), protocols/cells -> results/protocols/cells, shapes ->
# results/shapes-gpu, ridge -> results/extra/ridge-fresh); every JSON names its device.
set -u -o pipefail
out=${1:?OUT}; budget=${2:?SECONDS}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
work=$(mktemp -d)
export MGDD_DATA=${MGDD_DATA:-$PWD/data} MGDD_CACHE=${MGDD_CACHE:-$work/cache}
log=$work/device-next.log
{
  echo "device_next: budget ${budget} s"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -o 'H[0-9]00' | tr H h)
  mkdir -p "$work/bench"
  [ -d "results/${gpu:-h200}/fmnist-v3/cells" ] && cp -r "results/${gpu:-h200}/fmnist-v3" "$work/bench/fmnist"
  SMOKE=0 PRESETS=fmnist bash benchmarks/device_bench.sh "$work/bench" $(( budget * 60 / 100 ))
  bash benchmarks/device_protocols.sh "$work/protocols" $(( $(left) * 45 / 100 ))
  bash benchmarks/device_shapes.sh "$work/shapes" $(( ($(left) * 35) / 55 ))
  [ "$(left)" -gt 30 ] && bash benchmarks/device_ridge_fresh.sh "$work/ridge" $(( $(left) - 20 ))
  echo "device_next: done with $(left) s left"
} 2>&1 | tee "$log"
rm -rf "$work/cache" "$work"/*/sets "$work/ridge/sets" "$work/bench/fmnist/sets" "$work/bench/fmnist/cache" \
  "$work/bench/fmnist/checkpoints"
tar czf "$out/device-next.tgz" -C "$work" .
cp "$log" "$out/"
