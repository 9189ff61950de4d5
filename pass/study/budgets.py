"""A study's fine-tuning budgets: which there are, the ``finetune`` section each implies, and the total-steps rule.

Why budgets are a dimension of the plan: a verdict after 100 fine-tuning steps says how fast a pruned network
recovers, not what it reaches, and pruning rankings change with the retraining budget. A study that lists
``finetune_budgets`` fine-tunes every search's structure once per budget (each budget's entry overrides keys of
the ``finetune`` section); the dense models and the searches do not depend on the budget and are planned once.
A study without the key has one budget, its ``finetune`` section, and plans exactly what it always did: no budget
in any folder name, wildcard or ``--settings`` string.

The total-steps rules. Every structure gets the budget's fine-tuning, F steps. ``scratch`` first replays the
dense model's own pretraining, so its weights get dense + F steps, as the pruned networks' weights do (the
dense model's, then F): that holds at every budget. The sparsity-training baselines (the methods registered with
``trains_weights``) train the dense weights inside their search, W more steps. By default those W steps come on
top of F (they are reported as search cost). ``matched_total_steps: true`` counts them against the budget
instead: such a run fine-tunes F - W steps, the budget's epochs each capped at floor((F - W) / epochs) steps, so
its weights get the same number of updates after the dense model as a one-shot method's (fewer by at most
epochs - 1 when F - W is no multiple of the epochs; ``finetune_steps`` in metrics.json records what ran). The
learning-rate schedule follows from the shortened length as it does from any other (cosine over the run's steps).
"""

from __future__ import annotations

from typing import Any

from ..datasizes import steps_per_epoch
from ..settings import FinetuneSettings, defaults_of
from .core import Study

#: The fine-tuning folder of one budget, inside a run folder (only in studies that list budgets).
BUDGET_DIR = "ft-{budget}"


def listed(study: Study) -> list[dict[str, Any]]:
    """The ``finetune_budgets`` entries (an optional key: none when absent)."""
    return study.config.get("finetune_budgets") or []


def matched_total_steps(study: Study) -> bool:
    return bool(study.config.get("matched_total_steps", False))


def ft_dir(run_dir: str, budget: str | None) -> str:
    """Where a run's fine-tuning writes: the run folder itself, or its budget's folder inside it."""
    return run_dir if budget is None else f"{run_dir}/{BUDGET_DIR.format(budget=budget)}"


def finetune_section(study: Study, dataset: str, budget: str | None) -> dict[str, Any]:
    """The fine-tuning recipe of a dataset at a budget: :meth:`Study.stage_train`'s, with the budget's keys last
    (the budget is the study's variable, so it wins over a dataset's own finetune section)."""
    base = study.stage_train(dataset, "finetune")
    if budget is None:
        return base
    entry = next(b for b in listed(study) if b["name"] == budget)
    return {**base, **{k: v for k, v in entry.items() if k != "name"}}


def _recipe(section: dict[str, Any]) -> dict[str, Any]:
    """A finetune section with passprune.settings' defaults for the keys it leaves out."""
    return {**defaults_of(FinetuneSettings), **section}


def finetune_steps(study: Study, dataset: str, section: dict[str, Any]) -> int:
    """Optimiser steps a fine-tuning recipe runs on the dataset's training split (epochs x full batches, each epoch
    capped as the engine caps it)."""
    s = _recipe(section)
    return s["epochs"] * steps_per_epoch(study.train_images(dataset), s["batch_size"], s["max_steps_per_epoch"])


def weight_train_steps(study: Study, dataset: str, label: str | None) -> int:
    """Steps a method label trains the dense weights inside its search (0 for methods that do not): its epochs x
    full batches at the search batch size, each epoch capped by its ``max_steps_per_epoch``, defaults from the
    registration (workflow/registry.yaml)."""
    default = study.caps.weight_train.get(study.labels.get(label)) if label is not None else None
    if default is None:
        return 0
    o = {**default, **study.method_options(label)}
    if o["epochs"] <= 0:
        return 0
    batch = study.search_section(dataset)["batch_size"]
    return o["epochs"] * steps_per_epoch(study.train_images(dataset), batch, o.get("max_steps_per_epoch"))


def job_budget(
    study: Study, dataset: str, budget: str | None, label: str | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A fine-tuning job's ``finetune`` section and its ``budget`` record (None where the study neither lists
    budgets nor shortens this run: today's settings, unchanged). ``label`` is the run's method label for a run of
    the grid; None for a transfer run, whose weights always start from a dense model.

    The record (``name``, the budget's ``steps`` F, and under ``matched_total_steps`` the ``weight_train_steps`` W
    taken off this run) is what the summary's budget columns come from; the training reads only the section."""
    section = finetune_section(study, dataset, budget)
    w = weight_train_steps(study, dataset, label) if matched_total_steps(study) else 0
    if budget is None and not w:
        return section, None
    steps = finetune_steps(study, dataset, section)
    info: dict[str, Any] = ({"name": budget} if budget is not None else {}) | {"steps": steps}
    if w:
        info["weight_train_steps"] = w
        section = {**section, "max_steps_per_epoch": max(steps - w, 0) // max(_recipe(section)["epochs"], 1)}
    return section, info


def budget_errors(study: Study) -> list[str]:
    """Budget names are unique (a name names a folder); under ``matched_total_steps`` every weight-training run
    keeps at least one fine-tuning step per epoch at every budget."""
    names = [b["name"] for b in listed(study)]
    errors = [
        f"finetune_budgets: the name {n!r} is given {names.count(n)} times; a budget's name names its folder"
        for n in sorted(set(names))
        if names.count(n) > 1
    ]
    return errors or (_matched_errors(study) if matched_total_steps(study) else [])


def _matched_errors(study: Study) -> list[str]:
    from ..datasizes import SIZES

    errors = []
    runs = {(d, label) for d, a in study.grid_pairs() for label in study.labels_for(a)}
    runs |= {(t["target"], t["method"]) for t in study.transfers if "target_search" in t["kinds"]}
    for d in sorted({d for d, _ in runs} - set(SIZES)):
        errors.append(f"matched_total_steps: dataset {d!r} has no train size in pass/datasizes.py (SIZES)")
    for d, label in sorted(r for r in runs if r[0] in SIZES):
        w = weight_train_steps(study, d, label)
        for b in study.budgets if w else []:
            section = finetune_section(study, d, b)
            steps, epochs = finetune_steps(study, d, section), _recipe(section)["epochs"]
            if steps - w < max(epochs, 1):
                errors.append(
                    f"matched_total_steps: {label}'s {w} weight-training steps on {d} leave {steps - w} of "
                    f"{f'budget {b!r}' if b else 'the finetune budget'}'s {steps} fine-tuning steps, fewer than "
                    f"one per epoch ({epochs}); shorten its sparsity training or lengthen the budget"
                )
    return errors
