"""mgdd: fast dataset distillation with a meta generator.

    import mgdd
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = mgdd.KRRObjective(dataset)                      # random-feature KRR objective
    generator = mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator())
    mgdd.adapt(generator, objective, steps=200, ipcs=[1, 10, 50])
    distilled = mgdd.generate(generator, objective, ipc=20)     # any IPC, one forward pass
    distilled.save("fmnist-ipc20.safetensors")
    print(mgdd.evaluate(distilled, dataset, runs=3)["accuracy_mean"])
"""

__version__ = "0.1.0"

from .adapt import adapt  # noqa: E402
from .baselines import coreset, krr_pixel, random_ls, random_real, run_baseline  # noqa: E402
from .data import Dataset, load_dataset, sample_init  # noqa: E402
from .distilled import DistilledSet, export, save_grid  # noqa: E402
from .errors import CorruptFile, DatasetNotFound, MgddError, UsageError  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .features import FeatureConfig, FeaturePool  # noqa: E402
from .generate import generate  # noqa: E402
from .generator import GeneratorConfig, MetaGenerator  # noqa: E402
from .models import create_model  # noqa: E402
from .objective import KRRObjective  # noqa: E402
from .pipeline import default_meta_generator, distill  # noqa: E402

__all__ = [
    "__version__", "adapt", "coreset", "krr_pixel", "random_ls", "random_real", "run_baseline", "Dataset",
    "load_dataset", "sample_init", "DistilledSet", "export", "save_grid", "CorruptFile", "DatasetNotFound",
    "MgddError", "UsageError", "evaluate", "FeatureConfig", "FeaturePool", "generate", "GeneratorConfig",
    "MetaGenerator", "create_model", "KRRObjective", "default_meta_generator", "distill",
]
