"""Dataset sources: what a registered dataset factory returns, before any carving.

A factory registered in :data:`DATASETS` only describes the official train/test *pools*
(:class:`DatasetSource`); the validation carve and the subsets are done once, in
:func:`~passprune.data.carving.load_dataset`, the same way for every dataset. :func:`tensor_source` and
:func:`folder_source` wrap in-memory and file-backed pools; :func:`class_subset` derives a dataset restricted
to some classes without copying images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..registry import Registry
from .splits import DatasetInfo, FolderSplit, Split, TensorSplit
from .transforms import IMAGENET_MEAN, IMAGENET_STD


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing.

    Why a dedicated type: a missing dataset is the most common failure on a fresh cluster node, so
    the message always names the dataset, every path that was searched and how to obtain the data.
    It subclasses ``FileNotFoundError`` so generic handlers still catch it.
    """

    def __init__(self, name: str, looked_in: Sequence[str | Path], how_to_get: str) -> None:
        self.dataset = name
        self.looked_in = [str(p) for p in looked_in]
        self.how_to_get = how_to_get
        from ..downloads import PREFETCH_HINT

        paths = "\n".join(f"  - {p}" for p in self.looked_in)
        super().__init__(
            f"dataset {name!r} not found. Looked in:\n{paths}\nHow to get it: {how_to_get}\nNote: {PREFETCH_HINT}"
        )


MakeSplit = Callable[[str, Tensor, Tensor], Split]


@dataclass(kw_only=True)
class DatasetSource(DatasetInfo):
    """What a dataset factory returns: the official train and test pools, before any carving.

    ``make_split(pool, indices, labels)`` builds a :class:`Split` over ``indices`` of ``pool``
    (``"train"`` or ``"test"``) carrying ``labels``.  Why labels are passed in rather than read from
    the pool: class-subset datasets (``fashion_mnist_a``) relabel classes without copying images.
    """

    train_targets: Tensor
    test_targets: Tensor
    make_split: MakeSplit


#: name -> factory ``(root: Path, *, image_size: int | None, num_workers: int) -> DatasetSource``
DATASETS: Registry[Callable[..., DatasetSource]] = Registry("dataset")


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the registered datasets matching a glob ``pattern``, sorted."""
    return DATASETS.names(pattern)


def class_subset(source: DatasetSource, classes: Sequence[int], name: str) -> DatasetSource:
    """Derive a dataset restricted to ``classes`` (relabelled ``0..len(classes)-1`` in that order).

    Why: two disjoint class subsets of one dataset (``fashion_mnist_a``/``_b``) give an offline
    transfer benchmark.  Images are not copied; the derived splits index the parent's pools, so a
    split's ``indices`` still refer to the original source samples.
    """
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes) or not all(0 <= c < source.num_classes for c in classes):
        raise ValueError(f"classes {classes} must be distinct and in [0, {source.num_classes})")
    remap = torch.full((source.num_classes,), -1, dtype=torch.int64)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    keep = {
        "train": (remap[source.train_targets] >= 0).nonzero().flatten(),
        "test": (remap[source.test_targets] >= 0).nonzero().flatten(),
    }

    def make_split(pool: str, indices: Tensor, labels: Tensor) -> Split:
        return source.make_split(pool, keep[pool][indices], labels)

    return DatasetSource(
        name=name,
        train_targets=remap[source.train_targets[keep["train"]]],
        test_targets=remap[source.test_targets[keep["test"]]],
        make_split=make_split,
        num_classes=len(classes),
        in_channels=source.in_channels,
        image_size=source.image_size,
        mean=source.mean,
        std=source.std,
        class_names=[source.class_names[c] for c in classes],
    )


def tensor_source(
    name: str,
    train_images: Tensor,
    train_targets: Tensor,
    test_images: Tensor,
    test_targets: Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    class_names: Sequence[str],
    pad: int,
    image_size: int | None,
) -> DatasetSource:
    """Wrap in-memory uint8 ``(N, C, H, W)`` pools as a :class:`DatasetSource` of TensorSplits."""
    pools = {"train": train_images.contiguous(), "test": test_images.contiguous()}
    native = int(train_images.shape[-1])
    size = native if image_size is None else int(image_size)
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def make_split(pool: str, indices: Tensor, labels: Tensor) -> Split:
        return TensorSplit(pools[pool], indices, labels, mean=mean_t, std=std_t, pad=pad, image_size=size)

    return DatasetSource(
        name=name,
        train_targets=torch.as_tensor(train_targets, dtype=torch.int64),
        test_targets=torch.as_tensor(test_targets, dtype=torch.int64),
        make_split=make_split,
        num_classes=len(class_names),
        in_channels=int(train_images.shape[1]),
        image_size=size,
        mean=mean_t,
        std=std_t,
        class_names=list(class_names),
    )


def folder_source(
    name: str,
    train_dataset: Any,
    train_targets: Sequence[int] | Tensor,
    test_dataset: Any,
    test_targets: Sequence[int] | Tensor,
    *,
    train_transform: Callable[[Any], Tensor],
    eval_transform: Callable[[Any], Tensor],
    image_size: int,
    class_names: Sequence[str],
    num_workers: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> DatasetSource:
    """Wrap file-backed train/test datasets (PIL images, no transform) as FolderSplit pools."""
    pools = {"train": train_dataset, "test": test_dataset}

    def make_split(pool: str, indices: Tensor, labels: Tensor) -> Split:
        return FolderSplit(
            pools[pool],
            indices,
            labels,
            train_transform=train_transform,
            eval_transform=eval_transform,
            mean=mean,
            std=std,
            num_workers=num_workers,
        )

    return DatasetSource(
        name=name,
        train_targets=torch.as_tensor(list(train_targets), dtype=torch.int64),
        test_targets=torch.as_tensor(list(test_targets), dtype=torch.int64),
        make_split=make_split,
        num_classes=len(class_names),
        in_channels=3,
        image_size=int(image_size),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        class_names=list(class_names),
    )
