#!/usr/bin/env bash
# One device session for issue #16, start to end, within about SECONDS (default 480):
#
#   bash benchmarks/device_session.sh OUT [SECONDS]
#
# 1. Unpack the data carried in .devxz/ (Fashion-MNIST's IDX files, xz-compressed to fit the
#    device's transfer limit, and the MNIST subset) into .devdata/, and point $MGDD_DATA there.
# 2. Ship-or-not for the history-input generator (docs/results.md "A pass that reads the previous update"):
#    in this working copy only, results/extra/meta-history replaces mgdd/pretrained/meta-mnist, and
#    both H200 benches (copies of results/h200/fmnist and digits28 under OUT/h200) are resumed with
#    --new-generator: every cell that reads the meta generator is redone, every other cell stands,
#    and the old generator's cells are kept under superseded/. In the background.
# 3. A teacher bank at scale (benchmarks/amortised_teacher.py, docs/results.md "Amortised krr-pixel
#    solutions"): SHARDS processes make MNIST teacher tasks (the same seeds, IPCs and 150 krr-pixel
#    steps as the 50-task CPU bank) until 45% of SECONDS; then two one-pass generators are trained
#    on every task made but the last 10 (held out): 400 steps (the CPU run's count: only the bank
#    grows) and 3000 steps (each saved as it stands if time runs short). Each, and the 40-task CPU generator, makes Fashion-MNIST IPC 1 / 10 / 50
#    at K = 0 (seed 0), evaluated with the default protocol, 3 runs; the missing fractions on the
#    held-out tasks go to OUT/amortised/missing-fraction.json.
# 4. Pack everything into OUT/back.tgz (the device returns only a few files, 16 MiB each): caches,
#    sets, the bank's tensors and meta-checkpoints left out (models and a per-task summary stay).
# A CPU check of the script itself: DEVICE=cpu TASKS=6 TEACHER_STEPS=3 TRAIN_STEPS=4,6 RUNS=1 EPOCHS=1
# IPCS=1,2 (the bench resume is refused there: results/h200 was measured on cuda).
set -u -o pipefail
out=${1:?OUT}; budget=${2:-480}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
# shellcheck source=benchmarks/device_common.sh
source "$(dirname "$0")/device_common.sh"
mkdir -p "$out/amortised/sets" "$out/amortised/evals"
unpack_data
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 2. the history-input generator in the shipped generator's place, both benches redone where they read it
cp results/extra/meta-history/config.json results/extra/meta-history/model.safetensors \
    results/extra/meta-history/meta-log.json mgdd/pretrained/meta-mnist/
mkdir -p "$out/h200"
for p in ${PRESETS-fmnist digits28}; do
    cp -r "results/h200/$p" "$out/h200/$p"
    timeout "$(( budget - 45 ))" python3 -m mgdd bench --preset "$p" --out "$out/h200/$p" --device "$DEVICE" \
        --resume --new-generator --quiet > "$out/bench-$p.log" 2>&1 &
done

# 3. the teacher bank: task 0 alone first (it caches MNIST's feature moments), then SHARDS at once
a=$out/amortised; bank=$out/bank
teacher_bank "$bank" "$a" $(( budget * 45 / 100 ))

TRAIN_STEPS=${TRAIN_STEPS:-400,3000}
gens="results/extra/meta-amortised"
for n in ${TRAIN_STEPS//,/ }; do
    [ "$(left)" -gt 90 ] || { echo "no time left to train $n steps"; continue; }
    # --max-seconds: a run cut short saves the generator with the steps it did (config.json says how many)
    timeout "$(( $(left) - 80 ))" python3 benchmarks/amortised_teacher.py train --bank "$bank" --steps "$n" --holdout 10 \
        --log-every 250 --max-seconds "$(( $(left) - 160 ))" --device "$DEVICE" --out "$a/meta-amortised-bank-$n" \
        > "$a/train-$n.log" 2>&1 &
    train_pids="${train_pids:-} $!"; gens="$gens,$a/meta-amortised-bank-$n"
done
# shellcheck disable=SC2086
wait ${train_pids:-}
echo "training done at $(( $(date +%s) - t0 )) s"; tail -n 1 "$a"/train-*.log

IPCS=${IPCS:-1,10,50}
score_amortised "$gens" "$a" "$bank" results/extra/meta-unrolled4,results/extra/meta-history
for p in ${PRESETS-fmnist digits28}; do echo "== bench $p"; tail -n 5 "$out/bench-$p.log"; done
rm -rf "$a/sets"
# the benches' cache/ (feature moments, ~640 MB), the sets and the bank's tensors are rebuilt by the same seeded commands
tar czf "$out/back.tgz" --exclude=cache --exclude=sets --exclude=meta-checkpoint.safetensors \
    --exclude='*.checkpoint.safetensors' -C "$out" \
    h200 amortised $(cd "$out" && ls bench-*.log 2>/dev/null) && rm -rf "$out/h200" "$out/amortised" "$out/bank"
ls -la "$out"
