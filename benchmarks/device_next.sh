#!/usr/bin/env bash
# What a lent GPU runs next: the unmeasured GPU tables, side by side on the one GPU (each part is
# a few small processes that leave the GPU mostly idle alone; 16 CPU cores are split between them):
#   bench   issues #39 and #40's bench rerun: the fmnist bench with the shipped (herding-start)
#           generator, the capped label ridge and the one-shot rows (benchmarks/device_bench.sh,
#           PRESETS=fmnist, no smoke checks), into results/<gpu>/fmnist-v3; resumable: cells
#           committed from a cut-off run are copied in first and continued;
#   protocols  issue #40's unmeasured goal row: the bench's sets under RFAD's own evaluation,
#           krr-pixel first (against RFAD's published 78.6 / 87.0 / 88.8), then the generator,
#           krr-fresh and random+ls (benchmarks/device_protocols.sh);
#   shapes  issue #41's shapes table on a GPU (benchmarks/device_shapes.sh);
#   ridge   issue #40's label ridge at IPC 500, 200 and 100 (benchmarks/device_ridge_fresh.sh, PART=ridge);
#   fresh1, fresh10, fresh50  krr-fresh to 10,000 steps at IPC 1, 10 and 50, one process each
#           (PART=fresh FRESH_IPCS=I); their sets come back, so what the GPU did not score is
#           scored on CPU;
#   greedy  issue #39's greedy start (mgdd/greedy.py: real images picked on the KRR loss, nested)
#           with least-squares labels and the shipped generator from it, beside herding's, at IPC 1,
#           10, 20, 50 and 100, 3 runs (IPC 100's orders take hours on 2 CPU cores; here the
#           selection runs on the GPU), and meta:greedy when runs/meta-greedy is carried.
# PARTS picks the parts (default all); RFAD_METHODS / RFAD_IPCS, SHAPES and RIDGE_IPCS / RIDGE_MUS narrow
# the protocols, shapes and ridge parts (each script's header).
# Every part gets the whole budget as its own time limit and stops at it. Parts sharing one GPU
# run slower than alone: the timings in this run's files are under that contention (the log
# records which parts ran together), so they are upper bounds on an idle GPU's.
#
#   bash benchmarks/device_next.sh OUT SECONDS
#
# Issue #39's GPU meta-training (the shipped recipe at 8 tasks a step, scored at K = 0) takes a
# whole budget of its own: benchmarks/device_meta.sh.
#
# The results go to OUT/device-next.tgz with the log, the krr-fresh sets to OUT/fresh-sets.tgz
# (the device tool brings back 8 files at most), so OUT must be the tool's $OUT. Before the
# call, here:
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
#   python benchmarks/protocols.py sets --ipcs 1,10,50 --methods random+ls,generator-auto,krr-pixel
#                          # the sets RFAD's protocol scores (krr-fresh's are made on the GPU unless here)
# and the call: command "bash benchmarks/device_next.sh $OUT 540", carry ["data",
# "runs/protocols/sets", "runs/meta-greedy"] (the last when it exists here: the greedy part then
# scores it too), timeout_s 600. Unpack with `tar xzf device-next.tgz`; each part's
# folder says where its cells belong (bench/fmnist -> results/<gpu>/fmnist-v3,
# protocols/cells -> results/protocols/cells, shapes -> results/shapes-gpu,
# ridge and fresh* -> results/extra/ridge-fresh, greedy/fashion-mnist/cells -> results/<gpu>/generator-view);
# every JSON names its device.
set -u -o pipefail
out=${1:?OUT}; budget=${2:?SECONDS}
t0=$(date +%s)
work=$(mktemp -d)
export MGDD_DATA=${MGDD_DATA:-$PWD/data}
log=$work/device-next.log
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | grep -o 'H[0-9]00' | tr H h)
PARTS=${PARTS:-bench protocols shapes ridge fresh1 fresh10 fresh50 greedy}  # a rerun can name fewer
part() {  # part NAME THREADS COMMAND...: one part in the background, its own cache, log and limit
    local name=$1 threads=$2; shift 2
    case " $PARTS " in *" $name "*) ;; *) return ;; esac
    ( export OMP_NUM_THREADS=$threads MGDD_CACHE=$work/cache-$name
      timeout $(( budget + 5 )) "$@" > "$work/$name.log" 2>&1
      echo "device_next: $name rc $? after $(( $(date +%s) - t0 )) s" ) &
}
{
  echo "device_next: budget ${budget} s on ${gpu:-no GPU}; parts side by side: $PARTS"
  mkdir -p "$work/bench"
  [ -d "results/${gpu:-h200}/fmnist-v3/cells" ] && cp -r "results/${gpu:-h200}/fmnist-v3" "$work/bench/fmnist"
  part bench 3 env SMOKE=0 PRESETS=fmnist bash benchmarks/device_bench.sh "$work/bench" "$budget"
  part protocols 2 bash benchmarks/device_protocols.sh "$work/protocols" "$budget"
  part shapes 3 bash benchmarks/device_shapes.sh "$work/shapes" "$budget"
  part ridge 2 env PART=ridge bash benchmarks/device_ridge_fresh.sh "$work/ridge" "$budget"
  for i in 1 10 50; do
    part fresh$i 2 env PART=fresh FRESH_IPCS=$i bash benchmarks/device_ridge_fresh.sh "$work/fresh$i" "$budget"
  done
  part greedy 2 python3 experiments/generator_view.py --device cuda --out "$work/greedy" --ipcs 1,10,20,50,100 --runs 3 \
    --rows herding+ls,shipped,greedy+ls,shipped@greedy$([ -f runs/meta-greedy/model.safetensors ] && echo ,meta:greedy)
  sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  wait
  echo "device_next: done after $(( $(date +%s) - t0 )) s"
} 2>&1 | tee "$log"
mkdir -p "$work/fresh-sets"
for i in 1 10 50; do [ -d "$work/fresh$i/sets-fresh" ] && mv "$work/fresh$i/sets-fresh" "$work/fresh-sets/ipc$i"; done
tar czf "$out/fresh-sets.tgz" -C "$work" fresh-sets
rm -rf "$work"/cache-* "$work"/*/sets "$work"/fresh-sets "$work/bench/fmnist/sets" "$work/bench/fmnist/cache" \
  "$work/bench/fmnist/checkpoints" "$work/shapes/sets" "$work/shapes/checkpoints"
tar czf "$out/device-next.tgz" -C "$work" .
cp "$log" "$out/"
