"""``passprune prefetch``: fetch and verify, on a machine with internet, every file a config's jobs will read.

Why: jobs never download (:mod:`passprune.downloads`), because compute nodes often have no internet. So before a
study is submitted, one command on the login node reads the config's jobs (:mod:`passprune.plan`, from
:mod:`passprune.study`: the same resolved settings the rules hand the jobs), and for every dataset under its
``data.root`` and every ImageNet checkpoint under its ``weights_dir``:

* downloads what torchvision can download, with torchvision's / torch.hub's own code (which checks the md5 of
  every archive, or the sha256 prefix in a checkpoint's file name, while downloading);
* verifies what is already there with the checksums torchvision publishes: the md5 of every CIFAR batch file,
  of Flowers-102's label files, of every archive still on disk; the sha256 prefix of every checkpoint;
* lists what must be placed by hand (Tiny-ImageNet, ImageNet, Stanford Cars), with where and how.

``--check`` only inspects (no network). The exit status is non-zero while anything is missing or corrupt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .settings import JobSettings

#: Datasets no code can download (licence / account / dead URL): prefetch says where to put them.
MANUAL = ("tiny_imagenet", "imagenet", "stanford_cars")
#: Statuses that let the study run.
READY = ("ok", "downloaded")


@dataclass
class Item:
    """One file set a config needs and what prefetch found: ``status`` is ok / downloaded / missing / manual
    (must be placed by hand) / corrupt (a checksum differs) / failed (the download failed)."""

    kind: str  # "dataset" or "weights"
    name: str  # dataset or architecture
    path: str
    status: str
    detail: str


# ----------------------------------------------------------------------------- what a config needs
def needs(jobs: Iterable[Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str | None]]]:
    """From planned jobs (:class:`passprune.plan.PlannedJob`): the (dataset, data root) pairs every job reads and
    the (arch, weights_dir) pairs whose ImageNet checkpoint a dense model starts from."""
    datasets, weights = set(), set()
    for j in jobs:
        s = JobSettings.from_dict(j.settings, j.stage)
        datasets.add((j.dataset, s.data.root))
        if j.stage == "pretrain" and s.model.pretrained:
            weights.add((j.arch, s.model.weights_dir))
    return sorted(datasets), sorted(weights, key=lambda w: (w[0], w[1] or ""))


# ----------------------------------------------------------------------------- checksums
def _md5_checks(name: str, root: Path) -> list[tuple[Path, str]]:
    """(file, md5) pairs torchvision publishes for a downloadable dataset, at the paths its download leaves them."""
    from torchvision import datasets as D

    if name in ("cifar10", "cifar100"):
        cls = D.CIFAR10 if name == "cifar10" else D.CIFAR100
        folder = root / cls.base_folder
        return [(folder / f, md5) for f, md5 in cls.train_list + cls.test_list] + [(root / cls.filename, cls.tgz_md5)]
    if name == "food101":
        return [(root / os.path.basename(D.Food101._URL), D.Food101._MD5)]
    if name == "dtd":
        return [(root / "dtd" / os.path.basename(D.DTD._URL), D.DTD._MD5)]
    if name == "flowers102":
        return [(root / "flowers-102" / f, md5) for f, md5 in D.Flowers102._file_dict.values()]
    if name == "oxford_pets":
        return [(root / "oxford-iiit-pet" / os.path.basename(u), md5) for u, md5 in D.OxfordIIITPet._RESOURCES]
    return []  # fashion_mnist*: torchvision's md5s are of the .gz files; Debian re-compresses them


def _verify_md5(name: str, root: Path) -> tuple[bool, str]:
    """Every published checksum whose file is on disk must match; archives removed after extraction are noted."""
    from torchvision.datasets.utils import check_integrity

    checks = _md5_checks(name, root)
    present = [(p, md5) for p, md5 in checks if p.is_file()]
    bad = [str(p) for p, md5 in present if not check_integrity(str(p), md5)]
    if bad:
        return False, f"md5 differs from torchvision's for {bad}: delete them and run prefetch again"
    if not checks:
        return True, "present (torchvision publishes no checksum for these files)"
    gone = [p.name for p, _ in checks if not p.is_file()]
    note = f"; not on disk, so not checked: {gone}" if gone else ""
    return True, f"md5 verified for {len(present)} file(s){note}"


def hub_hash_prefix(path: str | os.PathLike) -> str | None:
    """The sha256 prefix torch.hub checkpoints carry in their file name (``resnet18-f37072fd.pth``)."""
    import torch.hub

    m = torch.hub.HASH_REGEX.search(os.path.basename(path))
    return m.group(1) if m else None


def verify_hub_file(path: str | os.PathLike) -> tuple[bool, str]:
    """Check a checkpoint against the sha256 prefix in its name (what torch.hub checks when it downloads)."""
    prefix = hub_hash_prefix(path)
    if prefix is None:
        return True, "present (its name carries no sha256 prefix)"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if not h.hexdigest().startswith(prefix):
        return False, f"sha256 {h.hexdigest()[:12]}... does not start with {prefix}: delete it and run prefetch again"
    return True, f"sha256 prefix {prefix} verified"


# ----------------------------------------------------------------------------- one dataset / one checkpoint
def _open_dataset(name: str, root: Path, download: bool) -> str:
    """Make the dataset's files present (downloading when allowed) with the loaders' own code; returns how."""
    from .data import DATASETS
    from .data.fashion_mnist import prepare_fashion_mnist_raw
    from .data.torchvision_sets import load_cifar_tensors, load_transfer
    from .downloads import allow_downloads

    with allow_downloads():
        if name.startswith("fashion_mnist"):
            return prepare_fashion_mnist_raw(root, download=download)
        if name in ("cifar10", "cifar100"):
            from torchvision import datasets as D

            load_cifar_tensors(D.CIFAR10 if name == "cifar10" else D.CIFAR100, root, download=download, name=name)
            return "present"
        if name in ("food101", "dtd", "flowers102", "oxford_pets"):
            load_transfer(name, root, download=download)
            return "present"
        DATASETS.get(name)(root)  # manual sets: the loader checks the layout (and raises with where/how)
        return "present"


def dataset_item(name: str, root: str | os.PathLike, download: bool) -> Item:
    """Fetch (if allowed and needed) and verify one dataset under ``root``."""
    from .data import DatasetNotFoundError
    from .data.fashion_mnist import DEBIAN_DIR, RAW_FILES

    root = Path(root).expanduser().absolute()  # relative roots are the jobs' working directory: run from there
    existed = {p for p, _ in _md5_checks(name, root) if p.is_file()}
    ok, detail = _verify_md5(name, root)
    if not ok:  # a corrupt file is reported, never silently replaced
        return Item("dataset", name, str(root), "corrupt", detail)
    raw = root / "FashionMNIST" / "raw"
    if name.startswith("fashion_mnist") and not download and not all((raw / f).is_file() for f in RAW_FILES):
        where = (
            f"prefetch decompresses Debian's copy from {DEBIAN_DIR}"
            if DEBIAN_DIR.is_dir()
            else "prefetch downloads it with torchvision (or `apt-get install dataset-fashion-mnist`)"
        )
        return Item("dataset", name, str(root), "missing", f"{raw} has not the four IDX files; {where}")
    try:
        how = _open_dataset(name, root, download and name not in MANUAL)
    except DatasetNotFoundError as err:
        status = "manual" if name in MANUAL else "failed" if download else "missing"
        return Item("dataset", name, str(root), status, f"how to get it: {err.how_to_get}")
    ok, detail = _verify_md5(name, root)
    fetched = how in ("download", "debian") or any(p.is_file() and p not in existed for p, _ in _md5_checks(name, root))
    status = "corrupt" if not ok else "downloaded" if fetched else "ok"
    return Item(
        "dataset", name, str(root), status, detail + (f" (from {how})" if how in ("debian", "download") else "")
    )


def weights_item(arch: str, weights_dir: str | None, download: bool) -> Item:
    """Fetch (if allowed and needed) and verify one ImageNet checkpoint, where the jobs will look for it."""
    import torch.hub

    from .models.imagenet import IMAGENET_WEIGHTS, weights_cache_path

    path = weights_cache_path(arch, weights_dir)
    if os.path.isfile(path):
        ok, detail = verify_hub_file(path)
        return Item("weights", arch, path, "ok" if ok else "corrupt", detail)
    url = IMAGENET_WEIGHTS[arch].url
    if not download:
        return Item("weights", arch, path, "missing", f"not there; prefetch downloads it from {url}")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, hash_prefix=hub_hash_prefix(path), progress=False)
    except Exception as err:  # noqa: BLE001  (URLError, HTTPError, hash mismatch, ...)
        return Item("weights", arch, path, "failed", f"download of {url} failed ({err}); copy the file there by hand")
    ok, detail = verify_hub_file(path)
    return Item("weights", arch, path, "downloaded" if ok else "corrupt", detail)


def prefetch(jobs: Iterable[Any], download: bool = True) -> list[Item]:
    """Every dataset and checkpoint the planned jobs need, fetched (``download``) and verified."""
    datasets, weights = needs(list(jobs))
    items = [dataset_item(name, root, download) for name, root in datasets]
    items += [weights_item(arch, wdir, download) for arch, wdir in weights]
    return items


def report(items: list[Item]) -> str:
    """A table a person reads on the login node, then what to place by hand."""
    lines = [
        f"{'':2}{'kind':8} {'name':15} {'status':10} path",
        *(
            f"{'  ' if i.status in READY else '! '}{i.kind:8} {i.name:15} {i.status:10} {i.path}\n{'':38}{i.detail}"
            for i in items
        ),
    ]
    todo = [i for i in items if i.status not in READY]
    lines.append(
        "all files present and verified: jobs will not need the network"
        if not todo
        else f"{len(todo)} item(s) need attention (marked !): jobs that read them fail at once until they are there"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def cmd_prefetch(a: argparse.Namespace) -> None:
    from .files import atomic_write_json
    from .plan import StudyError, plan

    try:
        planned = plan(a.configfile)
    except StudyError as err:
        raise SystemExit(f"passprune prefetch: {err}") from None
    items = prefetch(planned.jobs, download=not a.check)
    print(report(items))
    if a.json:
        atomic_write_json(a.json, {"configfile": planned.configfile, "items": [asdict(i) for i in items]})
    if any(i.status not in READY for i in items):
        raise SystemExit(1)


def add_commands(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "prefetch",
        help="download and verify every dataset and ImageNet weight file a config needs "
        "(run on a machine with internet; jobs never download)",
    )
    q.add_argument("--configfile", default=None, help="the study config (default: config/config.yaml)")
    q.add_argument("--check", action="store_true", help="only inspect what is there; no network")
    q.add_argument("--json", default=None, help="also write the findings to this JSON file")
    q.set_defaults(fn=cmd_prefetch)
