"""Protocol-robust scores of a distilled set, as DD-Ranking defines them (Li et al., "DD-Ranking:
Rethinking the Evaluation of Dataset Distillation", arXiv 2505.13300).

Test accuracy alone mixes what the images carry with what the evaluation adds: soft labels
(knowledge from whoever made them) lift a random real subset sharply, and so does data
augmentation. The scores compare a set with a random real subset of the same size evaluated
the same way, and with the full real data under hard labels. Accuracies are fractions in [0, 1]:

    HLR = Acc(real, hard) - Acc(syn, hard)          hard-label recovery (lower is better)
    IOR = Acc(syn, any)   - Acc(rdm, any)           improvement over random (higher is better)
    alpha = w IOR - (1 - w) HLR,                     w in [0, 1] (0.5 on DD-Ranking's leaderboard)
    LRS = 100 (e^alpha - e^-1) / (e - e^-1)          label-robust score, in [0, 100]
    beta = g (Acc(syn, aug) - Acc(rdm, aug)) + (1 - g) (Acc(syn, no aug) - Acc(rdm, no aug))
    ARS = 100 (e^beta - e^-1) / (e - e^-1)           augmentation-robust score, in [0, 100]

"any" is the set's own evaluation (for mgdd, its soft labels under the protocol it records);
"rdm" is a random real subset at the same IPC given the same treatment, which for mgdd is
random+ls: the same least-squares label solve on random real images. alpha and beta lie in
[-1, 1], so both scores lie in [0, 100]; 100 (e - 1) / (e^2 - 1) = 26.9 means "no better than
random, and no worse than the real data" (IOR = HLR = 0).
"""

from __future__ import annotations

import math

from .errors import UsageError


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UsageError(f"{name} must be an accuracy in [0, 1], got {value!r}.")
    return float(value)


def _weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UsageError(f"{name} must be a weight in [0, 1], got {value!r}.")
    return float(value)


def normalised(x: float) -> float:
    """100 (e^x - e^-1) / (e - e^-1): [-1, 1] onto [0, 100], increasing."""
    return 100 * (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def hard_label_recovery(real_hard: float, syn_hard: float) -> float:
    """HLR = Acc(real, hard) - Acc(syn, hard)."""
    return _fraction("real_hard", real_hard) - _fraction("syn_hard", syn_hard)


def improvement_over_random(syn_any: float, rdm_any: float) -> float:
    """IOR = Acc(syn, any) - Acc(rdm, any)."""
    return _fraction("syn_any", syn_any) - _fraction("rdm_any", rdm_any)


def label_robust_score(hlr: float, ior: float, w: float = 0.5) -> float:
    """LRS = normalised(w IOR - (1 - w) HLR)."""
    w = _weight("w", w)
    return normalised(w * ior - (1 - w) * hlr)


def augmentation_robust_score(syn_aug: float, rdm_aug: float, syn_naug: float, rdm_naug: float,
                              gamma: float = 0.5) -> float:
    """ARS = normalised(gamma (syn_aug - rdm_aug) + (1 - gamma) (syn_naug - rdm_naug))."""
    gamma = _weight("gamma", gamma)
    with_aug = _fraction("syn_aug", syn_aug) - _fraction("rdm_aug", rdm_aug)
    without = _fraction("syn_naug", syn_naug) - _fraction("rdm_naug", rdm_naug)
    return normalised(gamma * with_aug + (1 - gamma) * without)


def robust_scores(syn_any: float, rdm_any: float, syn_hard: float, real_hard: float, w: float = 0.5,
                  syn_other: float | None = None, rdm_other: float | None = None, other_is_aug: bool = True,
                  gamma: float = 0.5) -> dict:
    """Every score that the given accuracies determine: HLR, IOR and LRS always; ARS when the
    set and the random subset were also evaluated with the other augmentation setting
    (``syn_other``, ``rdm_other``; ``other_is_aug``: whether that other run used augmentation)."""
    hlr, ior = hard_label_recovery(real_hard, syn_hard), improvement_over_random(syn_any, rdm_any)
    out = {"hlr": hlr, "ior": ior, "lrs": label_robust_score(hlr, ior, w), "w": w,
           "accuracies": {"syn_any": syn_any, "rdm_any": rdm_any, "syn_hard": syn_hard, "real_hard": real_hard}}
    if (syn_other is None) != (rdm_other is None):
        raise UsageError("the augmentation-robust score needs both the set's and the random subset's accuracy "
                         "under the other augmentation setting, or neither.")
    if syn_other is not None:
        aug = (syn_other, rdm_other) if other_is_aug else (syn_any, rdm_any)
        naug = (syn_any, rdm_any) if other_is_aug else (syn_other, rdm_other)
        out["ars"] = augmentation_robust_score(aug[0], aug[1], naug[0], naug[1], gamma)
        out["gamma"] = gamma
        out["accuracies"].update(syn_aug=aug[0], rdm_aug=aug[1], syn_naug=naug[0], rdm_naug=naug[1])
    return out
