"""The data protocol: one ``load_dataset`` carves every registered dataset into train / val / test.

Validation is carved from the official TRAINING pool, stratified by class and seeded, so model selection
never sees the test set; the train and test subsets are seeded stratified subsets too. Each carve draws
from its own random stream (:func:`_rng`), so changing one never changes the others.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .sources import DATASETS
from .splits import DataBundle


def _rng(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per (seed, purpose).

    Why: the val carve must not change when ``train_subset``/``test_subset`` change, so every carve
    draws from its own stream instead of sharing one sequential generator.
    """
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stream) % (2**63 - 1))


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


def stratified_select(targets: Tensor, size: int | float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
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
    for split, pos, key, value in (
        ("training", train_pos, "train_subset", train_subset),
        ("validation", val_pos, "val_size", val_size),
        ("test", test_pos, "test_subset", test_subset),
    ):
        if pos.numel() == 0:  # an empty split would "train" on nothing and report chance as a result
            raise ValueError(
                f"{name}: data.{key}={value!r} leaves the {split} split empty; give a count >= 1 or a "
                "larger fraction (config data: or dataset_overrides:)"
            )
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
