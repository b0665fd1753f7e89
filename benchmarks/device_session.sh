#!/usr/bin/env bash
# One device session for issue #16, start to end, within about SECONDS (default 500):
#
#   bash benchmarks/device_session.sh OUT [SECONDS]
#
# 1. Unpack the data carried in .devxz/ (Fashion-MNIST's IDX files, xz-compressed to fit the
#    device's transfer limit, and the MNIST subset) into .devdata/, and point $MGDD_DATA there.
# 2. In the background: resume the H200 fmnist bench (a copy of results/h200/fmnist under OUT, no
#    smoke checks) for the krr-fresh IPC 50 cells its preset gained; and IPC 200 under the label
#    ridge that suits it (--lam 0.01, README "IPC 200 and the label ridge"): the shipped generator
#    at K = 0 and krr-pixel from the same seeded X_0 at 19 / 200 / 421 steps, 3 runs each.
# 3. In the foreground: benchmarks/device_meta_sweep.sh (meta-training one change at a time, then
#    every generator's K = 0 sets on Fashion-MNIST).
# 4. Pack everything into OUT/back.tgz (the device returns only a few files, 16 MiB each), caches,
#    sets and meta-checkpoints left out (the models stay). Fetch it from this call's reply: the next
#    call starts with an empty OUT.
# A CPU check of the script itself: DEVICE=cpu RUNS=1 EPOCHS=1 META_STEPS=2 IPCS=1,2 (the bench resume
# is refused there: results/h200 was measured on cuda).
set -u -o pipefail
out=${1:?OUT}; budget=${2:-500}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
mkdir -p .devdata/fashion-mnist .devdata/mnist "$out/ipc200/sets" "$out/ipc200/evals"
for f in .devxz/*.xz; do
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$f" ".devdata/fashion-mnist/$(basename "$f" .xz)"
done
cp .devxz/*.npz .devdata/mnist/ 2>/dev/null
export MGDD_DATA=$PWD/.devdata PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

mkdir -p "$out/h200" && cp -r results/h200/fmnist "$out/h200/fmnist"
SMOKE=0 PRESETS=fmnist bash benchmarks/device_bench.sh "$out/h200" $(( budget - 40 )) > "$out/bench.log" 2>&1 &

d=$out/ipc200
score() {  # NAME: evaluate $d/sets/NAME.safetensors, 3 runs, while time lasts
    [ "$(left)" -gt 45 ] || { echo "no time left for $1"; return; }
    timeout "$(( $(left) - 30 ))" python3 -m mgdd evaluate "$d/sets/$1.safetensors" --dataset fashion-mnist \
        --runs "${RUNS:-3}" --epochs "${EPOCHS:-300}" --out "$d/evals/$1.json" --quiet \
        && echo "scored $1 at $(( $(date +%s) - t0 )) s"
}
(
    timeout "$(( $(left) - 60 ))" python3 -m mgdd generate meta --dataset fashion-mnist --ipc 200 --lam 0.01 \
        --seed 0 --device "$DEVICE" --quiet --out "$d/sets/generator-lam0.01-ipc200.safetensors" > "$d/generator.log" 2>&1 \
        && score generator-lam0.01-ipc200
    [ "$(left)" -gt 90 ] && timeout "$(( $(left) - 60 ))" python3 -m mgdd baseline krr-pixel --dataset fashion-mnist \
        --ipc 200 --lam 0.01 --steps 421 --snapshots 19,200 --seed 0 --device "$DEVICE" --quiet --out "$d/sets/krr-pixel-lam0.01-ipc200.safetensors" > "$d/krr-pixel.log" 2>&1 \
        && for s in krr-pixel-lam0.01-ipc200 krr-pixel-lam0.01-ipc200-step19 krr-pixel-lam0.01-ipc200-step200; do score $s; done
) > "$d/worker.log" 2>&1 &

bash benchmarks/device_meta_sweep.sh "$out/sweep" $(( budget - 30 )) > "$out/sweep.log" 2>&1
wait
tail -n 12 "$out/bench.log"; cat "$d/worker.log"; tail -n 30 "$out/sweep.log"
# the bench's cache/ (feature moments, ~640 MB) and the sets are rebuilt by the same seeded commands
rm -rf "$d/sets"
tar czf "$out/back.tgz" --exclude=cache --exclude=sets --exclude=meta-checkpoint.safetensors -C "$out" \
    h200 ipc200 sweep bench.log sweep.log && rm -rf "$out/h200" "$out/ipc200" "$out/sweep"
ls -la "$out"
