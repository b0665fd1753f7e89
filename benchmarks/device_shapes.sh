#!/usr/bin/env bash
# Issue #41's shapes table on one GPU machine (results/shapes/README.md has the CPU one).
#
#   bash benchmarks/device_shapes.sh RESULTS_DIR SECONDS
#
# Builds the shape-equivalent sets from Fashion-MNIST ($MGDD_DATA or the Debian package), then
# runs every stage at IPC 1, 10 and 50 on the three shapes with --device cuda (3 adaptation
# steps, 5 krr-pixel steps), then the 300-epoch accuracies of random+ls and the shipped
# generator at IPC 1 and 10 (and 50 at 10 x 128 and 200 x 64 px, which 2 CPU cores did not finish),
# while SECONDS last. SHAPES (comma-separated) runs fewer shapes; --evaluate's cells of a shape
# not run are skipped. Cells land in RESULTS_DIR/cells as they finish;
# the same command with the same RESULTS_DIR resumes. Copy RESULTS_DIR to results/shapes-gpu/.
set -u -o pipefail
out=${1:?RESULTS_DIR}; budget=${2:?SECONDS}
export SHAPES=${SHAPES:-c100-32,c10-128,c200-64}  # a rerun can name fewer
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MGDD_SHAPES_OUT=$out
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "$budget" sh -c '
python3 benchmarks/shapes.py data &&
python3 benchmarks/shapes.py run --device cuda --shapes $SHAPES &&
python3 benchmarks/shapes.py run --device cuda --shapes $SHAPES --stages none \
    --evaluate c100-32:1,c100-32:10,c10-128:1,c10-128:10,c10-128:50,c200-64:1,c200-64:10,c200-64:50'
echo "device_shapes: rc $?"
python3 benchmarks/shapes.py table   # writes $out/table.md
