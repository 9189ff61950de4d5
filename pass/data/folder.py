"""ImageFolder-style datasets on disk: Tiny-ImageNet and ImageNet (ILSVRC-2012).

Expected layouts (under the ``root`` passed to ``load_dataset``)::

    tiny-imagenet-200/train/<wnid>/images/*.JPEG      (100k images, 200 classes)
    tiny-imagenet-200/val/images/*.JPEG               (10k images)  -> our TEST split
    tiny-imagenet-200/val/val_annotations.txt         (file<TAB>wnid<TAB>bbox...)
    tiny-imagenet-200/words.txt                       (optional: wnid<TAB>human-readable names)

    imagenet/train/<wnid>/*.JPEG                      -> train pool (val carved from it)
    imagenet/val/<wnid>/*.JPEG                        -> our TEST split (official val, sorted
                                                         into class folders)

Why the official val becomes the test split: neither set publishes test labels, and our protocol
carves validation from training data so model selection never sees the reported test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .sources import DATASETS, DatasetNotFoundError, DatasetSource, folder_source
from .transforms import imagenet_style_transforms

__all__ = ["ImageListDataset", "TINY_IMAGENET_URL"]

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
IMAGENET_URL = "https://image-net.org/challenges/LSVRC/2012/2012-downloads.php"


class ImageListDataset(torch.utils.data.Dataset):
    """``(path, label)`` list -> ``(PIL RGB image, label)``.

    Why not ``ImageFolder`` directly: Tiny-ImageNet's val labels live in a text file, not in folders;
    a flat list serves both layouts, and it is cheap to pickle into DataLoader workers.
    """

    def __init__(self, samples: list[tuple[str, int]], classes: list[str]) -> None:
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.classes = classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from torchvision.datasets.folder import pil_loader

        path, target = self.samples[index]
        return pil_loader(path), target


def _scan(directory: Path, class_to_idx: dict[str, int], *, allow_empty: bool) -> list[tuple[str, int]]:
    """All image files under ``directory/<class>/`` (recursively), sorted, via torchvision."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    return make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty)


def _class_dirs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []


def _tiny_transforms(size: int) -> tuple[Any, Any]:
    """Tiny-ImageNet recipe at native 64 px: random crop with padding size/8 + flip (as for CIFAR);
    eval: resize + centre crop (a no-op at 64 px)."""
    from torchvision import transforms as T

    train = T.Compose(
        [T.Resize(size), T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip(), T.PILToTensor()]
    )
    evaluate = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
    return train, evaluate


def _image_list_source(
    name: str,
    train_samples: list[tuple[str, int]],
    test_samples: list[tuple[str, int]],
    classes: list[str],
    transforms: tuple[Any, Any],
    size: int,
    num_workers: int,
) -> DatasetSource:
    """Train and test ``(path, label)`` lists as a file-backed source; ``transforms`` = ``(train, eval)``."""
    train_tf, eval_tf = transforms
    return folder_source(
        name,
        ImageListDataset(train_samples, classes),
        [t for _, t in train_samples],
        ImageListDataset(test_samples, classes),
        [t for _, t in test_samples],
        train_transform=train_tf,
        eval_transform=eval_tf,
        image_size=size,
        class_names=list(classes),
        num_workers=num_workers,
    )


@DATASETS.register("tiny_imagenet")
def tiny_imagenet(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
    """Tiny-ImageNet-200 (64 px default); its official val is our test split."""
    base = Path(root) / "tiny-imagenet-200"
    train_dir, val_dir = base / "train", base / "val"
    ann = val_dir / "val_annotations.txt"
    wnids = _class_dirs(train_dir)
    if not wnids or not ann.is_file() or not (val_dir / "images").is_dir():
        raise DatasetNotFoundError(
            "tiny_imagenet",
            [f"{train_dir}/<wnid>/images/*.JPEG", f"{val_dir}/images/*.JPEG", str(ann)],
            f"download {TINY_IMAGENET_URL} and unzip it into {root} (creates tiny-imagenet-200/)",
        )
    class_to_idx = {w: i for i, w in enumerate(wnids)}
    train_samples = _scan(train_dir, class_to_idx, allow_empty=False)
    test_samples: list[tuple[str, int]] = []
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        fname, wnid = parts[0], parts[1]
        if wnid not in class_to_idx:
            raise ValueError(f"{ann}: class {wnid!r} of {fname} has no folder in {train_dir}")
        test_samples.append((str(val_dir / "images" / fname), class_to_idx[wnid]))
    names = _tiny_words(base / "words.txt", wnids)
    size = 64 if image_size is None else int(image_size)
    return _image_list_source(
        "tiny_imagenet", train_samples, test_samples, names, _tiny_transforms(size), size, num_workers
    )


def _tiny_words(words: Path, wnids: list[str]) -> list[str]:
    """Human-readable class names from ``words.txt`` when present, else the WordNet ids."""
    if not words.is_file():
        return list(wnids)
    table = {}
    for line in words.read_text(errors="replace").splitlines():
        wnid, _, text = line.partition("\t")
        table[wnid] = text.strip()
    return [table.get(w) or w for w in wnids]


@DATASETS.register("imagenet")
def imagenet(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
    """ImageNet-1k (ILSVRC-2012), 224 px default; the official val (in class folders) is the test split."""
    base = Path(root) / "imagenet"
    train_dir, val_dir = base / "train", base / "val"
    wnids = _class_dirs(train_dir)
    val_wnids = _class_dirs(val_dir)
    how = (
        f"ImageNet needs a manual download (account required): {IMAGENET_URL}. Extract "
        f"ILSVRC2012_img_train.tar into {train_dir}/<wnid>/ and ILSVRC2012_img_val.tar into "
        f"{val_dir}/, then sort the val images into {val_dir}/<wnid>/ folders (e.g. with the "
        "widely used valprep.sh script)"
    )
    if not wnids or not val_wnids:
        raise DatasetNotFoundError("imagenet", [f"{train_dir}/<wnid>/*.JPEG", f"{val_dir}/<wnid>/*.JPEG"], how)
    unknown = sorted(set(val_wnids) - set(wnids))
    if unknown:
        raise ValueError(f"{val_dir} has class folders missing from {train_dir}: {unknown[:5]}...")
    class_to_idx = {w: i for i, w in enumerate(wnids)}
    train_samples = _scan(train_dir, class_to_idx, allow_empty=False)
    test_samples = _scan(val_dir, class_to_idx, allow_empty=True)
    if not test_samples:
        raise DatasetNotFoundError("imagenet", [f"{val_dir}/<wnid>/*.JPEG"], how)
    size = 224 if image_size is None else int(image_size)
    return _image_list_source(
        "imagenet", train_samples, test_samples, wnids, imagenet_style_transforms(size), size, num_workers
    )
