#!/usr/bin/env bash
# Issue #40's protocol table on one GPU machine: RFAD's finite-network evaluation (width 1024,
# up to 20,000 iterations, early-stopped) is out of reach of 2 CPU cores.
#
#   bash benchmarks/device_protocols.sh RESULTS_DIR SECONDS
#
# Scores the sets made here (runs/protocols/sets, carried to the machine, so every protocol
# scores the same files) under the rfad protocol, krr-pixel first (the row compared with RFAD's
# published 78.6 / 87.0 / 88.8), then the shipped generator from its shipped start (generator-auto),
# krr-fresh (RFAD's own regime, 2,000 steps; its set is made here when not carried: minutes on a
# GPU, an hour or more a size on 2 CPU cores) and random+ls, IPC 1, 10 and 50,
# one run each, while SECONDS last; then 3 runs where time is left. Cells land in
# RESULTS_DIR/cells as they finish; the same command resumes. RFAD_METHODS (space-separated)
# and RFAD_IPCS (comma-separated) narrow the first pass. Copy the cells to
# results/protocols/cells/ (their "device" field names the GPU).
set -u -o pipefail
out=${1:?RESULTS_DIR}; budget=${2:?SECONDS}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MGDD_PROTOCOLS_OUT=$out
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
export RFAD_METHODS=${RFAD_METHODS:-krr-pixel generator-auto krr-fresh random+ls} RFAD_IPCS=${RFAD_IPCS:-1,10,50}
timeout "$budget" sh -c '
for m in $RFAD_METHODS; do
  python3 benchmarks/protocols.py run --ipcs $RFAD_IPCS --runs 1 --protocols rfad --methods $m || exit 1
done
python3 benchmarks/protocols.py run --ipcs 1,10,50 --runs 3 --protocols rfad --methods krr-pixel,generator-auto'
echo "device_protocols: rc $?"
