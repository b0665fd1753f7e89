"""The evaluation protocol: train a fresh network on a distilled set, test on real data.

DD community protocol (DC/DSA/DM code): SGD momentum 0.9, lr 0.01, weight decay 5e-4,
batch 256, 300 epochs (1000 with DSA augmentation), lr x0.1 at half. Hard labels use
cross-entropy. Soft labels are fitted by cross-entropy to softmax(labels / T), T = 0.25
(``soft_loss="ce"``), or regressed with MSE (``soft_loss="mse"``). Each set records the
soft-label loss it is meant for in its evaluation settings, and that is what ``evaluate``
uses unless told otherwise: sets saved before cross-entropy became the default
(results/ablation/protocols.md, docs/design.md §6) record MSE and keep it.
Reported: mean +- std over runs.

Several processes (torchrun): run r trains on rank r mod W, on that rank's device (cuda:LOCAL_RANK
by default), and every rank returns the same result, runs in seed order. Run r is seeded
seed + r wherever it trains, so the result is the one process's on the same hardware (tested).

Memory: autograd keeps about b x (bytes per image) of activations for a batch of b, measured
once per network (saved_bytes). A batch whose activations would pass TRAIN_ACTIVATIONS runs
as micro-batches whose gradients add up to the batch's (each chunk's mean loss weighted by its
share of the batch), one optimiser step per batch: the same update for networks without batch
norm (per-image normalisation), so 128 px sets train in bounded memory. A batch-norm network
cannot be split that way; its whole batch is checked against the memory available instead.

Long evaluations (a 128 px or 200-class set on a CPU: hours a run) checkpoint and resume: with
``checkpoint_dir`` each run writes its training state (network, the optimiser's momentum and
learning rate, the sampler's random state, epochs and seconds so far) there at the end of an epoch
once a minute has passed, and when it ends; ``resume=True`` continues each run from its file and
ends with the weights an uninterrupted run ends with, bit for bit (tested), and a finished run is
only tested again. A file written with other settings or for another set is refused.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .allocator import keep_freed_memory
from .augment import augment
from .checkpoint import load_state, load_weights, save_state
from .data import Dataset
from .distilled import DEFAULT_TEMPERATURE, DistilledSet, set_digest, validate
from .errors import UsageError, check_range
from .features import distributed_world
from .memory import check_fits, gib
from .models import create_model
from .progress import Progress


def check_compatible(ds: DistilledSet, dataset: Dataset) -> None:
    _, c, h, w = ds.images.shape
    if (c, h, w) != (dataset.channels, *dataset.image_size):
        raise UsageError(f"the distilled set has {c}x{h}x{w} images but {dataset.name} has "
                         f"{dataset.channels}x{dataset.image_size[0]}x{dataset.image_size[1]}; "
                         "evaluate it on the dataset it was distilled from.")
    if ds.num_classes != dataset.num_classes:
        raise UsageError(f"the distilled set has {ds.num_classes} classes, {dataset.name} has {dataset.num_classes}.")


def images_to_test(ds: DistilledSet, dataset: Dataset) -> torch.Tensor:
    """The test images (one float32 tensor) in the set's space: whitened with the set's own ZCA
    transform when it has one."""
    if ds.zca is None:
        if dataset.zca is not None:
            raise UsageError("the distilled set was made without ZCA whitening but the dataset is whitened; "
                             "evaluate it on the dataset loaded without --zca.")
        return dataset.test_x.float()
    if dataset.zca is None:
        return ds.zca.apply(dataset.test_x.float())
    if not ds.zca.same_as(dataset.zca):
        raise UsageError("the distilled set and the dataset are whitened with different ZCA transforms; "
                         "evaluate on the dataset loaded without --zca (the set carries its own).")
    return dataset.test_x.float()


@torch.no_grad()
def test_accuracy(net, x, y, batch_size: int | None = None) -> float:
    """Accuracy of ``net`` on (x, y), without gradient, in batches whose activations stay near
    1 GiB (a width-128 map at the image's size, in and out: 1,024 images at 32 px, 64 at 128 px)."""
    net.eval()
    if batch_size is None:
        batch_size = int(max(1, min(1024, 2**30 // (4 * 2 * 128 * x.shape[-2] * x.shape[-1]))))
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (net(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


SOFT_LOSSES = ("ce", "mse")


def recorded_soft_loss(ds: DistilledSet) -> tuple:
    """(soft loss, temperature) a set's evaluation settings ask for: ("ce", T) or ("mse", None).

    Sets saved before the soft-label loss was recorded say "mse for soft labels" in their
    ``loss`` text, which is what they were evaluated with; a set with no settings gets today's.
    """
    settings = ds.meta.get("evaluation") or {}
    loss = settings.get("soft_loss")
    if loss is None and str(settings.get("loss", "")).startswith("mse"):
        loss = "mse"
    if loss == "mse":
        return "mse", None
    return "ce", float(settings.get("temperature", DEFAULT_TEMPERATURE))


def resolve_soft_loss(ds: DistilledSet, soft_loss: str | None = None, temperature: float | None = None) -> tuple:
    """(soft loss, temperature) for an evaluation: what is asked, else what the set records.

    A temperature alone means cross-entropy at that temperature; cross-entropy without one uses
    the set's own temperature, else 0.25; MSE takes no temperature.
    """
    if soft_loss is not None and soft_loss not in SOFT_LOSSES:
        raise UsageError(f"soft-label loss must be one of {', '.join(SOFT_LOSSES)}, got {soft_loss!r}.")
    if temperature is not None:
        check_range("temperature", temperature, 0, low_open=True)
        if soft_loss == "mse":
            raise UsageError("a temperature is for the cross-entropy soft-label loss; drop --temperature or "
                             "use --soft-loss ce.")
        return "ce", float(temperature)
    recorded = recorded_soft_loss(ds)
    if soft_loss is None or soft_loss == recorded[0]:
        return recorded
    return ("mse", None) if soft_loss == "mse" else ("ce", DEFAULT_TEMPERATURE)


def soft_label_loss(out: torch.Tensor, target: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """Cross-entropy against softmax(labels / T), or MSE on the soft labels when T is None.

    out, target: (B, C). Least-squares labels are centred one-hot-like rows (about -1/C..1 - 1/C),
    so T = 0.25 turns a clear row into a confident but not one-hot target distribution.
    """
    if temperature is None:
        return F.mse_loss(out, target)
    return -(F.softmax(target / temperature, dim=1) * F.log_softmax(out, dim=1)).sum(1).mean()


# activations autograd may keep for one optimiser step; a larger batch runs in micro-batches
# (measured, ConvNet-3 at batch 256: 0.37 GiB at 32 px, 1.5 GiB at 64 px, 6 GiB at 128 px)
TRAIN_ACTIVATIONS = 2**31


def saved_bytes(net: nn.Module, image_shape, device) -> tuple:
    """(bytes per image, bytes per step) that autograd keeps for a backward pass through ``net``:
    the distinct storages it saves in a forward pass of 1 and of 2 images (a copy of ``net``,
    so batch-norm statistics are untouched); the difference is one image's share, the rest
    (weights) does not grow with the batch."""
    probe = copy.deepcopy(net).train()
    # a probe through dropout draws random numbers: the training that follows must not see it
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []

    def measure(b: int) -> int:
        storages = {}

        def pack(t):
            st = t.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            probe(torch.zeros(b, *image_shape, device=device))
        return sum(storages.values())
    with torch.random.fork_rng(devices=devices):
        one, two = measure(1), measure(2)
    return max(two - one, 0), max(2 * one - two, 0)


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def micro_batch_size(net: nn.Module, image_shape, batch_size: int, device, model: str = "model") -> int:
    """The largest chunk of a ``batch_size`` batch whose saved activations stay within
    TRAIN_ACTIVATIONS; a batch-norm network keeps its whole batch, checked against the memory
    available."""
    per_image, fixed = saved_bytes(net, image_shape, device)
    need = fixed + per_image * batch_size
    if need <= TRAIN_ACTIVATIONS or per_image == 0:
        return batch_size
    if has_batch_norm(net):
        check_fits(2 * need, f"training {model} on {'x'.join(map(str, image_shape))} images at batch {batch_size} "
                   f"(batch norm, so the batch cannot be split; {gib(per_image)} of activations an image)",
                   "pass a smaller --batch-size or evaluate with a model without batch norm (convnet)")
        return batch_size
    return int(max(1, min(batch_size, (TRAIN_ACTIVATIONS - fixed) // per_image)))


def train_once(ds: DistilledSet, dataset: Dataset, model: str, epochs: int, seed: int, lr: float,
               batch_size: int, dsa: bool, device, progress: bool, temperature: float | None = None,
               test_x: torch.Tensor | None = None, micro_batch: int | None = None, checkpoint=None,
               resume: bool = False) -> dict:
    """One network trained on ``ds`` (fit) and tested on ``dataset``'s test split."""
    net, train_s, micro_batch, resumed = fit(ds, dataset, model, epochs, seed, lr, batch_size, dsa, device, progress,
                                             temperature, micro_batch, checkpoint, resume)
    test_x = dataset.test_x if test_x is None else test_x
    acc = test_accuracy(net, test_x.to(device), dataset.test_y.to(device))
    return {"seed": seed, "accuracy": acc, "train_seconds": train_s,
            **({"micro_batch": micro_batch} if micro_batch < min(batch_size, len(ds.images)) else {}),
            **({"resumed_at_epoch": resumed} if resumed else {})}


CHECKPOINT_SECONDS = 60.0  # a run with a checkpoint file writes it at the first epoch end past this


def sub_checkpoints(checkpoint_dir, name: str, resume: bool) -> dict:
    """evaluate()'s checkpoint keywords for one of several evaluations sharing ``checkpoint_dir``:
    its own subfolder ``name`` (none without a folder)."""
    return {} if checkpoint_dir is None else {"checkpoint_dir": Path(checkpoint_dir) / name, "resume": resume}


def fit(ds: DistilledSet, dataset: Dataset, model: str, epochs: int, seed: int, lr: float, batch_size: int,
        dsa: bool, device, progress: bool, temperature: float | None = None, micro_batch: int | None = None,
        checkpoint=None, resume: bool = False, checkpoint_seconds: float | None = None) -> tuple:
    """(network, training seconds, micro-batch, epochs done before): a fresh ``model`` trained on
    ``ds`` by the protocol; ``micro_batch`` (None: micro_batch_size's) splits each batch without
    changing its update.

    ``checkpoint``: a file for the training state, written (atomically) at the first epoch end
    ``checkpoint_seconds`` (None: CHECKPOINT_SECONDS) after the last write and when training ends;
    with ``resume`` training continues from it (seconds summed over sessions; the last value is the
    epoch it resumed at)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = create_model(model, dataset.channels, dataset.num_classes, dataset.image_size).to(device)
    if micro_batch is None:
        micro_batch = micro_batch_size(net, ds.images.shape[1:], batch_size, device, model)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    done, before = 0, 0.0  # epochs and training seconds of earlier sessions
    if checkpoint is not None:
        settings = {"model": model, "epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size, "dsa": dsa,
                    "loss": "soft " + ("mse" if temperature is None else f"ce T={temperature}") if ds.soft
                    else "hard ce", "dataset": dataset.name, "set": set_digest(ds)}
        if resume and Path(checkpoint).exists():
            tensors, info = load_state(checkpoint, opt, settings=settings)
            g.set_state(tensors.pop("sampler_rng"))
            load_weights(net, tensors, checkpoint)
            done, before = info["step"], info["seconds"]
    x, y = ds.images.to(device), ds.labels.to(device)
    soft = ds.soft
    every = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    start = last_save = time.perf_counter()
    bar = Progress(epochs, f"train {model} seed {seed}", enabled=progress, leave=False, initial=done)
    for epoch in range(done, epochs):
        if epoch == epochs // 2:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        net.train()
        order = torch.randperm(len(x), generator=g).to(device)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if dsa:
                xb = augment(xb.cpu(), g).to(device)
            opt.zero_grad(set_to_none=True)
            if micro_batch >= len(idx):
                out = net(xb)
                loss = soft_label_loss(out, yb, temperature) if soft else F.cross_entropy(out, yb)
                loss.backward()
            else:  # the batch's mean loss as the chunks' means weighted by their shares: the same gradient
                loss = 0.0
                for j in range(0, len(idx), micro_batch):
                    out = net(xb[j:j + micro_batch])
                    part = soft_label_loss(out, yb[j:j + micro_batch], temperature) if soft \
                        else F.cross_entropy(out, yb[j:j + micro_batch])
                    part = part * (len(out) / len(idx))
                    part.backward()
                    loss = loss + part.detach()
            opt.step()
        if not torch.isfinite(loss):
            raise UsageError(f"evaluation training diverged (loss {loss.item()}) at epoch {epoch}; "
                             "the distilled set's values may be extreme. Try a lower --lr.")
        now = time.perf_counter()
        if checkpoint is not None and (now - last_save >= every or epoch + 1 == epochs):
            save_state(checkpoint, {**net.state_dict(), "sampler_rng": g.get_state()}, opt,
                       {"step": epoch + 1, "seconds": before + now - start, "settings": settings})
            last_save = time.perf_counter()
        bar.update(1, loss=f"{loss.item():.4f}")
    bar.close()
    return net, before + time.perf_counter() - start, micro_batch, done


def evaluate(ds: DistilledSet, dataset: Dataset, model: str = "convnet", epochs: int | None = None,
             runs: int = 1, seed: int = 0, lr: float = 0.01, batch_size: int = 256, dsa: bool = False,
             device=None, progress: bool = True, soft_loss: str | None = None,
             temperature: float | None = None, local: bool = False, checkpoint_dir=None,
             resume: bool = False) -> dict:
    """Train ``runs`` fresh networks on ``ds`` and test them on ``dataset``'s test split.

    Soft labels: ``soft_loss`` "ce" (at ``temperature``, default 0.25) or "mse"; None uses
    what the set records (resolve_soft_loss). ``local``: under torchrun, train every run in this
    process instead of splitting them over the ranks (the bench hands each rank its own runs).
    ``checkpoint_dir``: each run keeps its training state in ``seed<S>.safetensors`` there;
    ``resume`` continues from those files (module docstring).
    """
    validate(ds.images, ds.labels, ds.meta, "distilled set")  # a set built in memory is checked as a loaded one
    check_compatible(ds, dataset)
    test_x = images_to_test(ds, dataset)
    epochs = epochs if epochs is not None else (1000 if dsa else 300)
    check_range("epochs", epochs, 1)
    check_range("runs", runs, 1)
    check_range("lr", lr, 0, low_open=True)
    check_range("batch_size", batch_size, 1)
    soft_loss, temperature = resolve_soft_loss(ds, soft_loss, temperature)
    device = device or default_device()
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: no CUDA device is available here; use device='cpu'.")
    world, rank = (1, 0) if local else distributed_world()
    # The training loop frees and re-allocates ~100 MB activations every step; on CPU keep
    # them in the heap instead of paying the kernel for fresh pages (see allocator.py).
    def ckpt(r):  # run r's training state, seed-named so a torchrun split writes the same files
        return None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed{seed + r}.safetensors"

    with keep_freed_memory():
        results = [train_once(ds, dataset, model, epochs, seed + r, lr, batch_size, dsa, device,
                              progress and rank == 0, temperature, test_x, checkpoint=ckpt(r), resume=resume)
                   for r in range(rank, runs, world)]
    if world > 1:
        results = gather_runs(results, rank)
    return {"model": model, "epochs": epochs, "dsa": dsa, "runs": runs, "lr": lr, "batch_size": batch_size,
            "label_kind": "soft" if ds.soft else "hard", "images": len(ds.images),
            "soft_loss": "mse" if soft_loss == "mse" else f"cross-entropy, T={temperature}",
            **summarize(results), "per_run": results, "device": str(device), **({"ranks": world} if world > 1 else {})}


def summarize(results: list) -> dict:
    """Mean and standard deviation (n - 1; 0 for one run) of the runs' accuracies, in float32 as
    every evaluation reports them, wherever its runs trained."""
    accs = torch.tensor([r["accuracy"] for r in results])
    return {"accuracy_mean": accs.mean().item(), "accuracy_std": accs.std().item() if len(results) > 1 else 0.0}


def default_device() -> str:
    """The GPU when there is one (under torchrun, this rank's: cuda:LOCAL_RANK), else the CPU."""
    import os
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def gather_runs(results: list, rank: int) -> list:
    """Every rank's run records (each tagged with its rank), in seed order, on every rank."""
    every = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, [{**r, "rank": rank} for r in results])
    return sorted((r for part in every for r in part), key=lambda r: r["seed"])


def real_data_set(dataset: Dataset) -> DistilledSet:
    """The whole training split with hard labels, as a set: what HLR's Acc(real, hard) trains on."""
    from .distilled import distilled_meta
    ipc = min(dataset.class_counts())
    return DistilledSet(dataset.train_x.float(), dataset.train_y,
                        distilled_meta(dataset, ipc, "real data", 0, None, {}), dataset.zca)


def robust(ds: DistilledSet, random_set: DistilledSet, dataset: Dataset, real_accuracy: float | None = None,
           augmentation: bool = False, w: float = 0.5, gamma: float = 0.5, checkpoint_dir=None, resume: bool = False,
           **protocol) -> dict:
    """DD-Ranking's scores of ``ds`` (scores.py): ``ds`` and ``random_set`` (a random real subset
    at the same IPC given the same labels, e.g. random+ls) under one protocol (``protocol``:
    evaluate()'s keywords), ``ds``'s images with hard labels (the class each was made for), and
    the real data with hard labels: ``real_accuracy`` (a fraction) when known, else trained here
    (the whole training split, the same model, epochs and runs: slow). With ``augmentation``,
    both sets are evaluated again with DSA toggled, for the augmentation-robust score.
    ``checkpoint_dir``: each evaluation's runs keep their training state in a subfolder named after
    it (syn_any, rdm_any, syn_hard, real_hard, syn_other, rdm_other); ``resume`` continues them."""
    from .scores import robust_scores
    rs = random_set
    if rs.images.shape[1:] != ds.images.shape[1:] or rs.num_classes != ds.num_classes:
        raise UsageError(f"the random subset has {tuple(rs.images.shape[1:])} images of {rs.num_classes} classes, "
                         f"the set {tuple(ds.images.shape[1:])} of {ds.num_classes}; compare sets of one dataset.")
    if len(rs.images) != len(ds.images):
        raise UsageError(f"the random subset holds {len(rs.images)} images and the set {len(ds.images)}; "
                         "DD-Ranking compares sets of the same size (make it at the same IPC).")
    if random_set.soft != ds.soft:
        raise UsageError(f"the random subset has {'soft' if random_set.soft else 'hard'} labels and the set "
                         f"{'soft' if ds.soft else 'hard'}; IOR needs the same evaluation for both (for mgdd's soft "
                         "sets, `mgdd baseline random+ls`).")
    ck = lambda key: sub_checkpoints(checkpoint_dir, key, resume)  # noqa: E731  each evaluation its subfolder
    runs = {}
    runs["syn_any"] = evaluate(ds, dataset, **protocol, **ck("syn_any"))
    runs["rdm_any"] = evaluate(random_set, dataset, **protocol, **ck("rdm_any"))
    hard = DistilledSet(ds.images, ds.image_classes, dict(ds.meta), ds.zca)
    hard_protocol = {k: v for k, v in protocol.items() if k not in ("soft_loss", "temperature")}
    runs["syn_hard"] = evaluate(hard, dataset, **hard_protocol, **ck("syn_hard"))
    if real_accuracy is None:
        runs["real_hard"] = evaluate(real_data_set(dataset), dataset, **hard_protocol, **ck("real_hard"))
        real_accuracy = runs["real_hard"]["accuracy_mean"]
    other = {}
    if augmentation:
        flipped = dict(protocol, dsa=not protocol.get("dsa", False), epochs=runs["syn_any"]["epochs"])
        runs["syn_other"] = evaluate(ds, dataset, **flipped, **ck("syn_other"))
        runs["rdm_other"] = evaluate(random_set, dataset, **flipped, **ck("rdm_other"))
        other = {"syn_other": runs["syn_other"]["accuracy_mean"], "rdm_other": runs["rdm_other"]["accuracy_mean"],
                 "other_is_aug": not protocol.get("dsa", False)}
    scores = robust_scores(runs["syn_any"]["accuracy_mean"], runs["rdm_any"]["accuracy_mean"],
                           runs["syn_hard"]["accuracy_mean"], real_accuracy, w=w, gamma=gamma, **other)
    scores["evaluations"] = {k: {"accuracy_mean": v["accuracy_mean"], "accuracy_std": v["accuracy_std"],
                                 "epochs": v["epochs"], "dsa": v["dsa"], "runs": v["runs"],
                                 "label_kind": v["label_kind"]} for k, v in runs.items()}
    scores["real_accuracy_given"] = "real_hard" not in runs
    return scores
