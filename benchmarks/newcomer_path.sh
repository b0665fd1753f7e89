#!/usr/bin/env bash
# A newcomer's path, timed: a fresh clone, the README's install, then `mgdd distill` on a small
# ImageFolder of "their own photos" (issue #42). Writes OUT/newcomer.md.
#
#   bash benchmarks/newcomer_path.sh REPO_URL_OR_PATH OUT
#
# The photos: 4 classes x 60 JPEGs, 64x64 RGB, made from Fashion-MNIST test images (each
# garment tinted), so the command has something photo-like to read (any size, made RGB,
# resized to 32x32 by mgdd). Needs Fashion-MNIST installed (make data) and network access
# for pip.
set -euo pipefail
repo=$1; out=$(realpath -m "$2"); mkdir -p "$out"; work=$(mktemp -d)
t() { date +%s.%N; }
log="$out/newcomer.md"; : > "$log"
row() { printf '| %s | %.0f s |\n' "$1" "$(echo "$3 - $2" | bc)" >> "$log"; }

t0=$(t); git clone -q "$repo" "$work/mgdd"; t1=$(t)
cd "$work/mgdd"
make install > "$out/install.log" 2>&1; t2=$(t)
.venv/bin/python - "$work/photos" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
import mgdd
ds = mgdd.load_dataset("fashion-mnist")
x = (ds.test_x * ds.std[0] + ds.mean[0]).clamp(0, 1).numpy()[:, 0]
rng = np.random.default_rng(0)
for c, name in enumerate(["tshirt", "trouser", "pullover", "dress"]):
    folder = Path(sys.argv[1]) / name
    folder.mkdir(parents=True)
    for i, j in enumerate(np.flatnonzero(ds.test_y.numpy() == c)[:60]):
        tint = rng.uniform(0.3, 1.0, 3)
        rgb = (x[j][..., None] * tint * 255).astype(np.uint8)
        Image.fromarray(rgb).resize((64, 64)).save(folder / f"{i:03d}.jpg", quality=90)
PY
t3=$(t)
.venv/bin/mgdd distill --dataset "imagefolder:$work/photos" --ipc 1,10 --out "$work/my-sets" --evaluate --quiet \
    > "$out/distill.txt" 2>&1; t4=$(t)
{
  echo "| step (README order) | wall-clock |"
  echo "|---|---|"
} > "$log.head"
row "git clone" "$t0" "$t1"; row "make install (venv, torch CPU wheel, mgdd)" "$t1" "$t2"
row "make the photos (not a user step)" "$t2" "$t3"
row "mgdd distill --dataset imagefolder:PHOTOS --ipc 1,10 --evaluate" "$t3" "$t4"
cat "$log.head" "$log" > "$log.tmp" && mv "$log.tmp" "$log" && rm "$log.head"
{ echo; echo "Clone to first distilled set (clone + install + distill, photos excluded): $(printf '%.0f' "$(echo "$t1 - $t0 + $t2 - $t1 + $t4 - $t3" | bc)") s"
  echo; echo "Host: $(nproc) cores, $(uname -m), $(date -u +%F)."; echo; echo '```'; cat "$out/distill.txt"; echo '```'
  ls "$work/my-sets" | sed 's/^/    /'; } >> "$log"
rm -rf "$work"
cat "$log"
