"""Tests for passprune.data: registry, carving, batching/augmentation and every loader path.

No network: Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (decompressed into a
tmp root, so that code path is exercised); CIFAR-10, Oxford-IIIT Pet, Tiny-ImageNet and ImageNet are
tiny fake trees written here.  The only monkeypatch is CIFAR10._check_integrity (fake files cannot
match torchvision's md5s).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from passprune.data import (
    DATASETS,
    DatasetNotFoundError,
    FolderSplit,
    Split,
    TensorSplit,
    list_datasets,
    load_dataset,
    stratified_select,
)
from passprune.data.fashion_mnist import (
    DEBIAN_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    RAW_FILES,
    prepare_fashion_mnist_raw,
)
from passprune.data.torchvision_sets import load_cifar_tensors, load_transfer

ALL = [
    "fashion_mnist",
    "fashion_mnist_a",
    "fashion_mnist_b",
    "cifar10",
    "cifar100",
    "food101",
    "dtd",
    "flowers102",
    "oxford_pets",
    "stanford_cars",
    "tiny_imagenet",
    "imagenet",
]


def _take(split: Split, n_batches: int, **kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i, b in enumerate(split.batches(**kw)):
        if i == n_batches:
            break
        out.append(b)
    return out


def test_list_datasets_has_everything() -> None:
    names = list_datasets()
    assert set(ALL) <= set(names)
    assert list_datasets("fashion_mnist*") == ["fashion_mnist", "fashion_mnist_a", "fashion_mnist_b"]


def test_stratified_select_exact_and_proportional() -> None:
    targets = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    sel, rest = stratified_select(targets, 10, torch.Generator().manual_seed(0))
    assert len(sel) == 10 and len(rest) == 90
    assert set(sel.tolist()).isdisjoint(rest.tolist())
    assert torch.bincount(targets[sel], minlength=3).tolist() == [5, 3, 2]
    sel2, _ = stratified_select(targets, 0.25, torch.Generator().manual_seed(0))
    assert len(sel2) == 25 and torch.bincount(targets[sel2], minlength=3).tolist()[0] in (12, 13)
    with pytest.raises(ValueError):
        stratified_select(targets, 101, torch.Generator())


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST (real data, from the Debian package)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not all((DEBIAN_DIR / f"{f}.gz").is_file() for f in RAW_FILES):
        pytest.fail(
            f"Fashion-MNIST test data missing: expected {DEBIAN_DIR}/*.gz from the Debian package "
            "`dataset-fashion-mnist`. Install it with `sudo apt-get install dataset-fashion-mnist`."
        )
    return tmp_path_factory.mktemp("fm")


@pytest.fixture(scope="module")
def fm(fm_root: Path):
    return load_dataset("fashion_mnist", fm_root, seed=0, val_size=0.1)


def test_fashion_mnist_loads_from_debian_package(fm, fm_root: Path) -> None:
    raw = fm_root / "FashionMNIST" / "raw"
    assert all((raw / f).is_file() for f in RAW_FILES), "Debian .gz files were not decompressed"
    assert not list(raw.glob("*.tmp")), "temporary files left behind"
    assert prepare_fashion_mnist_raw(fm_root) == "raw"  # second time: nothing to do
    assert len(fm.train) + len(fm.val) == 60000 and len(fm.val) == 6000
    assert len(fm.test) == 10000
    assert (fm.num_classes, fm.in_channels, fm.image_size) == (10, 1, 28)
    assert fm.mean == FASHION_MNIST_MEAN and fm.std == FASHION_MNIST_STD
    assert len(fm.class_names) == 10
    assert isinstance(fm.train, Split) and isinstance(fm.train, TensorSplit)
    assert torch.bincount(fm.val.labels).tolist() == [600] * 10  # stratified -> balanced


def test_fashion_mnist_normalised_mean_is_zero(fm) -> None:
    total, count = 0.0, 0
    for x, y in fm.train.batches(8192, shuffle=False, augment=False):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 28, 28)
        total += float(x.double().sum())
        count += x.numel()
    assert abs(total / count) < 0.05


def test_val_carve_disjoint_and_seeded(fm, fm_root: Path) -> None:
    tr, va = set(fm.train.indices.tolist()), set(fm.val.indices.tolist())
    assert tr.isdisjoint(va) and len(tr | va) == 60000
    again = load_dataset("fashion_mnist", fm_root, seed=0, val_size=0.1)
    assert torch.equal(again.val.indices, fm.val.indices)
    assert torch.equal(again.train.indices, fm.train.indices)
    other = load_dataset("fashion_mnist", fm_root, seed=1, val_size=0.1)
    assert not torch.equal(other.val.indices, fm.val.indices)
    counted = load_dataset("fashion_mnist", fm_root, seed=0, val_size=500)
    assert len(counted.val) == 500 and torch.bincount(counted.val.labels).tolist() == [50] * 10


def test_subsets_are_stratified_and_keep_val(fm, fm_root: Path) -> None:
    sub = load_dataset("fashion_mnist", fm_root, seed=0, val_size=0.1, train_subset=1000, test_subset=500)
    assert torch.bincount(sub.train.labels).tolist() == [100] * 10
    assert torch.bincount(sub.test.labels).tolist() == [50] * 10
    assert torch.equal(sub.val.indices, fm.val.indices)  # val is carved before the train subset
    assert set(sub.train.indices.tolist()) <= set(fm.train.indices.tolist())


def test_batches_deterministic_and_augmentation_keeps_labels(fm) -> None:
    kw = dict(batch_size=128, shuffle=True, augment=True)
    a = _take(fm.train, 3, generator=torch.Generator().manual_seed(7), **kw)
    b = _take(fm.train, 3, generator=torch.Generator().manual_seed(7), **kw)
    c = _take(fm.train, 3, generator=torch.Generator().manual_seed(8), **kw)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][1], c[0][1])
    g = torch.Generator().manual_seed(0)
    ((xp, yp),) = _take(fm.train, 1, batch_size=256, shuffle=False, augment=False)
    ((xq, yq),) = _take(fm.train, 1, batch_size=256, shuffle=False, augment=True, generator=g)
    assert torch.equal(yp, yq)
    assert not torch.equal(xp, xq)
    assert xq.shape == xp.shape == (256, 1, 28, 28)
    # drop_last and sizes
    sizes = [len(y) for _, y in fm.val.batches(1000, shuffle=False, augment=False, drop_last=True)]
    assert sizes == [1000] * 6
    sizes = [len(y) for _, y in fm.val.batches(2500, shuffle=False, augment=False)]
    assert sizes == [2500, 2500, 1000]


def test_fashion_mnist_resize(fm_root: Path) -> None:
    b = load_dataset("fashion_mnist", fm_root, train_subset=64, image_size=32)
    assert b.image_size == 32
    ((x, _),) = _take(b.train, 1, batch_size=64, shuffle=True, augment=True, generator=torch.Generator())
    assert x.shape == (64, 1, 32, 32)


def test_fashion_mnist_a_b_are_disjoint_5_class_tasks(fm_root: Path) -> None:
    src = DATASETS.get("fashion_mnist")(fm_root)
    a = load_dataset("fashion_mnist_a", fm_root)
    b = load_dataset("fashion_mnist_b", fm_root)
    assert a.num_classes == b.num_classes == 5
    assert set(a.class_names).isdisjoint(b.class_names)
    assert len(a.train) + len(a.val) == 30000 and len(a.test) == 5000
    for bundle, classes in ((a, {0, 1, 2, 3, 4}), (b, {5, 6, 7, 8, 9})):
        assert set(src.train_targets[bundle.train.indices].tolist()) == classes
        assert set(src.train_targets[bundle.val.indices].tolist()) == classes
        assert set(src.test_targets[bundle.test.indices].tolist()) == classes
        assert set(bundle.train.labels.tolist()) == {0, 1, 2, 3, 4}
        ((x, y),) = _take(bundle.test, 1, batch_size=32, shuffle=True, augment=False, generator=torch.Generator())
        assert x.shape == (32, 1, 28, 28) and int(y.max()) <= 4
    # relabelling is the identity shift of the original labels
    assert torch.equal(b.train.labels + 5, src.train_targets[b.train.indices])


# --------------------------------------------------------------------------------------------------
# CIFAR-10 from a fake pickle tree
# --------------------------------------------------------------------------------------------------
def _write_fake_cifar10(root: Path, per_batch: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for k, name in enumerate(names):
        labels = [i % 10 for i in range(per_batch)]
        # channel c of image i is filled with (10*c + i % 10): checks the CHW layout after loading
        data = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        for i in range(per_batch):
            for c in range(3):
                data[i, c] = 10 * c + labels[i] + k
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data.reshape(per_batch, -1), "labels": labels, "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, f)


def test_cifar10_from_fake_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    _write_fake_cifar10(tmp_path)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    b = load_dataset("cifar10", tmp_path, val_size=10)
    assert (len(b.train), len(b.val), len(b.test)) == (90, 10, 20)
    assert torch.bincount(b.val.labels).tolist() == [1] * 10
    assert b.class_names == [f"class{i}" for i in range(10)]
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 3, 32)
    ((x, y),) = _take(b.test, 1, batch_size=20, shuffle=False, augment=False)
    assert x.shape == (20, 3, 32, 32)
    mean, std = torch.tensor(b.mean).view(1, 3, 1, 1), torch.tensor(b.std).view(1, 3, 1, 1)
    pixels = ((x * std + mean) * 255).round()
    expect = 10 * torch.arange(3).view(1, 3, 1, 1) + y.view(-1, 1, 1, 1) + 5  # k = 5 for test_batch
    assert torch.equal(pixels, expect.expand_as(pixels).float())
    ((xa, ya),) = _take(
        b.train, 1, batch_size=32, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)
    )
    assert xa.shape == (32, 3, 32, 32) and ya.dtype == torch.int64


# --------------------------------------------------------------------------------------------------
# Image-folder datasets from tiny fake trees
# --------------------------------------------------------------------------------------------------
def _img(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


WNIDS = ["n01443537", "n01629819", "n01641577"]


def _write_fake_tiny(root: Path, n_train: int = 5, n_val: int = 2) -> None:
    base = root / "tiny-imagenet-200"
    lines = []
    for c, w in enumerate(WNIDS):
        for i in range(n_train):
            ext = "JPEG" if i % 2 else "png"
            _img(base / "train" / w / "images" / f"{w}_{i}.{ext}", 100 * c + i)
        (base / "train" / w / f"{w}_boxes.txt").write_text("ignored\n")
        for i in range(n_val):
            name = f"val_{c * n_val + i}.JPEG"
            _img(base / "val" / "images" / name, 1000 + 10 * c + i)
            lines.append(f"{name}\t{w}\t0\t0\t8\t8")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))


def test_tiny_imagenet_fake_tree(tmp_path: Path) -> None:
    _write_fake_tiny(tmp_path)
    default = load_dataset("tiny_imagenet", tmp_path, val_size=3)
    assert default.image_size == 64 and default.num_classes == 3 and default.in_channels == 3
    assert default.class_names == [f"thing {w}" for w in WNIDS]
    b = load_dataset("tiny_imagenet", tmp_path, val_size=3, image_size=16)
    assert isinstance(b.train, FolderSplit)
    assert (len(b.train), len(b.val), len(b.test)) == (12, 3, 6)
    assert torch.bincount(b.val.labels).tolist() == [1, 1, 1]
    assert torch.bincount(b.test.labels).tolist() == [2, 2, 2]
    xs = [x for x, _ in b.train.batches(5, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0))]
    assert [x.shape for x in xs] == [(5, 3, 16, 16), (5, 3, 16, 16), (2, 3, 16, 16)]
    assert all(x.dtype == torch.float32 for x in xs)
    ((xt, yt),) = _take(b.test, 1, batch_size=6, shuffle=False, augment=False)
    assert xt.shape == (6, 3, 16, 16) and yt.tolist() == [0, 0, 1, 1, 2, 2]


def test_folder_split_deterministic_and_leaves_global_rng(tmp_path: Path) -> None:
    _write_fake_tiny(tmp_path)
    b = load_dataset("tiny_imagenet", tmp_path, val_size=3, image_size=16)
    state = torch.get_rng_state()
    kw = dict(batch_size=4, shuffle=True, augment=True)
    a = _take(b.train, 3, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(torch.get_rng_state(), state), "batches() consumed the global RNG"
    c = _take(b.train, 3, generator=torch.Generator().manual_seed(3), **kw)
    for (xa, ya), (xc, yc) in zip(a, c):
        assert torch.equal(xa, xc) and torch.equal(ya, yc)
    # same batches with a worker process: augmentation is seeded per sample, not per process
    w = load_dataset("tiny_imagenet", tmp_path, val_size=3, image_size=16, num_workers=1)
    d = _take(w.train, 3, generator=torch.Generator().manual_seed(3), **kw)
    for (xa, ya), (xd, yd) in zip(a, d):
        assert torch.equal(xa, xd) and torch.equal(ya, yd)


def test_imagenet_fake_tree(tmp_path: Path) -> None:
    base = tmp_path / "imagenet"
    for c, wnid in enumerate(WNIDS):
        for i in range(4):
            _img(base / "train" / wnid / f"{wnid}_{i}.JPEG", 10 * c + i)
        _img(base / "val" / wnid / f"ILSVRC2012_val_{c:08d}.JPEG", 500 + c)
    b = load_dataset("imagenet", tmp_path, val_size=0.25, image_size=24)
    assert (len(b.train), len(b.val), len(b.test)) == (9, 3, 3)
    assert b.class_names == WNIDS and b.mean == (0.485, 0.456, 0.406)
    ((x, y),) = _take(b.train, 1, batch_size=9, shuffle=True, augment=True, generator=torch.Generator())
    assert x.shape == (9, 3, 24, 24) and y.dtype == torch.int64
    ((x, y),) = _take(b.test, 1, batch_size=3, shuffle=False, augment=False)
    assert x.shape == (3, 3, 24, 24) and y.tolist() == [0, 1, 2]
    assert load_dataset("imagenet", tmp_path, val_size=3).image_size == 224


def test_oxford_pets_fake_tree_via_torchvision(tmp_path: Path) -> None:
    base = tmp_path / "oxford-iiit-pet"
    breeds = ["Abyssinian", "beagle"]
    for split, n in (("trainval", 4), ("test", 2)):
        rows = []
        for c, breed in enumerate(breeds):
            for i in range(n):
                image_id = f"{breed}_{split}{i}"
                _img(base / "images" / f"{image_id}.jpg", 7 * c + i)
                rows.append(f"{image_id} {c + 1} {1 if c == 0 else 2} 1")
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    b = load_dataset("oxford_pets", tmp_path, val_size=2, image_size=16)
    assert b.num_classes == 2 and b.class_names == ["Abyssinian", "Beagle"]
    assert (len(b.train), len(b.val), len(b.test)) == (6, 2, 4)
    ((x, y),) = _take(b.train, 1, batch_size=6, shuffle=True, augment=True, generator=torch.Generator())
    assert x.shape == (6, 3, 16, 16)


# --------------------------------------------------------------------------------------------------
# Missing data -> helpful errors (no network: download disabled through the loaders' own flags)
# --------------------------------------------------------------------------------------------------
def test_missing_dataset_errors_name_the_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("tiny_imagenet", tmp_path)
    msg = str(e.value)
    assert "tiny_imagenet" in msg and str(tmp_path / "tiny-imagenet-200" / "train") in msg
    assert "tiny-imagenet-200.zip" in msg

    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("imagenet", tmp_path)
    msg = str(e.value)
    assert "imagenet" in msg and str(tmp_path / "imagenet" / "train") in msg and "image-net.org" in msg

    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("stanford_cars", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "stanford_cars") in msg and "MANUAL" in msg

    with pytest.raises(FileNotFoundError) as e:  # DatasetNotFoundError is a FileNotFoundError
        prepare_fashion_mnist_raw(tmp_path, debian_dir=tmp_path / "no-debian", download=False)
    msg = str(e.value)
    assert "fashion_mnist" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert str(tmp_path / "no-debian") in msg and "apt-get install dataset-fashion-mnist" in msg

    import torchvision

    with pytest.raises(DatasetNotFoundError) as e:
        load_cifar_tensors(torchvision.datasets.CIFAR10, tmp_path, download=False)
    assert str(tmp_path / "cifar-10-batches-py") in str(e.value) and "download=True" in str(e.value)

    with pytest.raises(DatasetNotFoundError) as e:
        load_transfer("dtd", tmp_path, download=False)
    assert str(tmp_path / "dtd" / "dtd") in str(e.value) and "download=True" in str(e.value)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(KeyError, match="fashion_mnist"):
        load_dataset("no_such_set", "/nonexistent")
