"""Official split sizes and default resolutions of every registered dataset, without loading any data.

Why a table: the workflow turns a search budget given in epochs into PASS's steps when it resolves a config
(passprune.study), and ``passprune estimate`` counts the images every job will process; both happen on a login node
before any dataset exists there, so neither can open the data. The numbers are the pools the loaders in
``passprune.data`` build (train = the pool the validation split is carved from; DTD and Flowers-102 merge their
official train and val). Torch-free on purpose: Snakemake imports it while it plans the DAG.
``tests/test_paper_config.py`` checks the table against the registry and against the real loader where the
data is on disk (Fashion-MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSize:
    """The official pools of one dataset: ``train`` (val is carved from it), ``test``, and ``image_size``, the
    resolution a job uses when the config's ``image_size`` is null."""

    train: int
    test: int
    image_size: int
    num_classes: int


SIZES: dict[str, DatasetSize] = {
    "cifar10": DatasetSize(50_000, 10_000, 32, 10),
    "cifar100": DatasetSize(50_000, 10_000, 32, 100),
    "fashion_mnist": DatasetSize(60_000, 10_000, 28, 10),
    "fashion_mnist_a": DatasetSize(30_000, 5_000, 28, 5),
    "fashion_mnist_b": DatasetSize(30_000, 5_000, 28, 5),
    "tiny_imagenet": DatasetSize(100_000, 10_000, 64, 200),
    "food101": DatasetSize(75_750, 25_250, 224, 101),
    "dtd": DatasetSize(3_760, 1_880, 224, 47),
    "flowers102": DatasetSize(2_040, 6_149, 224, 102),
    "oxford_pets": DatasetSize(3_680, 3_669, 224, 37),
    "stanford_cars": DatasetSize(8_144, 8_041, 224, 196),
    "imagenet": DatasetSize(1_281_167, 50_000, 224, 1000),
}


def size_of(dataset: str) -> DatasetSize:
    """The table entry, or an error that says where to add one."""
    try:
        return SIZES[dataset]
    except KeyError:
        raise KeyError(
            f"dataset {dataset!r} has no entry in passprune.datasizes.SIZES (pass/datasizes.py); "
            "add its official train/test sizes there"
        ) from None


def _count(size: int | float, n: int, what: str) -> int:
    """int = count, float = fraction of ``n`` rounded (the rule of passprune.data.carving._resolve_count)."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"{what} must be an int count or a float fraction, got {size!r}")
    return int(round(size * n)) if isinstance(size, float) else int(size)


def split_sizes(
    dataset: str,
    val_size: int | float = 0.1,
    train_subset: int | float | None = None,
    test_subset: int | float | None = None,
) -> dict[str, int]:
    """Images in the train / val / test splits a job gets, carved as ``passprune.data.load_dataset`` carves them
    (val from the training pool; ``train_subset`` from what remains; ``test_subset`` from the test pool)."""
    s = size_of(dataset)
    n_val = _count(val_size, s.train, "val_size")
    n_train = s.train - n_val
    if train_subset is not None:
        n_train = _count(train_subset, n_train, "train_subset")
    n_test = s.test if test_subset is None else _count(test_subset, s.test, "test_subset")
    return {"train": n_train, "val": n_val, "test": n_test}


def steps_per_epoch(n_train: int, batch_size: int, max_steps_per_epoch: int | None = None) -> int:
    """Full batches per epoch (every loop drops the last partial batch), at least 1, capped like the engine's."""
    steps = max(1, n_train // batch_size)
    return min(steps, max_steps_per_epoch) if max_steps_per_epoch else steps
