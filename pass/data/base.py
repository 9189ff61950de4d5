"""Split / bundle types, seeded stratified carving, batched augmentation and ``load_dataset``.

Why this shape: every method in the pipeline (PASS, its baselines, the ablations) consumes data the
same way -- ``for x, y in bundle.train.batches(...)`` -- so the dataset zoo is hidden behind one tiny
``Split`` protocol.  Two implementations exist:

* :class:`TensorSplit` for the small sets (Fashion-MNIST, CIFAR): the whole pool sits in memory as a
  uint8 tensor and augmentation is done on the *whole batch* with tensor ops.  On a 2-core box this
  is far faster than a ``DataLoader`` with PIL transforms, and it runs on the GPU when asked.
* :class:`FolderSplit` for image files on disk (transfer sets, Tiny-ImageNet, ImageNet): a
  torchvision dataset + an index subset, decoded by a ``DataLoader`` with ``num_workers``.

Both yield *normalised* float32 images ``(N, C, H, W)`` and int64 labels on the requested device, and
both are fully determined by the ``torch.Generator`` passed to ``batches`` (order *and*
augmentation), which is what makes runs reproducible from a seed.

Dataset factories (registered in :data:`DATASETS`) only describe the official train/test *pools*
(:class:`DatasetSource`); the validation carve and the subsets are done once, here, the same way for
every dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import Registry

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Split protocol and bundle
# --------------------------------------------------------------------------------------------------
@runtime_checkable
class Split(Protocol):
    """One split (train / val / test) of a dataset.

    ``batches`` yields NORMALISED float32 images ``(N, C, H, W)`` and int64 labels on ``device``.
    The same ``generator`` state gives the same batches (order and augmentation).
    """

    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]: ...


@dataclass
class DataBundle:
    """Everything a method needs to know about a dataset: three splits plus shape/normalisation."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]


# --------------------------------------------------------------------------------------------------
# Randomness helpers
# --------------------------------------------------------------------------------------------------
def _rng(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per (seed, purpose).

    Why: the val carve must not change when ``train_subset``/``test_subset`` change, so every carve
    draws from its own stream instead of sharing one sequential generator.
    """
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stream) % (2**63 - 1))


def _draw(fn: Callable[..., Tensor], *args: Any, generator: torch.Generator | None, **kw: Any) -> Tensor:
    """Call a torch random function on the generator's own device and return the result on CPU.

    Why: a CUDA generator can only drive CUDA draws; drawing on the generator's device and moving
    the (small) result keeps batches identical whichever device the images end up on.
    """
    if generator is None:
        return fn(*args, **kw)
    return fn(*args, generator=generator, device=generator.device, **kw).cpu()


def _check_batch_args(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _normalise_(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32, ``(x/255 - mean) / std`` in one fused affine op."""
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)
    return x.to(torch.float32).mul_(scale).sub_(shift)


# --------------------------------------------------------------------------------------------------
# In-memory split with batched augmentation
# --------------------------------------------------------------------------------------------------
def batch_translate(x: Tensor, shifts: Tensor, pad: int) -> Tensor:
    """Translate every image of a batch by its own ``(dy, dx)`` in ``[-pad, pad]``, zero fill.

    Equivalent to torchvision's ``RandomCrop(size, padding=pad)`` per sample, but vectorised: the
    batch is zero-padded once and each sample's window is cut out with two ``gather`` calls (rows,
    then columns), so there is no Python loop over the batch and it runs unchanged on a GPU.

    Args:
        x: ``(N, C, H, W)`` images, any dtype.
        shifts: ``(N, 2)`` int64 offsets into the padded image, each in ``[0, 2*pad]``.
        pad: padding in pixels.
    """
    if pad == 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))  # zero fill, like RandomCrop(padding=pad)
    shifts = shifts.to(x.device)
    rows = shifts[:, 0:1] + torch.arange(h, device=x.device)  # (N, H)
    cols = shifts[:, 1:2] + torch.arange(w, device=x.device)  # (N, W)
    rows = rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    xp = xp.gather(2, rows)  # (N, C, H, W + 2 pad)
    cols = cols.view(n, 1, 1, w).expand(n, c, h, w)
    return xp.gather(3, cols)


class _IndexedSplit:
    """What both split kinds share: which source samples they hold, their labels and the normalisation."""

    def __init__(self, indices: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float]) -> None:
        indices = torch.as_tensor(indices, dtype=torch.int64)
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if indices.shape != labels.shape:
            raise ValueError(f"indices {tuple(indices.shape)} and labels {tuple(labels.shape)} differ")
        self.indices = indices
        self.labels = labels
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __len__(self) -> int:
        return int(self.indices.numel())


class TensorSplit(_IndexedSplit):
    """A split of an in-memory uint8 image pool.

    Why a pool + indices rather than a copy: train and val are carved from the same official train
    set, so they share one tensor and only differ in ``indices`` (which also lets tests and analyses
    see exactly which source samples a split holds).

    Attributes:
        pool: ``(M, C, H, W)`` uint8 images of the whole source pool (shared between splits).
        indices: int64 ``(N,)`` positions of this split's samples in ``pool``.
        labels: int64 ``(N,)`` labels of this split (already remapped for class-subset datasets).
    """

    def __init__(
        self,
        pool: Tensor,
        indices: Tensor,
        labels: Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        pad: int = 4,
        flip: bool = True,
        image_size: int | None = None,
    ) -> None:
        if pool.dtype != torch.uint8 or pool.dim() != 4:
            raise ValueError(f"pool must be uint8 (M, C, H, W), got {pool.dtype} {tuple(pool.shape)}")
        super().__init__(indices, labels, mean, std)
        self.pool = pool
        self.pad = int(pad)
        self.flip = bool(flip)
        native = int(pool.shape[-1])
        self.image_size = native if image_size is None else int(image_size)

    def __repr__(self) -> str:
        c, h, w = self.pool.shape[1:]
        return f"TensorSplit(n={len(self)}, shape=({c}, {h}, {w}), image_size={self.image_size})"

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield normalised ``(images, labels)`` batches.

        All randomness of the epoch (order, shifts, flips) is drawn from ``generator`` when this is
        *called*, not lazily, so using the same generator inside the training loop cannot change the
        epoch's batches.  Augmentation is random translation by up to ``pad`` px (zero fill) plus a
        random horizontal flip, done batch-wise on ``device``; then an optional bilinear resize to
        ``image_size`` and normalisation.
        """
        _check_batch_args(batch_size)
        n = len(self)
        order = _draw(torch.randperm, n, generator=generator) if shuffle else torch.arange(n)
        shifts = flips = None
        if augment:
            shifts = _draw(torch.randint, 0, 2 * self.pad + 1, (n, 2), generator=generator)
            flips = _draw(torch.rand, n, generator=generator) < 0.5 if self.flip else None
        return self._iterate(order, shifts, flips, batch_size, torch.device(device), drop_last)

    def _iterate(
        self,
        order: Tensor,
        shifts: Tensor | None,
        flips: Tensor | None,
        batch_size: int,
        device: torch.device,
        drop_last: bool,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        n = int(order.numel())
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device)
        std = torch.tensor(self.std, dtype=torch.float32, device=device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            pos = order[start : start + batch_size]
            x = self.pool[self.indices[pos]].to(device, non_blocking=True)
            y = self.labels[pos].to(device, non_blocking=True)
            if shifts is not None:
                x = batch_translate(x, shifts[pos], self.pad)
            if flips is not None:
                f = flips[pos].to(device).view(-1, 1, 1, 1)
                x = torch.where(f, x.flip(-1), x)
            x = _normalise_(x, mean, std)
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                down = self.image_size < x.shape[-1]
                x = F.interpolate(
                    x, size=(self.image_size, self.image_size), mode="bilinear",
                    align_corners=False, antialias=down,
                )
            yield x, y


# --------------------------------------------------------------------------------------------------
# File-backed split (DataLoader + PIL transforms)
# --------------------------------------------------------------------------------------------------
class _SubsetWithTransform(torch.utils.data.Dataset):
    """``base[pool_idx[k]]`` -> ``(transform(img), label[k])`` with an optional per-sample seed.

    Why per-sample seeds: torchvision's random transforms use torch's *global* RNG, which is not
    reproducible across ``num_workers`` settings.  Seeding the CPU RNG per sample (and restoring it
    afterwards) makes the augmentation a pure function of the generator passed to ``batches``,
    independent of worker count, and leaves the caller's global RNG untouched.
    """

    def __init__(
        self,
        base: Any,
        pool_idx: Tensor,
        labels: Tensor,
        seeds: Tensor | None,
        transform: Callable[[Any], Tensor],
    ) -> None:
        self.base = base
        self.pool_idx = pool_idx.tolist()
        self.labels = labels.tolist()
        self.seeds = None if seeds is None else seeds.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pool_idx)

    def __getitem__(self, k: int) -> tuple[Tensor, int]:
        img = self.base[self.pool_idx[k]][0]
        if self.seeds is None:
            return self.transform(img), self.labels[k]
        state = torch.get_rng_state()
        try:
            torch.default_generator.manual_seed(self.seeds[k])  # CPU only: CUDA RNG untouched
            out = self.transform(img)
        finally:
            torch.set_rng_state(state)
        return out, self.labels[k]


class FolderSplit(_IndexedSplit):
    """A split of a file-backed torchvision dataset, decoded by a ``DataLoader``.

    The transforms must return uint8 ``(C, H, W)`` tensors of a fixed size (end them with
    ``PILToTensor``): batches travel to the device as uint8 (4x less traffic than float) and are
    normalised there, exactly like :class:`TensorSplit`.

    Attributes:
        dataset: torchvision dataset whose ``ds[i][0]`` is a PIL image (its own transform unused).
        indices: int64 positions of this split's samples in ``dataset``.
        labels: int64 labels of this split (already remapped for class-subset datasets).
    """

    def __init__(
        self,
        dataset: Any,
        indices: Tensor,
        labels: Tensor,
        *,
        train_transform: Callable[[Any], Tensor],
        eval_transform: Callable[[Any], Tensor],
        mean: Sequence[float],
        std: Sequence[float],
        num_workers: int = 0,
    ) -> None:
        super().__init__(indices, labels, mean, std)
        self.dataset = dataset
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.num_workers = int(num_workers)

    def __repr__(self) -> str:
        return f"FolderSplit(n={len(self)}, dataset={type(self.dataset).__name__}, workers={self.num_workers})"

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield normalised ``(images, labels)`` batches; randomness is drawn at call time."""
        _check_batch_args(batch_size)
        n = len(self)
        order = _draw(torch.randperm, n, generator=generator) if shuffle else torch.arange(n)
        seeds = _draw(torch.randint, 0, 2**62, (n,), generator=generator) if augment else None
        # The DataLoader draws a base seed even with 0 workers; give it its own generator so the
        # caller's global RNG is not consumed.
        loader_seed = int(_draw(torch.randint, 0, 2**62, (1,), generator=generator)[0])
        ds = _SubsetWithTransform(
            self.dataset,
            self.indices[order],
            self.labels[order],
            None if seeds is None else seeds,
            self.train_transform if augment else self.eval_transform,
        )
        dev = torch.device(device)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=dev.type == "cuda",
            generator=torch.Generator().manual_seed(loader_seed),
        )
        return self._iterate(loader, dev)

    def _iterate(self, loader: Any, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device)
        std = torch.tensor(self.std, dtype=torch.float32, device=device)
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, dtype=torch.int64, non_blocking=True)
            yield _normalise_(x, mean, std), y


# --------------------------------------------------------------------------------------------------
# Sources, carving and subsets
# --------------------------------------------------------------------------------------------------
MakeSplit = Callable[[str, Tensor, Tensor], Split]


@dataclass
class DatasetSource:
    """What a dataset factory returns: the official train and test pools, before any carving.

    ``make_split(pool, indices, labels)`` builds a :class:`Split` over ``indices`` of ``pool``
    (``"train"`` or ``"test"``) carrying ``labels``.  Why labels are passed in rather than read from
    the pool: class-subset datasets (``fashion_mnist_a``) relabel classes without copying images.
    """

    name: str
    train_targets: Tensor
    test_targets: Tensor
    make_split: MakeSplit
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]


#: name -> factory ``(root: Path, *, image_size: int | None, num_workers: int) -> DatasetSource``
DATASETS: Registry[Callable[..., DatasetSource]] = Registry("dataset")


def _resolve_count(size: int | float, n: int, what: str) -> int:
    """int -> count, float -> fraction of ``n`` (rounded); validated against ``n``."""
    if isinstance(size, bool):
        raise TypeError(f"{what} must be an int count or a float fraction, got {size!r}")
    if isinstance(size, float):
        if not 0.0 <= size <= 1.0:
            raise ValueError(f"{what} as a fraction must be in [0, 1], got {size}")
        return int(round(size * n))
    if isinstance(size, int):
        if not 0 <= size <= n:
            raise ValueError(f"{what}={size} is outside [0, {n}] (the pool it is drawn from has {n} samples)")
        return size
    raise TypeError(f"{what} must be an int count or a float fraction, got {type(size).__name__}")


def stratified_select(
    targets: Tensor, size: int | float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Pick a seeded, class-stratified subset of positions of ``targets``.

    The count per class is proportional to the class frequency (largest-remainder rounding, ties
    broken at random) so that the total is exact and a balanced set stays balanced.  Fully
    vectorised (one randperm + one stable sort), so it is instant even for ImageNet's 1.28M labels.

    Args:
        targets: int64 labels ``(N,)``.
        size: int = number of samples, float = fraction of ``N``.
        generator: seeded CPU generator.

    Returns:
        ``(selected, rest)``: sorted int64 positions into ``targets``; disjoint, union = all.
    """
    targets = torch.as_tensor(targets, dtype=torch.int64)
    n = int(targets.numel())
    k = _resolve_count(size, n, "subset size")
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    counts = torch.bincount(targets)
    num_c = int(counts.numel())
    exact = counts.double() * (k / n)
    quota = exact.floor().long()
    remainder = k - int(quota.sum())
    if remainder > 0:
        frac = exact - quota.double()
        perm = torch.randperm(num_c, generator=generator)
        ranked = perm[torch.argsort(frac[perm], descending=True, stable=True)]
        quota[ranked[:remainder]] += 1
    quota = torch.minimum(quota, counts)
    # Group positions by class in random order: random permutation, then a stable sort by class.
    p = torch.randperm(n, generator=generator)
    order = p[torch.argsort(targets[p], stable=True)]
    starts = torch.cumsum(counts, 0) - counts
    cls = targets[order]
    rank = torch.arange(n) - starts[cls]
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[order[rank < quota[cls]]] = True
    return chosen.nonzero().flatten(), (~chosen).nonzero().flatten()


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


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the registered datasets matching a glob ``pattern``, sorted."""
    return DATASETS.names(pattern)


def load_dataset(
    name: str,
    root: str | Path,
    *,
    seed: int = 0,
    val_size: int | float = 0.1,
    train_subset: int | None = None,
    test_subset: int | None = None,
    image_size: int | None = None,
    num_workers: int = 0,
) -> DataBundle:
    """Load a registered dataset and carve train / val / test.

    * ``val`` is carved from the official TRAINING pool, stratified by class and seeded by ``seed``
      (int ``val_size`` = count, float = fraction of the training pool).  The test set is never
      used for validation.
    * ``train_subset`` is a seeded stratified subset of what REMAINS after carving val (so val is
      identical with or without it); ``test_subset`` is a seeded stratified subset of the test pool.
      Both accept an int count (or a float fraction).
    * Each carve uses its own random stream, so changing one never changes the others.
    * ``image_size`` overrides the dataset's native/default size (in-memory sets are resized at
      batch time); ``num_workers`` only affects file-backed sets.
    """
    factory = DATASETS.get(name)
    src = factory(Path(root).expanduser(), image_size=image_size, num_workers=num_workers)
    n_train = int(src.train_targets.numel())
    if not isinstance(val_size, bool) and isinstance(val_size, (int, float)):
        if _resolve_count(val_size, n_train, "val_size") >= n_train and n_train > 0:
            raise ValueError(f"val_size={val_size} would leave no training samples (pool has {n_train})")
    val_pos, train_pos = stratified_select(src.train_targets, val_size, _rng(seed, 0))
    if train_subset is not None:
        sel, _ = stratified_select(src.train_targets[train_pos], train_subset, _rng(seed, 1))
        train_pos = train_pos[sel]
    test_pos = torch.arange(int(src.test_targets.numel()))
    if test_subset is not None:
        test_pos, _ = stratified_select(src.test_targets, test_subset, _rng(seed, 2))
    for split, pos, key, value in (("training", train_pos, "train_subset", train_subset),
                                   ("validation", val_pos, "val_size", val_size),
                                   ("test", test_pos, "test_subset", test_subset)):
        if pos.numel() == 0:  # an empty split would "train" on nothing and report chance as a result
            raise ValueError(f"{name}: data.{key}={value!r} leaves the {split} split empty; give a count >= 1 or a "
                             "larger fraction (config data: or dataset_overrides:)")
    return DataBundle(
        name=src.name,
        train=src.make_split("train", train_pos, src.train_targets[train_pos]),
        val=src.make_split("train", val_pos, src.train_targets[val_pos]),
        test=src.make_split("test", test_pos, src.test_targets[test_pos]),
        num_classes=src.num_classes,
        in_channels=src.in_channels,
        image_size=src.image_size,
        mean=tuple(src.mean),
        std=tuple(src.std),
        class_names=list(src.class_names),
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
            pools[pool], indices, labels, train_transform=train_transform,
            eval_transform=eval_transform, mean=mean, std=std, num_workers=num_workers,
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


def imagenet_style_transforms(image_size: int) -> tuple[Callable[[Any], Tensor], Callable[[Any], Tensor]]:
    """Standard ImageNet recipe: RandomResizedCrop+flip for training, Resize(s*256/224)+CenterCrop
    for evaluation.  Both end in ``PILToTensor`` (uint8) because normalisation happens on device."""
    from torchvision import transforms as T

    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.PILToTensor()])
    evaluate = T.Compose(
        [T.Resize(int(math.floor(image_size * 256 / 224))), T.CenterCrop(image_size), T.PILToTensor()]
    )
    return train, evaluate
