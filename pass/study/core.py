"""A validated study: the config with its schema defaults, and what its keys mean for each dataset and method.

The lookups here are the rules by which a study's keys combine (a dataset's overrides onto the study's
sections, a variant's options in place of its base's, a control's reference); :mod:`.jobsettings` assembles
them into each job's settings and :mod:`.checks` tests them against each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import ModelSettings, TrackingSettings, defaults_of
from .layout import Layout, fmt_target
from .registry import Capabilities

#: dataset_overrides.<dataset>: data keys (image_size, root, ...) are merged onto `data`; these are the dataset's
#: own training settings (a stage's section > the dataset's batch_size > the study's; see Study.stage_train).
OVERRIDE_STAGE_KEYS = ("pretrained", "batch_size", "pretrain", "finetune", "search")
#: arch_settings keys that choose what the grid runs on an arch, not how its model is built.
GRID_KEYS = ("datasets", "methods")


@dataclass
class Study:
    """One config, validated by the schema (defaults filled). Build it with :func:`passprune.study.check`."""

    config: dict[str, Any]
    repo: Path
    caps: Capabilities
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------------- names
    @property
    def name(self) -> str:
        return self.config["study"]

    @property
    def layout(self) -> Layout:
        return Layout(self.name)

    @property
    def targets(self) -> list[str]:
        """The MACs targets as their run folders spell them."""
        return [fmt_target(t) for t in self.config["targets"]]

    @property
    def seeds(self) -> list[int]:
        return self.config["seeds"]

    @property
    def budgets(self) -> list[str | None]:
        """The fine-tuning budgets' names (``finetune_budgets``); ``[None]`` when the study lists none: one budget,
        its ``finetune`` section, and no budget in any folder or setting (:mod:`.budgets`)."""
        return [b["name"] for b in self.config.get("finetune_budgets") or []] or [None]

    @property
    def transfers(self) -> list[dict[str, Any]]:
        """The transfer entries (an optional key: none when absent)."""
        return self.config.get("transfer", [])

    @property
    def labels(self) -> dict[str, str]:
        """Every method label of the study -> the registered method it runs (a variant runs its ``base``)."""
        out = {m: m for m in self.config["methods"]}
        out.update({name: v["base"] for name, v in self.config["variants"].items()})
        return out

    def labels_for(self, arch: str) -> list[str]:
        """The method labels the main grid runs on ``arch``: every label, or ``arch_settings.<arch>.methods``
        (e.g. the costly baselines on one arch only; dense models and transfers are not restricted by it)."""
        only = self.config["arch_settings"].get(arch, {}).get("methods")
        return [label for label in self.labels if only is None or label in only]

    @property
    def tracking(self) -> TrackingSettings:
        """The ``tracking`` section, typed (its defaults live in passprune.settings)."""
        return TrackingSettings.of(self.config["tracking"])

    @property
    def claims(self) -> str | None:
        """The claims file, relative to the working directory, else to the repository; None when not set or
        not found (:mod:`.checks` reports the latter)."""
        claims = self.config["claims"]
        if not claims:
            return None
        return next((str(p) for p in (Path(claims), self.repo / claims) if p.exists()), None)

    # ------------------------------------------------------------------------- methods
    def is_pass(self, label: str) -> bool:
        """PASS or an ablation (or a variant of one): it saves a hypernetwork and its length may be in epochs."""
        return self.labels.get(label) in self.caps.pass_methods

    def method_options(self, label: str) -> dict[str, Any]:
        """The options a method label runs with (a variant: its own options, not its base's)."""
        if label in self.config["variants"]:
            return self.config["variants"][label].get("options") or {}
        return self.config["methods"].get(label) or {}

    def shares_sparsity(self, label: str) -> bool:
        """True when a label's search starts from a shared sparsity training (rule ``sparsify``): its method's
        training does not depend on the MACs target (workflow/registry.yaml ``shared_sparsity``) and it trains
        (``epochs`` > 0). GReg-1 is not among them (docs/method.md)."""
        defaults = self.caps.shared_sparsity.get(self.labels.get(label, ""))
        return defaults is not None and {**defaults, **self.method_options(label)}["epochs"] > 0

    def reinits(self, label: str) -> bool:
        """Whether a label's fine-tuning retrains from a fresh initialisation (``scratch``): it first replays the
        dense model's pretraining, so its fine-tuning jobs are the study's longest."""
        return self.labels.get(label) in self.caps.reinit_methods

    def reference_of(self, label: str) -> str | None:
        """The method label whose structure a control (random_widths, scratch) reuses; None for other methods."""
        default = self.caps.reference_methods.get(self.labels.get(label))
        if default is None:
            return None
        return self.method_options(label).get("reference", default)

    # ------------------------------------------------------------------------- datasets and archs
    def grid_pairs(self) -> list[tuple[str, str]]:
        """(dataset, arch) pairs of the main grid; ``arch_settings.<arch>.datasets`` restricts an arch."""
        datasets = self.config["datasets"]
        restrict = self.config["arch_settings"]
        return [
            (d, a) for d in datasets for a in self.config["archs"] if d in restrict.get(a, {}).get("datasets", datasets)
        ]

    def transfer_archs(self, t: dict[str, Any]) -> list[str]:
        return t.get("archs", self.config["archs"])

    def transfer_targets(self, t: dict[str, Any]) -> list[Any]:
        return t.get("targets", self.config["targets"])

    def all_pairs(self) -> set[tuple[str, str]]:
        """Every (dataset, arch) with a dense model: the main grid and both sides of each transfer."""
        pairs = set(self.grid_pairs())
        for t in self.transfers:
            pairs |= {(d, a) for d in (t["source"], t["target"]) for a in self.transfer_archs(t)}
        return pairs

    def used_datasets(self) -> set[str]:
        return set(self.config["datasets"]) | {d for t in self.transfers for d in (t["source"], t["target"])}

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        """dataset_overrides (an optional key: none when absent)."""
        return self.config.get("dataset_overrides", {})

    def override(self, dataset: str) -> dict[str, Any]:
        return self.overrides.get(dataset, {})

    def data_settings(self, dataset: str) -> dict[str, Any]:
        """`data`, with the dataset's own data keys (dataset_overrides.<dataset>) merged on."""
        ov = self.override(dataset)
        return {**self.config["data"], **{k: v for k, v in ov.items() if k not in OVERRIDE_STAGE_KEYS}}

    def stage_train(self, dataset: str, stage: str) -> dict[str, Any]:
        """The recipe of a dataset's `pretrain` or `finetune` jobs: the study's (pretrain.train / finetune), then
        the dataset's batch_size, then its own section (dataset_overrides.<dataset>.pretrain / .finetune)."""
        base = self.config["pretrain"]["train"] if stage == "pretrain" else self.config["finetune"]
        ov = self.override(dataset)
        given = {"batch_size": ov["batch_size"]} if "batch_size" in ov else {}
        return {**base, **given, **ov.get(stage, {})}

    def search_section(self, dataset: str) -> dict[str, Any]:
        """`search` for a dataset: the study's, then the dataset's batch_size, then its own search section."""
        ov = self.override(dataset)
        given = {"batch_size": ov["batch_size"]} if "batch_size" in ov else {}
        return {**self.config["search"], **given, **ov.get("search", {})}

    def model_settings(self, dataset: str, arch: str) -> dict[str, Any]:
        """How a dense model is built: passprune.settings.ModelSettings, every field stated (the dense digest
        hashes them)."""
        given = {k: v for k, v in self.config["arch_settings"].get(arch, {}).items() if k not in GRID_KEYS}
        pretrain = self.config["pretrain"]
        if "weights_dir" in pretrain:
            given["weights_dir"] = pretrain["weights_dir"]
        given["pretrained"] = self.override(dataset).get("pretrained", pretrain["pretrained"])
        return {**defaults_of(ModelSettings), **given}

    def train_images(self, dataset: str) -> int:
        """Images in the training split of a dataset's jobs (passprune.datasizes; carved as the jobs carve it)."""
        from ..datasizes import split_sizes

        data = self.data_settings(dataset)
        return split_sizes(dataset, data["val_size"], data.get("train_subset"), data.get("test_subset"))["train"]

    def search_steps(self, dataset: str) -> int | None:
        """PASS-family search length in steps from `search.epochs` (None when no epochs are given): epochs x the
        full batches one epoch of the dataset's training split holds at its search batch size (PASS drops the last
        partial batch)."""
        s = self.search_section(dataset)
        return s["epochs"] * (self.train_images(dataset) // s["batch_size"]) if s.get("epochs") else None

    def resolved_config(self) -> dict[str, Any]:
        """The config as the study runs it (for study.json and the study's MLflow run): every tracking key
        stated, its defaults from passprune.settings (``state_file`` is set by the workflow, not a config key)."""
        tracking = {k: v for k, v in dataclasses.asdict(self.tracking).items() if k != "state_file"}
        return {**self.config, "tracking": tracking}
