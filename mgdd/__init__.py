"""mgdd: fast dataset distillation with a meta generator.

    import mgdd
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = mgdd.KRRObjective(dataset)                      # random-feature KRR objective
    generator = mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator())
    mgdd.adapt(generator, objective, steps=25, ipcs=[1, 10, 50])
    distilled = mgdd.generate(generator, objective, ipc=20)     # any IPC, one forward pass
    distilled.save("fmnist-ipc20.safetensors")
    print(mgdd.evaluate(distilled, dataset, runs=3)["accuracy_mean"])
"""

import importlib
import sys
import types

from .version import __version__

# name -> the module that defines it. Imported on first use (PEP 562), so `import mgdd.cli` and
# `mgdd --help` do not import torch, and Ctrl-C while a command starts is caught by the CLI.
_EXPORTS = {
    "adapt": "adapt", "coreset": "baselines", "krr_pixel": "baselines", "random_ls": "baselines",
    "random_real": "baselines", "run_baseline": "baselines", "Dataset": "data", "load_dataset": "data",
    "sample_init": "data", "DistilledSet": "distilled", "export": "distilled", "save_grid": "distilled",
    "CorruptFile": "errors", "DatasetNotFound": "errors", "MgddError": "errors", "UsageError": "errors",
    "evaluate": "evaluate", "FeatureConfig": "features", "FeaturePool": "features", "generate": "generate",
    "GeneratorConfig": "generator", "MetaGenerator": "generator", "create_model": "models",
    "meta_train": "meta", "KRRObjective": "objective", "FreshObjective": "objective", "create_objective": "objective",
    "PROTOCOLS": "protocols", "evaluate_protocol": "protocols",
    "default_meta_generator": "pipeline", "distill": "pipeline",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mgdd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """adapt, evaluate and generate are functions named like the modules that define them; the
    import system binds the module under that name when anything imports it, and the function
    is what ``mgdd.adapt`` means (as when this package imported everything eagerly)."""

    def __getattribute__(self, name):
        value = super().__getattribute__(name)
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return getattr(value, name)
        return value


sys.modules[__name__].__class__ = _Package
