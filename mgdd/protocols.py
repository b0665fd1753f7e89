"""Evaluation protocols by name: how a distilled set is scored (timm-style registry).

An accuracy compares with a published one only under the protocol it was measured with, so
every score mgdd writes names its protocol. The registry (``PROTOCOLS``):

| name | network | labels and loss | optimiser and schedule | augmentation |
|---|---|---|---|---|
| mgdd | ConvNet-3, width 128, instance norm | the set's own: soft by cross-entropy to softmax(y / T), T = 0.25 (or what the set records), hard by cross-entropy | SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, 300 epochs, lr / 10 at half | none |
| dc | as mgdd | hard: each image's class, cross-entropy | as mgdd, 300 epochs | none |
| dsa | as mgdd | hard | as mgdd, 1000 epochs | DSA-style (augment.py) |
| rfad | ConvNet-3, width 1024, no norm, padding 1, Gaussian init | the set's labels times s, MSE on centred outputs f(x) - f_0(x), divided by s^2 | SGD momentum 0.9, lr and weight decay (towards f_0's weights) from RFAD's table; full batch up to 512 images, else batches of 513; at most 20,000 iterations, validated every 100 on held-out training images, stopped 500 iterations after the best, the best validated network tested | none |

DC and DSA are Zhao et al.'s protocols (ICLR 2021, ICML 2021), the field's usual ConvNet
evaluation; mgdd's differs from them only in its labels. ``rfad`` is the finite-network
evaluation of Loo et al. (NeurIPS 2022) as their public code describes it: the network,
initialisation and loop above, and per-dataset, per-IPC settings (lr, label scale s, weight
decay) chosen there on a validation split (``RFAD_SETTINGS``). Two things are ours: the
validation images are drawn without replacement (500 per class for 10 classes, else 100), and
sets over 512 images get their labels scaled in every batch.

    from mgdd.protocols import evaluate_protocol
    evaluate_protocol(distilled, dataset, "dsa", runs=3)["accuracy_mean"]
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UsageError, unknown_name


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    source: str


PROTOCOLS = {
    "mgdd": Protocol("mgdd", "ConvNet-3, 300 epochs, the set's own labels (soft: cross-entropy at T)",
                     "mgdd (docs/design.md §6)"),
    "dc": Protocol("dc", "ConvNet-3, 300 epochs, hard labels", "Zhao et al., ICLR 2021 (DC)"),
    "dsa": Protocol("dsa", "ConvNet-3, 1000 epochs, hard labels, DSA augmentation", "Zhao & Bilen, ICML 2021 (DSA)"),
    "rfad": Protocol("rfad", "ConvNet-3 width 1024 no norm, MSE on centred outputs, early-stopped on validation",
                     "Loo et al., NeurIPS 2022 (RFAD), finite-network evaluation of its public code"),
}

# RFAD's finite-network settings with label scaling, (dataset, IPC) -> (lr, label scale, weight
# decay), as its public code lists them
RFAD_SETTINGS = {
    ("mnist", 1): (1e-3, 8, 1e-3), ("mnist", 10): (1e-2, 8, 1e-3), ("mnist", 50): (1e-2, 8, 0.0),
    ("fashion-mnist", 1): (1e-3, 8, 0.0), ("fashion-mnist", 10): (1e-2, 8, 1e-3), ("fashion-mnist", 50): (1e-3, 2, 0.0),
    ("svhn", 1): (1e-3, 16, 0.0), ("svhn", 10): (1e-2, 8, 0.0), ("svhn", 50): (1e-2, 2, 0.0),
    ("cifar10", 1): (1e-3, 8, 0.0), ("cifar10", 10): (1e-3, 2, 0.0), ("cifar10", 50): (1e-2, 2, 0.0),
    ("cifar100", 1): (1e-1, 8, 0.0), ("cifar100", 10): (1e-1, 2, 0.0),
}
MGDD_DEFAULTS = {"model": "convnet", "epochs": 300, "lr": 0.01, "batch_size": 256, "dsa": False}
RFAD_LOOP = {"width": 1024, "max_iterations": 20000, "eval_every": 100, "patience": 500, "batch": 513,
             "full_batch_up_to": 512}


def check_names(names) -> list:
    """The protocol names asked for, each known, none twice."""
    names = list(names)
    for n in names:
        if n not in PROTOCOLS:
            raise unknown_name("protocol", n, PROTOCOLS)
    if len(set(names)) != len(names):
        raise UsageError(f"protocol listed twice in {','.join(names)}; name each once.")
    if not names:
        raise UsageError("no protocol given; name one of " + ", ".join(PROTOCOLS) + ".")
    return names


def rfad_settings(dataset_name: str, ipc) -> tuple:
    """(lr, label scale, weight decay) and where they come from: RFAD's own setting for this
    dataset and IPC, else its nearest IPC (in log scale) for the dataset, else CIFAR-10's."""
    name = dataset_name if any(d == dataset_name for d, _ in RFAD_SETTINGS) else "cifar10"
    ipcs = sorted(i for d, i in RFAD_SETTINGS if d == name)
    nearest = min(ipcs, key=lambda i: (abs(math.log(i) - math.log(max(int(ipc or 1), 1))), i))
    if name == dataset_name and nearest == ipc:
        source = f"RFAD's setting for {name} at IPC {nearest}"
    else:
        source = (f"RFAD publishes none for {dataset_name} at IPC {ipc}; its setting for {name} at IPC "
                  f"{nearest} (the nearest)")
    return RFAD_SETTINGS[(name, nearest)], source


def hard_copy(ds):
    """The set's images with hard labels (the class each image was made for)."""
    from .distilled import DistilledSet
    return DistilledSet(ds.images, ds.image_classes, dict(ds.meta), ds.zca)


def evaluate_protocol(ds, dataset, name: str, runs: int = 1, seed: int = 0, device=None, progress: bool = True,
                      checkpoint_dir=None, resume: bool = False, **overrides) -> dict:
    """Score ``ds`` under the named protocol (``PROTOCOLS``). ``overrides`` change a protocol's
    settings (mgdd: any evaluate() keyword; dc/dsa: epochs; rfad: the keys of RFAD_LOOP and lr,
    label_scale, weight_decay, valid_per_class); every change is recorded under "deviations".
    ``checkpoint_dir``: each protocol's runs keep their training state in its subfolder named
    after the protocol, and ``resume`` continues them exactly (evaluate.evaluate; evaluate_rfad)."""
    from .evaluate import evaluate, sub_checkpoints
    check_names([name])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = sub_checkpoints(checkpoint_dir, name, resume)
    if name == "mgdd":
        res = evaluate(ds, dataset, runs=runs, seed=seed, device=device, progress=progress, **ckpt, **overrides)
        deviations = {k: v for k, v in overrides.items() if v is not None and v != MGDD_DEFAULTS.get(k)}
    elif name in ("dc", "dsa"):
        unknown = set(overrides) - {"epochs"}
        if unknown:
            raise UsageError(f"the {name} protocol fixes its network, optimiser and labels; only epochs may change "
                             f"(got {', '.join(sorted(unknown))}).")
        epochs = overrides.get("epochs") or (1000 if name == "dsa" else 300)
        res = evaluate(hard_copy(ds), dataset, epochs=epochs, runs=runs, seed=seed, dsa=name == "dsa",
                       device=device, progress=progress, **ckpt)
        deviations = {"epochs": epochs} if epochs != (1000 if name == "dsa" else 300) else {}
    else:
        res, deviations = evaluate_rfad(ds, dataset, runs=runs, seed=seed, device=device, progress=progress,
                                        **ckpt, **overrides)
    res.update(protocol=name, protocol_source=PROTOCOLS[name].source, deviations=deviations)
    return res


def _rfad_network(channels: int, num_classes: int, image_size, width: int) -> nn.Module:
    """RFAD's evaluation ConvNet: 3 x [conv3x3 (padding 1) -> ReLU -> avgpool2], no norm; weights
    N(0, 2 / fan_in), biases N(0, 0.1^2), in the convolutions and the classifier."""
    from .models import ConvNet
    net = ConvNet(channels, num_classes, image_size, width=width, norm="none", pad28=False)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.weight[0].numel()))
            nn.init.normal_(m.bias, 0.0, 0.1)
    return net


def _outputs(net, x, batch: int = 512) -> torch.Tensor:
    """net(x) in batches of ``batch``, without autograd (the network's train/eval mode untouched:
    RFAD's has no norm or dropout)."""
    with torch.no_grad():
        return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)])


def _centred_accuracy(net, x, y, out0, batch: int = 512) -> float:
    """Accuracy of the centred outputs f(x) - f_0(x), with ``out0`` = f_0(x) computed once
    (``_outputs``): f_0 is frozen, so its outputs on the validation and test images are the same
    at every check, and the same batches give them to the bit."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(x[i:i + batch]) - out0[i:i + batch]
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    return correct / max(len(x), 1)


def _validation_split(dataset, per_class: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in range(dataset.num_classes):
        members = (dataset.train_y == c).nonzero().flatten()
        idx.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    idx = torch.cat(idx)
    return dataset.train_x[idx], dataset.train_y[idx]


def rfad_bytes(batch: int, width: int, image_size, channels: int) -> float:
    """Peak memory of one RFAD training step, from the shapes: about four float32 maps of
    batch x width x H x W (the first layer's activations and their gradient, the frozen copy's
    forward, the smaller later layers together) and the input batch."""
    h, w = image_size
    return 4.0 * batch * (width * h * w * 4 + channels * h * w)


def evaluate_rfad(ds, dataset, runs: int = 1, seed: int = 0, device="cpu", progress: bool = True,
                  checkpoint_dir=None, resume: bool = False, **overrides) -> tuple:
    """RFAD's finite-network evaluation (module docstring). Returns (result, deviations).

    ``checkpoint_dir``: run r keeps its state in ``seed<seed + r>.safetensors`` there (the network,
    the momentum, the best validated network so far, the batch sampler's state, the iteration),
    written once CHECKPOINT_SECONDS have passed and when the run ends; with ``resume`` each run
    continues from its file, exactly: a run's only randomness is its seeded initialisation and
    batch sampler. On a CPU one run is half an hour at the least (results/protocols/rfad-cpu-cost-ipc1.json)."""
    from .distilled import set_digest
    from .evaluate import check_compatible, images_to_test
    from .memory import check_fits
    lr_s_wd, source = rfad_settings(dataset.name, ds.meta.get("ipc"))
    settings = dict(RFAD_LOOP, lr=lr_s_wd[0], label_scale=float(lr_s_wd[1]), weight_decay=lr_s_wd[2],
                    valid_per_class=500 if dataset.num_classes == 10 else 100)
    unknown = set(overrides) - set(settings)
    if unknown:
        raise UsageError(f"the rfad protocol has no setting {', '.join(sorted(unknown))}; it takes "
                         f"{', '.join(sorted(settings))}.")
    deviations = {k: v for k, v in overrides.items() if v != settings[k]}
    settings.update(overrides)
    check_compatible(ds, dataset)
    n = len(ds.images)
    batch = n if n <= settings["full_batch_up_to"] else settings["batch"]
    check_fits(rfad_bytes(batch, settings["width"], dataset.image_size, dataset.channels),
               f"the rfad protocol's training step ({batch} images, width {settings['width']})",
               "run it on a GPU, or score this set with --protocol mgdd, dc or dsa")
    if progress and str(device) == "cpu" and settings["width"] >= 512:
        print(f"mgdd: note: the rfad protocol trains a width-{settings['width']} network; on a CPU a run takes half an "
              "hour or more (measured on 2 cores: results/protocols/rfad-cpu-cost-ipc1.json). A GPU is the place for it"
              + ("." if checkpoint_dir is not None else "; with --out a cut run continues with --resume."),
              file=sys.stderr, flush=True)
    x = ds.images.to(device)
    targets = ds.labels.float() if ds.soft else F.one_hot(ds.labels, ds.num_classes).float()
    y = (settings["label_scale"] * targets).to(device)
    vx, vy = _validation_split(dataset, settings["valid_per_class"], seed)
    valid = (vx.to(device), vy.to(device))
    test = (images_to_test(ds, dataset).to(device), dataset.test_y.to(device))
    record = {"protocol": "rfad", **settings, "dataset": dataset.name, "set": set_digest(ds)}
    per_run = []
    for r in range(runs):
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed{seed + r}.safetensors"
        per_run.append(_rfad_run(x, y, batch, settings, dataset, seed + r, valid, test, device, progress,
                                 ckpt, resume, {**record, "seed": seed + r}))
    accs = torch.tensor([p["accuracy"] for p in per_run])
    res = {"model": f"convnet width {settings['width']}, no norm (RFAD)", "runs": runs,
           "label_kind": "soft" if ds.soft else "hard", "images": n,
           "soft_loss": f"mse on labels x {settings['label_scale']:g}, centred",
           "settings": settings, "settings_from": source, "accuracy_mean": accs.mean().item(),
           "accuracy_std": accs.std().item() if runs > 1 else 0.0, "per_run": per_run, "device": str(device)}
    return res, deviations


def _rfad_run(x, y, batch: int, settings: dict, dataset, seed: int, valid: tuple, test: tuple, device,
              progress: bool, checkpoint, resume: bool, record: dict) -> dict:
    """One early-stopped run of the rfad protocol: train f - f_0 on (x, y) by MSE, validate every
    ``eval_every`` iterations, stop ``patience`` iterations after the best, test the best network.
    ``checkpoint`` / ``resume`` / ``record`` (the settings a resume must match): evaluate_rfad."""
    from .checkpoint import load_state, load_weights, save_state
    from .evaluate import CHECKPOINT_SECONDS
    from .progress import Progress
    n, s = len(x), settings["label_scale"]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = _rfad_network(dataset.channels, dataset.num_classes, dataset.image_size, settings["width"]).to(device)
    net0 = copy.deepcopy(net).eval()   # f_0: the seeded initialisation, made again on a resume
    for p in net0.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD(net.parameters(), lr=settings["lr"], momentum=0.9)
    best_acc, best_it, best_state, first, steps, before = -1.0, -1, None, 0, 0, 0.0

    def result(seconds: float) -> dict:  # the best validated network, tested
        net.load_state_dict(best_state)
        return {"seed": seed, "accuracy": _centred_accuracy(net, *test, _outputs(net0, test[0])),
                "valid_accuracy": best_acc, "best_iteration": best_it, "iterations": steps, "train_seconds": seconds,
                **({"resumed_at_iteration": first} if first else {})}

    if checkpoint is not None and resume and Path(checkpoint).exists():
        tensors, info = load_state(checkpoint, opt, settings=record)
        g.set_state(tensors.pop("sampler_rng"))
        best_state = {k[len("best."):]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
        load_weights(net, {k: v for k, v in tensors.items() if not k.startswith("best.")}, checkpoint)
        first, before = info["step"], info["seconds"]
        best_acc, best_it, steps = info["best_accuracy"], info["best_iteration"], info["iterations"]
        if info.get("finished"):
            return result(before)

    def save(it: int, finished: bool = False) -> None:
        save_state(checkpoint, {**net.state_dict(), **{f"best.{k}": v for k, v in best_state.items()},
                                "sampler_rng": g.get_state()}, opt,
                   {"step": it, "seconds": before + time.perf_counter() - start, "settings": record,
                    "best_accuracy": best_acc, "best_iteration": best_it, "iterations": steps, "finished": finished})

    start = last_save = time.perf_counter()
    # f_0 is frozen: its outputs on the training and validation images, once a run (a step reads its
    # batch's rows; with the full batch, the very tensor net0(x) gives), as the test's in result()
    out0_train, out0_valid = _outputs(net0, x), _outputs(net0, valid[0])
    bar = Progress(settings["max_iterations"], f"rfad seed {seed}", enabled=progress, leave=False, initial=first)
    for it in range(first, settings["max_iterations"]):
        if it % settings["eval_every"] == 0:
            acc = _centred_accuracy(net, *valid, out0_valid)
            if acc > best_acc:
                best_acc, best_it = acc, it
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if it >= best_it + settings["patience"]:
            break
        steps += 1
        idx = None if batch == n else torch.randint(n, (batch,), generator=g).to(device)
        xb, yb, out0 = (x, y, out0_train) if idx is None else (x[idx], y[idx], out0_train[idx])
        loss = ((net(xb) - out0 - yb) ** 2).mean() / s ** 2
        if settings["weight_decay"]:
            loss = loss + settings["weight_decay"] * sum(((p - p0) ** 2).sum() for p, p0 in
                                                         zip(net.parameters(), net0.parameters()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            raise UsageError(f"rfad evaluation training diverged (loss {loss.item()}) at iteration {it}; the "
                             "set's labels or images may be extreme.")
        if checkpoint is not None and time.perf_counter() - last_save >= CHECKPOINT_SECONDS:
            save(it + 1)
            last_save = time.perf_counter()
        bar.update(1, loss=f"{loss.item():.4f}")
    bar.close()
    if checkpoint is not None:
        save(steps, finished=True)
    return result(before + time.perf_counter() - start)
