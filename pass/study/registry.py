"""What planning a study needs to know about the registries, read from ``workflow/registry.yaml``.

Why a generated file and not ``passprune.methods``: importing the methods imports torch (seconds per process),
and Snakemake plans a study on a login node. ``passprune registry --write`` generates the file from the
registries; ``tests/test_registry_export.py`` fails when it is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .schema import REPO

REGISTRY_PATH = Path("workflow") / "registry.yaml"


@dataclass(frozen=True)
class Capabilities:
    """The registered methods' capabilities the workflow plans with, and the archs with ImageNet weights."""

    pass_methods: tuple[str, ...]  # PASS and its ablations: they save a hypernetwork (hypernetwork transfer)
    #: controls that read another method's structure (option `reference`) -> the method they read by default
    reference_methods: dict[str, str]
    imagenet_archs: tuple[str, ...]
    #: methods that train the dense weights inside their search -> their default training length (``epochs``,
    #: ``max_steps_per_epoch``): ``matched_total_steps`` counts those steps against the fine-tuning budget
    weight_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: methods whose sparsity training does not depend on the MACs target -> its options with their defaults: the
    #: workflow trains once per (dataset, arch, seed, method, these options) (rule ``sparsify``) for every target
    shared_sparsity: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: methods whose fine-tuning retrains from a fresh initialisation (``scratch``): the longest fine-tunings
    reinit_methods: tuple[str, ...] = ()


@lru_cache(maxsize=4)
def capabilities(repo: Path = REPO) -> Capabilities:
    data = yaml.safe_load((repo / REGISTRY_PATH).read_text())
    configurable = {m: v for m, v in data["methods"].items() if not v["transfer_only"]}
    return Capabilities(
        pass_methods=tuple(sorted(m for m, v in configurable.items() if v["saves_hypernet"])),
        reference_methods={m: v["reference"] for m, v in sorted(configurable.items()) if v["needs_reference"]},
        imagenet_archs=tuple(data["imagenet_archs"]),
        weight_train={m: v["weight_train"] for m, v in sorted(configurable.items()) if v.get("trains_weights")},
        shared_sparsity={m: v["shared_sparsity"] for m, v in sorted(configurable.items()) if "shared_sparsity" in v},
        reinit_methods=tuple(sorted(m for m, v in configurable.items() if v.get("reinit"))),
    )
