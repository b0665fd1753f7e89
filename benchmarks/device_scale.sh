#!/usr/bin/env bash
# Issue #16 on one GPU machine, within SECONDS (docs/results.md "IPC 200 and the label ridge"):
#
#   bash benchmarks/device_scale.sh OUT SECONDS
#
# 1. Meta-training at scale: the shipped recipe (mgdd/pretrained/meta-mnist/config.json) with one
#    change per run, both runs side by side on the one GPU:
#      meta-tasks16:          --tasks-per-step 16 (8x the tasks per meta-step: a less noisy meta-gradient)
#      meta-tasks16-ipc50:    the same, with --ipc-range 1,50 (the sizes where the shipped one is weakest)
#    Each is stopped with SIGTERM before SECONDS run out if it has not finished: the step in
#    flight finishes and OUT/NAME/meta-checkpoint.safetensors is written. A checkpoint put back
#    there (from an earlier call's OUT) is resumed. Measured on an H200 with both runs sharing it:
#    58 meta-steps in 230 s (about 4 s a step of 16 tasks), so 300 steps span several calls.
# 2. Never-seen sizes on Fashion-MNIST (the IPC 200 check): the seeded sets random (hard labels)
#    and random+ls at IPC 200 / 100 / 50, random+ls at IPC 200 with a smaller ridge, the shipped
#    generator at IPC 200 (K = 0) and krr-pixel from the same X_0 (19 / 200 / 421 steps, as in
#    results/extra/unseen-sizes), each evaluated with the default protocol, 3 runs. Two workers
#    share the GPU; each set is made, then evaluated, in priority order.
# Data: $MGDD_DATA as for device_bench.sh. A CPU check of the script itself: DEVICE=cpu META_STEPS=2
# RUNS=1 EPOCHS=1. Everything written lies under OUT.
set -u -o pipefail
out=${1:?OUT}; budget=${2:?SECONDS}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out/sets" "$out/evals"

# -- 1. meta-training: SIGTERM 40 s before the end leaves time for the step in flight and the checkpoint
recipe="--source mnist --algorithm unrolled --passes 4 --meta-steps ${META_STEPS:-300} --checkpoint-every 10"
stop=$(( budget - 40 ))
resume() { [ -f "$out/$1/meta-checkpoint.safetensors" ] && echo --resume; }
timeout -s TERM -k 30 "$stop" python3 -m mgdd meta-train $recipe --tasks-per-step 16 --ipc-range 1,30 \
    --out "$out/meta-tasks16" $(resume meta-tasks16) --device "$DEVICE" --quiet > "$out/meta-tasks16.log" 2>&1 &
m1=$!
timeout -s TERM -k 30 "$stop" python3 -m mgdd meta-train $recipe --tasks-per-step 16 --ipc-range 1,50 \
    --out "$out/meta-tasks16-ipc50" $(resume meta-tasks16-ipc50) --device "$DEVICE" --quiet \
    > "$out/meta-tasks16-ipc50.log" 2>&1 &
m2=$!

# -- 2. the never-seen sizes: make and evaluate, one set at a time per worker
score() {  # NAME: evaluate $out/sets/NAME.safetensors, 3 runs, unless time is short
    [ "$(left)" -gt 60 ] || { echo "no time left for $1"; return; }
    timeout "$(( $(left) - 10 ))" python3 -m mgdd evaluate "$out/sets/$1.safetensors" --dataset fashion-mnist \
        --runs "${RUNS:-3}" --epochs "${EPOCHS:-300}" --out "$out/evals/$1.json" --quiet \
        && echo "scored $1 at $(( $(date +%s) - t0 )) s"
}
made() {  # NAME BASELINE IPC [ARGS...]: a seeded baseline set, then its score
    local name=$1 base=$2 ipc=$3; shift 3
    [ "$(left)" -gt 90 ] || { echo "no time left to make $name"; return 1; }
    timeout "$(( $(left) - 30 ))" python3 -m mgdd baseline "$base" --dataset fashion-mnist --ipc "$ipc" --out "$out/sets/$name.safetensors" \
        --device "$DEVICE" --quiet "$@" > /dev/null && score "$name"
}
built() {  # NAME COMMAND...: a set built by an mgdd command (its --out is given here), then its score
    local name=$1; shift
    [ "$(left)" -gt 90 ] || { echo "no time left to make $name"; return 1; }
    timeout "$(( $(left) - 30 ))" python3 -m mgdd "$@" --dataset fashion-mnist --out "$out/sets/$name.safetensors" --device "$DEVICE" --quiet \
        > "$out/evals/$name.build.log" 2>&1 && score "$name"
}
(
    made random-ipc200 random 200
    made random+ls-ipc200 random+ls 200
    made random+ls-lam0.01-ipc200 random+ls 200 --lam 0.01
    made random-ipc100 random 100
    made random+ls-ipc100 random+ls 100
) > "$out/worker1.log" 2>&1 &
w1=$!
(
    # the shipped generator as shipped (K = 0, its 4 passes) and krr-pixel from the same seeded X_0:
    # 19 steps is the generator's time on 2 cores, 421 is 22x it (results/extra/unseen-sizes)
    built unrolled-p4-ipc200 generate meta --ipc 200 --seed 0
    built krr-pixel-ipc200 baseline krr-pixel --ipc 200 --steps 421 --snapshots 19,200 --seed 0 \
        && { score krr-pixel-ipc200-step19; score krr-pixel-ipc200-step200; }
    made random-ipc50 random 50
    made random+ls-ipc50 random+ls 50
) > "$out/worker2.log" 2>&1 &
w2=$!

wait $w1 $w2
echo "device_scale: evaluations done at $(( $(date +%s) - t0 )) s"
cat "$out/worker1.log" "$out/worker2.log"
wait $m1; echo "device_scale: meta-tasks16 rc $? at $(( $(date +%s) - t0 )) s"
wait $m2; echo "device_scale: meta-tasks16-ipc50 rc $? at $(( $(date +%s) - t0 )) s"
tail -n 3 "$out"/meta-*.log
rm -rf "$out/sets"  # the sets are rebuilt by the same seeded commands; the scores are in evals/
