"""CIFAR-10/100 (in memory) and the fine-grained transfer sets (file-backed) via torchvision.

CIFAR: torchvision only downloads and verifies (``_check_integrity``, the md5 of every batch file);
the pickles are then read here directly into a uint8 ``(N, 3, 32, 32)`` tensor.  Why not keep
torchvision's dataset object: it converts to HWC numpy + PIL per sample, which is exactly the slow
path the in-memory :class:`~passprune.data.splits.TensorSplit` avoids.

Transfer sets (food101, dtd, flowers102, oxford_pets, stanford_cars) keep torchvision's dataset for
file access and use the standard ImageNet recipe (RandomResizedCrop + flip / Resize + CenterCrop),
ImageNet mean/std, default 224 px.  The validation split is always carved from the TRAINING data:
food101 ``train``, oxford_pets ``trainval``, stanford_cars ``train``; for dtd (partition 1) and
flowers102, which ship an official ``val``, train + val are MERGED first and val is then carved from
the merge like everywhere else, so every dataset follows one protocol.  Official test = test.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .sources import DATASETS, DatasetNotFoundError, DatasetSource, folder_source, tensor_source
from .transforms import imagenet_style_transforms

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "load_cifar_tensors"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


# --------------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------------
def _read_cifar_pickles(folder: Path, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = [], []
    for name in files:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(np.asarray(entry["data"], dtype=np.uint8))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    x = torch.from_numpy(np.vstack(data).reshape(-1, 3, 32, 32).copy())  # pickles are already CHW
    return x, torch.as_tensor(labels, dtype=torch.int64)


def load_cifar_tensors(
    cls: type, root: str | Path, *, download: bool | None = None, name: str = "cifar10"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Load a torchvision CIFAR class's files into memory: ``(train_x, train_y, test_x, test_y, classes)``.

    ``cls`` is ``torchvision.datasets.CIFAR10`` or ``CIFAR100``; its ``_check_integrity`` (md5 of
    every batch) decides whether the files on disk are usable, otherwise it downloads them when
    ``download`` is true (None: only inside ``passprune prefetch``; jobs never download).
    """
    from ..downloads import downloads_allowed

    download = downloads_allowed() if download is None else download
    root = Path(root)
    probe = cls.__new__(cls)  # only for _check_integrity, which needs root + class attributes
    probe.root = os.fspath(root)
    folder = root / cls.base_folder
    if not probe._check_integrity():
        cause: BaseException | None = None
        if download:
            try:
                cls(os.fspath(root), train=True, download=True)
            except Exception as exc:
                cause = exc
        if cause is not None or not probe._check_integrity():
            raise DatasetNotFoundError(
                name,
                [f"{folder}/ ({', '.join(f for f, _ in cls.train_list + cls.test_list)}, {cls.meta['filename']})"],
                f"torchvision downloads it automatically with internet access "
                f"({cls.__name__}(root, download=True), from {cls.url}); or download and extract "
                f"{cls.filename} into {root}" + (f"; the download attempt failed with: {cause!r}" if cause else ""),
            ) from cause
    tx, ty = _read_cifar_pickles(folder, [f for f, _ in cls.train_list])
    vx, vy = _read_cifar_pickles(folder, [f for f, _ in cls.test_list])
    with open(folder / cls.meta["filename"], "rb") as f:
        classes = list(pickle.load(f, encoding="latin1")[cls.meta["key"]])
    return tx, ty, vx, vy, classes


def _register_cifar(
    name: str, torchvision_class: str, mean: tuple[float, ...], std: tuple[float, ...], doc: str
) -> None:
    def factory(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
        from torchvision import datasets

        del num_workers  # in memory: nothing to decode
        tx, ty, vx, vy, classes = load_cifar_tensors(getattr(datasets, torchvision_class), root, name=name)
        return tensor_source(
            name, tx, ty, vx, vy, mean=mean, std=std, class_names=classes, pad=4, image_size=image_size
        )

    factory.__name__ = name
    factory.__doc__ = doc
    DATASETS.register(name)(factory)


_register_cifar(
    "cifar10", "CIFAR10", CIFAR10_MEAN, CIFAR10_STD, "CIFAR-10: 50k train / 10k test, 10 classes, 3x32x32, in memory."
)
_register_cifar(
    "cifar100",
    "CIFAR100",
    CIFAR100_MEAN,
    CIFAR100_STD,
    "CIFAR-100: 50k train / 10k test, 100 fine classes, 3x32x32, in memory.",
)


# --------------------------------------------------------------------------------------------------
# Transfer sets
# --------------------------------------------------------------------------------------------------
def _targets(ds: Any) -> list[int]:
    """Labels of a torchvision dataset without decoding any image (private attrs differ per class)."""
    if isinstance(ds, torch.utils.data.ConcatDataset):
        return [t for d in ds.datasets for t in _targets(d)]
    if hasattr(ds, "_labels"):  # Food101, DTD, Flowers102, OxfordIIITPet
        return [int(t) for t in ds._labels]
    if hasattr(ds, "_samples"):  # StanfordCars
        return [int(t) for _, t in ds._samples]
    if hasattr(ds, "targets"):
        return [int(t) for t in ds.targets]
    raise TypeError(f"cannot read labels of {type(ds).__name__}")


def _open(
    name: str,
    build: Callable[[bool], Any],
    looked_in: list[Path],
    how: str,
    *,
    download: bool,
) -> Any:
    """``build(download)`` with offline-first semantics and a helpful error."""
    try:
        return build(False)
    except RuntimeError as exc:  # torchvision: "Dataset not found ..."
        cause: BaseException = exc
    if download:
        try:
            return build(True)
        except Exception as exc:
            cause = exc
    raise DatasetNotFoundError(name, looked_in, f"{how}; torchvision said: {cause}") from cause


def _classes(ds: Any) -> list[str]:
    d = ds.datasets[0] if isinstance(ds, torch.utils.data.ConcatDataset) else ds
    return [str(c) for c in d.classes]


def _open_food101(D: Any, root: Path, download: bool) -> tuple[Any, Any]:
    """Food-101: the official ``train`` (val is carved from it later) and ``test``."""
    r = os.fspath(root)
    looked = [root / "food-101" / "meta", root / "food-101" / "images"]
    how = "torchvision downloads it with internet access (Food101(root, download=True), ~5 GB)"
    train = _open("food101", lambda d: D.Food101(r, split="train", download=d), looked, how, download=download)
    return train, D.Food101(r, split="test")


def _open_dtd(D: Any, root: Path, download: bool) -> tuple[Any, Any]:
    """DTD partition 1: official train and val MERGED (val is carved from the merge, as for every set), test."""
    r = os.fspath(root)
    looked = [root / "dtd" / "dtd" / "images", root / "dtd" / "dtd" / "labels"]
    how = "torchvision downloads it with internet access (DTD(root, download=True))"
    tr = _open("dtd", lambda d: D.DTD(r, split="train", partition=1, download=d), looked, how, download=download)
    train = torch.utils.data.ConcatDataset([tr, D.DTD(r, split="val", partition=1)])
    return train, D.DTD(r, split="test", partition=1)


def _open_flowers102(D: Any, root: Path, download: bool) -> tuple[Any, Any]:
    """Flowers-102: official train and val MERGED (val is carved from the merge, as for every set), test."""
    r = os.fspath(root)
    base = root / "flowers-102"
    looked = [base / "jpg", base / "imagelabels.mat", base / "setid.mat"]
    how = "torchvision downloads it with internet access (Flowers102(root, download=True))"
    tr = _open("flowers102", lambda d: D.Flowers102(r, split="train", download=d), looked, how, download=download)
    train = torch.utils.data.ConcatDataset([tr, D.Flowers102(r, split="val")])
    return train, D.Flowers102(r, split="test")


def _open_oxford_pets(D: Any, root: Path, download: bool) -> tuple[Any, Any]:
    """Oxford-IIIT Pet with its 37 breed (category) labels: ``trainval`` and ``test``."""
    r = os.fspath(root)
    base = root / "oxford-iiit-pet"
    looked = [base / "images", base / "annotations"]
    how = "torchvision downloads it with internet access (OxfordIIITPet(root, download=True))"

    def pets(split: str, d: bool = False) -> Any:
        return D.OxfordIIITPet(r, split=split, target_types="category", download=d)

    train = _open("oxford_pets", lambda d: pets("trainval", d), looked, how, download=download)
    return train, pets("test")


def _open_stanford_cars(D: Any, root: Path, download: bool) -> tuple[Any, Any]:
    """Stanford Cars: never downloaded (torchvision's download is broken upstream), so the error says how to get it."""
    del download
    r = os.fspath(root)
    base = root / "stanford_cars"
    looked = [
        base / "devkit" / "cars_meta.mat",
        base / "devkit" / "cars_train_annos.mat",
        base / "cars_train",
        base / "cars_test",
        base / "cars_test_annos_withlabels.mat",
    ]
    how = (
        "MANUAL download required: torchvision's StanfordCars download is broken upstream (the "
        "original Stanford URL is gone, so download=True cannot work). Obtain cars_train.tgz, "
        "cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat from a mirror (e.g. "
        "Kaggle), extract them and arrange them as "
        f"{base}/{{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/, cars_test/, "
        "cars_test_annos_withlabels.mat}"
    )
    train = _open("stanford_cars", lambda d: D.StanfordCars(r, split="train"), looked, how, download=False)
    return train, D.StanfordCars(r, split="test")


#: Each transfer set's opener: ``(torchvision.datasets, root, download) -> (train, test)``, one per set because
#: their folder layouts, split names and download support differ.
_TRANSFER_OPENERS: dict[str, Callable[[Any, Path, bool], tuple[Any, Any]]] = {
    "food101": _open_food101,
    "dtd": _open_dtd,
    "flowers102": _open_flowers102,
    "oxford_pets": _open_oxford_pets,
    "stanford_cars": _open_stanford_cars,
}


def load_transfer(
    name: str, root: str | Path, *, image_size: int | None = None, num_workers: int = 0, download: bool | None = None
) -> DatasetSource:
    """Open one of the transfer sets; see the module docstring for the split protocol. ``download`` None: only
    inside ``passprune prefetch`` (jobs never download)."""
    from torchvision import datasets as D

    from ..downloads import downloads_allowed

    download = downloads_allowed() if download is None else download

    root = Path(root)
    size = 224 if image_size is None else int(image_size)
    if name not in _TRANSFER_OPENERS:
        raise KeyError(f"unknown transfer dataset {name!r}")
    train, test = _TRANSFER_OPENERS[name](D, root, download)
    train_tf, eval_tf = imagenet_style_transforms(size)
    return folder_source(
        name,
        train,
        _targets(train),
        test,
        _targets(test),
        train_transform=train_tf,
        eval_transform=eval_tf,
        image_size=size,
        class_names=_classes(train),
        num_workers=num_workers,
    )


def _register_transfer(name: str, doc: str) -> None:
    def factory(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
        return load_transfer(name, root, image_size=image_size, num_workers=num_workers)

    factory.__name__ = name
    factory.__doc__ = doc
    DATASETS.register(name)(factory)


_register_transfer("food101", "Food-101: 101 classes, 75,750 train / 25,250 test (torchvision Food101).")
_register_transfer("dtd", "DTD partition 1: 47 textures; train+val merged (3,760) / 1,880 test.")
_register_transfer("flowers102", "Oxford Flowers-102: train+val merged (2,040) / 6,149 test.")
_register_transfer("oxford_pets", "Oxford-IIIT Pet: 37 breeds (category labels), trainval 3,680 / test 3,669.")
_register_transfer("stanford_cars", "Stanford Cars: 196 classes, 8,144 train / 8,041 test; manual download.")
