"""The quick preset runs the full bench code path on scikit-learn's digits."""

import json

import pytest

pytest.importorskip("sklearn")


def test_quick_bench_writes_results_and_resumes(tmp_path, monkeypatch):
    from mgdd.bench import Bench
    from mgdd.errors import UsageError

    monkeypatch.setenv("MGDD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    r = Bench("quick", out).run()
    for f in ("results.json", "results.md", "plots/accuracy_vs_time.png", "plots/grid-mgdd-ipc5.png"):
        assert (out / f).exists(), f
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["accuracy"]) == {"1", "5"}
    for ipc, row in saved["accuracy"].items():
        for m in ("random", "random+ls", "herding", "scratch", "mgdd"):
            assert 0 <= row[m]["mean"] <= 1 and row[m]["seconds"] >= 0
        assert [p["steps"] for p in row["krr-pixel"]] == [5, 10]
        assert row["krr-pixel"][1]["seconds"] >= row["krr-pixel"][0]["seconds"]
        x = row["acceleration"]
        assert (x["ratio"] is None) != (x["ratio_lower_bound"] is None)
    assert saved["unseen"]["ipc"] == 5 and saved["unseen"]["adapt_ipcs"] == [1]
    assert saved["machine"]["cpus"] >= 1 and "protocol" in saved
    assert "| IPC |" in (out / "results.md").read_text()
    # finished cells are reused: a resumed run changes nothing
    again = Bench("quick", out, resume=True).run()
    assert again["accuracy"] == r["accuracy"]
    with pytest.raises(UsageError, match="--resume"):
        Bench("quick", out)
