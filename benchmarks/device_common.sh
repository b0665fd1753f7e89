# Sourced by the device scripts (benchmarks/device_meta_sweep.sh, device_session.sh,
# device_amortised_krr.sh); not run alone.
#
#   unpack_data
#
# Unpacks the data carried in .devxz/ (Fashion-MNIST's IDX files, xz-compressed to fit the
# device's transfer limit, and the MNIST subset) into .devdata/ and points $MGDD_DATA there.
unpack_data() {
    local f
    mkdir -p .devdata/fashion-mnist .devdata/mnist
    for f in .devxz/*.xz; do
        python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
            "$f" ".devdata/fashion-mnist/$(basename "$f" .xz)"
    done
    cp .devxz/*.npz .devdata/mnist/ 2>/dev/null
    export MGDD_DATA=$PWD/.devdata
}

#   k0_score GEN NAME DIR
#
# The bench's K = 0 cells for one generator: Fashion-MNIST IPC $IPCS (comma-separated) from GEN
# at seed 0 with the passes it records, each set written to DIR/sets/NAME-ipcI.safetensors and
# evaluated with the default protocol ($RUNS runs, default 3; $EPOCHS epochs, default 300) into
# DIR/evals/NAME-ipcI.json, while the caller's left() says there is time (a cell that would not
# finish is skipped and said). Needs $DEVICE, $t0 and a left() function from the caller.
k0_score() {
    local gen=$1 name=$2 dir=$3 ipc
    mkdir -p "$dir/sets" "$dir/evals"
    for ipc in ${IPCS//,/ }; do
        [ "$(left)" -gt 25 ] || { echo "no time left for $name ipc$ipc"; return; }
        timeout "$(( $(left) - 20 ))" python3 -m mgdd generate "$gen" --dataset fashion-mnist --ipc "$ipc" --seed 0 \
            --out "$dir/sets/$name-ipc$ipc.safetensors" --device "$DEVICE" --quiet > /dev/null || continue
        timeout "$(( $(left) - 20 ))" python3 -m mgdd evaluate "$dir/sets/$name-ipc$ipc.safetensors" \
            --dataset fashion-mnist --runs "${RUNS:-3}" --epochs "${EPOCHS:-300}" \
            --out "$dir/evals/$name-ipc$ipc.json" --quiet > /dev/null \
            && echo "scored $name ipc$ipc at $(( $(date +%s) - t0 )) s"
    done
}

#   teacher_bank BANK LOGDIR UNTIL
#
# benchmarks/amortised_teacher.py's MNIST teacher tasks (IPCs 1,2,5,10,20; $TEACHER_STEPS krr-pixel
# steps, default 150) into BANK: task 0 alone first (it caches MNIST's feature moments), then
# $SHARDS processes at once (default 6) until UNTIL seconds after the caller's $t0; then
# LOGDIR/bank-summary.json (each task's metadata) and LOGDIR/bank.json.
teacher_bank() {
    local bank=$1 logs=$2 until=$3 shards=${SHARDS:-6} k pids=""
    local teacher="--source mnist --ipcs 1,2,5,10,20 --steps ${TEACHER_STEPS:-150} --device $DEVICE --out $bank"
    # shellcheck disable=SC2086  # word lists
    python3 benchmarks/amortised_teacher.py bank $teacher --tasks 1 > "$logs/bank-0.log" 2>&1
    for k in $(seq 0 $(( shards - 1 ))); do
        # shellcheck disable=SC2086
        timeout "$(( until - ($(date +%s) - t0) ))" python3 benchmarks/amortised_teacher.py bank $teacher \
            --tasks "${TASKS:-4000}" --shard "$k/$shards" >> "$logs/bank-$k.log" 2>&1 &
        pids="$pids $!"
    done
    # shellcheck disable=SC2086
    wait $pids
    python3 benchmarks/amortised_teacher.py summary --bank "$bank" --out "$logs/bank-summary.json"
    cp "$bank/bank.json" "$logs/" 2>/dev/null
    echo "bank done at $(( $(date +%s) - t0 )) s"
}

#   score_amortised GENS DIR BANK OTHERS
#
# Every generator in GENS (comma-separated folders) through k0_score into DIR, side by side, and
# the missing fractions of OTHERS,GENS on BANK's last 10 tasks (held out in training) into
# DIR/missing-fraction.json; then waits for every job of the caller and prints the logs.
score_amortised() {
    local gens=$1 dir=$2 bank=$3 others=$4 g
    for g in ${gens//,/ }; do
        [ -f "$g/model.safetensors" ] && k0_score "$g" "$(basename "$g")" "$dir" > "$dir/score-$(basename "$g").log" 2>&1 &
    done
    [ "$(left)" -gt 30 ] && timeout "$(( $(left) - 20 ))" python3 benchmarks/amortised_teacher.py missing --bank "$bank" \
        --holdout 10 --device "$DEVICE" --generators "$others,$gens" --out "$dir/missing-fraction.json" > "$dir/missing.log" 2>&1
    wait
    cat "$dir"/score-*.log "$dir/missing.log"
}
