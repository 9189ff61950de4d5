"""The config schema and the semantic checks of workflow/rules/common.smk, exercised through Snakemake itself.

* The schema's enums (architectures, datasets, methods) and the per-method option names equal what passprune
  registers, so the schema cannot drift from the code.
* Malformed configs, each config/test.yaml with ONE change, are rejected by ``snakemake -n`` before any job
  runs, with a message that names the offending key or value.
* The shipped configs (test.yaml, config.yaml, paper.yaml) pass ``-n``; test.yaml plans the expected jobs.

Every case runs in its own scratch working directory that has no config/config.yaml, and the Snakefile
loads the embedded default only when no --configfile is given, so a key deleted from a case is really
missing (Snakemake would otherwise merge the --configfile onto config/config.yaml).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TEST_CONFIG = REPO / "config" / "test.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
TRANSFER_ONLY_METHODS = {"pass_hypertransfer"}  # run by the transfer rules, never listed under `methods`
TIMEOUT = 120

BASE = yaml.safe_load(TEST_CONFIG.read_text())


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake <args> -s Snakefile -d workdir`` with this interpreter's venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(SNAKEFILE), "-d", str(workdir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def _dry_run(tmp_path: Path, configfile: Path) -> tuple[subprocess.CompletedProcess, Path]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return _snakemake(workdir, "-n", "--cores", "1", "--configfile", str(configfile)), workdir


def _job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run -> {rule: count}."""
    assert "Job stats:" in output, f"no job table in snakemake's output:\n{output[-3000:]}"
    table = output[output.index("Job stats:") :]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


# ----------------------------------------------------------------------------- schema == registries
def test_schema_enums_equal_registries():
    from passprune.data import list_datasets
    from passprune.methods import list_methods
    from passprune.models import list_models

    d = _schema()["definitions"]
    assert sorted(d["arch"]["enum"]) == list_models(), "update definitions.arch in the schema"
    assert sorted(d["dataset"]["enum"]) == list_datasets(), "update definitions.dataset in the schema"
    methods = _schema()["properties"]["methods"]
    expected = sorted(set(list_methods()) - TRANSFER_ONLY_METHODS)
    assert sorted(methods["propertyNames"]["enum"]) == expected, "update properties.methods.propertyNames"
    assert sorted(methods["properties"]) == expected, "update properties.methods.properties"
    assert TRANSFER_ONLY_METHODS <= set(list_methods())


def test_schema_method_options_equal_method_defaults():
    """Each method's options in the schema are exactly the option names its registration declares."""
    from passprune.methods import get_method

    schema = _schema()
    methods = schema["properties"]["methods"]
    for name, ref in methods["properties"].items():
        sub = schema["definitions"][ref["$ref"].rsplit("/", 1)[-1]]
        assert sub.get("additionalProperties") is False, name
        assert set(sub["properties"]) == set(get_method(name).defaults), (
            f"schema options of {name!r} differ from passprune.methods.get_method({name!r}).defaults"
        )


# ----------------------------------------------------------------------------- malformed configs
def _set(path: str, value):
    """A mutation that sets a dotted key; list items by index (``transfer.0.method``)."""

    def mutate(cfg):
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _del(path: str):
    def mutate(cfg):
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]

    return mutate


def _rename(old: str, new: str):
    def mutate(cfg):
        cfg[new] = cfg.pop(old)

    return mutate


def case(id_, mutation, *expected):
    """``expected``: regexes that must all occur in snakemake's output (they name the key or the value)."""
    return pytest.param(mutation, expected, id=id_)


BAD = [
    # targets: fractions of dense MACs in (0, 1]
    case("targets-zero", _set("targets", [0]), r"exclusiveMinimum", r"\['targets'\]\[0\]"),
    case(
        "targets-above-one",
        _set("targets", [0.5, 1.5]),
        r"1\.5 is greater than the maximum of 1",
        r"\['targets'\]\[1\]",
    ),
    case("targets-not-a-list", _set("targets", 0.5), r"0\.5 is not of type 'array'", r"\['targets'\]"),
    case("targets-string-item", _set("targets", ["half"]), r"'half' is not of type 'number'"),
    case("targets-duplicate", _set("targets", [0.5, 0.5]), r"non-unique", r"\['targets'\]"),
    case("targets-same-folder", _set("targets", [0.5, 0.5000001]), r"targets: .*same run folder"),
    # missing required keys and empty lists
    case("missing-targets", _del("targets"), r"'targets' is a required property"),
    case("missing-methods", _del("methods"), r"'methods' is a required property"),
    case("missing-finetune-lr", _del("finetune.lr"), r"'lr' is a required property", r"\['finetune'\]"),
    case("datasets-empty", _set("datasets", []), r"\[\] should be non-empty", r"\['datasets'\]"),
    case("seeds-empty", _set("seeds", []), r"\[\] should be non-empty", r"\['seeds'\]"),
    case("methods-empty", _set("methods", {}), r"\{\} should be non-empty", r"\['methods'\]"),
    case("seeds-duplicate", _set("seeds", [0, 0]), r"non-unique", r"\['seeds'\]"),
    case("seeds-negative", _set("seeds", [-1]), r"-1 is less than the minimum of 0", r"\['seeds'\]"),
    # wrong types and values
    case(
        "epochs-negative",
        _set("finetune.epochs", -1),
        r"-1 is less than the minimum of 0",
        r"\['finetune'\]\['epochs'\]",
    ),
    case("epochs-float", _set("pretrain.train.epochs", 1.5), r"1\.5 is not of type 'integer'", r"\['epochs'\]"),
    case("batch-size-string", _set("finetune.batch_size", "64"), r"'64' is not of type 'integer'", r"\['batch_size'\]"),
    case("archs-string", _set("archs", "resnet20"), r"'resnet20' is not of type 'array'", r"\['archs'\]"),
    case("schedule-unknown", _set("finetune.schedule", "cosin"), r"'cosin' is not one of", r"\['schedule'\]"),
    case("device-bad", _set("device", "gpu"), r"'gpu' does not match", r"\['device'\]"),
    case("device-cuda-index-bad", _set("device", "cuda:x"), r"'cuda:x' does not match", r"\['device'\]"),
    case(
        "max-prune-frac-one",
        _set("search.max_prune_frac", 1.0),
        r"1\.0 is greater than or equal to the maximum of 1",
        r"\['max_prune_frac'\]",
    ),
    case("val-size-zero", _set("data.val_size", 0), r"\['data'\]\['val_size'\]"),
    case(
        "tracking-enabled-string", _set("tracking.enabled", "yes"), r"'yes' is not of type 'boolean'", r"\['enabled'\]"
    ),
    case(
        "resources-missing-threads",
        _del("resources.search.threads"),
        r"'threads' is a required property",
        r"\['resources'\]\['search'\]",
    ),
    case("study-with-space", _set("study", "ci tiny"), r"'ci tiny' does not match", r"\['study'\]"),
    # unknown names
    case("key-typo-targts", _rename("targets", "targts"), r"'targts' was unexpected"),
    case("finetune-key-typo", _set("finetune.epoch", 1), r"'epoch' was unexpected", r"\['finetune'\]"),
    case("arch-unknown", _set("archs", ["resnet21"]), r"'resnet21' is not one of", r"\['archs'\]"),
    case("dataset-unknown", _set("datasets", ["mnist"]), r"'mnist' is not one of", r"\['datasets'\]"),
    case("method-unknown", _set("methods.pas", {}), r"'pas' is not one of"),
    case("method-transfer-only", _set("methods.pass_hypertransfer", {}), r"'pass_hypertransfer' is not one of"),
    case("method-option-unknown", _set("methods.pass.stepz", 6), r"'stepz' was unexpected", r"\['methods'\]\['pass'\]"),
    case(
        "method-option-not-a-mapping",
        _set("methods.l1", 3),
        r"3 is not of type 'object', 'null'",
        r"\['methods'\]\['l1'\]",
    ),
    case("method-option-bad-value", _set("methods.pass.bn_mode", "train"), r"'train' is not one of", r"\['bn_mode'\]"),
    case(
        "arch-settings-unused-arch",
        _set("arch_settings.resnet56", {"width": 0.5}),
        r"arch_settings: 'resnet56' is not in archs",
    ),
    case(
        "arch-settings-unknown-arch",
        _set("arch_settings.resnet21", {"width": 0.5}),
        r"'resnet21' is not one of",
        r"\['arch_settings'\]",
    ),
    case(
        "dataset-overrides-unused",
        _set("dataset_overrides", {"cifar10": {"image_size": 32}}),
        r"dataset_overrides: 'cifar10' is not used",
    ),
    case(
        "pretrain-bn-recalibration",
        _set("pretrain.train.bn_recalibration_batches", 2),
        r"pretrain\.train: bn_recalibration_batches is a finetune-only option",
    ),
    case(
        "pretrained-arch-without-weights",
        _set("pretrain.pretrained", True),
        r"archs: 'resnet20'.*ImageNet weights exist only for",
        r"arch_settings\.resnet20\.width: 0\.25",
    ),
    # transfer
    case(
        "transfer-kind-unknown",
        _set("transfer.0.kinds", ["weights"]),
        r"'weights' is not one of",
        r"\['transfer'\]\[0\]\['kinds'\]",
    ),
    case(
        "transfer-source-is-target",
        _set("transfer.0.target", "fashion_mnist_a"),
        r"transfer\[0\].*source and target are both 'fashion_mnist_a'",
    ),
    case(
        "transfer-method-not-in-methods",
        _set("transfer.0.method", "pass_norecur"),
        r"transfer\[0\].*method 'pass_norecur' is not in methods",
    ),
    case(
        "transfer-hypernet-baseline",
        _set("transfer.0.method", "l1"),
        r"transfer\[0\].*kinds has 'hypernet', which needs a PASS method.*got method 'l1'",
    ),
    case(
        "transfer-missing-source", _del("transfer.0.source"), r"'source' is a required property", r"\['transfer'\]\[0\]"
    ),
    case(
        "transfer-target-above-one",
        _set("transfer.0.targets", [2]),
        r"2 is greater than the maximum of 1",
        r"\['transfer'\]\[0\]\['targets'\]",
    ),
    case(
        "transfer-duplicate",
        lambda c: c["transfer"].append(dict(c["transfer"][0], kinds=["structure"])),
        r"transfer\[1\].*repeats runs of transfer\[0\]",
    ),
]


@pytest.mark.parametrize("mutation,expected", BAD)
def test_malformed_config_is_rejected_before_any_job(tmp_path, mutation, expected):
    cfg = copy.deepcopy(BASE)
    mutation(cfg)
    assert cfg != BASE
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc, workdir = _dry_run(tmp_path, configfile)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"snakemake accepted the malformed config:\n{out[-3000:]}"
    assert not (workdir / "results").exists(), "a job ran (results/ was created)"
    assert "Job stats" not in out, "snakemake planned jobs for a malformed config"
    assert re.search(r"Error validating config file|invalid config", out), out[-3000:]
    for pattern in expected:
        assert re.search(pattern, out), f"{pattern!r} not in snakemake's message:\n{out[:3000]}"


def test_semantic_errors_are_listed_together(tmp_path):
    """Two cross-reference mistakes at once: both are reported in one go."""
    cfg = copy.deepcopy(BASE)
    cfg["arch_settings"]["resnet56"] = {"width": 0.5}
    cfg["transfer"][0]["target"] = cfg["transfer"][0]["source"]
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc, workdir = _dry_run(tmp_path, configfile)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "source and target are both" in out and "arch_settings: 'resnet56'" in out, out[-3000:]


def test_pretrained_archs_with_imagenet_weights_pass(tmp_path):
    """The positive side of the pretrained check: the ImageNet archs at width 1.0 are accepted."""
    from passprune.models import IMAGENET_WEIGHTS

    cfg = copy.deepcopy(BASE)
    cfg["pretrain"]["pretrained"] = True
    cfg["archs"] = sorted(IMAGENET_WEIGHTS)
    cfg["arch_settings"] = {}
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc, _ = _dry_run(tmp_path, configfile)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


# ----------------------------------------------------------------------------- the shipped configs pass
def _expected_test_jobs(cfg: dict) -> dict[str, int]:
    """Jobs of a full run of config/test.yaml from scratch (the DAG's shape, computed from the config)."""
    pass_methods = {"pass", "pass_noprompt", "pass_norecur", "pass_uniform", "pass_nostats"}
    n_grid = len(cfg["datasets"]) * len(cfg["archs"]) * len(cfg["seeds"])
    n_pass = sum(m in pass_methods for m in cfg["methods"])
    n_base = len(cfg["methods"]) - n_pass
    n_t = len(cfg["targets"])
    transfer = cfg.get("transfer", [])
    assert all(t["source"] not in cfg["datasets"] and t["target"] not in cfg["datasets"] for t in transfer)
    assert all(t["method"] == "pass" and "targets" not in t and "archs" not in t for t in transfer)
    per_t = len(cfg["archs"]) * len(cfg["seeds"]) * n_t
    dense_extra = len({d for t in transfer for d in (t["source"], t["target"])}) * len(cfg["archs"]) * len(cfg["seeds"])
    n_hyper = sum("hypernet" in t["kinds"] for t in transfer) * per_t
    n_struct = sum("structure" in t["kinds"] for t in transfer) * per_t
    n_sources = len({t["source"] for t in transfer}) * per_t  # the source task's own PASS search
    return {
        "pretrain": n_grid + dense_extra,
        "search_pass": n_grid * n_pass * n_t + n_sources,
        "search": n_grid * n_base * n_t,
        "finetune": n_grid * len(cfg["methods"]) * n_t,
        "finetune_transfer": n_hyper,  # the hypernet kind's own search on the target, then fine-tuned
        "transfer_hypernet_search": n_hyper,
        "transfer_structure": n_struct,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }


def test_test_config_passes_and_plans_expected_jobs(tmp_path):
    proc, workdir = _dry_run(tmp_path, TEST_CONFIG)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not (workdir / "results").exists(), "a dry run must not create results/"
    counts = _job_counts(out)
    expected = _expected_test_jobs(BASE)
    total = counts.pop("total")
    assert counts == expected
    assert total == sum(expected.values()) == 3 + 2 * (len(BASE["methods"]) + 2) + 3  # 30 today


def test_configfile_replaces_the_default(tmp_path):
    """Where config/config.yaml exists (the repository root), --configfile config/test.yaml must not inherit
    its keys: merged, test.yaml would plan all 14 default methods. The Snakefile loads the default only
    when no --configfile is given. Reproduced in a scratch copy of the layout, not in the repo itself."""
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(DEFAULT_CONFIG.read_text())
    proc = _snakemake(workdir, "-n", "--cores", "1", "--configfile", str(TEST_CONFIG))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "is extended by additional config" not in out
    counts = _job_counts(out)
    counts.pop("total")
    assert counts == _expected_test_jobs(BASE)
    assert not re.search(r"/(random|fpgm|taylor|greg|depgraph|slimming)/macs", out), "default methods leaked in"


SHIPPED = [
    pytest.param(DEFAULT_CONFIG, id="config.yaml"),
    pytest.param(REPO / "config" / "paper.yaml", id="paper.yaml"),
    pytest.param(REPO / "config" / "claims-5seeds.yaml", id="claims-5seeds.yaml"),
    pytest.param(REPO / "config" / "pass-diagnosis.yaml", id="pass-diagnosis.yaml"),
]


@pytest.mark.parametrize("configfile", SHIPPED)
def test_shipped_config_passes(tmp_path, configfile):
    proc, workdir = _dry_run(tmp_path, configfile)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not (workdir / "results").exists()
    counts = _job_counts(out)
    cfg = yaml.safe_load(configfile.read_text())
    restrict = {a: set(v["datasets"]) for a, v in (cfg.get("arch_settings") or {}).items() if "datasets" in v}
    pairs = [(d, a) for d in cfg["datasets"] for a in cfg["archs"] if d in restrict.get(a, {d})]
    n_grid = len(pairs) * len(cfg["seeds"])
    assert counts["finetune"] >= n_grid * len(cfg["methods"]) * len(cfg["targets"])
    assert counts["aggregate"] == counts["report"] == 1


def test_optional_keys_may_be_left_out(tmp_path):
    """arch_settings, dataset_overrides and transfer are optional (arch_settings defaults to {} in the schema)."""
    cfg = copy.deepcopy(BASE)
    for key in ("arch_settings", "dataset_overrides", "transfer"):
        cfg.pop(key, None)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc, _ = _dry_run(tmp_path, configfile)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = _job_counts(out)
    assert counts["finetune"] == len(cfg["methods"]) * len(cfg["targets"])
    assert "transfer_structure" not in counts


def test_default_config_is_loaded_without_configfile(tmp_path):
    """Plain `snakemake -n` in a copy of the repo layout uses config/config.yaml (the embedded default)."""
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(DEFAULT_CONFIG.read_text())
    proc = _snakemake(workdir, "-n", "--cores", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert _job_counts(out)["aggregate"] == 1
