"""Each job's ``--settings``: only what that job depends on, so Snakemake reruns exactly the jobs whose settings
changed (it compares the params), and two studies share a dense model exactly when its settings are identical.

Each stage's recipe travels under its own name: ``train`` for a dense model's pretraining, ``finetune`` for the
fine-tuning budget, ``search`` for the searches. The jobs parse these objects with passprune.settings, which
holds every default; nothing here restates one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .budgets import job_budget
from .core import Study
from .layout import dense_dir as _dense_dir

STAGES = ("pretrain", "sparsify", "search", "finetune")


def _common(study: Study, dataset: str) -> dict[str, Any]:
    return {"data": study.data_settings(dataset), "device": study.config["device"]}


def pretrain_settings(study: Study, dataset: str, arch: str, epochs: int | None = None) -> dict[str, Any]:
    """A dense model's settings; their JSON names its folder (:func:`dense_id`), so its layout never changes.
    ``epochs``: the convergence twin's length (``pretrain.convergence_epochs``), the recipe otherwise unchanged."""
    train = study.stage_train(dataset, "pretrain")
    return {
        **_common(study, dataset),
        "model": study.model_settings(dataset, arch),
        "train": train if epochs is None else {**train, "epochs": epochs},
    }


def search_settings(study: Study, dataset: str, method: str) -> dict[str, Any]:
    """A search's settings; ``method`` is the run's label (a variant's name, or the method a transfer rule runs).
    The workflow-only ``search.epochs`` becomes the PASS family's ``steps`` here."""
    s = _common(study, dataset)
    s["search"] = {k: v for k, v in study.search_section(dataset).items() if k != "epochs"}
    s["method_options"] = study.method_options(method)
    steps = study.search_steps(dataset) if study.is_pass(method) else None
    if steps is not None:
        s["method_options"] = {**s["method_options"], "steps": steps}
    return s


def sparsify_settings(study: Study, dataset: str, label: str) -> dict[str, Any]:
    """A shared sparsity training's settings: only what that training reads -- the data, the device, the search
    batch size and the method's training options with their registered defaults (workflow/registry.yaml), so two
    labels (or studies' variants) that train alike get equal settings, one digest (:func:`sparse_id`) and one job.
    The pruning options (slimming's keep_coupled, DepGraph's steps and normalizer) are not among them."""
    defaults = study.caps.shared_sparsity[study.labels[label]]
    given = study.method_options(label)
    s = _common(study, dataset)
    s["search"] = {k: v for k, v in study.search_section(dataset).items() if k == "batch_size"}
    s["method_options"] = {k: given.get(k, v) for k, v in defaults.items()}
    return s


def sparse_id(study: Study, dataset: str, label: str) -> str:
    """Digest of a label's shared sparsity training (its method and :func:`sparsify_settings`): names its folder."""
    key = ("sparse_id", dataset, label)
    if key not in study.cache:
        text = settings_json({"method": study.labels[label], **sparsify_settings(study, dataset, label)})
        study.cache[key] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return study.cache[key]


def sparse_dir(study: Study, dataset: str, arch: str, seed: int | str, label: str) -> str:
    """The folder of the sparsity training a label's searches on (dataset, arch, seed) start from."""
    return study.layout.sparse_dir(dataset, arch, seed, study.labels[label], sparse_id(study, dataset, label))


def sparse_label(study: Study, dataset: str, method: str, digest: str) -> str:
    """A label whose shared sparsity training is ``method``'s with digest ``digest`` on ``dataset`` (the rule
    ``sparsify`` knows only the folder's wildcards; every such label has the same settings)."""
    for label, base in study.labels.items():
        if base == method and study.shares_sparsity(label) and sparse_id(study, dataset, label) == digest:
            return label
    raise ValueError(f"no method label of the study trains {method} on {dataset} with digest {digest}")


def finetune_settings(
    study: Study, dataset: str, budget: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """A fine-tuning job's settings: the dataset's fine-tuning budget (the study's ``finetune``, or one of its
    ``finetune_budgets``), shared by every method and transfer run on it; under ``matched_total_steps`` a
    weight-training ``label`` runs it shortened by its search's weight-training steps (:mod:`.budgets`). A
    ``budget`` record is added only in studies that list budgets or shorten this run."""
    section, info = job_budget(study, dataset, budget, label)
    out = {**_common(study, dataset), "finetune": section, "latency": study.config["latency"]}
    return out if info is None else {**out, "budget": info}


def job_settings(study: Study, stage: str, **wildcards: Any) -> dict[str, Any]:
    """The settings object of one job: ``stage`` is ``pretrain`` (wildcards dataset, arch), ``sparsify`` (dataset,
    method: the registered method, sparse_id: its folder's digest), ``search`` (dataset, method: the run's label)
    or ``finetune`` (dataset; budget in studies that list budgets; method: the run's label, None for a transfer
    run); other wildcards are ignored (Snakemake passes them all)."""
    if stage == "pretrain":
        d, a = wildcards["dataset"], wildcards["arch"]
        twin = wildcards.get("dense_id") is not None and wildcards["dense_id"] == twin_dense_id(study, d, a)
        return pretrain_settings(study, d, a, study.config["pretrain"].get("convergence_epochs") if twin else None)
    if stage == "sparsify":
        d = wildcards["dataset"]
        return sparsify_settings(study, d, sparse_label(study, d, wildcards["method"], wildcards["sparse_id"]))
    if stage == "search":
        return search_settings(study, wildcards["dataset"], wildcards["method"])
    if stage == "finetune":
        return finetune_settings(study, wildcards["dataset"], wildcards.get("budget"), wildcards.get("method"))
    raise ValueError(f"no job settings for stage {stage!r}; stages: {STAGES}")


def settings_json(settings: dict[str, Any]) -> str:
    """What a job receives as ``--settings`` (keys sorted, so equal settings are equal strings)."""
    return json.dumps(settings, sort_keys=True)


def dense_id(study: Study, dataset: str, arch: str) -> str:
    """Digest of what a dense model depends on (data, model, training recipe, device); not of where it is logged
    or how many threads it uses. Two studies with the same digest share the model."""
    key = ("dense_id", dataset, arch)
    if key not in study.cache:
        text = settings_json(pretrain_settings(study, dataset, arch))
        study.cache[key] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return study.cache[key]


def dense_dir(study: Study, dataset: str, arch: str, seed: int | str) -> str:
    return _dense_dir(dataset, arch, seed, dense_id(study, dataset, arch))


def twin_dense_id(study: Study, dataset: str, arch: str) -> str | None:
    """Digest of the dense model's convergence twin (``pretrain.convergence_epochs``), None without one."""
    epochs = study.config["pretrain"].get("convergence_epochs")
    if epochs is None:
        return None
    key = ("twin_dense_id", dataset, arch)
    if key not in study.cache:
        text = settings_json(pretrain_settings(study, dataset, arch, epochs))
        study.cache[key] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return study.cache[key]


def twin_dense_dir(study: Study, dataset: str, arch: str, seed: int | str) -> str | None:
    """Where the convergence twin of a seed's dense model lives (next to it), None without one."""
    twin = twin_dense_id(study, dataset, arch)
    return None if twin is None else _dense_dir(dataset, arch, seed, twin)
