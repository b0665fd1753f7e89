"""Every path the README and docs/results.md name exists in the repository, so no table
cites a file that a cleanup removed."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("results", "benchmarks", "experiments", "docs", "mgdd", "tests")
PATH = re.compile(r"(?<![\w/.-])(?:\.\./)?((?:" + "|".join(TOP) + r")/[\w./-]*)")


def named_paths(text: str) -> list:
    """Repository paths written in ``text`` (code spans, links or prose), trailing punctuation off."""
    return sorted({m.group(1).rstrip(".,;:") for m in PATH.finditer(text)})


def test_named_paths_finds_links_code_and_prose():
    text = "see [r](../results/a/b.md), `benchmarks/x.py --out results/y`; and experiments/."
    assert named_paths(text) == ["benchmarks/x.py", "experiments/", "results/a/b.md", "results/y"]


@pytest.mark.parametrize("doc", ["README.md", "docs/results.md"])
def test_every_path_a_document_names_exists(doc):
    missing = [p for p in named_paths((ROOT / doc).read_text()) if not (ROOT / p).exists()]
    assert not missing, f"{doc} names paths that do not exist: {missing}"
