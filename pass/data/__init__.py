"""Datasets for passprune: one ``load_dataset`` for everything, offline first.

One module per concern: :mod:`.splits` (the ``Split`` protocol, ``DataBundle`` and the two split kinds),
:mod:`.sources` (what a dataset factory returns, the :data:`DATASETS` registry, class subsets),
:mod:`.carving` (``load_dataset``: val carved from train, stratified subsets) and :mod:`.transforms`
(normalisation and augmentation). Importing this package registers every dataset in :data:`DATASETS` (the
family modules register themselves on import), so ``list_datasets()`` is complete after
``import passprune.data``.

Typical use::

    bundle = load_dataset("fashion_mnist", "data/", seed=0, val_size=0.1)
    for x, y in bundle.train.batches(128, shuffle=True, augment=True, generator=g, device="cuda"):
        ...
"""

from __future__ import annotations

from . import fashion_mnist, folder, torchvision_sets  # noqa: F401  (registration side effects)
from .carving import load_dataset, stratified_select
from .sources import DATASETS, DatasetNotFoundError, DatasetSource, class_subset, list_datasets
from .splits import DataBundle, FolderSplit, Split, TensorSplit

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
