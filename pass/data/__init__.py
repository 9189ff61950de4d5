"""Datasets for passprune: one ``load_dataset`` for everything, offline first.

Importing this package registers every dataset in :data:`DATASETS` (the submodules register
themselves on import), so ``list_datasets()`` is complete after ``import passprune.data``.

Typical use::

    bundle = load_dataset("fashion_mnist", "data/", seed=0, val_size=0.1)
    for x, y in bundle.train.batches(128, shuffle=True, augment=True, generator=g, device="cuda"):
        ...
"""
from __future__ import annotations

from . import fashion_mnist, folder, torchvision_sets  # noqa: F401  (registration side effects)
from .base import (
    DATASETS,
    DataBundle,
    DatasetNotFoundError,
    DatasetSource,
    FolderSplit,
    Split,
    TensorSplit,
    class_subset,
    list_datasets,
    load_dataset,
    stratified_select,
)

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetNotFoundError",
    "DatasetSource",
    "FolderSplit",
    "Split",
    "TensorSplit",
    "class_subset",
    "list_datasets",
    "load_dataset",
    "stratified_select",
]
