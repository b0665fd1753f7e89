# Sourced by the device scripts (benchmarks/device_meta_sweep.sh, device_session.sh); not run alone.
#
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
