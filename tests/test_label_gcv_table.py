"""experiments/label_ridge_gcv.py --table reads every trained accuracy from a committed cell or log
(no figure copied by hand): each source it names exists and parses, and the readers give the
figures of hand-made cells and logs."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gcv():
    spec = importlib.util.spec_from_file_location("label_ridge_gcv", ROOT / "experiments" / "label_ridge_gcv.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_named_source_exists_and_gives_a_figure(gcv):
    for table in (gcv.HARD, gcv.DEFAULT_MU):
        for ipc in table:
            text = gcv._source(table, ipc)
            assert text and float(text.split()[0]) > 10, (ipc, text)
    assert gcv._source(gcv.HARD, "200") == "87.24 ± 0.12 (3)"  # the H200 log's line, not a copy


def test_cell_and_log_readers_on_hand_made_files(gcv, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"per_run": [{"accuracy": 0.5}, {"accuracy": 0.52}]}))
    (tmp_path / "b.json").write_text(json.dumps({"accuracy_mean": 0.8123}))
    assert gcv._cell(str(tmp_path / "a.json")) == "51.00 ± 1.41 (2; run 0 50.00)"
    assert gcv._cell(str(tmp_path / "b.json")) == "81.23"
    log = tmp_path / "x.log"
    log.write_text("method  ipc  model    epochs  runs  loss           test accuracy %\n"
                   "random+ls  500  convnet  300     1     cross-entropy, T=0.25  86.67 (1 run)  \n"
                   "random  500  convnet  300     1     cross-entropy  89.61 (1 run)  \n"
                   "random  200  convnet  300     3     cross-entropy  87.24 +- 0.12  \n")
    assert gcv._log(str(log), "random", 500) == "89.61"
    assert gcv._log(str(log), "random+ls", 500) == "86.67"
    assert gcv._log(str(log), "random", 200) == "87.24 ± 0.12 (3)"
    with pytest.raises(SystemExit, match="no random IPC 100"):
        gcv._log(str(log), "random", 100)
