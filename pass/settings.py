"""Typed settings of every job stage: the one home of their defaults.

The workflow resolves the study config into one JSON object per job (``--settings``), holding only what that
job depends on, so Snakemake reruns exactly the jobs whose settings changed. This module turns that object
into dataclasses, rejecting unknown keys with the key's full name, so a misspelt option fails at the start of
the job instead of being silently ignored by a ``.get(key, default)`` deep in the code. The config schema
(``workflow/schemas/config.schema.yaml``) validates the study file before any job runs; its per-stage
properties must equal these fields and state no ``default:`` of their own, and ``passprune list`` prints these
defaults (``tests/test_settings.py`` checks all three).

Torch-free on purpose: the report layer and ``passprune list`` read it without loading PyTorch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


def parse(cls: type[T], given: dict[str, Any] | None, where: str) -> T:
    """``cls(**given)`` with a clear error on an unknown key or a non-object value (``where`` names it)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError(f"settings {where}: expected an object, got {type(given).__name__} {given!r}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"settings {where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**given)


def defaults_of(cls: type) -> dict[str, Any]:
    """Field name -> default value (what ``passprune list`` prints and the schema test compares)."""
    out = {}
    for f in fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


@dataclass(frozen=True)
class DataSettings:
    """Which images a job sees. The validation split is carved from the training set (checkpoints are chosen
    on it, never on test); ``train_subset`` / ``test_subset`` are counts or fractions of what remains."""

    root: str = "data"
    val_size: int | float = 0.1
    train_subset: int | float | None = None
    test_subset: int | float | None = None
    image_size: int | None = None  # None: the dataset's native resolution
    num_workers: int = 0


@dataclass(frozen=True)
class ModelSettings:
    """How the dense network is built (pretraining only; later stages rebuild it from its checkpoint)."""

    width: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False  # start from torchvision's ImageNet weights (torchvision archs only)
    weights_dir: str | None = None


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; one instance per training phase (pretrain, finetune, sparsity training)."""

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | onecycle | constant
    label_smoothing: float = 0.1
    eval_batch_size: int = 512
    augment: bool = True  # random translate + flip (the dataset's own recipe)
    max_steps_per_epoch: int | None = None  # caps an epoch (short budgets, smoke runs)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "train") -> TrainSettings:
        return parse(cls, d, where)

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"settings train.schedule: {self.schedule!r}; use cosine, onecycle or constant")


@dataclass(frozen=True)
class FinetuneSettings(TrainSettings):
    """The one fine-tuning budget every method gets, plus the BN re-estimation every pruned net gets first
    (a fine-tuning option only: a dense model's BN statistics are its own)."""

    bn_recalibration_batches: int = 20

    def train(self) -> TrainSettings:
        """The optimisation part, for the training loop."""
        d = dataclasses.asdict(self)
        d.pop("bn_recalibration_batches")
        return TrainSettings(**d)


@dataclass(frozen=True)
class BudgetInfo:
    """Which of a study's fine-tuning budgets a fine-tuning job runs: set by the workflow (passprune.study.budgets)
    only in studies that list ``finetune_budgets`` or match total steps, and recorded with the run for the summary's
    budget columns. The training never reads it: the budget itself is the ``finetune`` section."""

    name: str | None = None  # the budget's name (None: the study's one budget)
    steps: int | None = None  # the budget's fine-tuning steps F (what a run starting from dense weights gets)
    weight_train_steps: int = 0  # matched_total_steps: the search's weight-training steps taken off F for this run


@dataclass(frozen=True)
class SearchSettings:
    """Shared by every method's search: the batch size of its data and the per-group pruning ceiling."""

    batch_size: int = 128
    max_prune_frac: float = 0.9  # no dependency group loses more than this fraction of its channels


@dataclass(frozen=True)
class LatencySettings:
    """Dense-vs-pruned latency, measured interleaved in the fine-tuning job."""

    enabled: bool = True
    batch_sizes: tuple[int, ...] = (1, 64)
    repeats: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a study is mirrored to MLflow (``passprune.tracking``). Jobs receive it through the
    environment (``PASSPRUNE_TRACKING``), not their ``--settings``: moving the store must never rerun a job."""

    enabled: bool = True
    uri: str | None = None  # None: sqlite:///results/mlflow.db; the MLFLOW_TRACKING_URI variable overrides it
    experiment: str = "passprune"  # prefix: a study logs to <experiment>/<study>
    log_models: bool = False  # also log each job's model.pt as an artifact
    sync: bool = True  # `passprune track-sync` at the end of the workflow
    # false (default): jobs write only files and the end-of-workflow track-sync mirrors them (no mlflow import
    # per job, one writer: safe on a cluster); true: each job logs as it runs (an MLflow server, or one machine)
    live: bool = False
    state_file: str = "results/mlflow_study.json"  # set by the workflow to its study's (not a config key)

    @classmethod
    def of(cls, given: TrackingSettings | dict[str, Any] | None) -> TrackingSettings:
        """Parse a config's ``tracking`` mapping (unknown keys rejected); an instance passes through."""
        return given if isinstance(given, cls) else parse(cls, given, "tracking")


@dataclass(frozen=True)
class PlateauRule:
    """The report's test of a dense model's training (``passprune.report.dense``): it has converged when the best
    validation top-1 of its last ``window`` epochs improves on the best of the epochs before them by less than
    ``min_gain`` points. A model with ``window`` epochs or fewer cannot be judged (nothing before the window).
    A report setting (``build_report(plateau=...)``; the workflow's report uses these defaults): no job reads it,
    so changing it reruns no job."""

    window: int = 3
    min_gain: float = 0.2  # top-1 points

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"plateau rule: window {self.window!r} must be a whole number of epochs >= 1")
        if not isinstance(self.min_gain, (int, float)) or isinstance(self.min_gain, bool) or self.min_gain < 0:
            raise ValueError(f"plateau rule: min_gain {self.min_gain!r} must be a number of top-1 points >= 0")

    def text(self) -> str:
        """The rule in words, as the report states it."""
        return (
            f"a dense model has converged when the best validation top-1 of its last {self.window} epochs improves on "
            f"the best of all epochs before them by less than {self.min_gain:g} points"
        )


@dataclass(frozen=True)
class LongerRule:
    """The report's decisive test of a dense model's training when the study also trained a longer twin of it
    (``pretrain.convergence_epochs``: the same settings, more epochs): the study's dense models have converged
    when the twins' best validation top-1 exceeds theirs by less than ``min_gain`` points on average, paired by
    seed (the 95% t-interval is shown beside it). Why not the plateau rule alone: a one-cycle or cosine schedule
    anneals the learning rate to zero in its last epochs, so accuracy climbs there by design, however long the
    training; only training longer shows whether more epochs would still pay. A report setting, like
    :class:`PlateauRule` (no job reads it)."""

    min_gain: float = 0.5  # top-1 points, mean over seeds

    def __post_init__(self) -> None:
        if not isinstance(self.min_gain, (int, float)) or isinstance(self.min_gain, bool) or self.min_gain < 0:
            raise ValueError(f"longer-training rule: min_gain {self.min_gain!r} must be a number of top-1 points >= 0")

    def text(self) -> str:
        """The rule in words, as the report states it."""
        return (
            "the study's dense models have converged when twins trained longer (same settings, more epochs) reach a "
            f"best validation top-1 less than {self.min_gain:g} points higher on average over seeds (paired)"
        )


@dataclass(frozen=True)
class JobSettings:
    """Everything one job reads from ``--settings`` (the sections a stage does not use stay at defaults).

    ``tracking`` reaches jobs through the environment, not through settings that decide reruns
    (``stages.common.parse_settings`` merges it in).
    """

    device: str = "auto"
    threads: int | None = None
    keep_checkpoints: bool = False  # keep a finished job's resume checkpoint (debugging); off: it is removed
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)
    method_options: dict[str, Any] = field(default_factory=dict)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    budget: BudgetInfo | None = None  # a fine-tuning job's budget record (studies with several budgets)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, stage: str = "job") -> JobSettings:
        """Parse one job's settings: every section under its own name (``train``: a dense model's pretraining,
        ``finetune``: the fine-tuning budget, ``search``: the searches'). ``stage`` names the job in errors."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)} - {"raw"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"settings: unknown keys {unknown}; known: {sorted(known)}")
        if "bn_recalibration_batches" in (d.get("train") or {}):
            raise ValueError(
                "settings train: bn_recalibration_batches is a fine-tuning option (BN re-estimation "
                f"of a pruned net), not a {stage} one; set it under finetune"
            )
        if stage == "finetune" and "train" in d:  # a finetune job would silently run the default budget
            raise ValueError("settings train: a finetune job reads its budget under finetune, not train")
        kw: dict[str, Any] = {k: d[k] for k in ("device", "threads", "keep_checkpoints") if k in d}
        kw["tracking"] = TrackingSettings.of(d.get("tracking"))
        kw["method_options"] = dict(d.get("method_options") or {})
        if d.get("budget") is not None:
            kw["budget"] = parse(BudgetInfo, d["budget"], "budget")
        for name, section in _SECTION_TYPES.items():
            kw[name] = parse(section, d.get(name), name)
        return cls(**kw, raw=d)


#: The typed sections of a job's settings, by their key.
_SECTION_TYPES: dict[str, type] = {
    "data": DataSettings,
    "model": ModelSettings,
    "train": TrainSettings,
    "finetune": FinetuneSettings,
    "search": SearchSettings,
    "latency": LatencySettings,
}


#: Stage sections in the order ``passprune list`` prints them, with the config key each comes from.
SECTIONS: dict[str, type] = {
    "data": DataSettings,
    "pretrain.train": TrainSettings,
    "finetune": FinetuneSettings,
    "search": SearchSettings,
    "latency": LatencySettings,
    "tracking": TrackingSettings,
}
