"""What JSON schema cannot say: the cross-references between a config's keys.

They run after the schema, so the layout is valid. Every check returns its problems as lines that name the key
(and the transfer entry) they are about and how to fix them; :func:`passprune.study.check` lists them all at
once, before any job runs, where a job would otherwise fail hours into a study.
"""

from __future__ import annotations

from typing import Any

from .budgets import budget_errors
from .core import Study


def transfer_errors(study: Study) -> list[str]:
    """Each transfer entry: two tasks, a method of the study that fits its kinds, no run repeated."""
    errors, transfer, cfg = [], study.transfers, study.config
    for i, t in enumerate(transfer):
        where = f"transfer[{i}] ({t['source']} -> {t['target']}, {t['method']})"
        if t["source"] == t["target"]:
            errors.append(f"{where}: source and target are both {t['source']!r}; transfer needs two different tasks")
        if t["method"] not in cfg["methods"]:
            errors.append(
                f"{where}: method {t['method']!r} is not in methods: {sorted(cfg['methods'])} "
                "(the source task's search runs with the options given there)"
            )
        if "hypernet" in t["kinds"] and t["method"] not in study.caps.pass_methods:
            errors.append(
                f"{where}: kinds has 'hypernet', which needs a PASS method {list(study.caps.pass_methods)}, "
                f"got method {t['method']!r}"
            )
        if "hypernet" in t["kinds"] and t["method"] == "pass_noprompt":
            errors.append(f"{where}: hypernet transfer adapts the prompt; pass_noprompt has none")
        errors += [
            f"{where}: repeats runs of transfer[{j}] (same source, target, method, kinds, archs, targets)"
            for j, u in enumerate(transfer[:i])
            if _same_runs(study, u, t)
        ]  # the same run twice: duplicate rows in summary.csv
    return errors


def _same_runs(study: Study, u: dict[str, Any], t: dict[str, Any]) -> bool:
    """Whether two transfer entries share a run (same source, target and method, and a kind, arch and target)."""
    return bool(
        (u["source"], u["target"], u["method"]) == (t["source"], t["target"], t["method"])
        and set(u["kinds"]) & set(t["kinds"])
        and set(study.transfer_archs(u)) & set(study.transfer_archs(t))
        and {float(x) for x in study.transfer_targets(u)} & {float(x) for x in study.transfer_targets(t)}
    )


def unused_key_errors(study: Study) -> list[str]:
    """dataset_overrides and arch_settings must be about datasets and archs the study runs."""
    errors, cfg = [], study.config
    used_datasets = study.used_datasets()
    for name in study.overrides:
        if name not in used_datasets:
            errors.append(f"dataset_overrides: {name!r} is not used by datasets {cfg['datasets']} or transfer")
    used_archs = set(cfg["archs"]) | {a for t in study.transfers for a in t.get("archs", [])}
    for name, a_set in cfg["arch_settings"].items():
        if name not in used_archs:
            errors.append(f"arch_settings: {name!r} is not in archs: {cfg['archs']} (nor in any transfer's archs)")
        errors += [
            f"arch_settings.{name}.datasets: {d!r} is not in datasets: {cfg['datasets']}"
            for d in a_set.get("datasets", [])
            if d not in cfg["datasets"]
        ]
        only = a_set.get("methods", [])
        errors += [
            f"arch_settings.{name}.methods: {m!r} is not a method of this study ({sorted(study.labels)}); "
            "add it to methods (or variants) or drop it here"
            for m in only
            if m not in study.labels
        ]
        errors += [
            f"arch_settings.{name}.methods: {m!r} reuses {ref!r}'s structure, which does not run on {name}; "
            f"add {ref!r} to arch_settings.{name}.methods"
            for m in only
            if (ref := study.reference_of(m)) is not None and ref in study.labels and ref not in only
        ]
    return errors


def target_folder_errors(study: Study) -> list[str]:
    """Run folders are named macs{target:g}: two targets that print alike would share a folder."""
    errors = []
    lists = [("targets", study.config["targets"])]
    lists += [(f"transfer[{i}].targets", t["targets"]) for i, t in enumerate(study.transfers) if "targets" in t]
    for key, targets in lists:
        names = [f"{float(x):g}" for x in targets]
        if len(set(names)) < len(names):
            errors.append(
                f"{key}: {targets} name the same run folder twice ({names}); give targets that differ "
                "in the first 6 significant digits"
            )
    return errors


def stage_option_errors(study: Study) -> list[str]:
    """Options a stage would reject at run time (bn_recalibration_batches outside fine-tuning), and a tracking
    setting under which no job would ever reach MLflow."""
    errors, cfg = [], study.config
    if "bn_recalibration_batches" in cfg["pretrain"]["train"]:
        errors.append(
            "pretrain.train: bn_recalibration_batches is a finetune-only option (BN re-estimation of a "
            "pruned net); move it to finetune"
        )
    for name, ov in study.overrides.items():
        if "bn_recalibration_batches" in ov.get("pretrain", {}):
            errors.append(
                f"dataset_overrides.{name}.pretrain: bn_recalibration_batches is a finetune-only option; "
                f"move it to dataset_overrides.{name}.finetune"
            )
    tracking = study.tracking
    if tracking.enabled and not tracking.live and not tracking.sync:
        errors.append("tracking: live: false needs sync: true (otherwise no job would ever reach MLflow)")
    return errors


def pretrained_errors(study: Study) -> list[str]:
    """Pretrained starts (passprune.models.build_model raises at run time otherwise): ImageNet weights exist only
    for some archs (passprune.models.IMAGENET_WEIGHTS, via workflow/registry.yaml) and only at width 1.0."""
    errors, imagenet_archs = [], study.caps.imagenet_archs
    pretrained: dict[str, list[str]] = {}  # arch -> datasets it starts from ImageNet weights on
    for d, a in sorted(study.all_pairs()):
        if study.model_settings(d, a)["pretrained"]:
            pretrained.setdefault(a, []).append(d)
    for a, ds in pretrained.items():
        why = f"pretrained weights are requested (pretrain.pretrained / dataset_overrides.*.pretrained) for {a} on {ds}"
        if a not in imagenet_archs:
            errors.append(f"archs: {a!r}: {why}, but ImageNet weights exist only for {list(imagenet_archs)}")
        width = study.model_settings(ds[0], a)["width"]
        if width != 1.0:
            errors.append(f"arch_settings.{a}.width: {width}: {why}, but ImageNet weights exist only at width 1.0")
    return errors


def convergence_errors(study: Study) -> list[str]:
    """pretrain.convergence_epochs: the twin must train longer than every dataset's dense model, or it tests
    nothing (and a twin as long as the model would be the model itself: the same folder)."""
    epochs = study.config["pretrain"].get("convergence_epochs")
    if epochs is None:
        return []
    short = {d: study.stage_train(d, "pretrain")["epochs"] for d in sorted(study.used_datasets())}
    return [
        f"pretrain.convergence_epochs: {epochs} must exceed the dense models' {n} epochs on {d} "
        "(pretrain.train.epochs or dataset_overrides.<dataset>.pretrain.epochs); e.g. twice as many"
        for d, n in short.items()
        if epochs <= n
    ]


def search_epoch_errors(study: Study) -> list[str]:
    """search.epochs (or a dataset's): PASS's length in epochs, so not also in steps, and computable for every
    dataset the PASS family searches."""
    from ..datasizes import SIZES

    cfg = study.config
    overrides = study.overrides.values()
    if not (cfg["search"].get("epochs") or any(ov.get("search", {}).get("epochs") for ov in overrides)):
        return []
    pass_labels = [label for label in study.labels if study.is_pass(label)]
    errors = [
        f"{'variants.' + label + '.options' if label in cfg['variants'] else 'methods.' + label}.steps: the search "
        "length is also given in epochs (search.epochs or dataset_overrides.*.search.epochs); keep one of the two"
        for label in pass_labels
        if "steps" in study.method_options(label)
    ]
    for d in sorted(study.used_datasets()):
        s = study.search_section(d)
        if not s.get("epochs") or not pass_labels:
            continue
        if d not in SIZES:
            errors.append(f"search.epochs: dataset {d!r} has no train size in pass/datasizes.py (SIZES); add it")
            continue
        n = study.train_images(d)
        if n < s["batch_size"]:
            errors.append(
                f"search.epochs: {d}'s training split has {n} images, fewer than its search batch size "
                f"{s['batch_size']}, so an epoch holds no full batch; lower the batch size"
            )
    return errors


def variant_errors(study: Study, schema: dict[str, Any]) -> list[str]:
    """A variant (a registered method run again under another label with other options): its own name, a
    registered base, and options the base accepts (checked against the base's part of the schema)."""
    import jsonschema

    errors, cfg = [], study.config
    refs = schema["properties"]["methods"]["properties"]
    for name, v in cfg["variants"].items():
        where = f"variants.{name}"
        if name in cfg["methods"] or name in refs:
            errors.append(f"{where}: the name is a registered method's; give the variant its own name")
        base = v["base"]
        if base not in refs:
            errors.append(f"{where}.base: {base!r} is not a registered method ({sorted(refs)})")
            continue
        sub = {**schema["definitions"][refs[base]["$ref"].rsplit("/", 1)[-1]], "definitions": schema["definitions"]}
        try:
            jsonschema.validate(v.get("options") or {}, sub)
        except jsonschema.ValidationError as err:
            errors.append(f"{where}.options: {err.message} (the options of {base!r}; see `passprune list`)")
    return errors


def reference_errors(study: Study) -> list[str]:
    """A control reuses a searched method's structure, so that method must run; transfer kinds that search on
    the target need the method in the study."""
    errors, labels = [], study.labels
    for label in labels:
        ref = study.reference_of(label)
        if ref is not None and ref not in labels:
            errors.append(
                f"methods.{label}.reference: {ref!r} is not a method of this study ({sorted(labels)}); "
                "add it to methods or point reference at one that is"
            )
        if ref is not None and study.reference_of(ref) is not None:
            errors.append(f"methods.{label}.reference: {ref!r} is itself a control; reference a searched method")
    for i, t in enumerate(study.transfers):
        if {"target_search", "random_widths"} & set(t["kinds"]) and t["method"] not in labels:
            errors.append(f"transfer[{i}]: kinds target_search/random_widths need method {t['method']!r} in methods")
    return errors


def claims_errors(study: Study) -> list[str]:
    claims = study.config["claims"]
    if claims and study.claims is None:
        return [
            f"claims: {claims!r} does not exist in the working directory nor in the repository "
            "(a claims file such as config/claims.yaml, or null)"
        ]
    return []


def semantic_errors(study: Study, schema: dict[str, Any]) -> list[str]:
    """Every cross-reference problem of a schema-valid config, in the order the keys are read."""
    return (
        transfer_errors(study)
        + unused_key_errors(study)
        + target_folder_errors(study)
        + stage_option_errors(study)
        + search_epoch_errors(study)
        + pretrained_errors(study)
        + convergence_errors(study)
        + variant_errors(study, schema)
        + reference_errors(study)
        + claims_errors(study)
        + budget_errors(study)
    )
