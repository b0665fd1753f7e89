"""Every subcommand refuses bad input with one line, the right exit code, and no file touched.

The table is tests/bad_input_cases.py. The workspace is built once per module (it runs a few
tiny commands); each case snapshots the whole workspace before and after.
"""

import hashlib
import os
import stat
from pathlib import Path

import pytest

from bad_input_cases import CASES, build_workspace
from mgdd.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("bad-input"))


def tree(root) -> dict:
    """path -> (kind, size, mtime_ns, sha256 of content) for everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            out[str(p)] = (stat.S_IFMT(st.st_mode), st.st_size if digest else 0, st.st_mtime_ns if digest else 0,
                           digest)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, workspace, capsys):
    _, argv, code, fragment = case
    argv = [a.format(**workspace) for a in argv]
    before = tree(workspace["t"])
    result = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert result == code, err
    assert len(lines) == 1 and lines[0].startswith("mgdd: error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err + out and "internal error" not in err
    assert tree(workspace["t"]) == before, "a refused command created or changed a file"


def test_every_subcommand_is_covered():
    from mgdd.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {c[1][0] for c in CASES}
    assert set(sub.choices) <= covered, set(sub.choices) - covered
