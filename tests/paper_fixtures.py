"""The paper protocol in miniature: tiny datasets in torchvision's own on-disk formats, fake ImageNet weights, and
``config/paper.yaml`` changed only in sizes.

Why torchvision's own formats (not a synthetic dataset class): the point is to run the code path a cluster user's
jobs run -- ``passprune.data`` opening CIFAR pickles, Tiny-ImageNet folders, Food-101 / DTD / Flowers-102 through
torchvision's classes, and ``load_imagenet_weights`` reading a torch.hub checkpoint from ``pretrain.weights_dir``
-- on files a test can write in a second. Every dataset gets a few classes with a few small images each, laid out
exactly where the loaders look under the data root; CIFAR-100 and Flowers-102 keep their real class counts (100 and
102 names: torchvision fixes them), the folder sets get four classes.

One substitution, and only in the job processes: torchvision checks the md5 of every CIFAR batch file and of
Flowers-102's two ``.mat`` files against the published archives, which fake files cannot match.
:func:`write_checksum_hook` writes a ``sitecustomize.py`` that, put on ``PYTHONPATH``, replaces those entries of
torchvision's checksum tables with the fixtures' own md5s when torchvision loads them (the check itself still runs,
on the fixtures). Nothing in ``passprune`` is patched.

Used by ``tests/test_paper_protocol.py`` (CPU, in CI) and ``scripts/gpu-acceptance.sh`` (the same DAG on a GPU):

    python -m tests.paper_fixtures --out DIR [--device cuda] [--archs resnet18 resnet50]

writes ``DIR/work/data`` (the data root and ``data/weights``), ``DIR/site/sitecustomize.py`` and ``DIR/config.yaml``;
then ``PYTHONPATH=DIR/site snakemake -s Snakefile -d DIR/work --configfile DIR/config.yaml --cores N``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"

#: Sizes of the miniature (the only things changed from config/paper.yaml). Every set has TRAIN_PER_CLASS training
#: images in each of its CLASSES present classes: VAL of them are carved for validation and the TRAIN_SUBSET left are
#: the training split (stated as a count, so the workflow's step arithmetic -- which reads the official sizes from
#: passprune.datasizes -- sees the same number the loader carves).
CLASSES = 4
TRAIN_PER_CLASS = 5
TEST_PER_CLASS = 2
VAL = CLASSES
TRAIN_SUBSET = CLASSES * TRAIN_PER_CLASS - VAL
TEST_SUBSET = CLASSES * TEST_PER_CLASS
IMAGE_SIZE = 32
BATCH = 8
STEPS_PER_EPOCH = 2
#: The default grid: each architecture family (BasicBlock, Bottleneck) runs every method on one dataset, and the other
#: four datasets run through the paper's transfers (resnet18), which read each of them: a source task (a dense model
#: and its PASS search: Food-101) or a target task (a dense model, the hypernetwork's search and both transfer
#: kinds' fine-tunings: CIFAR-10, Flowers-102, DTD). Tiny-ImageNet, the one dataset no transfer reads, is resnet50's;
#: CIFAR-100 (a transfer source too) is resnet18's. Why so lean: every job is a process that pays ~6 CPU-s of
#: start-up (torch, and torch._dynamo, which torchvision imports) against well under a second of arithmetic at these
#: sizes, so the job count is the miniature's time: 52 jobs here, where each family on half the datasets took 166.
#: ``--archs`` runs the given architectures on every dataset (and every method) instead.
DEFAULT_GRID: dict[str, tuple[str, ...]] = {
    "resnet18": ("cifar100",),
    "resnet50": ("tiny_imagenet",),
}
#: The methods of the grid on an arch (``arch_settings.<arch>.methods``), where not all: the Bottleneck family runs
#: one method of each DAG path: PASS (search_pass, a hypernetwork), a shared sparsity training and its search
#: (slimming: sparsify -> search) and a training-free criterion (l1). Every method meets its target on resnet50 in
#: the fast tier (tests/test_methods.py, in-process); here a method's DAG path is the same on either block type, so
#: the other nine would add 19 jobs (~80 s) and no path.
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {"resnet50": ("pass", "slimming", "l1")}


# ----------------------------------------------------------------------------- images
def _image(rng: np.random.Generator, label: int, height: int, width: int) -> np.ndarray:
    """A uint8 HxWx3 image whose colour depends on its class (noise around a per-class tint)."""
    tint = np.array([(37 * label) % 256, (91 * label + 50) % 256, (151 * label + 100) % 256], dtype=np.float64)
    noise = rng.normal(0.0, 40.0, size=(height, width, 3))
    return np.clip(tint + noise, 0, 255).astype(np.uint8)


def _save_jpeg(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=90)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _labels(per_class: int, labels: list[int]) -> list[int]:
    return [c for c in labels for _ in range(per_class)]


# ----------------------------------------------------------------------------- CIFAR-10 / CIFAR-100 (pickles)
def _cifar(root: Path, rng: np.random.Generator, name: str) -> dict[str, str]:
    """torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` folders: pickled dicts with a ``(N, 3072)``
    uint8 ``data`` array (CHW rows) and the labels under ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).
    Returns ``{file: md5}`` of the batch files (for the checksum hook)."""
    from torchvision import datasets as D

    cls = D.CIFAR10 if name == "cifar10" else D.CIFAR100
    folder = root / cls.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    n_names = 10 if name == "cifar10" else 100
    key = "labels" if name == "cifar10" else "fine_labels"
    present = list(range(CLASSES))
    md5s = {}
    for files, per_class in ((cls.train_list, TRAIN_PER_CLASS), (cls.test_list, TEST_PER_CLASS)):
        labels = _labels(per_class, present)
        shares = np.array_split(np.arange(len(labels)), len(files))
        for (fname, _), idx in zip(files, shares):
            data = np.stack([_image(rng, labels[i], 32, 32).transpose(2, 0, 1).reshape(-1) for i in idx])
            entry: dict[str, Any] = {"batch_label": fname, "data": data, "filenames": [f"{i}.png" for i in idx]}
            entry[key] = [labels[i] for i in idx]
            if name == "cifar100":
                entry["coarse_labels"] = [labels[i] % 20 for i in idx]
            with open(folder / fname, "wb") as f:
                pickle.dump(entry, f, protocol=2)
            md5s[fname] = _md5(folder / fname)
    meta: dict[str, Any] = {cls.meta["key"]: [f"{name}_class_{c:03d}" for c in range(n_names)]}
    if name == "cifar100":
        meta["coarse_label_names"] = [f"superclass_{c:02d}" for c in range(20)]
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return md5s


def build_cifar10(root: Path, rng: np.random.Generator) -> dict[str, str]:
    return _cifar(root, rng, "cifar10")


def build_cifar100(root: Path, rng: np.random.Generator) -> dict[str, str]:
    return _cifar(root, rng, "cifar100")


# ----------------------------------------------------------------------------- Tiny-ImageNet (folders)
def build_tiny_imagenet(root: Path, rng: np.random.Generator) -> dict[str, str]:
    """``tiny-imagenet-200/``: ``train/<wnid>/images/*.JPEG``, ``val/images`` + ``val_annotations.txt``, words."""
    base = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577", "n01644900"][:CLASSES]
    for c, w in enumerate(wnids):
        for i in range(TRAIN_PER_CLASS):
            _save_jpeg(base / "train" / w / "images" / f"{w}_{i}.JPEG", _image(rng, c, 64, 64))
        (base / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(TRAIN_PER_CLASS))
        )
    lines = []
    for j, c in enumerate(_labels(TEST_PER_CLASS, list(range(CLASSES)))):
        _save_jpeg(base / "val" / "images" / f"val_{j}.JPEG", _image(rng, c, 64, 64))
        lines.append(f"val_{j}.JPEG\t{wnids[c]}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    names = ["goldfish", "European fire salamander", "bullfrog", "tailed frog"]
    (base / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in zip(wnids, names)))
    return {}


# ----------------------------------------------------------------------------- Food-101 (images + meta json)
def build_food101(root: Path, rng: np.random.Generator) -> dict[str, str]:
    """``food-101/images/<class>/<id>.jpg`` and ``meta/{train,test}.json`` (class -> ``["<class>/<id>", ...]``)."""
    base = root / "food-101"
    classes = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio"][:CLASSES]
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    n = 0
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for c, name in enumerate(classes):
            for _ in range(per_class):
                n += 1
                _save_jpeg(base / "images" / name / f"{n}.jpg", _image(rng, c, 48, 40))
                splits[split].setdefault(name, []).append(f"{name}/{n}")
    (base / "meta").mkdir(parents=True, exist_ok=True)
    for split, table in splits.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(table))
        (base / "meta" / f"{split}.txt").write_text("".join(f"{p}\n" for ps in table.values() for p in ps))
    (base / "meta" / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return {}


# ----------------------------------------------------------------------------- DTD (images + labels/*1.txt)
def build_dtd(root: Path, rng: np.random.Generator) -> dict[str, str]:
    """``dtd/dtd/images/<class>/<name>.jpg`` and ``dtd/dtd/labels/{train,val,test}1.txt`` (``class/name.jpg``)."""
    base = root / "dtd" / "dtd"
    classes = ["banded", "blotchy", "braided", "bubbly"][:CLASSES]
    n_val = 2  # partition 1's official train + val: the loader merges them into one pool
    counts = {"train": TRAIN_PER_CLASS - n_val, "val": n_val, "test": TEST_PER_CLASS}
    (base / "labels").mkdir(parents=True, exist_ok=True)
    n = 0
    for split, per_class in counts.items():
        lines = []
        for c, name in enumerate(classes):
            for _ in range(per_class):
                n += 1
                _save_jpeg(base / "images" / name / f"{name}_{n:04d}.jpg", _image(rng, c, 40, 48))
                lines.append(f"{name}/{name}_{n:04d}.jpg\n")
        (base / "labels" / f"{split}1.txt").write_text("".join(lines))
    return {}


# ----------------------------------------------------------------------------- Flowers-102 (jpg + .mat files)
def build_flowers102(root: Path, rng: np.random.Generator) -> dict[str, str]:
    """``flowers-102/jpg/image_%05d.jpg``, ``imagelabels.mat`` (1-based labels of every image) and ``setid.mat``
    (``trnid`` / ``valid`` / ``tstid`` image ids), written with scipy as the originals are MATLAB files. Returns the
    md5 of both ``.mat`` files under torchvision's keys (``label``, ``setid``)."""
    from scipy.io import savemat

    base = root / "flowers-102"
    n_val = 2  # the official train + val: the loader merges them into one pool
    counts = {"trnid": TRAIN_PER_CLASS - n_val, "valid": n_val, "tstid": TEST_PER_CLASS}
    ids: dict[str, list[int]] = {k: [] for k in counts}
    labels: list[int] = []
    for split, per_class in counts.items():
        for c in range(CLASSES):
            for _ in range(per_class):
                labels.append(c + 1)
                ids[split].append(len(labels))
                _save_jpeg(base / "jpg" / f"image_{len(labels):05d}.jpg", _image(rng, c, 44, 36))
    savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    savemat(base / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})
    return {"label": _md5(base / "imagelabels.mat"), "setid": _md5(base / "setid.mat")}


#: Every dataset of config/paper.yaml (and its transfers): name -> builder(data root, rng) -> md5 table.
BUILDERS: dict[str, Callable[[Path, np.random.Generator], dict[str, str]]] = {
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "tiny_imagenet": build_tiny_imagenet,
    "food101": build_food101,
    "dtd": build_dtd,
    "flowers102": build_flowers102,
}


def build_data(root: Path, datasets: list[str], seed: int = 0) -> dict[str, dict[str, str]]:
    """Write every dataset under ``root``; returns the md5 tables the checksum hook needs (per dataset)."""
    missing = sorted(set(datasets) - set(BUILDERS))
    if missing:
        raise KeyError(f"no fixture builder for {missing}; add one to tests/paper_fixtures.py BUILDERS")
    rng = np.random.default_rng(seed)
    return {name: BUILDERS[name](root, rng) for name in datasets}


# ----------------------------------------------------------------------------- ImageNet weights
def build_weights(weights_dir: str | Path, archs: list[str], seed: int = 0) -> list[Path]:
    """A random state_dict of torchvision's own ``resnetXX`` (1000-class head, as the real checkpoint) per arch,
    saved under the file name torch.hub caches it as, exactly where ``load_imagenet_weights`` looks for it."""
    import torch
    import torchvision

    from passprune.models.imagenet import weights_cache_path

    paths = []
    for arch in archs:
        torch.manual_seed(seed)
        state = getattr(torchvision.models, arch)(weights=None).state_dict()
        path = Path(weights_cache_path(arch, str(weights_dir)))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- the checksum hook
_HOOK = '''"""Written by tests/paper_fixtures.py for the paper-protocol miniature: on PYTHONPATH it replaces, in the job
processes, torchvision's published md5s of the CIFAR batch files and of Flowers-102's .mat files by those of the
fixtures (which cannot match the real archives). torchvision still checks them; nothing in passprune is patched."""

import importlib.abc
import importlib.machinery
import sys

MD5 = {md5!r}


def _patch(name, module):
    if name == "torchvision.datasets.cifar":
        for cls, key in ((module.CIFAR10, "cifar10"), (module.CIFAR100, "cifar100")):
            table = MD5.get(key, {{}})
            cls.train_list = [[f, table.get(f, m)] for f, m in cls.train_list]
            cls.test_list = [[f, table.get(f, m)] for f, m in cls.test_list]
    elif name == "torchvision.datasets.flowers102":
        table = MD5.get("flowers102", {{}})
        files = module.Flowers102._file_dict
        module.Flowers102._file_dict = {{k: (f, table.get(k, m)) for k, (f, m) in files.items()}}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in ("torchvision.datasets.cifar", "torchvision.datasets.flowers102"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module, _run=run, _name=name):
            _run(module)
            _patch(_name, module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
'''


def write_checksum_hook(site_dir: Path, md5: dict[str, dict[str, str]]) -> Path:
    """``site_dir/sitecustomize.py`` (see the module docstring); put ``site_dir`` on ``PYTHONPATH``."""
    site_dir.mkdir(parents=True, exist_ok=True)
    path = site_dir / "sitecustomize.py"
    path.write_text(_HOOK.format(md5={k: v for k, v in md5.items() if v}))
    return path


# ----------------------------------------------------------------------------- the config
def _shrink_training(section: dict[str, Any]) -> None:
    section.update(epochs=1, batch_size=BATCH, max_steps_per_epoch=STEPS_PER_EPOCH)


def _shrink_methods(methods: dict[str, Any]) -> dict[str, Any]:
    """Each method's options at miniature sizes: sparsity training 1 epoch of STEPS_PER_EPOCH steps, Taylor's
    gradient average over 2 batches, PASS's pad prompt scaled with the image (16 px at 224 px)."""
    out = {}
    for name, given in methods.items():
        opts = dict(given or {})  # a copy: the YAML anchor shares one dict among the PASS family
        if "epochs" in opts:
            opts.update(epochs=1, max_steps_per_epoch=STEPS_PER_EPOCH)
        if name.startswith("taylor"):
            opts["batches"] = 2
        if opts.get("prompt_width"):
            opts["prompt_width"] = max(1, round(opts["prompt_width"] * IMAGE_SIZE / 224))
        out[name] = opts
    return out


def _shrink_grid(cfg: dict[str, Any], archs: list[str] | None, every_method: bool = False) -> None:
    """``archs`` on every dataset, or (None) :data:`DEFAULT_GRID` through ``datasets`` and
    ``arch_settings.<arch>.datasets``, the transfers reading the rest, and :data:`DEFAULT_METHODS` through
    ``arch_settings.<arch>.methods``."""
    if archs:
        cfg["archs"] = list(archs)
        return
    grid = [d for d in cfg["datasets"] if any(d in ds for ds in DEFAULT_GRID.values())]
    transferred = {d for t in cfg.get("transfer", []) for d in (t["source"], t["target"])}
    missing = sorted(set(cfg["datasets"]) - set(grid) - transferred)
    unknown = sorted({d for ds in DEFAULT_GRID.values() for d in ds} - set(cfg["datasets"]))
    if missing or unknown or not set(DEFAULT_GRID) <= set(cfg["archs"]):
        raise ValueError(
            f"DEFAULT_GRID no longer matches config/paper.yaml (datasets {missing} run nowhere, {unknown} are not "
            f"the paper's; archs {sorted(DEFAULT_GRID)} must be among {cfg['archs']}); update it"
        )
    cfg["datasets"] = grid
    cfg["archs"] = list(DEFAULT_GRID)
    settings = cfg.setdefault("arch_settings", {})
    for arch, datasets in DEFAULT_GRID.items():
        settings.setdefault(arch, {})["datasets"] = [d for d in grid if d in datasets]
    for arch, methods in {} if every_method else DEFAULT_METHODS.items():
        unknown = sorted(set(methods) - set(cfg["methods"]))
        if unknown:
            raise ValueError(f"DEFAULT_METHODS names {unknown}, which config/paper.yaml does not run; update it")
        settings[arch]["methods"] = list(methods)


def miniature_config(
    cfg: dict[str, Any], *, device: str = "cpu", archs: list[str] | None = None, every_method: bool = False
) -> dict[str, Any]:
    """``cfg`` (config/paper.yaml) changed only in sizes: images, subsets, batches, epochs and steps, one seed, one
    target, the grid's (dataset, arch) pairs (:data:`DEFAULT_GRID`: ``datasets`` keeps the grid's, the transfers read
    the rest), threads and memory; plus the device, and tracking that never logs live (jobs write files; one
    ``track-sync`` mirrors them at the end, as on a cluster). The datasets read, methods, transfers, weights_dir and
    the protocol (pretrained starts, shared dense models, one fine-tuning budget) stay as the paper has them."""
    cfg = copy.deepcopy(cfg)
    cfg["device"] = device
    cfg["data"].update(
        val_size=VAL, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, image_size=IMAGE_SIZE, num_workers=0
    )
    _shrink_grid(cfg, archs, every_method)
    cfg["seeds"] = cfg["seeds"][:1]
    cfg["targets"] = [0.5] if 0.5 in cfg["targets"] else cfg["targets"][:1]
    for ov in cfg.get("dataset_overrides", {}).values():
        if "batch_size" in ov:
            ov["batch_size"] = BATCH
    _shrink_training(cfg["pretrain"]["train"])
    _shrink_training(cfg["finetune"])
    cfg["finetune"]["bn_recalibration_batches"] = 2
    cfg["search"].update(batch_size=BATCH, epochs=1)
    cfg["methods"] = _shrink_methods(cfg["methods"])
    for t in cfg.get("transfer", []):
        t["archs"] = [a for a in t.get("archs", cfg["archs"]) if a in cfg["archs"]] or cfg["archs"][:1]
    cfg["latency"] = {**cfg.get("latency", {}), "batch_sizes": [1, 2], "repeats": 2}
    cfg["tracking"] = {**cfg.get("tracking", {}), "live": False, "sync": True}  # files, one track-sync at the end
    gpu = 1 if device.startswith("cuda") else 0
    cfg["resources"] = {r: {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": gpu} for r in cfg["resources"]}
    return cfg


def weights_dir(cfg: dict[str, Any]) -> str:
    """Where the jobs read ImageNet weights (relative paths are the jobs' working directory)."""
    wd = cfg["pretrain"].get("weights_dir")
    if not wd:
        raise ValueError("config/paper.yaml names no pretrain.weights_dir: the miniature needs one to write weights")
    return wd


def datasets_of(cfg: dict[str, Any]) -> list[str]:
    """Every dataset a config reads: its datasets and both ends of every transfer."""
    used = list(cfg["datasets"])
    for t in cfg.get("transfer", []):
        used += [d for d in (t["source"], t["target"]) if d not in used]
    return used


def prepare(
    out: Path, *, device: str = "cpu", archs: list[str] | None = None, every_method: bool = False
) -> dict[str, Any]:
    """Write the miniature under ``out``: ``work/`` (Snakemake's working directory, holding the data root and the
    weights), ``site/sitecustomize.py`` and ``config.yaml``. Returns paths and the config. ``every_method``: every
    method on every arch (the GPU acceptance run), not :data:`DEFAULT_METHODS`."""
    out = Path(out).absolute()
    cfg = miniature_config(yaml.safe_load(PAPER.read_text()), device=device, archs=archs, every_method=every_method)
    work = out / "work"
    md5 = build_data(work / cfg["data"]["root"], datasets_of(cfg))
    build_weights(work / weights_dir(cfg), cfg["archs"])
    site = write_checksum_hook(out / "site", md5)
    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return {"work": work, "site": site.parent, "config": config, "cfg": cfg}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="write the paper-protocol miniature (data, weights, config)")
    p.add_argument("--out", type=Path, required=True, help="folder to write work/, site/ and config.yaml into")
    p.add_argument("--device", default="cpu", help="the config's device (cpu, cuda)")
    p.add_argument("--archs", nargs="*", default=None, help="run these on every dataset (default: DEFAULT_GRID)")
    p.add_argument(
        "--every-method", action="store_true", help="every method on every arch (default: DEFAULT_METHODS on resnet50)"
    )
    a = p.parse_args(argv)
    made = prepare(a.out, device=a.device, archs=a.archs, every_method=a.every_method)
    print(f"work={made['work']}\nsite={made['site']}\nconfig={made['config']}")


if __name__ == "__main__":
    main()
