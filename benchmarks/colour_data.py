"""Build the colour data of issue #17 from the grey data that installs offline.

    python benchmarks/colour_data.py [--out-dir ~/.cache/mgdd/data/colour] [--size 32]

Writes two .npz datasets (x_train, y_train, x_test, y_test, class_names, info), read by
mgdd as ``npz:PATH``:

  tinted-mnist.npz          the colour meta-training SOURCE: the 10k MNIST subset, each digit
                            drawn in one random colour on a solid background of another
  colour-fashion-mnist.npz  the colour TARGET, never a meta-training source: Fashion-MNIST
                            (60k/10k), each garment in one random colour over a background
                            that is a left-to-right gradient between two more random colours

Why two schemes: the target must not share the source's colour statistics, so a generator
that only learnt "solid background + one ink" is not flattered. In both, the grey image g in
[0, 1] (padded from 28x28 to --size) is the ink's opacity: x = g * ink + (1 - g) * background,
with ink and background colours drawn per image (seeded; the class never decides a colour, so
colour is a nuisance the distilled set must cope with, as in photos). Foreground and background
are kept at least 0.35 apart in mean absolute difference so no object vanishes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.data import load_dataset, user_data_dir  # noqa: E402

MIN_CONTRAST = 0.35


def _colours(rng, n: int, avoid=None) -> np.ndarray:
    """(n, 3) random RGB colours in [0, 1]; with ``avoid``, each at least MIN_CONTRAST from it."""
    out = rng.random((n, 3))
    if avoid is not None:
        bad = np.abs(out - avoid).mean(1) < MIN_CONTRAST
        while bad.any():
            out[bad] = rng.random((int(bad.sum()), 3))
            bad = np.abs(out - avoid).mean(1) < MIN_CONTRAST
    return out


def colourize(grey: np.ndarray, scheme: str, seed: int, size: int) -> np.ndarray:
    """grey (N, 1, h, w) float in [0, 1] -> uint8 (N, 3, size, size)."""
    n, _, h, w = grey.shape
    top, left = (size - h) // 2, (size - w) // 2
    g = np.zeros((n, 1, size, size), np.float32)
    g[:, :, top:top + h, left:left + w] = grey
    rng = np.random.default_rng(seed)
    if scheme == "solid":
        bg = _colours(rng, n)[:, :, None, None] * np.ones((1, 1, size, size), np.float32)
        ink = _colours(rng, n, avoid=bg[:, :, 0, 0])
    elif scheme == "gradient":
        a, b = _colours(rng, n), _colours(rng, n)
        t = np.linspace(0, 1, size, dtype=np.float32)[None, None, None, :]
        bg = a[:, :, None, None] * (1 - t) + b[:, :, None, None] * t        # (N, 3, 1, size)
        bg = np.broadcast_to(bg, (n, 3, size, size))
        ink = _colours(rng, n, avoid=(a + b) / 2)
    else:
        raise ValueError(scheme)
    x = g * ink[:, :, None, None] + (1 - g) * bg
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def build(name: str, scheme: str, seed: int, size: int, out: Path) -> None:
    ds = load_dataset(name)
    m, s = np.array(ds.mean).reshape(1, -1, 1, 1), np.array(ds.std).reshape(1, -1, 1, 1)
    grey_tr = np.clip(ds.train_x.numpy() * s + m, 0, 1)   # undo the dataset's normalisation
    grey_te = np.clip(ds.test_x.numpy() * s + m, 0, 1)
    info = {"built_by": "benchmarks/colour_data.py", "from": ds.name, "scheme": scheme, "seed": seed,
            "size": size, "min_contrast": MIN_CONTRAST}
    np.savez(out, x_train=colourize(grey_tr, scheme, seed, size), y_train=ds.train_y.numpy(),
             x_test=colourize(grey_te, scheme, seed + 1, size), y_test=ds.test_y.numpy(),
             class_names=np.array(ds.classes), info=np.array(json.dumps(info)))
    print(f"wrote {out} ({len(grey_tr)} train, {len(grey_te)} test, 3x{size}x{size})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=str(user_data_dir() / "colour"))
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build("mnist", "solid", 0, args.size, out / "tinted-mnist.npz")
    build("fashion-mnist", "gradient", 100, args.size, out / "colour-fashion-mnist.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
