"""Interruption, bad input and safe loading (issue: robustness)."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import make_npz
from mgdd.errors import NonFiniteLoss

OBJ = ["--pool-size", "2", "--feature-width", "8", "--feature-depth", "2", "--quiet"]


def mgdd(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mgdd", *map(str, args)], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_sigkill_mid_adaptation_then_resume_matches_uninterrupted(tmp_path, tiny_npz):
    from safetensors.torch import load_file
    common = ["adapt", "--dataset", f"npz:{tiny_npz}", "--steps", "40", "--ipcs", "1,2", "--from", "scratch",
              "--checkpoint-every", "2", *OBJ]
    ref = mgdd(*common, "--out", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mgdd", *common, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = out / "adapt-checkpoint.safetensors"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists(), "finished before the kill; make the run longer"
    resumed = mgdd(*common, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7)


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path, tiny_objective, monkeypatch):
    from mgdd.adapt import adapt
    from mgdd.generator import GeneratorConfig, MetaGenerator
    gen = MetaGenerator(GeneratorConfig(width=8, stem_width=4, blocks=1, context_dim=4, dilations=[1]))
    ck = tmp_path / "ck.safetensors"
    adapt(gen, tiny_objective, steps=2, ipcs=[1], checkpoint=ck, checkpoint_every=1, progress=False)
    good = ck.read_bytes()
    real_loss = tiny_objective.loss
    monkeypatch.setattr(tiny_objective, "loss", lambda *a, **k: real_loss(*a, **k) * float("nan"))
    with pytest.raises(NonFiniteLoss, match="step 2") as e:
        adapt(gen, tiny_objective, steps=4, ipcs=[1], checkpoint=ck, checkpoint_every=1, resume=True, progress=False)
    assert str(ck) in str(e.value) and ck.read_bytes() == good


@pytest.fixture
def rgb_npz(tmp_path):
    return make_npz(tmp_path / "rgb.npz", channels=3)


@pytest.mark.parametrize("case", ["channels", "unwritable", "wrong-version", "ipc0", "ipc-range"])
def test_bad_inputs(tmp_path, tiny_npz, rgb_npz, case):
    if case == "channels":  # a colour generator cannot make grey images (a grey one folds any count)
        assert mgdd("adapt", "--dataset", f"npz:{rgb_npz}", "--steps", "1", "--ipcs", "1", "--from", "scratch",
                    "--out", tmp_path / "G", *OBJ).returncode == 0
        r = mgdd("generate", tmp_path / "G", "--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--out",
                 tmp_path / "x.safetensors", *OBJ)
        assert r.returncode == 2 and "3-channel images" in r.stderr
    elif case == "unwritable":
        (tmp_path / "afile").write_text("x")
        r = mgdd("baseline", "random", "--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--out",
                 tmp_path / "afile" / "x.safetensors")
        assert r.returncode == 2 and "cannot create folder" in r.stderr
    elif case == "wrong-version":
        from mgdd.generator import GeneratorConfig, MetaGenerator
        from mgdd.io import load_tensors, save_tensors
        MetaGenerator(GeneratorConfig()).save_pretrained(tmp_path / "G")
        t, info = load_tensors(tmp_path / "G" / "model.safetensors")
        save_tensors(tmp_path / "G" / "model.safetensors", t, dict(info, format="mgdd.generator/99"), force=True)
        r = mgdd("generate", tmp_path / "G", "--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--out",
                 tmp_path / "x.safetensors", *OBJ)
        assert r.returncode == 1 and "not an mgdd generator checkpoint" in r.stderr
    elif case == "ipc0":
        r = mgdd("baseline", "random", "--dataset", f"npz:{tiny_npz}", "--ipc", "0", "--out", tmp_path / "x.safetensors")
        assert r.returncode == 2 and "must be >= 1" in r.stderr
    elif case == "ipc-range":
        r = mgdd("meta-train", "--source", f"npz:{tiny_npz}", "--ipc-range", "5,2", "--out", tmp_path / "M", *OBJ)
        assert r.returncode == 2 and "ipc-range" in r.stderr
    assert "Traceback" not in r.stderr
