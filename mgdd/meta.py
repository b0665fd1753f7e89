"""Meta-training: learn generator weights that adapt to a new dataset in a few steps.

A *task* is (a class subset of the source of size min_classes..C, an IPC, a seed, and, when
meta-training reads several sources with the same classes, which one). Each
meta-step runs ``tasks_per_step`` tasks; for each, a clone of the generator takes
``inner_steps`` Adam steps of the KRR loss on that task (learn2learn-style clone/adapt),
then the meta-update is

    reptile:  theta += meta_lr * mean_task(theta'_task - theta)
    fomaml:   theta -= Adam(meta_lr) of mean_task grad L_query(theta'_task)   (first-order MAML)
    unrolled: theta -= Adam(meta_lr) of mean_task grad L_unrolled(theta)      (no inner loop)

"unrolled" trains the generator for use without adaptation, as a few-pass learned optimiser:
each task applies ``passes`` passes in turn from X_0, each reading a fresh guide, and the loss
is the mean over passes of the KRR loss relative to X_0's (generate.unrolled_loss). Its
gradient runs back through every pass. Why: on an unseen target the best single step along
the guide is worth only 2-10 pixel steps (benchmarks/guide_ceiling.py), so the work of many
pixel steps needs passes that each see a new gradient.

Tasks are independent, so data-parallel meta-training is exact: under torchrun each rank
runs the tasks j with j % world_size == rank, the task deltas / gradients are summed with
all_reduce, and rank 0 writes checkpoints. Task randomness comes from (seed, step, j),
so 1 process and N processes run the same tasks.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict

import torch
import torch.distributed as dist

from .checkpoint import check_finite, load_weights, step_rng
from .errors import UsageError, check_range
from .features import distributed_world
from .generate import GUIDE_NETS, task_loss, unrolled_loss
from .io import write_json
from .loop import run_resumable
from .generator import MetaGenerator
from .objective import KRRObjective
from .start import check_start


ALGORITHMS = ("reptile", "fomaml", "unrolled")


# ---------------------------------------------------------------------------- pure updates

def inner_adapt(model: torch.nn.Module, loss_fn, steps: int, lr: float, optimizer: str = "adam"):
    """Return a clone of ``model`` after ``steps`` steps on ``loss_fn(clone, step)``, and its losses."""
    fast = copy.deepcopy(model)
    params = [p for p in fast.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    losses = []
    for s in range(steps):
        loss = loss_fn(fast, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return fast, losses


def reptile_delta(model: torch.nn.Module, fast: torch.nn.Module) -> list:
    return [(pf.detach() - p.detach()) for p, pf in zip(model.parameters(), fast.parameters())]


def fomaml_grad(fast: torch.nn.Module, query_loss) -> list:
    """First-order MAML: the query gradient at the adapted weights, used as theta's gradient."""
    params = list(fast.parameters())
    grads = torch.autograd.grad(query_loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def all_reduce_sum(tensors: list) -> list:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flat = torch.cat([t.flatten() for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, i = [], 0
        for t in tensors:
            out.append(flat[i:i + t.numel()].view_as(t))
            i += t.numel()
        return out
    return tensors


def apply_reptile(model: torch.nn.Module, delta_sum: list, num_tasks: int, meta_lr: float) -> None:
    with torch.no_grad():
        for p, d in zip(model.parameters(), delta_sum):
            p.add_(d, alpha=meta_lr / num_tasks)


# ---------------------------------------------------------------------------- tasks

def sample_task(num_classes: int, ipc_range, min_classes: int, smallest_class: int, seed: int, step: int, j: int,
                sources: int = 1):
    rng = step_rng(seed, step * 100_003 + j)
    c = rng.randint(min(min_classes, num_classes), num_classes)
    classes = sorted(rng.sample(range(num_classes), c))
    lo, hi = ipc_range
    ipc = rng.randint(lo, min(hi, smallest_class))
    task = {"classes": classes, "ipc": ipc, "seed": rng.randrange(2**31), "source": 0}
    if sources > 1:  # drawn last, so a one-source run draws exactly what it always did
        task["source"] = rng.randrange(sources)
    return task


def task_loss_fn(objective: KRRObjective, task: dict, start: str = "random"):
    """loss(model, inner_step): the shared task loss (generate.task_loss) on the task's classes,
    with a fresh initialization and pool network per inner step."""
    def loss(model, s):
        return task_loss(model, objective, task["ipc"], step_rng(task["seed"], s), classes=task["classes"],
                         start=start)

    return loss


# ---------------------------------------------------------------------------- the loop

def meta_train(generator: MetaGenerator, objective, meta_steps: int, algorithm: str = "reptile",
               tasks_per_step: int = 4, inner_steps: int = 5, inner_lr: float = 1e-3, meta_lr: float | None = None,
               ipc_range=(1, 50), min_classes: int = 2, seed: int = 0, checkpoint=None, checkpoint_every: int = 10,
               resume: bool = False, progress: bool = True, log_path=None, passes: int = 1,
               guide_nets: int = GUIDE_NETS, start: str = "random") -> dict:
    """Meta-train ``generator`` in place; returns {"settings", "history", "seconds"}.

    ``start``: where each task's X_0 comes from (start.py), the start the generator will see at
    generation; it is recorded, and generation uses it by default.

    ``objective``: one KRRObjective, or a list of them over datasets with the same classes
    (several sources); each task then draws which one it runs on.
    """
    objectives = list(objective) if isinstance(objective, (list, tuple)) else [objective]
    objective = objectives[0]
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown meta algorithm {algorithm!r}; use {', '.join(ALGORITHMS)}.")
    if passes != 1 and algorithm != "unrolled":
        raise UsageError(f"--passes is for --algorithm unrolled; {algorithm} trains a one-pass generator.")
    if guide_nets != GUIDE_NETS and algorithm != "unrolled":
        raise UsageError(f"--guide-nets is for --algorithm unrolled; {algorithm} trains with {GUIDE_NETS}.")
    check_range("guide_nets", guide_nets, 1, None if guide_nets == GUIDE_NETS else objective.pool.size)
    meta_lr = meta_lr if meta_lr is not None else (1.0 if algorithm == "reptile" else 1e-3)
    for name, v in [("meta_steps", meta_steps), ("tasks_per_step", tasks_per_step), ("inner_steps", inner_steps),
                    ("passes", passes)]:
        check_range(name, v, 1)
    check_range("inner_lr", inner_lr, 0, low_open=True)
    check_range("meta_lr", meta_lr, 0, low_open=True)
    lo, hi = ipc_range
    if not 1 <= lo <= hi:
        raise UsageError(f"--ipc-range must be min,max with 1 <= min <= max; got {lo},{hi}.")
    dataset = objective.dataset
    if not all(getattr(o, "class_subsets", True) for o in objectives):
        raise UsageError("meta-training draws class subsets, which need per-class feature moments; build the "
                         "objective with class_subsets=True.")
    if any(o.dataset.num_classes != dataset.num_classes for o in objectives):
        raise UsageError("meta-training sources must have the same classes; "
                         + ", ".join(f"{o.dataset.name} has {o.dataset.num_classes}" for o in objectives) + ".")
    smallest = min(min(o.dataset.class_counts()) for o in objectives)
    if lo > smallest:
        raise UsageError(f"--ipc-range minimum {lo} is larger than the smallest source class ({smallest}).")
    world, rank = distributed_world()
    if min_classes > dataset.num_classes:
        raise UsageError(f"--min-classes {min_classes} is more than the {dataset.num_classes} classes of "
                         f"{dataset.name}; use --min-classes <= {dataset.num_classes}.")
    generator.to(objective.device)
    outer = torch.optim.Adam(generator.parameters(), lr=meta_lr) if algorithm != "reptile" else None
    settings = {"algorithm": algorithm, "meta_steps": meta_steps, "tasks_per_step": tasks_per_step,
                "inner_steps": inner_steps, "inner_lr": inner_lr, "meta_lr": meta_lr, "ipc_range": [lo, hi],
                "min_classes": min_classes, "seed": seed, "source": dataset.name, "world_size": world}
    check_start(start)
    if start != "random":  # absent means random: earlier runs resume and read the same
        settings["start"] = start
    if len(objectives) > 1:  # absent for one source, so earlier runs resume and read the same
        settings["sources"] = [o.dataset.name for o in objectives]
    if algorithm == "unrolled":  # no inner loop; the pass count is what generation uses by default
        del settings["inner_steps"], settings["inner_lr"]
        settings["passes"] = passes
        if guide_nets != GUIDE_NETS:  # absent means GUIDE_NETS: earlier runs resume and read the same
            settings["guide_nets"] = guide_nets
    # a resume must be the interrupted run: everything but the step count (and world size,
    # which does not change the result) must match
    must_match = {k: v for k, v in settings.items() if k not in ("meta_steps", "world_size")}
    # the final labels' ridge (label_mu) is never used by meta-training: runs from before it resume
    objective_used = {k: v for k, v in objective.describe().items() if k != "label_mu"}
    must_match.update(dataset=dataset.identity(), objective=objective_used, generator=asdict(generator.config))

    def unrolled_step(s: int) -> dict:
        params = list(generator.parameters())
        sums = [torch.zeros_like(p) for p in params]
        stats = torch.zeros(2, dtype=torch.float64, device=objective.device)  # [loss sum, tasks]
        for j in range(rank, tasks_per_step, world):
            task = sample_task(dataset.num_classes, (lo, hi), min_classes, smallest, seed, s, j, len(objectives))
            loss = unrolled_loss(generator, objectives[task["source"]], task["ipc"], step_rng(task["seed"], 0), passes,
                                 classes=task["classes"], guide_nets=guide_nets, start=start)
            check_finite(loss, s, checkpoint)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(sums, grads):
                if g is not None:
                    acc.add_(g)
            stats += torch.tensor([loss.item(), 1.0], dtype=torch.float64, device=stats.device)
        sums = all_reduce_sum(sums + [stats])
        sums, stats = sums[:-1], sums[-1]
        for p, g in zip(params, sums):
            p.grad = g / tasks_per_step
        outer.step()
        outer.zero_grad(set_to_none=True)
        # the mean over tasks of (mean over passes of loss / loss at X_0): 1 = no better than X_0
        return {"relative_loss": (stats[0] / stats[1]).item()}

    def step(s: int) -> dict:
        if algorithm == "unrolled":
            return unrolled_step(s)
        sums = [torch.zeros_like(p) for p in generator.parameters()]
        stats = torch.zeros(3, dtype=torch.float64, device=objective.device)  # [first loss, last loss, tasks]
        for j in range(rank, tasks_per_step, world):
            task = sample_task(dataset.num_classes, (lo, hi), min_classes, smallest, seed, s, j, len(objectives))
            loss_fn = task_loss_fn(objectives[task["source"]], task, start)
            fast, losses = inner_adapt(generator, loss_fn, inner_steps, inner_lr)
            for v in losses:
                check_finite(torch.tensor(v), s, checkpoint)
            update = reptile_delta(generator, fast) if algorithm == "reptile" else fomaml_grad(fast, loss_fn(fast, inner_steps))
            for acc, u in zip(sums, update):
                acc.add_(u)
            stats += torch.tensor([losses[0], losses[-1], 1.0], dtype=torch.float64, device=stats.device)
        sums = all_reduce_sum(sums + [stats])
        sums, stats = sums[:-1], sums[-1]
        if algorithm == "reptile":
            apply_reptile(generator, sums, tasks_per_step, meta_lr)
        else:
            for p, g in zip(generator.parameters(), sums):
                p.grad = g / tasks_per_step
            outer.step()
            outer.zero_grad(set_to_none=True)
        return {"inner_first": (stats[0] / stats[2]).item(), "inner_last": (stats[1] / stats[2]).item()}

    def stop_agreed(requested: bool) -> bool:
        # every rank stops at the same step, whichever of them got the signal
        flag = torch.tensor([1.0 if requested else 0.0], device=objective.device)
        return all_reduce_sum([flag])[0].item() > 0

    def write_log(loop):
        if log_path:
            write_json(log_path, {"settings": settings, "history": loop.history}, force=True)

    loop = run_resumable(step, meta_steps, name=f"meta-train ({algorithm})", state=generator.state_dict,
                         load=lambda t: load_weights(generator, t, checkpoint), optimizer=outer, settings=must_match,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                         progress=progress and rank == 0, on_save=write_log, can_save=rank == 0,
                         stop_agreed=stop_agreed)
    return {"settings": settings, "history": loop.history, "seconds": loop.seconds}


# ---------------------------------------------------------------------------- CLI entry

def generator_metadata(dataset, objective, log: dict, command: str) -> dict:
    """What a meta-trained generator's config.json records: its source, objective, meta-training
    settings (meta_train's log), seconds, hardware and the command that made it."""
    import platform
    return {"kind": "meta generator", "source": dataset.name, "source_info": dataset.describe(),
            "objective": objective.describe(), **log["settings"], "seconds": log["seconds"],
            "hardware": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, "
                        f"{'cuda' if torch.cuda.is_available() else 'cpu'}, {torch.get_num_threads()} threads",
            "command": command}


def init_distributed() -> bool:
    """Join the torchrun process group when launched with WORLD_SIZE > 1; True if this call did."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":  # collectives of Python objects run on the current device: this rank's
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        return True
    return False


def close_distributed(started: bool) -> None:
    """Leave the process group that init_distributed joined, after every rank has finished.

    Call it on success only: a failing rank leaves the group alone (destroying it while the
    others sit in a collective can hang them; torchrun stops them once this process exits). The
    barrier keeps a rank from tearing down while another still works (rank 0 writing its
    results): a two-rank gloo evaluation that tore down at once was seen to abort rank 0 with
    "terminate called without an active exception" after its result file was written."""
    if started:
        dist.barrier()
        dist.destroy_process_group()
