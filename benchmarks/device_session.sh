#!/usr/bin/env bash
# One device session for issue #16, start to end, within about SECONDS (default 500):
#
#   bash benchmarks/device_session.sh OUT [SECONDS]
#
# 1. Unpack the data carried in .devxz/ (Fashion-MNIST's IDX files, xz-compressed to fit the
#    device's transfer limit, and the MNIST subset) into .devdata/, and point $MGDD_DATA there.
# 2. Resume the H200 benches in results/h200 (copied under OUT first, so every finished cell comes
#    back even if the run is cut off): digits28's IPC 50 block, then the krr-fresh IPC 50 points the
#    presets gained (benchmarks/device_bench.sh, no smoke checks), for 40% of SECONDS.
# 3. benchmarks/device_scale.sh for the rest: meta-training at GPU scale and the never-seen sizes.
# 4. Pack everything into OUT/back.tgz (the device returns only a few files, 16 MiB each), caches
#    and sets left out. Fetch it from this call's reply: the next call starts with an empty OUT.
set -u -o pipefail
out=${1:?OUT}; budget=${2:-500}
mkdir -p .devdata/fashion-mnist .devdata/mnist "$out"
for f in .devxz/*.xz; do
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$f" ".devdata/fashion-mnist/$(basename "$f" .xz)"
done
cp .devxz/*.npz .devdata/mnist/ 2>/dev/null
export MGDD_DATA=$PWD/.devdata
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

cp -r results/h200 "$out/h200" && rm -rf "$out/h200/logs"
SMOKE=0 PRESETS="digits28 fmnist" bash benchmarks/device_bench.sh "$out/h200" $(( budget * 2 / 5 )) > "$out/bench.log" 2>&1
bash benchmarks/device_scale.sh "$out/scale" $(( budget * 3 / 5 )) > "$out/scale.log" 2>&1
tail -n 12 "$out/bench.log"; tail -n 40 "$out/scale.log"
# the benches' cache/ (feature moments, ~640 MB) and sets/ are rebuilt on resume; they stay behind
tar czf "$out/back.tgz" --exclude=cache --exclude=sets -C "$out" h200 scale bench.log scale.log && rm -rf "$out/h200" "$out/scale"
ls -la "$out"
