# Config -> validated settings and the list of targets. The only place that knows the config layout.
import json
import os
import subprocess

from snakemake.utils import validate

try:
    validate(config, schema="../schemas/config.schema.yaml", set_default=True)
except (
    Exception
) as err:  # Snakemake appends the whole sub-schema; keep the lines that name the problem
    keep = [
        l.strip()
        for l in str(err).splitlines()
        if l.startswith(("ValidationError", "Failed validating", "On instance"))
    ]
    raise ValueError(
        "invalid config (workflow/schemas/config.schema.yaml):\n  "
        + "\n  ".join(keep or [str(err)])
    ) from None


# What the rules need to know about the registries, generated from them (`passprune registry --write`;
# tests/test_registry_export.py fails when it is stale), so planning a study never imports torch.
import yaml

REGISTRY = yaml.safe_load(
    open(os.path.join(workflow.basedir, "workflow", "registry.yaml"))
)
_CONFIGURABLE = {m: v for m, v in REGISTRY["methods"].items() if not v["transfer_only"]}
# PASS and its ablations: they save a hypernetwork (hypernetwork transfer needs one)
PASS_METHODS = sorted(m for m, v in _CONFIGURABLE.items() if v["saves_hypernet"])
# Controls that read another method's structure (option `reference`, default "pass"): the search rule
# gets that structure as an input, so Snakemake orders the jobs.
REFERENCE_METHODS = sorted(m for m, v in _CONFIGURABLE.items() if v["needs_reference"])
DEFAULT_REFERENCE = "pass"
# dataset_overrides.<dataset>: data keys (image_size, root, ...) are merged onto `data`; these are the
# dataset's own training settings (stage section > batch_size > the study's; see _stage_train).
OVERRIDE_STAGE_KEYS = ("pretrained", "batch_size", "pretrain", "finetune", "search")


def run_methods(cfg):
    """Every method label of the study -> the registered method it runs (a variant runs its `base`)."""
    out = {m: m for m in cfg["methods"]}
    out.update({name: v["base"] for name, v in cfg.get("variants", {}).items()})
    return out


def method_options(cfg, label):
    """The options a method label runs with (a variant: its own options, not its base's)."""
    if label in cfg.get("variants", {}):
        return cfg["variants"][label].get("options") or {}
    return cfg["methods"].get(label) or {}


def reference_of(cfg, label):
    """The method label whose structure a control (random_widths, scratch) reuses; None for other methods."""
    if run_methods(cfg).get(label) not in REFERENCE_METHODS:
        return None
    return method_options(cfg, label).get("reference", DEFAULT_REFERENCE)


def grid_pairs(cfg):
    """(dataset, arch) pairs of the main grid; ``arch_settings.<arch>.datasets`` restricts an arch."""
    return [
        (d, a)
        for d in cfg["datasets"]
        for a in cfg["archs"]
        if d in cfg.get("arch_settings", {}).get(a, {}).get("datasets", cfg["datasets"])
    ]


def _check_semantics(cfg):
    """What JSON schema cannot say: cross-references between keys. Runs after the schema, so the layout is valid;
    every problem is listed at once, each naming the key (and the transfer entry) it is about.
    """
    errors = []
    transfer = cfg.get("transfer", [])
    pass_methods = PASS_METHODS
    for i, t in enumerate(transfer):
        where = f"transfer[{i}] ({t['source']} -> {t['target']}, {t['method']})"
        if t["source"] == t["target"]:
            errors.append(
                f"{where}: source and target are both {t['source']!r}; transfer needs two different tasks"
            )
        if t["method"] not in cfg["methods"]:
            errors.append(
                f"{where}: method {t['method']!r} is not in methods: {sorted(cfg['methods'])} "
                "(the source task's search runs with the options given there)"
            )
        if "hypernet" in t["kinds"] and t["method"] not in pass_methods:
            errors.append(
                f"{where}: kinds has 'hypernet', which needs a PASS method {list(pass_methods)}, "
                f"got method {t['method']!r}"
            )
        if "hypernet" in t["kinds"] and t["method"] == "pass_noprompt":
            errors.append(
                f"{where}: hypernet transfer adapts the prompt; pass_noprompt has none"
            )
        for j, u in enumerate(
            transfer[:i]
        ):  # the same run twice: duplicate rows in summary.csv
            same = (u["source"], u["target"], u["method"]) == (
                t["source"],
                t["target"],
                t["method"],
            )
            if (
                same
                and set(u["kinds"]) & set(t["kinds"])
                and set(u.get("archs", cfg["archs"]))
                & set(t.get("archs", cfg["archs"]))
                and {float(x) for x in u.get("targets", cfg["targets"])}
                & {float(x) for x in t.get("targets", cfg["targets"])}
            ):
                errors.append(
                    f"{where}: repeats runs of transfer[{j}] (same source, target, method, kinds, archs, targets)"
                )
    used_datasets = set(cfg["datasets"]) | {
        x for t in transfer for x in (t["source"], t["target"])
    }
    for name in cfg.get("dataset_overrides", {}):
        if name not in used_datasets:
            errors.append(
                f"dataset_overrides: {name!r} is not used by datasets {cfg['datasets']} or transfer"
            )
    used_archs = set(cfg["archs"]) | {a for t in transfer for a in t.get("archs", [])}
    for name, a_set in cfg.get("arch_settings", {}).items():
        if name not in used_archs:
            errors.append(
                f"arch_settings: {name!r} is not in archs: {cfg['archs']} (nor in any transfer's archs)"
            )
        for d in a_set.get("datasets", []):
            if d not in cfg["datasets"]:
                errors.append(
                    f"arch_settings.{name}.datasets: {d!r} is not in datasets: {cfg['datasets']}"
                )
    # Run folders are named macs{target:g}: two targets that print alike would share a folder.
    for key, targets in [("targets", cfg["targets"])] + [
        (f"transfer[{i}].targets", t["targets"])
        for i, t in enumerate(transfer)
        if "targets" in t
    ]:
        names = [f"{float(x):g}" for x in targets]
        if len(set(names)) < len(names):
            errors.append(
                f"{key}: {targets} name the same run folder twice ({names}); give targets that differ "
                "in the first 6 significant digits"
            )
    # Fine-tuning options that the pretraining loop would reject at run time (TrainConfig.from_dict).
    if "bn_recalibration_batches" in cfg["pretrain"]["train"]:
        errors.append(
            "pretrain.train: bn_recalibration_batches is a finetune-only option (BN re-estimation of a "
            "pruned net); move it to finetune"
        )
    errors += _check_dataset_training(cfg)
    tracking = cfg["tracking"]
    if (
        tracking["enabled"]
        and not tracking.get("live", True)
        and not tracking.get("sync", True)
    ):
        errors.append(
            "tracking: live: false needs sync: true (otherwise no job would ever reach MLflow)"
        )
    # Pretrained starts (passprune.models.build_model raises at run time otherwise): ImageNet weights exist only
    # for these archs (passprune.models.IMAGENET_WEIGHTS, via workflow/registry.yaml) and only at width 1.0.
    imagenet_archs = REGISTRY["imagenet_archs"]
    pairs = set(grid_pairs(cfg))
    pairs |= {
        (d, a)
        for t in transfer
        for d in (t["source"], t["target"])
        for a in t.get("archs", cfg["archs"])
    }
    pretrained = {}  # arch -> datasets it starts from ImageNet weights on
    for d, a in sorted(pairs):
        if (
            cfg.get("dataset_overrides", {})
            .get(d, {})
            .get("pretrained", cfg["pretrain"]["pretrained"])
        ):
            pretrained.setdefault(a, []).append(d)
    for a, ds in pretrained.items():
        why = f"pretrained weights are requested (pretrain.pretrained / dataset_overrides.*.pretrained) for {a} on {ds}"
        if a not in imagenet_archs:
            errors.append(
                f"archs: {a!r}: {why}, but ImageNet weights exist only for {list(imagenet_archs)}"
            )
        width = cfg.get("arch_settings", {}).get(a, {}).get("width", 1.0)
        if width != 1.0:
            errors.append(
                f"arch_settings.{a}.width: {width}: {why}, but ImageNet weights exist only at width 1.0"
            )
    errors += _check_methods(cfg)
    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))


def search_section(cfg, dataset):
    """`search` for a dataset: the study's, then the dataset's batch_size, then its own search section."""
    ov = cfg.get("dataset_overrides", {}).get(dataset, {})
    return {
        **cfg["search"],
        **({"batch_size": ov["batch_size"]} if "batch_size" in ov else {}),
        **ov.get("search", {}),
    }


def train_images(cfg, dataset):
    """Images in the training split of a dataset's jobs (passprune.datasizes; carved as the jobs carve it)."""
    from passprune.datasizes import split_sizes

    ov = cfg.get("dataset_overrides", {}).get(dataset, {})
    data = {
        **cfg["data"],
        **{k: v for k, v in ov.items() if k not in OVERRIDE_STAGE_KEYS},
    }
    return split_sizes(
        dataset, data["val_size"], data.get("train_subset"), data.get("test_subset")
    )["train"]


def search_steps(cfg, dataset):
    """PASS-family search length in steps from `search.epochs` (None when no epochs are given): epochs x the full
    batches one epoch of the dataset's training split holds at its search batch size (PASS drops the last
    partial batch)."""
    s = search_section(cfg, dataset)
    return (
        s["epochs"] * (train_images(cfg, dataset) // s["batch_size"])
        if s.get("epochs")
        else None
    )


def _check_dataset_training(cfg):
    """Per-dataset training settings (dataset_overrides.<dataset>.pretrain/.finetune/.search, search.epochs)."""
    from passprune.datasizes import SIZES

    errors = []
    for name, ov in cfg.get("dataset_overrides", {}).items():
        if "bn_recalibration_batches" in ov.get("pretrain", {}):
            errors.append(
                f"dataset_overrides.{name}.pretrain: bn_recalibration_batches is a finetune-only option; "
                f"move it to dataset_overrides.{name}.finetune"
            )
    epochs_given = cfg["search"].get("epochs") or any(
        ov.get("search", {}).get("epochs")
        for ov in cfg.get("dataset_overrides", {}).values()
    )
    if not epochs_given:
        return errors
    pass_labels = [l for l, base in run_methods(cfg).items() if base in PASS_METHODS]
    for label in pass_labels:
        if "steps" in method_options(cfg, label):
            where = (
                f"variants.{label}.options"
                if label in cfg.get("variants", {})
                else f"methods.{label}"
            )
            errors.append(
                f"{where}.steps: the search length is also given in epochs (search.epochs or "
                "dataset_overrides.*.search.epochs); keep one of the two"
            )
    used = set(cfg["datasets"]) | {
        x for t in cfg.get("transfer", []) for x in (t["source"], t["target"])
    }
    for d in sorted(used):
        s = search_section(cfg, d)
        if not s.get("epochs") or not pass_labels:
            continue
        if d not in SIZES:
            errors.append(
                f"search.epochs: dataset {d!r} has no train size in pass/datasizes.py (SIZES); add it"
            )
            continue
        n = train_images(cfg, d)
        if n < s["batch_size"]:
            errors.append(
                f"search.epochs: {d}'s training split has {n} images, fewer than its search batch size "
                f"{s['batch_size']}, so an epoch holds no full batch; lower the batch size"
            )
    return errors


def _check_methods(cfg):
    """Variants (a registered method run again under another label with other options) and the references of
    the controls: names must not clash, options must be the base method's, references must be run.
    """
    import jsonschema
    import yaml

    errors = []
    schema = yaml.safe_load(
        open(
            os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
        )
    )
    refs = schema["properties"]["methods"]["properties"]
    labels = run_methods(cfg)
    for name, v in cfg.get("variants", {}).items():
        where = f"variants.{name}"
        if name in cfg["methods"] or name in refs:
            errors.append(
                f"{where}: the name is a registered method's; give the variant its own name"
            )
        base = v["base"]
        if base not in refs:
            errors.append(
                f"{where}.base: {base!r} is not a registered method ({sorted(refs)})"
            )
            continue
        sub = dict(schema["definitions"][refs[base]["$ref"].rsplit("/", 1)[-1]])
        sub["definitions"] = schema["definitions"]
        try:
            jsonschema.validate(v.get("options") or {}, sub)
        except jsonschema.ValidationError as err:
            errors.append(
                f"{where}.options: {err.message} (the options of {base!r}; see `passprune list`)"
            )
    for label in labels:
        ref = reference_of(cfg, label)
        if ref is not None and ref not in labels:
            errors.append(
                f"methods.{label}.reference: {ref!r} is not a method of this study ({sorted(labels)}); "
                "add it to methods or point reference at one that is"
            )
        if ref is not None and reference_of(cfg, ref) is not None:
            errors.append(
                f"methods.{label}.reference: {ref!r} is itself a control; reference a searched method"
            )
    for i, t in enumerate(cfg.get("transfer", [])):
        if {"target_search", "random_widths"} & set(t["kinds"]) and t[
            "method"
        ] not in labels:
            errors.append(
                f"transfer[{i}]: kinds target_search/random_widths need method {t['method']!r} in methods"
            )
    claims = cfg.get("claims")
    if claims and claims_path(claims) is None:
        errors.append(
            f"claims: {claims!r} does not exist in the working directory nor in the repository "
            "(a claims file such as config/claims.yaml, or null)"
        )
    return errors


def claims_path(claims):
    """A claims file given relative to the working directory, else to the repository (config/claims.yaml)."""
    return next(
        (
            p
            for p in (claims, os.path.join(workflow.basedir, claims))
            if os.path.exists(p)
        ),
        None,
    )


_check_semantics(config)

NAME = "[A-Za-z0-9_]+"


def fmt_target(t):
    return f"{float(t):g}"


STUDY = config["study"]
TARGETS = [fmt_target(t) for t in config["targets"]]
SEEDS = config["seeds"]
ARCHS = config["archs"]
DATASETS = config["datasets"]
LABELS = run_methods(config)  # method label -> registered method
METHODS = list(LABELS)

# ----------------------------------------------------------------------------- paths (the only place)
# Every study lives in its own folder, so running one config never touches another study's files. Dense
# models are shared between studies, but only when the settings that produced them are identical: their
# folder is named by a digest of those settings.
STUDY_DIR = f"results/{STUDY}"
DENSE_DIR = "results/_dense/{dataset}/{arch}/seed{seed}/{dense_id}"
RUN_DIR = f"{STUDY_DIR}/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}"
SEARCH_DIR = f"{RUN_DIR}/search"
# Transfer runs (the kinds are described in transfer.smk): a transfer run's folder sits beside the ordinary
# runs', named by its kind, method and source, which the rules read as three wildcards.
XFER = "xfer_{kind}-{method}-from-{source}"
XFER_DIR = RUN_DIR.replace("{method}", XFER)
# kinds searched by a transfer rule, then fine-tuned by `finetune_transfer`
XFER_FINETUNED_KINDS = ("hypernet", "random_widths")
LOGS = f"{STUDY_DIR}/logs"
BENCH = f"{STUDY_DIR}/benchmarks"
SUMMARY = f"{STUDY_DIR}/summary.csv"
REPORT_DIR = f"{STUDY_DIR}/reports"
STATE_FILE = f"{STUDY_DIR}/mlflow_study.json"


wildcard_constraints:
    dataset=NAME,
    arch=NAME,
    seed=r"\d+",
    target=r"[0-9.]+",
    source=NAME,
    dense_id=r"[0-9a-f]{12}",


def _override(dataset):
    return config.get("dataset_overrides", {}).get(dataset, {})


def _data_settings(dataset):
    d = dict(config["data"])
    d.update(
        {k: v for k, v in _override(dataset).items() if k not in OVERRIDE_STAGE_KEYS}
    )
    return d


def _stage_train(dataset, stage):
    """The training recipe of a dataset's `pretrain` or `finetune` jobs: the study's (pretrain.train / finetune),
    then the dataset's batch_size, then its own section (dataset_overrides.<dataset>.pretrain / .finetune).
    """
    base = config["pretrain"]["train"] if stage == "pretrain" else config["finetune"]
    ov = _override(dataset)
    if "batch_size" not in ov and stage not in ov:
        return base  # unchanged object: the settings (and dense digests) of configs without overrides stay as they were
    t = dict(base)
    if "batch_size" in ov:
        t["batch_size"] = ov["batch_size"]
    t.update(ov.get(stage, {}))
    return t


# Where jobs log (MLflow): handed over in the environment, not in the jobs' settings, so that a change of
# tracking store or study never reruns a job (a dense model shared by two studies would look changed).
# Cluster jobs re-read this file, so they set it too. Threads reach a job as --threads {threads}.
os.environ.update(
    PASSPRUNE_TRACKING=json.dumps({**config["tracking"], "state_file": STATE_FILE})
)


def _common(dataset, stage):
    return {"data": _data_settings(dataset), "device": config["device"]}


def _model(dataset, arch):
    m = dict(config["arch_settings"].get(arch, {}))
    pre = _override(dataset).get("pretrained", config["pretrain"]["pretrained"])
    return {
        "width": m.get("width", 1.0),
        "kwargs": m.get("kwargs", {}),
        "pretrained": pre,
        "weights_dir": config["pretrain"].get("weights_dir"),
    }


def _pretrain_settings(dataset, arch):
    s = _common(dataset, "pretrain")
    s["model"] = _model(dataset, arch)
    s["train"] = _stage_train(dataset, "pretrain")
    return s


def dense_id(dataset, arch):
    """Digest of what a dense model depends on (data, model, training recipe, device); not of where it is
    logged or how many threads it uses. Two studies with the same digest share the model.
    """
    import hashlib

    s = _pretrain_settings(dataset, arch)
    return hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]


def dense_dir(dataset, arch, seed):
    return DENSE_DIR.format(
        dataset=dataset, arch=arch, seed=seed, dense_id=dense_id(dataset, arch)
    )


def dense_model(wc):
    return f"{dense_dir(wc.dataset, wc.arch, wc.seed)}/model.pt"


def dense_metrics(wc):
    """Read by fine-tuning next to the dense model (the scratch control replays its pretraining budget)."""
    return f"{dense_dir(wc.dataset, wc.arch, wc.seed)}/metrics.json"


def run_dir(dataset, arch, seed, method, target):
    return RUN_DIR.format(
        dataset=dataset, arch=arch, seed=seed, method=method, target=target
    )


def settings_pretrain(wc):
    return json.dumps(_pretrain_settings(wc.dataset, wc.arch), sort_keys=True)


def settings_search(wc, method=None):
    label = method or wc.method
    s = _common(wc.dataset, "search")
    s["search"] = {
        k: v for k, v in search_section(config, wc.dataset).items() if k != "epochs"
    }  # -> steps below
    s["method_options"] = method_options(config, label)
    steps = (
        search_steps(config, wc.dataset) if LABELS.get(label) in PASS_METHODS else None
    )
    if steps is not None:
        s["method_options"] = {**s["method_options"], "steps": steps}
    return json.dumps(s, sort_keys=True)


def settings_finetune(wc):
    s = _common(wc.dataset, "finetune")
    s["train"] = _stage_train(wc.dataset, "finetune")
    s["latency"] = config["latency"]
    return json.dumps(s, sort_keys=True)


def search_inputs(wc):
    """The dense model, and for a control the structure of the method it reuses (same run otherwise)."""
    inputs = {"dense": dense_model(wc)}
    ref = reference_of(config, wc.method)
    if ref is not None:
        inputs["reference"] = (
            f"{run_dir(wc.dataset, wc.arch, wc.seed, ref, wc.target)}/search/structure.json"
        )
    return inputs


def search_args(wc, input):
    base = LABELS[wc.method]
    args = f"--method {base} --label {wc.method}"
    if "reference" in input.keys():
        args += f" --reference {input.reference}"
    return args


def resources_of(stage):
    r = config["resources"][stage]
    out = {"mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r.get("gpu", 0):
        out["gpu"] = r["gpu"]
    return out


def maybe_protected(path):
    return protected(path) if config.get("protect_dense", False) else path


def transfer_runs():
    """(target dataset, arch, seed, method dir, target) of every configured transfer run."""
    runs = []
    for t in config.get("transfer", []):
        for kind in t["kinds"]:
            mdir = (
                t["method"]
                if kind == "target_search"
                else XFER.format(kind=kind, method=t["method"], source=t["source"])
            )
            for arch in t.get("archs", ARCHS):
                for seed in SEEDS:
                    for tg in t.get("targets", config["targets"]):
                        runs.append((t["target"], arch, seed, mdir, fmt_target(tg)))
    return runs


def all_metrics():
    pairs = grid_pairs(config)
    files = [f"{dense_dir(d, a, s)}/metrics.json" for d, a in pairs for s in SEEDS]
    files += [
        f"{run_dir(d, a, s, m, t)}/metrics.json"
        for d, a in pairs
        for s in SEEDS
        for m in METHODS
        for t in TARGETS
    ]
    files += [f"{run_dir(*r)}/metrics.json" for r in transfer_runs()]
    return list(
        dict.fromkeys(files)
    )  # a target_search run may also be in the main grid


STUDY_FILE = f"{STUDY_DIR}/study.json"  # the resolved config and the dense folders, for the study's MLflow run


def _dense_dirs():
    """Every dense-model folder the study uses (main grid and both sides of each transfer): shared between
    studies, so track-sync / track-verify are told which belong to this one."""
    pairs = set(grid_pairs(config))
    pairs |= {
        (d, a)
        for t in config.get("transfer", [])
        for d in (t["source"], t["target"])
        for a in t.get("archs", ARCHS)
    }
    return sorted({dense_dir(d, a, s) for d, a in pairs for s in SEEDS})


def track_init():
    """Before the jobs fan out: write the study file (rewritten only when it changes, so a rerun touches no
    file) and create the store, the study's experiment and its study run once (passprune.tracking).
    """
    if not config["tracking"]["enabled"]:
        return
    info = {
        "study": STUDY,
        "config": config,
        "dense_dirs": _dense_dirs(),
        "repo": workflow.basedir,
    }
    text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
    if not os.path.exists(STUDY_FILE) or open(STUDY_FILE).read() != text:
        from passprune.files import atomic_write_text

        atomic_write_text(STUDY_FILE, text)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config["tracking"]["uri"]
    cmd = [
        "passprune",
        "track-init",
        "--uri",
        uri,
        "--experiment",
        config["tracking"]["experiment"],
        "--study",
        config["study"],
        "--state-file",
        STATE_FILE,
    ]
    subprocess.run(cmd, check=False)


def track_close(status):
    """When the workflow ends: log every finished job the store is missing (a server that was down, a job whose
    logging stopped), then mark the study run FINISHED or FAILED. Never fails the workflow.
    """
    if not config["tracking"]["enabled"]:
        return
    if config["tracking"].get("sync", True) and os.path.exists(STUDY_FILE):
        subprocess.run(
            ["passprune", "track-sync", STUDY_DIR, "--close", status], check=False
        )
    elif os.path.exists(STATE_FILE):
        subprocess.run(
            [
                "passprune",
                "track-close",
                "--state-file",
                STATE_FILE,
                "--status",
                status,
            ],
            check=False,
        )
