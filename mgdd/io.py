"""Safe, atomic file I/O: safetensors + JSON only, never pickle.

- Writes go to a temporary file in the destination folder and are renamed into place,
  so a crash never leaves a half-written file under the final name.
- An existing output is never replaced unless ``force`` is given.
- Reads validate the safetensors header ourselves before handing the file to the
  safetensors library, so truncated or forged files give one ``CorruptFile`` error.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CorruptFile, MgddError, UsageError

MAX_HEADER_BYTES = 100 * 1024 * 1024
_DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8,
}


def cache_root() -> Path:
    """mgdd's cache folder: $MGDD_CACHE, else $XDG_CACHE_HOME/mgdd (~/.cache/mgdd)."""
    root = os.environ.get("MGDD_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mgdd"
    return Path(root)


def check_output(path, force: bool = False) -> Path:
    """Fail early (before any work) unless ``path`` may be written.

    An existing path is replaced only with ``force``, and only when it is a regular file (not
    a folder, a device, a FIFO or a symbolic link): mgdd never writes over anything else.
    """
    if str(path) == "":
        raise UsageError("the output path is empty; give a file name.")
    path = Path(path)
    if os.path.lexists(path):
        if not is_regular_file(path):
            raise UsageError(f"{path} exists and is not a regular file ({_kind(path)}); mgdd never writes over "
                             "it, even with --force. Choose another output path.")
        if not force:
            raise UsageError(f"{path} already exists; pass --force to overwrite it.")
    # the folder is made only when the file is written; here we check that it could be: the
    # nearest existing ancestor must be a writable folder
    parent = Path(os.path.abspath(path)).parent
    ancestor = parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"cannot create folder {parent}: {ancestor} is a file, not a folder. "
                         "Choose another output path.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {path}: folder {ancestor} is not writable. Choose another output path.")
    return path


def check_outputs(outputs, force: bool = False, inputs=()) -> list:
    """The one up-front check of everything a command or pipeline will write, before any work:

    - every output may be written (``check_output``);
    - a checkpoint is an unfinished run: it is replaced only with ``force`` (or ``--resume``);
    - no two outputs are the same file;
    - no output is an input, or lies inside an input folder. ``inputs``: (what, path) pairs.
    """
    outputs = [Path(o) for o in outputs]
    for o in outputs:
        if "checkpoint" in o.name and o.is_file() and not force:
            raise UsageError(f"{o} holds an unfinished run; pass --resume to continue it or --force to start over.")
        check_output(o, force)
    seen = {}  # one pass, not all pairs: a thousand IPCs are a thousand checks, not a million
    for o in outputs:
        key = _file_key(o)
        if key in seen:
            raise UsageError(f"two outputs of this command are the same file {o}; choose another --out.")
        seen[key] = o
    for what, src in inputs:
        for o in outputs:
            if overlaps(o, src):
                raise UsageError(f"the output {o} would overwrite or write into the input ({what}: {src}); "
                                 "choose another --out.")
    return outputs


def _file_key(path):
    """What makes two paths the same file (as same_file decides): the inode of an existing file,
    else the path with links resolved."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def make_parent(path) -> None:
    """Create ``path``'s folder (and its parents) for writing, with one clear error if we cannot."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {parent}: {e.strerror}. Choose another output path.") from None


def is_regular_file(path) -> bool:
    """True for a regular file itself (a symbolic link is not followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind(path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "unreadable"
    for test, name in [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]:
        if test(mode):
            return name
    return "not a regular file"


def same_file(a, b) -> bool:
    """Whether two paths name the same file (or would: compared after resolving links)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def inside(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (after resolving links)."""
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def overlaps(path, src) -> bool:
    """Whether writing ``path`` would touch ``src``: the same file, or inside the folder ``src``."""
    return same_file(path, src) or (Path(src).is_dir() and inside(path, src))


@contextlib.contextmanager
def atomic_path(path, force: bool = False):
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    With ``force`` the move is a rename over the old regular file. Without it the move is a
    hard link, which fails if ``path`` appeared since ``check_output`` (say, a second run
    onto the same output): an existing file is never replaced without ``force``.
    """
    path = check_output(path, force)
    make_parent(path)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        if force:
            if os.path.lexists(path) and not is_regular_file(path):  # appeared since the check
                raise UsageError(f"{path} exists and is not a regular file ({_kind(path)}); not replaced.")
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UsageError(f"{path} appeared while mgdd was writing it (another run?); it was kept. "
                                 "Pass --force to overwrite it.") from None
            except OSError:  # a file system without hard links: check, then rename
                if os.path.lexists(path):
                    raise UsageError(f"{path} already exists; pass --force to overwrite it.") from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` (.NAME.PID.XXXX.tmp) whose writer is gone, e.g. killed with
    -9 between writing and renaming; a live process's temporary is left alone."""
    head = f".{path.name}."
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(head) and e.name.endswith(".tmp")]
    except OSError:
        return
    for e in entries:
        parts = e.name[len(head):].split(".")  # PID, mkstemp's random part (no dots), "tmp"
        if len(parts) != 3 or not parts[0].isdigit():
            continue  # another file's temporary (NAME.x) or not ours
        pid = int(parts[0])
        if pid != os.getpid() and not pid_alive(pid):
            try:
                os.unlink(e.path)
            except OSError:
                pass


def write_bytes(path, data: bytes, force: bool = False) -> Path:
    with atomic_path(path, force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path, obj, force: bool = False) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), force)


def read_json(path) -> dict:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise MgddError(f"{path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFile(f"{path} is not valid JSON ({e}); it may be truncated.") from None


def save_tensors(path, tensors: dict, metadata: dict, force: bool = False) -> Path:
    """Save tensors with a JSON metadata blob under the safetensors header key 'mgdd'."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = st_save(tensors, metadata={"mgdd": json.dumps(metadata)})
    return write_bytes(path, data, force)


def _validate_header(path: Path, raw: bytes) -> dict:
    if len(raw) < 8:
        raise CorruptFile(f"{path} is too short to be a safetensors file ({len(raw)} bytes).")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(raw):
        raise CorruptFile(f"{path} is not a safetensors file, or is truncated (its header length is "
                          "impossible); re-create the file.")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptFile(f"{path} has an unreadable safetensors header; re-create the file.") from None
    if not isinstance(header, dict):
        raise CorruptFile(f"{path} has a malformed safetensors header.")
    body = len(raw) - 8 - n
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            numel = 1
            for s in shape:
                if not isinstance(s, int) or s < 0:
                    raise ValueError
                numel *= s
            ok = (dtype in _DTYPE_SIZES and isinstance(start, int) and isinstance(end, int)
                  and 0 <= start <= end <= body and end - start == numel * _DTYPE_SIZES[dtype])
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CorruptFile(f"{path}: tensor {key!r} has an invalid entry in the header; the file is corrupt.")
    return header


def load_tensors(path) -> tuple[dict, dict]:
    """Load (tensors, metadata) written by ``save_tensors``. Never unpickles.

    A file is recognised as safetensors by parsing its header (an 8-byte length, then JSON);
    only when that fails do we say what else it looks like. (The first byte alone says
    nothing: it is the low byte of the header length, 0x80 for one valid file in 32.)
    """
    path = Path(path)
    if not path.is_file():
        raise MgddError(f"{path} does not exist or is not a file.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MgddError(f"{path} could not be read ({e.strerror}).") from None
    try:
        header = _validate_header(path, raw)
    except CorruptFile as e:
        kind = _looks_like(raw)
        if kind:
            raise CorruptFile(f"{path} is {kind}, not a safetensors file; mgdd loads only safetensors "
                              "files and never unpickles.") from None
        raise e from None
    meta_raw = (header.get("__metadata__") or {}).get("mgdd")
    if meta_raw is None:
        raise CorruptFile(f"{path} is a safetensors file but not one written by mgdd (no 'mgdd' metadata).")
    try:
        meta = json.loads(meta_raw)
        tensors = st_load(raw)
    except Exception as e:  # safetensors raises several error types on forged files
        raise CorruptFile(f"{path} could not be decoded ({type(e).__name__}); the file is corrupt.") from None
    if not isinstance(meta, dict):
        raise CorruptFile(f"{path}: mgdd metadata is not a JSON object.")
    return tensors, meta


def _looks_like(raw: bytes) -> str | None:
    """What a file that is not safetensors looks like, from its magic bytes (None: no idea)."""
    if raw[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save or .npz)"
    if raw[:6] == b"\x93NUMPY":
        return "a NumPy .npy array"
    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    if raw[:2] == b"\x1f\x8b":
        return "a gzip file"
    return None


def tensors_to_state(prefix: str, state, tensors: dict):
    """Flatten a nested state (dicts/lists of tensors and scalars) into safetensors + JSON.

    Used for optimizer and RNG state so checkpoints never need pickle.
    """
    if isinstance(state, torch.Tensor):  # on the CPU: a GPU optimizer's state is written and digested there
        tensors[prefix] = state.detach().cpu()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[k, tensors_to_state(f"{prefix}.{k}", v, tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return {"__list__": [tensors_to_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)]}
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"cannot serialise {type(state).__name__} at {prefix}")


def state_from_tensors(spec, tensors: dict):
    """Inverse of ``tensors_to_state``."""
    if isinstance(spec, dict):
        if "__tensor__" in spec:
            return tensors[spec["__tensor__"]]
        if "__dict__" in spec:
            return {k: state_from_tensors(v, tensors) for k, v in spec["__dict__"]}
        if "__list__" in spec:
            return [state_from_tensors(v, tensors) for v in spec["__list__"]]
    return spec
