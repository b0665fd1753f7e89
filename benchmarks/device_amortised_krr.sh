#!/usr/bin/env bash
# Issue #16 on one GPU machine: does the KRR loss added to the teacher regression help?
# (docs/results.md "Amortised krr-pixel solutions": the last of its "what might close it").
#
#   bash benchmarks/device_amortised_krr.sh OUT [SECONDS]    (default 270)
#
# 1. A teacher bank as in device_session.sh step 3 (MNIST, the same seeds, IPCs and 150
#    krr-pixel steps), SHARDS processes at once until 40% of SECONDS.
# 2. Three one-pass generators trained side by side on every task made but the last 10, 400 steps
#    each, one change per run: --krr-weight 0 (regression only, the control), 1 and 10.
# 3. Each makes Fashion-MNIST IPC 1 / 10 / 50 at K = 0 (seed 0), evaluated with the default
#    protocol, 3 runs; missing fractions on the held-out tasks.
# 4. OUT/back.tgz: the generators, logs, evaluations and the bank's per-task summary (not its tensors).
# A CPU check of the script itself: DEVICE=cpu TASKS=6 TEACHER_STEPS=3 STEPS=4 RUNS=1 EPOCHS=1 IPCS=1
set -u -o pipefail
out=${1:?OUT}; budget=${2:-270}; DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
# shellcheck source=benchmarks/device_common.sh
source "$(dirname "$0")/device_common.sh"
unpack_data
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=2
a=$out/amortised-krr; bank=$out/bank
mkdir -p "$a"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

teacher_bank "$bank" "$a" $(( budget * 40 / 100 ))

gens=""
WEIGHTS=${WEIGHTS:-0,1,10}
for w in ${WEIGHTS//,/ }; do
    # --max-seconds: a run cut short saves the generator with the steps it did (config.json says how many)
    timeout "$(( $(left) - 60 ))" python3 benchmarks/amortised_teacher.py train --bank "$bank" --steps "${STEPS:-400}" \
        --holdout 10 --krr-weight "$w" --log-every 100 --max-seconds "$(( $(left) - 130 ))" --device "$DEVICE" \
        --out "$a/meta-amortised-krr$w" > "$a/train-krr$w.log" 2>&1 &
    train_pids="${train_pids:-} $!"; gens="$gens${gens:+,}$a/meta-amortised-krr$w"
done
# shellcheck disable=SC2086
wait ${train_pids:-}
echo "training done at $(( $(date +%s) - t0 )) s"; tail -n 1 "$a"/train-*.log

IPCS=${IPCS:-1,10,50}
score_amortised "$gens" "$a" "$bank" results/extra/meta-amortised
rm -rf "$a/sets"
tar czf "$out/back.tgz" -C "$out" amortised-krr && rm -rf "$a" "$bank"
ls -la "$out"
