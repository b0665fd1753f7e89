"""Colour data end to end (issue #17): photo folders and CIFAR batches, served by the shipped
meta generator (grey, channels folded), ZCA whitening carried through distill -> evaluate -> export."""

import json
import pickle

import numpy as np

from mgdd.cli import main
from mgdd.distilled import DistilledSet
from mgdd.pipeline import default_meta_generator, load_generator

OBJ = ["--pool-size", "2", "--feature-width", "8", "--feature-depth", "2", "--quiet"]


def photo_folder(root, per_class=6):
    """Three classes of colour photos of mixed sizes; one grey (L) and one RGBA image among them."""
    from PIL import Image
    rng = np.random.default_rng(0)
    tint = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}
    for c, rgb in tint.items():
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            w, h = 12 + 5 * i, 14 + 3 * (i % 3)
            arr = np.clip(np.array(rgb) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    Image.new("L", (20, 20), 90).save(root / "red" / "grey.png")
    Image.fromarray(np.full((16, 30, 4), (30, 200, 70, 128), np.uint8), "RGBA").save(root / "green" / "alpha.png")
    return root


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_photo_folder_distill_evaluate_export_with_the_meta_generator(tmp_path, capsys):
    data = f"imagefolder:{photo_folder(tmp_path / 'photos')}"
    out = tmp_path / "D"
    run(capsys, "distill", "--dataset", data, "--image-size", "16", "--ipc", "1,2", "--steps", "1",
        "--from", "meta", "--evaluate", "--epochs", "2", "--out", out, *OBJ)
    summary = json.loads((out / "summary.json").read_text())
    # served by the shipped grey meta generator, channels folded, and it says so
    assert summary["source"] == "shipped:meta-mnist (grey, 3 channels folded)"
    s2 = DistilledSet.load(out / "ipc2.safetensors")
    assert s2.images.shape == (6, 3, 16, 16) and s2.soft
    text = run(capsys, "evaluate", out / "ipc2.safetensors", "--epochs", "2")   # reloads the folder at 16x16
    assert "test accuracy" in text
    run(capsys, "export", out / "ipc2.safetensors", "--out", tmp_path / "E")
    from PIL import Image
    pngs = sorted((tmp_path / "E" / "imagefolder").rglob("*.png"))
    assert len(pngs) == 6 and all(Image.open(p).mode == "RGB" for p in pngs)


def test_zca_distill_evaluate_export(tmp_path, capsys):
    data = f"imagefolder:{photo_folder(tmp_path / 'photos')}"
    out = tmp_path / "D"
    run(capsys, "distill", "--dataset", data, "--image-size", "12", "--zca", "0.1", "--ipc", "1", "--steps", "1",
        "--from", "scratch", "--out", out, *OBJ)
    s1 = DistilledSet.load(out / "ipc1.safetensors")
    assert s1.zca is not None and s1.meta["zca"] == {"regularization": 0.1, "dims": 3 * 12 * 12}
    run(capsys, "evaluate", out / "ipc1.safetensors", "--epochs", "2", "--out", tmp_path / "r.json")
    assert 0 <= json.loads((tmp_path / "r.json").read_text())["accuracy_mean"] <= 1
    run(capsys, "export", out / "ipc1.safetensors", "--out", tmp_path / "E", "--formats", "npz")
    with np.load(tmp_path / "E" / "distilled.npz") as z:
        assert z["pixels"].min() >= 0 and z["pixels"].max() <= 1    # un-whitened pictures


def test_cifar_layout_with_the_meta_generator(tmp_path, capsys):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = list(range(10)) * 2
        pickle.dump({b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": labels},
                    open(root / name, "wb"))
    gen, origin = load_generator("meta", 3)
    assert gen.config.channels == 1 and origin == "shipped:meta-mnist (grey, 3 channels folded)"
    run(capsys, "distill", "--dataset", "cifar10", "--data-dir", tmp_path, "--ipc", "1", "--steps", "0",
        "--out", tmp_path / "D", *OBJ)
    assert DistilledSet.load(tmp_path / "D" / "ipc1.safetensors").images.shape == (10, 3, 32, 32)


def test_adapt_from_meta_on_colour_and_a_colour_generator_refuses_grey(tmp_path, capsys, tiny_npz):
    data = f"imagefolder:{photo_folder(tmp_path / 'photos')}"
    run(capsys, "adapt", "--dataset", data, "--image-size", "12", "--steps", "1", "--ipcs", "1",
        "--from", "scratch", "--out", tmp_path / "G", *OBJ)
    code = main(["generate", str(tmp_path / "G"), "--dataset", f"npz:{tiny_npz}", "--ipc", "1",
                 "--out", str(tmp_path / "g.safetensors"), *OBJ])
    assert code == 2 and "3-channel images" in capsys.readouterr().err


def test_without_a_colour_generator_the_grey_one_folds(monkeypatch):
    import mgdd.pipeline
    monkeypatch.setattr(mgdd.pipeline, "SHIPPED", {1: "meta-mnist"})
    gen, origin = load_generator("meta", 3)
    assert gen.config.channels == 1 and origin == "shipped:meta-mnist (grey, 3 channels folded)"


def test_a_missing_meta_generator_is_refused_not_replaced(tmp_path, monkeypatch, capsys):
    import mgdd.pipeline
    monkeypatch.setattr(mgdd.pipeline, "PRETRAINED_DIR", tmp_path / "empty")
    assert default_meta_generator(3) is None
    data = f"imagefolder:{photo_folder(tmp_path / 'photos')}"
    code = main(["distill", "--dataset", data, "--image-size", "12", "--ipc", "1", "--steps", "0",
                 "--out", str(tmp_path / "D"), *OBJ])
    assert code == 1 and "no shipped meta generator" in capsys.readouterr().err
    assert not (tmp_path / "D" / "summary.json").exists()
