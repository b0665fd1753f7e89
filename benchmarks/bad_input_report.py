"""Run every bad-input case of tests/bad_input_cases.py and write what each one printed.

    python benchmarks/bad_input_report.py [--out results/robustness/bad-inputs.md]

Each row: the command (workspace paths shown as <ws>), the exit code, the one-line message,
and whether the workspace was left unchanged. The sweep test asserts the same things; this
script keeps the record that the issue's note refers to.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bad_input_cases import CASES, build_workspace  # noqa: E402
from test_bad_input_sweep import tree  # noqa: E402

from mgdd.cli import main  # noqa: E402


def run_case(argv) -> tuple:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue().strip()


def main_report() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "robustness" / "bad-inputs.md"))
    args = ap.parse_args()
    os.environ.setdefault("MGDD_CACHE", os.path.join(tempfile.gettempdir(), "mgdd-test-cache"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ws = build_workspace(Path(tmp) / "ws")
        for name, argv, expected, _ in CASES:
            argv = [a.format(**ws) for a in argv]
            before = tree(ws["t"])
            code, message = run_case(argv)
            same = tree(ws["t"]) == before
            shown = " ".join(a if a else '""' for a in argv).replace(ws["t"], "<ws>")
            rows.append((name, shown, code, expected, message.replace(ws["t"], "<ws>"), same))
    lines = ["# Bad input: what each command printed", "",
             "Made by `python benchmarks/bad_input_report.py` (cases: `tests/bad_input_cases.py`). `<ws>` is a",
             "workspace of tiny files built by `build_workspace`. \"unchanged\": no file under it was created or",
             "changed.", "",
             "| case | command | exit | expected | message | unchanged |", "|---|---|---|---|---|---|"]
    for name, shown, code, expected, message, same in rows:
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines.append(f"| {name} | `{cell(shown)}` | {code} | {expected} | {cell(message)} | {'yes' if same else 'NO'} |")
    ok = all(code == expected and same and message.count("\n") == 0 for _, _, code, expected, message, same in rows)
    lines += ["", f"{len(rows)} cases; {'all' if ok else 'NOT all'} exited as expected with one line and left the "
              "workspace unchanged."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({len(rows)} cases, {'all as expected' if ok else 'SOME NOT AS EXPECTED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_report())
