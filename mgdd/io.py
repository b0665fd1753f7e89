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


def check_output(path, force: bool = False) -> Path:
    """Fail early (before any work) if ``path`` exists without force or is not writable."""
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it.")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {parent}: {e.strerror}. Choose another --out.") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"folder {parent} is not writable. Choose another --out.")
    return path


@contextlib.contextmanager
def atomic_path(path, force: bool = False):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
        raise CorruptFile(f"{path} has a bad or truncated safetensors header; re-create the file.")
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
    """Load (tensors, metadata) written by ``save_tensors``. Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise MgddError(f"{path} does not exist or is not a file.")
    raw = path.read_bytes()
    if raw[:1] == b"\x80" or raw[:2] == b"PK":
        kind = "a zip archive (torch.save or .npz)" if raw[:2] == b"PK" else "a pickle"
        raise CorruptFile(f"{path} is {kind}, not a safetensors file; mgdd loads only safetensors "
                          "files and never unpickles.")
    header = _validate_header(path, raw)
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


def tensors_to_state(prefix: str, state, tensors: dict):
    """Flatten a nested state (dicts/lists of tensors and scalars) into safetensors + JSON.

    Used for optimizer and RNG state so checkpoints never need pickle.
    """
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state
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
