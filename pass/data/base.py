"""Former home of the data protocol, now split into :mod:`.splits`, :mod:`.sources`, :mod:`.carving` and
:mod:`.transforms`; kept only for the imports that still name it (``fashion_mnist.py``,
``tests/test_pass_learns.py``). New code imports from ``passprune.data``."""

from __future__ import annotations

from .sources import DATASETS, DatasetNotFoundError, DatasetSource, class_subset, tensor_source
from .splits import DataBundle, TensorSplit

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetNotFoundError",
    "DatasetSource",
    "TensorSplit",
    "class_subset",
    "tensor_source",
]
