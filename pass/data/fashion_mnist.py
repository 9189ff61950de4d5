"""Fashion-MNIST, offline first, plus two disjoint 5-class tasks for offline transfer experiments.

Lookup order (why: compute nodes are often offline, and Debian ships the data as a package):

1. ``<root>/FashionMNIST/raw/`` with torchvision's decompressed files;
2. Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``).  Debian
   re-compresses the .gz files, so torchvision's MD5 check of the archives fails; we therefore
   decompress them ONCE into ``<root>/FashionMNIST/raw/`` ourselves (atomically) and let torchvision
   read the raw files, which it does not hash;
3. torchvision's ``download=True``;
4. otherwise a :class:`DatasetNotFoundError` naming both paths and how to get the data.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .sources import DATASETS, DatasetNotFoundError, DatasetSource, class_subset, tensor_source

__all__ = ["DEBIAN_DIR", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "prepare_fashion_mnist_raw"]

#: Where Debian's ``dataset-fashion-mnist`` package installs the gzipped IDX files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Translation range of the batch augmentation (28 px images: +-2 px ~ CIFAR's +-4 px at 32 px).
PAD = 2


def _raw_dir(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def _have_raw(raw: Path) -> bool:
    return all((raw / f).is_file() for f in RAW_FILES)


def _decompress_atomically(src: Path, dst: Path) -> None:
    """gunzip ``src`` to ``dst`` via a temp file in the same folder + ``os.replace``.

    Why atomic: several pipeline jobs may start at once on a shared filesystem; a reader must never
    see a half-written IDX file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, length=1 << 20)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare_fashion_mnist_raw(root: str | Path, *, debian_dir: Path = DEBIAN_DIR, download: bool | None = None) -> str:
    """Make sure ``<root>/FashionMNIST/raw/`` holds the four decompressed IDX files.

    Returns how they were obtained (``"raw"``, ``"debian"`` or ``"download"``), for logging.
    Raises :class:`DatasetNotFoundError` naming both searched paths if nothing works.
    ``debian_dir``/``download`` exist so the offline failure path can be tested without a network; ``download``
    None = only inside ``passprune prefetch`` (:mod:`passprune.downloads`: jobs never download).
    """
    from ..downloads import downloads_allowed

    download = downloads_allowed() if download is None else download
    root = Path(root)
    raw = _raw_dir(root)
    if _have_raw(raw):
        return "raw"
    gz = [Path(debian_dir) / f"{f}.gz" for f in RAW_FILES]
    if all(p.is_file() for p in gz):
        raw.mkdir(parents=True, exist_ok=True)
        for src, name in zip(gz, RAW_FILES):
            if not (raw / name).is_file():
                _decompress_atomically(src, raw / name)
        return "debian"
    cause: BaseException | None = None
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
            if _have_raw(raw):
                return "download"
        except Exception as exc:  # network errors come in many types
            cause = exc
    err = DatasetNotFoundError(
        "fashion_mnist",
        [f"{raw}/ ({', '.join(RAW_FILES)})", f"{debian_dir}/*.gz (Debian package dataset-fashion-mnist)"],
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or run once with internet "
        f"access so torchvision downloads it into {root} (FashionMNIST(root, download=True))"
        + (f"; the download attempt failed with: {cause!r}" if cause else ""),
    )
    raise err from cause


def load_fashion_mnist_tensors(
    root: str | Path, *, debian_dir: Path = DEBIAN_DIR, download: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """``(train_x, train_y, test_x, test_y, classes)``; images uint8 ``(N, 1, 28, 28)``.

    The decoded tensors are cached once in ``<root>/FashionMNIST/decoded.pt`` (written atomically, loaded
    with ``weights_only=True``): every job of a study loads the data, and decoding through torchvision
    (whose import alone pulls in torch._dynamo) cost several seconds per job. A cache that cannot be read
    (truncated, corrupted) is rebuilt from the raw files.
    """
    from ..files import atomic_torch_save

    cache = Path(root) / "FashionMNIST" / DECODED_CACHE
    if cache.is_file():
        try:
            d = torch.load(cache, map_location="cpu", weights_only=True)
            return d["train_x"], d["train_y"], d["test_x"], d["test_y"], list(d["classes"])
        except Exception:  # noqa: BLE001  (any unreadable cache: decode again and replace it)
            pass
    from torchvision.datasets import FashionMNIST

    prepare_fashion_mnist_raw(root, debian_dir=debian_dir, download=download)
    try:
        train = FashionMNIST(str(root), train=True, download=False)
        test = FashionMNIST(str(root), train=False, download=False)
    except Exception as err:  # noqa: BLE001  (torchvision's IDX reader fails in many ways on a damaged file)
        raise ValueError(
            f"fashion_mnist: the raw files in {_raw_dir(Path(root))} are truncated or corrupted "
            f"({type(err).__name__}: {err}); delete that folder and rerun: they are extracted again "
            "from Debian's dataset-fashion-mnist package (or `passprune prefetch` downloads them)"
        ) from None
    d = {
        "train_x": train.data.unsqueeze(1).contiguous(),
        "train_y": train.targets.long(),
        "test_x": test.data.unsqueeze(1).contiguous(),
        "test_y": test.targets.long(),
        "classes": list(train.classes),
    }
    atomic_torch_save(d, cache)
    return d["train_x"], d["train_y"], d["test_x"], d["test_y"], d["classes"]


#: Decoded tensors, cached next to the raw files (see load_fashion_mnist_tensors).
DECODED_CACHE = "decoded.pt"


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
    """Fashion-MNIST: 60k train / 10k test, 10 classes, 1x28x28, in memory."""
    del num_workers  # in-memory: batches are built with tensor ops, no workers
    tx, ty, vx, vy, classes = load_fashion_mnist_tensors(root)
    return tensor_source(
        "fashion_mnist",
        tx,
        ty,
        vx,
        vy,
        mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD,
        class_names=classes,
        pad=PAD,
        image_size=image_size,
    )


@DATASETS.register("fashion_mnist_a")
def fashion_mnist_a(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
    """Fashion-MNIST classes 0-4 (T-shirt/top .. Coat), relabelled 0..4: transfer source task."""
    return class_subset(
        fashion_mnist(root, image_size=image_size, num_workers=num_workers), range(0, 5), "fashion_mnist_a"
    )


@DATASETS.register("fashion_mnist_b")
def fashion_mnist_b(root: Path, *, image_size: int | None = None, num_workers: int = 0) -> DatasetSource:
    """Fashion-MNIST classes 5-9 (Sandal .. Ankle boot), relabelled 0..4: transfer target task."""
    return class_subset(
        fashion_mnist(root, image_size=image_size, num_workers=num_workers), range(5, 10), "fashion_mnist_b"
    )
