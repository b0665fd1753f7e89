"""DD-Ranking's robust scores (mgdd/scores.py) against hand-computed cases, and `mgdd evaluate
--random` end to end on tiny data."""

import json
import math

import pytest

from mgdd import scores
from mgdd.errors import UsageError

E = math.e


def test_scores_against_hand_computed_cases():
    # HLR = 0.90 - 0.60, IOR = 0.70 - 0.50; alpha = 0.5 * 0.2 - 0.5 * 0.3 = -0.05
    assert scores.hard_label_recovery(0.90, 0.60) == pytest.approx(0.30)
    assert scores.improvement_over_random(0.70, 0.50) == pytest.approx(0.20)
    lrs = scores.label_robust_score(0.30, 0.20)
    assert lrs == pytest.approx(100 * (math.exp(-0.05) - 1 / E) / (E - 1 / E))
    assert lrs == pytest.approx(24.82, abs=0.01)  # (0.951229 - 0.367879) / 2.350402
    # the ends and the middle of the normalisation: alpha = 1 -> 100, -1 -> 0, 0 -> 100 (1 - 1/e) / (e - 1/e)
    assert scores.label_robust_score(hlr=-1.0, ior=1.0) == pytest.approx(100)
    assert scores.label_robust_score(hlr=1.0, ior=-1.0) == pytest.approx(0)
    assert scores.label_robust_score(0, 0) == pytest.approx(26.894, abs=1e-3)
    # w weighs IOR against HLR: w = 1 ignores HLR, w = 0 ignores IOR
    assert scores.label_robust_score(0.9, 0.2, w=1) == pytest.approx(scores.normalised(0.2))
    assert scores.label_robust_score(0.9, 0.2, w=0) == pytest.approx(scores.normalised(-0.9))
    # ARS: beta = 0.5 (0.8 - 0.7) + 0.5 (0.6 - 0.55) = 0.075
    assert scores.augmentation_robust_score(0.8, 0.7, 0.6, 0.55) == pytest.approx(scores.normalised(0.075))
    assert scores.augmentation_robust_score(0.8, 0.7, 0.6, 0.55, gamma=1) == pytest.approx(scores.normalised(0.1))


def test_robust_scores_assembles_every_score_and_refuses_bad_input():
    out = scores.robust_scores(syn_any=0.7, rdm_any=0.5, syn_hard=0.6, real_hard=0.9)
    assert set(out) >= {"hlr", "ior", "lrs"} and "ars" not in out
    # the other setting as augmented: (syn_any, rdm_any) are the non-augmented pair
    both = scores.robust_scores(0.6, 0.55, 0.5, 0.9, syn_other=0.8, rdm_other=0.7)
    assert both["ars"] == pytest.approx(scores.augmentation_robust_score(0.8, 0.7, 0.6, 0.55))
    flipped = scores.robust_scores(0.8, 0.7, 0.5, 0.9, syn_other=0.6, rdm_other=0.55, other_is_aug=False)
    assert flipped["ars"] == pytest.approx(both["ars"])
    for bad in (dict(syn_any=1.5), dict(rdm_any=-0.1), dict(syn_hard=True), dict(real_hard="0.9")):
        with pytest.raises(UsageError, match="accuracy in"):
            scores.robust_scores(**{**dict(syn_any=0.7, rdm_any=0.5, syn_hard=0.6, real_hard=0.9), **bad})
    with pytest.raises(UsageError, match="weight"):
        scores.label_robust_score(0.1, 0.1, w=2)
    with pytest.raises(UsageError, match="or neither"):
        scores.robust_scores(0.7, 0.5, 0.6, 0.9, syn_other=0.8)


def test_evaluate_random_reports_the_scores_of_its_own_evaluations(tmp_path, tiny_npz, capsys):
    from mgdd.cli import main
    obj = ["--pool-size", "1", "--feature-width", "8", "--feature-depth", "2", "--no-cache", "--quiet"]
    data = ["--dataset", f"npz:{tiny_npz}", "--ipc", "2"]
    assert main(["baseline", "random+ls", *data, "--seed", "1", "--out", str(tmp_path / "r.safetensors"), *obj]) == 0
    assert main(["baseline", "krr-pixel", *data, "--steps", "2", "--out", str(tmp_path / "k.safetensors"), *obj]) == 0
    assert main(["baseline", "random", *data, "--out", str(tmp_path / "h.safetensors"), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(tmp_path / "k.safetensors"), "--random", str(tmp_path / "r.safetensors"),
                 "--epochs", "3", "--robust-aug", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "HLR" in text and "LRS" in text and "ARS" in text
    res = json.loads(out.read_text())
    ev, acc = res["evaluations"], res["accuracies"]
    # the scores are the formulae applied to the evaluations this command ran
    assert acc["syn_any"] == ev["syn_any"]["accuracy_mean"] and acc["real_hard"] == ev["real_hard"]["accuracy_mean"]
    assert res["hlr"] == pytest.approx(acc["real_hard"] - acc["syn_hard"])
    assert res["ior"] == pytest.approx(acc["syn_any"] - acc["rdm_any"])
    assert res["lrs"] == pytest.approx(scores.label_robust_score(res["hlr"], res["ior"]))
    assert ev["syn_hard"]["label_kind"] == "hard" and ev["syn_other"]["dsa"] and not ev["syn_any"]["dsa"]
    assert not res["real_accuracy_given"] and ev["real_hard"]["epochs"] == 3
    # a known Acc(real, hard) is used as given
    assert main(["evaluate", str(tmp_path / "k.safetensors"), "--random", str(tmp_path / "r.safetensors"),
                 "--epochs", "2", "--real-accuracy", "91.5", "--out", str(out), "--force", "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["accuracies"]["real_hard"] == 0.915 and "real_hard" not in res["evaluations"]
    # a random subset with other labels, or flags without --random, are refused
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "k.safetensors"), "--random", str(tmp_path / "h.safetensors"),
                 "--epochs", "1", "--real-accuracy", "90", "--quiet"]) == 2
    assert "same evaluation" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "k.safetensors"), "--real-accuracy", "90"]) == 2
    assert "add --random" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "k.safetensors"), "--random", str(tmp_path / "r.safetensors"),
                 "--real-accuracy", "190"]) == 2
    assert "0 to 100" in capsys.readouterr().err


def test_robust_scores_keep_each_evaluations_progress_and_resume_it(tmp_path, tiny_dataset, tiny_objective,
                                                                     monkeypatch):
    """robust(checkpoint_dir=D): each of its evaluations keeps its runs' state in D/<its name>; a
    resumed call trains no epoch again (its runs are finished), tests them and returns the same scores."""
    import mgdd.progress
    from mgdd.baselines import random_ls
    from mgdd.evaluate import robust
    ds, rs = random_ls(tiny_objective, 2, seed=0), random_ls(tiny_objective, 2, seed=1)
    ck = tmp_path / "ck"
    first = robust(ds, rs, tiny_dataset, epochs=2, progress=False, augmentation=True, checkpoint_dir=ck)
    assert sorted(p.name for p in ck.iterdir()) == ["rdm_any", "rdm_other", "real_hard", "syn_any", "syn_hard",
                                                           "syn_other"]
    monkeypatch.setattr(mgdd.progress.Progress, "update", lambda *a, **k: pytest.fail("an epoch trained again"))
    again = robust(ds, rs, tiny_dataset, epochs=2, progress=False, augmentation=True, checkpoint_dir=ck, resume=True)
    assert again["accuracies"] == first["accuracies"] and again["lrs"] == first["lrs"] and again["ars"] == first["ars"]
