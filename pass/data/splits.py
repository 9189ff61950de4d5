"""The ``Split`` interface, the ``DataBundle`` of three splits, and the two split kinds.

Why this shape: every method in the pipeline (PASS, its baselines, the ablations) consumes data the
same way -- ``for x, y in bundle.train.batches(...)`` -- so the dataset zoo is hidden behind one tiny
``Split`` interface.  Two kinds exist, sharing the :class:`Split` base:

* :class:`TensorSplit` for the small sets (Fashion-MNIST, CIFAR): the whole pool sits in memory as a
  uint8 tensor and augmentation is done on the *whole batch* with tensor ops.  On a 2-core box this
  is far faster than a ``DataLoader`` with PIL transforms, and it runs on the GPU when asked.
* :class:`FolderSplit` for image files on disk (transfer sets, Tiny-ImageNet, ImageNet): a
  torchvision dataset + an index subset, decoded by a ``DataLoader`` with ``num_workers``.

Both yield *normalised* float32 images ``(N, C, H, W)`` and int64 labels on the requested device, and
both are fully determined by the ``torch.Generator`` passed to ``batches`` (order *and*
augmentation), which is what makes runs reproducible from a seed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .transforms import batch_translate, normalise_


def draw(fn: Callable[..., Tensor], *args: Any, generator: torch.Generator | None, **kw: Any) -> Tensor:
    """Call a torch random function on the generator's own device and return the result on CPU.

    Why: a CUDA generator can only drive CUDA draws; drawing on the generator's device and moving
    the (small) result keeps batches identical whichever device the images end up on.
    """
    if generator is None:
        return fn(*args, **kw)
    return fn(*args, generator=generator, device=generator.device, **kw).cpu()


class Epoch(NamedTuple):
    """One call of :meth:`Split.batches`: the epoch's sample order (already drawn) and the caller's options."""

    order: Tensor
    batch_size: int
    augment: bool
    generator: torch.Generator | None
    device: torch.device
    drop_last: bool


class Split(ABC):
    """One split (train / val / test) of a dataset: which source samples it holds, their labels and the
    normalisation; both split kinds below share this base.

    ``batches`` yields NORMALISED float32 images ``(N, C, H, W)`` and int64 labels on ``device``.
    The same ``generator`` state gives the same batches (order and augmentation); a split kind draws
    the rest of its epoch's randomness and decodes in ``_epoch``.
    """

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

        All randomness of the epoch (order, augmentation) is drawn from ``generator`` when this is
        *called*, not lazily, so using the same generator inside the training loop cannot change the
        epoch's batches.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        n = len(self)
        order = draw(torch.randperm, n, generator=generator) if shuffle else torch.arange(n)
        return self._epoch(Epoch(order, batch_size, augment, generator, torch.device(device), drop_last))

    @abstractmethod
    def _epoch(self, epoch: Epoch) -> Iterator[tuple[Tensor, Tensor]]:
        """Draw the epoch's augmentation from ``generator`` now, and return the iterator over batches."""

    def _mean_std(self, device: torch.device) -> tuple[Tensor, Tensor]:
        return (
            torch.tensor(self.mean, dtype=torch.float32, device=device),
            torch.tensor(self.std, dtype=torch.float32, device=device),
        )


@dataclass(kw_only=True)
class DatasetInfo:
    """What a dataset is, whether still pools (:class:`~passprune.data.sources.DatasetSource`) or carved
    into splits (:class:`DataBundle`): its name, classes, input shape and normalisation."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]


@dataclass(kw_only=True)
class DataBundle(DatasetInfo):
    """Everything a method needs to know about a dataset: three splits plus shape/normalisation."""

    train: Split
    val: Split
    test: Split


# --------------------------------------------------------------------------------------------------
# In-memory split with batched augmentation
# --------------------------------------------------------------------------------------------------
class TensorSplit(Split):
    """A split of an in-memory uint8 image pool.

    Why a pool + indices rather than a copy: train and val are carved from the same official train
    set, so they share one tensor and only differ in ``indices`` (which also lets tests and analyses
    see exactly which source samples a split holds).

    Augmentation is random translation by up to ``pad`` px (zero fill) plus a random horizontal flip,
    done batch-wise on the device; then an optional bilinear resize to ``image_size`` and normalisation.

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

    def _epoch(self, epoch: Epoch) -> Iterator[tuple[Tensor, Tensor]]:
        n = int(epoch.order.numel())
        shifts = flips = None
        if epoch.augment:
            shifts = draw(torch.randint, 0, 2 * self.pad + 1, (n, 2), generator=epoch.generator)
            flips = draw(torch.rand, n, generator=epoch.generator) < 0.5 if self.flip else None
        return self._iterate(epoch, shifts, flips)

    def _iterate(self, epoch: Epoch, shifts: Tensor | None, flips: Tensor | None) -> Iterator[tuple[Tensor, Tensor]]:
        order, batch_size, device = epoch.order, epoch.batch_size, epoch.device
        n = int(order.numel())
        mean, std = self._mean_std(device)
        stop = n - n % batch_size if epoch.drop_last else n
        for start in range(0, stop, batch_size):
            pos = order[start : start + batch_size]
            x = self.pool[self.indices[pos]].to(device, non_blocking=True)
            y = self.labels[pos].to(device, non_blocking=True)
            if shifts is not None:
                x = batch_translate(x, shifts[pos], self.pad)
            if flips is not None:
                f = flips[pos].to(device).view(-1, 1, 1, 1)
                x = torch.where(f, x.flip(-1), x)
            x = normalise_(x, mean, std)
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                down = self.image_size < x.shape[-1]
                x = F.interpolate(
                    x,
                    size=(self.image_size, self.image_size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=down,
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


class FolderSplit(Split):
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

    def _epoch(self, epoch: Epoch) -> Iterator[tuple[Tensor, Tensor]]:
        n = int(epoch.order.numel())
        seeds = draw(torch.randint, 0, 2**62, (n,), generator=epoch.generator) if epoch.augment else None
        # The DataLoader draws a base seed even with 0 workers; give it its own generator so the
        # caller's global RNG is not consumed.
        loader_seed = int(draw(torch.randint, 0, 2**62, (1,), generator=epoch.generator)[0])
        ds = _SubsetWithTransform(
            self.dataset,
            self.indices[epoch.order],
            self.labels[epoch.order],
            seeds,
            self.train_transform if epoch.augment else self.eval_transform,
        )
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=epoch.batch_size,
            shuffle=False,
            drop_last=epoch.drop_last,
            num_workers=self.num_workers,
            pin_memory=epoch.device.type == "cuda",
            generator=torch.Generator().manual_seed(loader_seed),
        )
        return self._iterate(loader, epoch.device)

    def _iterate(self, loader: Any, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        mean, std = self._mean_std(device)
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, dtype=torch.int64, non_blocking=True)
            yield normalise_(x, mean, std), y
