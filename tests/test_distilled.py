import json
import pickle
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgdd.distilled import DistilledSet, export
from mgdd.errors import CorruptFile, MgddError, UsageError
from mgdd.generator import MetaGenerator


def make_set(soft=True, n=6, k=3):
    labels = torch.randn(n, k) if soft else torch.arange(n) % k
    meta = {"dataset": "npz:x", "classes": ["a", "b", "c"][:k], "mean": [0.5], "std": [0.25], "ipc": n // k,
            "method": "test"}
    return DistilledSet(torch.randn(n, 1, 8, 8), labels, meta)


@pytest.mark.parametrize("soft", [True, False])
def test_round_trip(tmp_path, soft):
    ds = make_set(soft)
    ds.save(tmp_path / "x.safetensors")
    back = DistilledSet.load(tmp_path / "x.safetensors")
    assert torch.equal(back.images, ds.images) and torch.equal(back.labels, ds.labels)
    assert back.meta["label_kind"] == ("soft" if soft else "hard") and back.meta["format"] == "mgdd.distilled/1"
    assert "evaluation" in back.meta


def test_no_overwrite_without_force(tmp_path):
    make_set().save(tmp_path / "x.safetensors")
    before = (tmp_path / "x.safetensors").read_bytes()
    with pytest.raises(UsageError, match="--force"):
        make_set().save(tmp_path / "x.safetensors")
    assert (tmp_path / "x.safetensors").read_bytes() == before
    make_set().save(tmp_path / "x.safetensors", force=True)


def test_shape_validation():
    ds = make_set()
    ds.labels = torch.randn(5, 3)
    with pytest.raises(CorruptFile, match="soft labels"):
        ds.save("/tmp/never-written.safetensors")


def test_pickle_payload_is_refused(tmp_path):
    p = tmp_path / "evil.safetensors"
    torch.save({"images": torch.zeros(1)}, p)
    with pytest.raises(CorruptFile, match="pickle"):
        DistilledSet.load(p)
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CorruptFile):
        DistilledSet.load(p)


def test_not_a_distilled_set(tmp_path):
    from safetensors.torch import save_file
    save_file({"images": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CorruptFile, match="not one written by mgdd"):
        DistilledSet.load(tmp_path / "other.safetensors")


def test_export_formats(tmp_path):
    ds = make_set()
    paths = export(ds, tmp_path / "exp")
    names = {p.name for p in paths}
    assert {"grid.png", "imagefolder", "distilled.npz", "distilled.pt"} <= names
    assert len(list((tmp_path / "exp" / "imagefolder").rglob("*.png"))) == 6


def _valid_bytes(tmp_path_factory):
    p = tmp_path_factory.mktemp("f") / "x.safetensors"
    make_set().save(p)
    return p.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_loaders_only_raise_our_errors(tmp_path_factory, data):
    valid = _valid_bytes(tmp_path_factory)
    kind = data.draw(st.sampled_from(["random", "truncate", "flip", "header"]))
    if kind == "random":
        raw = data.draw(st.binary(max_size=512))
    elif kind == "truncate":
        raw = valid[: data.draw(st.integers(0, len(valid) - 1))]
    elif kind == "flip":
        i = data.draw(st.integers(0, len(valid) - 1))
        raw = valid[:i] + bytes([valid[i] ^ data.draw(st.integers(1, 255))]) + valid[i + 1:]
    else:
        (n,) = struct.unpack("<Q", valid[:8])
        header = json.loads(valid[8:8 + n])
        meta = json.loads(header["__metadata__"]["mgdd"])
        field = data.draw(st.sampled_from(["classes", "mean", "format", "std"]))
        meta[field] = data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=4)))
        header["__metadata__"]["mgdd"] = json.dumps(meta)
        hb = json.dumps(header).encode()
        hb += b" " * (-len(hb) % 8)
        raw = struct.pack("<Q", len(hb)) + hb + valid[8 + n:]
    d = tmp_path_factory.mktemp("fz")
    p = d / "f.safetensors"
    p.write_bytes(raw)
    for loader in (DistilledSet.load, MetaGenerator.from_pretrained):
        try:
            loader(p)
        except MgddError:
            pass


def test_python_api_misuse_gets_one_clear_error(tiny_dataset, tmp_path):
    """#43 (16): a set built in memory with mismatched or out-of-range labels, or an empty meta,
    is refused by evaluate with our error, not an IndexError or KeyError; bool IPCs, float image
    sizes and a string of export formats are handled as a user means them."""
    from mgdd.baselines import random_real
    from mgdd.data import check_ipc, load_dataset
    from mgdd.distilled import DistilledSet, export
    from mgdd.errors import MgddError, UsageError
    from mgdd.evaluate import evaluate
    good = random_real(tiny_dataset, 2, seed=0)
    bad = [DistilledSet(good.images, torch.zeros(len(good.images) + 3, dtype=torch.long), good.meta),
           DistilledSet(good.images, good.labels[:3], good.meta),
           DistilledSet(good.images, good.labels.float(), good.meta),
           DistilledSet(good.images, torch.full_like(good.labels, 7), good.meta),
           DistilledSet(good.images, good.labels, {})]
    for ds in bad:
        with pytest.raises(MgddError):
            evaluate(ds, tiny_dataset, epochs=1, progress=False)
    with pytest.raises(UsageError, match="integer >= 1"):
        check_ipc(tiny_dataset, True)
    with pytest.raises(UsageError, match="whole number"):
        load_dataset("digits", image_size=8.0)
    assert [p.name for p in export(good, tmp_path / "x", formats="npz")] == ["distilled.npz"]
