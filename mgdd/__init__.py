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

from .adapt import adapt
from .baselines import coreset, krr_pixel, random_ls, random_real, run_baseline
from .data import Dataset, load_dataset, sample_init
from .distilled import DistilledSet, export, save_grid
from .errors import CorruptFile, DatasetNotFound, MgddError, UsageError
from .evaluate import evaluate
from .features import FeatureConfig, FeaturePool
from .generate import generate
from .generator import GeneratorConfig, MetaGenerator
from .models import create_model
from .objective import FreshObjective, KRRObjective, create_objective
from .pipeline import default_meta_generator, distill
from .version import __version__

__all__ = [
    "__version__", "adapt", "coreset", "krr_pixel", "random_ls", "random_real", "run_baseline", "Dataset",
    "load_dataset", "sample_init", "DistilledSet", "export", "save_grid", "CorruptFile", "DatasetNotFound",
    "MgddError", "UsageError", "evaluate", "FeatureConfig", "FeaturePool", "generate", "GeneratorConfig",
    "MetaGenerator", "create_model", "KRRObjective", "FreshObjective", "create_objective", "default_meta_generator",
    "distill",
]
