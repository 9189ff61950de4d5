# Config -> validated settings and the list of targets. The only place that knows the config layout.
import json
import os
import subprocess

from snakemake.utils import validate

try:
    validate(config, schema="../schemas/config.schema.yaml", set_default=True)
except Exception as err:  # Snakemake appends the whole sub-schema; keep the lines that name the problem
    keep = [l.strip() for l in str(err).splitlines()
            if l.startswith(("ValidationError", "Failed validating", "On instance"))]
    raise ValueError("invalid config (workflow/schemas/config.schema.yaml):\n  " + "\n  ".join(keep or [str(err)])) from None


# PASS and its ablations: they save a hypernetwork (hypernetwork transfer needs one)
PASS_METHODS = ["pass", "pass_noprompt", "pass_norecur", "pass_uniform", "pass_nostats"]


def grid_pairs(cfg):
    """(dataset, arch) pairs of the main grid; ``arch_settings.<arch>.datasets`` restricts an arch."""
    return [(d, a) for d in cfg["datasets"] for a in cfg["archs"]
            if d in cfg.get("arch_settings", {}).get(a, {}).get("datasets", cfg["datasets"])]


def _check_semantics(cfg):
    """What JSON schema cannot say: cross-references between keys. Runs after the schema, so the layout is valid;
    every problem is listed at once, each naming the key (and the transfer entry) it is about."""
    errors = []
    transfer = cfg.get("transfer", [])
    pass_methods = PASS_METHODS
    for i, t in enumerate(transfer):
        where = f"transfer[{i}] ({t['source']} -> {t['target']}, {t['method']})"
        if t["source"] == t["target"]:
            errors.append(f"{where}: source and target are both {t['source']!r}; transfer needs two different tasks")
        if t["method"] not in cfg["methods"]:
            errors.append(f"{where}: method {t['method']!r} is not in methods: {sorted(cfg['methods'])} "
                          "(the source task's search runs with the options given there)")
        if "hypernet" in t["kinds"] and t["method"] not in pass_methods:
            errors.append(f"{where}: kinds has 'hypernet', which needs a PASS method {list(pass_methods)}, "
                          f"got method {t['method']!r}")
        if "hypernet" in t["kinds"] and t["method"] == "pass_noprompt":
            errors.append(f"{where}: hypernet transfer adapts the prompt; pass_noprompt has none")
        for j, u in enumerate(transfer[:i]):  # the same run twice: duplicate rows in summary.csv
            same = (u["source"], u["target"], u["method"]) == (t["source"], t["target"], t["method"])
            if same and set(u["kinds"]) & set(t["kinds"]) and set(u.get("archs", cfg["archs"])) & set(t.get("archs", cfg["archs"])) \
                    and {float(x) for x in u.get("targets", cfg["targets"])} & {float(x) for x in t.get("targets", cfg["targets"])}:
                errors.append(f"{where}: repeats runs of transfer[{j}] (same source, target, method, kinds, archs, targets)")
    used_datasets = set(cfg["datasets"]) | {x for t in transfer for x in (t["source"], t["target"])}
    for name in cfg.get("dataset_overrides", {}):
        if name not in used_datasets:
            errors.append(f"dataset_overrides: {name!r} is not used by datasets {cfg['datasets']} or transfer")
    used_archs = set(cfg["archs"]) | {a for t in transfer for a in t.get("archs", [])}
    for name, a_set in cfg.get("arch_settings", {}).items():
        if name not in used_archs:
            errors.append(f"arch_settings: {name!r} is not in archs: {cfg['archs']} (nor in any transfer's archs)")
        for d in a_set.get("datasets", []):
            if d not in cfg["datasets"]:
                errors.append(f"arch_settings.{name}.datasets: {d!r} is not in datasets: {cfg['datasets']}")
    # Run folders are named macs{target:g}: two targets that print alike would share a folder.
    for key, targets in [("targets", cfg["targets"])] + [(f"transfer[{i}].targets", t["targets"])
                                                          for i, t in enumerate(transfer) if "targets" in t]:
        names = [f"{float(x):g}" for x in targets]
        if len(set(names)) < len(names):
            errors.append(f"{key}: {targets} name the same run folder twice ({names}); give targets that differ "
                          "in the first 6 significant digits")
    # Fine-tuning options that the pretraining loop would reject at run time (TrainConfig.from_dict).
    if "bn_recalibration_batches" in cfg["pretrain"]["train"]:
        errors.append("pretrain.train: bn_recalibration_batches is a finetune-only option (BN re-estimation of a "
                      "pruned net); move it to finetune")
    # Pretrained starts (passprune.models.build_model raises at run time otherwise): ImageNet weights exist only
    # for these archs (= passprune.models.IMAGENET_WEIGHTS; tests/test_config.py checks that) and only at width 1.0.
    imagenet_archs = ("mobilenet_v2", "resnet18", "resnet34", "resnet50")
    pairs = set(grid_pairs(cfg))
    pairs |= {(d, a) for t in transfer for d in (t["source"], t["target"]) for a in t.get("archs", cfg["archs"])}
    pretrained = {}  # arch -> datasets it starts from ImageNet weights on
    for d, a in sorted(pairs):
        if cfg.get("dataset_overrides", {}).get(d, {}).get("pretrained", cfg["pretrain"]["pretrained"]):
            pretrained.setdefault(a, []).append(d)
    for a, ds in pretrained.items():
        why = f"pretrained weights are requested (pretrain.pretrained / dataset_overrides.*.pretrained) for {a} on {ds}"
        if a not in imagenet_archs:
            errors.append(f"archs: {a!r}: {why}, but ImageNet weights exist only for {list(imagenet_archs)}")
        width = cfg.get("arch_settings", {}).get(a, {}).get("width", 1.0)
        if width != 1.0:
            errors.append(f"arch_settings.{a}.width: {width}: {why}, but ImageNet weights exist only at width 1.0")
    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))


_check_semantics(config)

NAME = "[A-Za-z0-9_]+"


def fmt_target(t):
    return f"{float(t):g}"


TARGETS = [fmt_target(t) for t in config["targets"]]
SEEDS = config["seeds"]
ARCHS = config["archs"]
DATASETS = config["datasets"]
METHODS = list(config["methods"])


wildcard_constraints:
    dataset=NAME,
    arch=NAME,
    seed=r"\d+",
    target=r"[0-9.]+",
    source=NAME,


def _data_settings(dataset):
    d = dict(config["data"])
    d.update({k: v for k, v in config.get("dataset_overrides", {}).get(dataset, {}).items() if k != "pretrained"})
    return d


def _common(dataset, stage):
    res = config["resources"][stage]
    return {
        "data": _data_settings(dataset),
        "device": config["device"],
        "threads": res["threads"],
        "tracking": {**config["tracking"], "state_file": "results/mlflow_study.json"},
    }


def _model(dataset, arch):
    m = dict(config["arch_settings"].get(arch, {}))
    pre = config.get("dataset_overrides", {}).get(dataset, {}).get("pretrained", config["pretrain"]["pretrained"])
    return {"width": m.get("width", 1.0), "kwargs": m.get("kwargs", {}), "pretrained": pre,
            "weights_dir": config["pretrain"].get("weights_dir")}


def settings_pretrain(wc):
    s = _common(wc.dataset, "pretrain")
    s["model"] = _model(wc.dataset, wc.arch)
    s["train"] = config["pretrain"]["train"]
    return json.dumps(s, sort_keys=True)


def settings_search(wc, method=None):
    s = _common(wc.dataset, "search")
    s["search"] = config["search"]
    s["method_options"] = config["methods"].get(method or wc.method) or {}
    return json.dumps(s, sort_keys=True)


def settings_finetune(wc):
    s = _common(wc.dataset, "finetune")
    s["train"] = config["finetune"]
    s["latency"] = config["latency"]
    return json.dumps(s, sort_keys=True)


def transfer_args(wc):
    """Hypernetwork-transfer runs are fine-tuned by the shared rule; label them and name their source."""
    if not wc.method.startswith("xfer_hypernet-"):
        return ""
    method, source = wc.method[len("xfer_hypernet-"):].split("-from-")
    return f"--label {method}_hypernet_transfer --source-dataset {source}"


def resources_of(stage):
    r = config["resources"][stage]
    out = {"mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r.get("gpu", 0):
        out["gpu"] = r["gpu"]
    return out


def maybe_protected(path):
    return protected(path) if config.get("protect_dense", False) else path


def run_dir(dataset, arch, seed, method, target):
    return f"results/{dataset}/{arch}/seed{seed}/{method}/macs{target}"


def transfer_runs():
    """(target dataset, arch, seed, method dir, target) of every configured transfer run."""
    runs = []
    for t in config.get("transfer", []):
        for kind in t["kinds"]:
            mdir = f"xfer_{kind}-{t['method']}-from-{t['source']}"
            for arch in t.get("archs", ARCHS):
                for seed in SEEDS:
                    for tg in t.get("targets", config["targets"]):
                        runs.append((t["target"], arch, seed, mdir, fmt_target(tg)))
    return runs


def all_metrics():
    pairs = grid_pairs(config)
    files = [f"results/{d}/{a}/seed{s}/dense/metrics.json" for d, a in pairs for s in SEEDS]
    files += [f"{run_dir(d, a, s, m, t)}/metrics.json" for d, a in pairs for s in SEEDS for m in METHODS for t in TARGETS]
    files += [f"{run_dir(*r)}/metrics.json" for r in transfer_runs()]
    return files


def track_init():
    if not config["tracking"]["enabled"]:
        return
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config["tracking"]["uri"]
    cmd = ["passprune", "track-init", "--uri", uri, "--experiment",
           config["tracking"]["experiment"], "--study", config["study"], "--state-file", "results/mlflow_study.json"]
    subprocess.run(cmd, check=False)


def track_close(status):
    if config["tracking"]["enabled"] and os.path.exists("results/mlflow_study.json"):
        subprocess.run(["passprune", "track-close", "--state-file", "results/mlflow_study.json", "--status", status],
                       check=False)
