"""The config schema, the cross-reference checks and the jobs a config plans, through passprune.study in-process;
a handful of Snakemake dry runs prove that the rules are wired to it.

* The schema's enums (architectures, datasets, methods) and the per-method option names equal what passprune
  registers, so the schema cannot drift from the code.
* Malformed configs, each config/test.yaml with ONE change, are rejected by ``passprune.study.check`` with a
  message that names the offending key or value; every problem is listed at once.
* The shipped configs pass and plan the pinned number of jobs; the dense digests of the embedded default are
  pinned (a change would orphan every dense model already trained).
* Snakemake (few runs: each costs seconds, the paper grid half a minute) plans exactly the study's jobs with
  exactly its settings, loads the embedded default only without --configfile, and stops before any job on a
  bad config.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake_output import job_counts, planned_jobs

import passprune.study as S

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TEST_CONFIG = REPO / "config" / "test.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
TRANSFER_ONLY_METHODS = {"pass_hypertransfer"}  # run by the transfer rules, never listed under `methods`
TIMEOUT = 300

BASE = yaml.safe_load(TEST_CONFIG.read_text())


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


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


def test_the_study_module_never_imports_torch():
    """Snakemake imports passprune.study to plan a study on a login node: it must stay torch-free."""
    code = (
        "import sys, passprune.study as S; S.jobs(S.load('config/test.yaml')); "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- malformed configs
def _set(path: str, value):
    """A mutation that sets a dotted key; list items by index (``transfer.0.method``)."""

    def mutate(cfg):
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
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


def _both(*mutations):
    def mutate(cfg):
        for m in mutations:
            m(cfg)

    return mutate


def case(id_, mutation, *expected):
    """``expected``: regexes that must all occur in the error (they name the key or the value)."""
    return pytest.param(mutation, expected, id=id_)


SCHEMA_CASES = [
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
    case("val-size-zero", _set("data.val_size", 0), r"\['data'\]\['val_size'\]", r"less than the minimum of 1"),
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
    case("key-typo-targts", _rename("targets", "targts"), r"'targts' was unexpected", r"known keys: \[.*'targets'"),
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
        "arch-settings-unknown-arch",
        _set("arch_settings.resnet21", {"width": 0.5}),
        r"'resnet21' is not one of",
        r"\['arch_settings'\]",
    ),
    case(
        "transfer-kind-unknown",
        _set("transfer.0.kinds", ["weights"]),
        r"'weights' is not one of",
        r"\['transfer'\]\[0\]\['kinds'\]",
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
    case("tracking-state-file-is-not-a-key", _set("tracking.state_file", "x.json"), r"'state_file' was unexpected"),
]

SEMANTIC_CASES = [
    case("targets-same-folder", _set("targets", [0.5, 0.5000001]), r"targets: .*same run folder"),
    case(
        "arch-settings-unused-arch",
        _set("arch_settings.resnet56", {"width": 0.5}),
        r"arch_settings: 'resnet56' is not in archs",
    ),
    case(
        "arch-settings-datasets-unknown",
        _set("arch_settings.resnet20.datasets", ["fashion_mnist_a"]),
        r"arch_settings\.resnet20\.datasets: 'fashion_mnist_a' is not in datasets",
    ),
    case(
        "arch-settings-methods-unknown",
        _set("arch_settings.resnet20.methods", ["pass", "slimming"]),
        r"arch_settings\.resnet20\.methods: 'slimming' is not a method of this study",
    ),
    case(
        "arch-settings-methods-without-reference",
        _both(_set("methods.scratch", {}), _set("arch_settings.resnet20.methods", ["scratch", "l1"])),
        r"arch_settings\.resnet20\.methods: 'scratch' reuses 'pass'.*add 'pass' to arch_settings\.resnet20\.methods",
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
    case(
        "tracking-neither-live-nor-sync",
        _both(_set("tracking.live", False), _set("tracking.sync", False)),
        r"tracking: live: false needs sync: true",
    ),
    case(
        "epochs-and-steps",
        _both(
            _set("search.epochs", 2),
            _set("dataset_overrides", {"fashion_mnist": {"pretrain": {"bn_recalibration_batches": 3}}}),
        ),
        r"methods\.pass\.steps: the search length is also given in epochs",
        r"dataset_overrides\.fashion_mnist\.pretrain: bn_recalibration_batches is a finetune-only option",
    ),
    case(
        "epochs-with-batch-above-split",
        _both(
            _set("search.epochs", 1),
            _set("methods.pass", {}),
            _set("methods.pass_uniform", {}),
            _set("search.batch_size", 5000),
        ),
        r"search\.epochs: fashion_mnist's training split has 1000 images, fewer than its search batch size 5000",
    ),
    case(
        "variant-clashes-with-a-method",
        _set("variants", {"l1": {"base": "pass", "options": {"steps": 2}}}),
        r"variants\.l1: the name is a registered method's",
    ),
    case(
        "variant-base-unknown",
        _set("variants", {"fast": {"base": "pas"}}),
        r"variants\.fast\.base: 'pas' is not a registered method",
    ),
    case(
        "variant-option-of-another-method",
        _set("variants", {"fast": {"base": "l1", "options": {"steps": 2}}}),
        r"variants\.fast\.options: .*'steps' was unexpected.*the options of 'l1'",
    ),
    case(
        "control-reference-not-run",
        _set("methods.random_widths", {"reference": "pass_noprompt"}),
        r"methods\.random_widths\.reference: 'pass_noprompt' is not a method of this study",
    ),
    case(
        "control-reference-is-a-control",
        _both(_set("methods.random_widths", {}), _set("methods.scratch", {"reference": "random_widths"})),
        r"methods\.scratch\.reference: 'random_widths' is itself a control",
    ),
    case(
        "claims-missing",
        _set("claims", "config/no-such-claims.yaml"),
        r"claims: 'config/no-such-claims\.yaml' does not exist",
    ),
    # transfer
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
        "transfer-duplicate",
        lambda c: c["transfer"].append(dict(c["transfer"][0], kinds=["structure"])),
        r"transfer\[1\].*repeats runs of transfer\[0\]",
    ),
]


def _rejected(mutation) -> str:
    cfg = copy.deepcopy(BASE)
    mutation(cfg)
    assert cfg != BASE
    with pytest.raises(S.StudyError) as err:
        S.check(cfg)
    return str(err.value)


def _assert_named(mutation, prefix: str, expected) -> None:
    """The mutated config is rejected with a message that starts with ``prefix`` and matches every pattern."""
    msg = _rejected(mutation)
    assert msg.startswith(prefix), msg
    for pattern in expected:
        assert re.search(pattern, msg), f"{pattern!r} not in the message:\n{msg}"


@pytest.mark.parametrize("mutation,expected", SCHEMA_CASES)
def test_schema_violation_is_named(mutation, expected):
    _assert_named(mutation, "invalid config (workflow/schemas/config.schema.yaml):", expected)


@pytest.mark.parametrize("mutation,expected", SEMANTIC_CASES)
def test_cross_reference_problem_is_named(mutation, expected):
    _assert_named(mutation, "invalid config:", expected)


def test_problems_are_listed_together():
    """Two schema violations at once are both reported; so are two cross-reference mistakes."""
    msg = _rejected(_both(_set("targets", [0]), _set("seeds", [])))
    assert "['targets'][0]" in msg and "['seeds']" in msg and msg.count("\n  - ") == 2, msg
    msg = _rejected(_both(_set("arch_settings.resnet56", {"width": 0.5}), _set("transfer.0.target", "fashion_mnist_a")))
    assert "source and target are both" in msg and "arch_settings: 'resnet56'" in msg, msg


# ----------------------------------------------------------------------------- valid configs
def test_pretrained_archs_with_imagenet_weights_pass():
    """The positive side of the pretrained check: the ImageNet archs at width 1.0 are accepted."""
    from passprune.study.registry import capabilities  # == passprune.models.IMAGENET_WEIGHTS (test_registry_export)

    cfg = copy.deepcopy(BASE)
    cfg["pretrain"]["pretrained"] = True
    cfg["archs"] = list(capabilities().imagenet_archs)
    cfg["arch_settings"] = {}
    S.check(cfg)


def test_optional_keys_may_be_left_out_and_schema_defaults_are_filled():
    """arch_settings, dataset_overrides, transfer and the keys with a schema default are optional; the study
    fills the defaults into a copy (the caller's config is untouched)."""
    cfg = copy.deepcopy(BASE)
    for key in ("arch_settings", "dataset_overrides", "transfer"):
        cfg.pop(key, None)
    given = copy.deepcopy(cfg)
    study = S.check(cfg)
    assert cfg == given
    assert {k: study.config[k] for k in ("claims", "variants", "protect_dense", "arch_settings")} == {
        "claims": None,
        "variants": {},
        "protect_dense": False,
        "arch_settings": {},
    }
    counts = S.counts(S.jobs(study))
    assert counts["finetune"] == len(cfg["methods"]) * len(cfg["targets"])
    assert "transfer_structure" not in counts


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
    # the sparsity *_tp methods train once per (dataset, arch, seed), shared by every target (rule sparsify)
    n_shared = sum(m in ("bn_scale_tp", "depgraph_tp", "greg_tp") and (o or {}).get("epochs", 1) > 0
                   for m, o in cfg["methods"].items())  # fmt: skip
    return {
        "pretrain": n_grid + dense_extra,
        "search": n_grid * n_base * n_t,
        "search_pass": n_grid * n_pass * n_t + n_sources,
        "sparsify": n_grid * n_shared,
        "finetune": n_grid * len(cfg["methods"]) * n_t,
        "transfer_hypernet_search": n_hyper,
        "transfer_structure": n_struct,
        "finetune_transfer": n_hyper,  # the hypernet kind's own search on the target, then fine-tuned
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }


def test_test_config_plans_the_expected_jobs():
    counts = S.counts(S.jobs(S.check(BASE)))
    assert list(counts.items()) == list(_expected_test_jobs(BASE).items())  # Snakemake's table order too
    assert counts["sparsify"] == 3  # bn_scale_tp, depgraph_tp, greg_tp: one training each, whatever the targets
    assert sum(counts.values()) == 3 + 2 * (len(BASE["methods"]) + 2) + 3 + 3  # 33 today (30 before rule sparsify)


def test_arch_settings_methods_restrict_an_archs_grid_only():
    """``arch_settings.<arch>.methods`` drops the other labels' searches, sparsity trainings and fine-tunings on
    that arch (and their summary rows); dense models and transfers stay."""
    cfg = copy.deepcopy(BASE)
    cfg["arch_settings"]["resnet20"]["methods"] = ["pass", "l1", "depgraph_tp"]
    counts = S.counts(S.jobs(S.check(cfg)))
    full = _expected_test_jobs(BASE)
    assert counts["pretrain"] == full["pretrain"] and counts["transfer_structure"] == full["transfer_structure"]
    assert (counts["search_pass"], counts["search"], counts["sparsify"], counts["finetune"]) == (
        full["search_pass"] - 1,  # pass_uniform dropped; the transfer source's search stays
        2,  # l1, depgraph_tp
        1,  # depgraph_tp's
        3,
    )
    study = S.check(cfg)
    metrics = set(S.all_metrics(study))
    target = S.fmt_target(BASE["targets"][0])
    runs = {
        label
        for label in study.labels
        if f"{study.layout.run_dir('fashion_mnist', 'resnet20', 0, label, target)}/metrics.json" in metrics
    }
    assert runs == {"pass", "l1", "depgraph_tp"}


#: Every shipped study config -> its jobs, as Snakemake counted them when the planning moved to passprune.study,
#: plus one shared sparsity training (rule sparsify) per (dataset, arch, seed, method) of slimming, depgraph and the
#: sparsity *_tp methods (before that rule: 40, 30, 5349, 1785, 118, 88, 88, 98).
SHIPPED_JOBS = {
    "config.yaml": 42,
    "test.yaml": 33,
    "paper.yaml": 5457,
    "cifar-scratch.yaml": 1821,
    "claims-5seeds.yaml": 128,
    "claims-budget.yaml": 98,  # 5 dense + 5 twins (convergence_epochs), 5 sparsity trainings, 20 searches, 4 methods x 5 seeds x 3 budgets, 3
    "claims-faithful.yaml": 98,
    "pass-diagnosis.yaml": 98,
}


@pytest.mark.parametrize("name", sorted(SHIPPED_JOBS))
def test_shipped_config_passes(name):
    study = S.load(REPO / "config" / name)
    job_list = S.jobs(study)
    counts = S.counts(job_list)
    assert sum(counts.values()) == SHIPPED_JOBS[name], counts
    cfg = study.config
    assert counts["finetune"] >= len(study.grid_pairs()) * len(cfg["seeds"]) * len(study.labels) * len(cfg["targets"])
    assert counts["aggregate"] == counts["report"] == counts["all"] == 1
    seen: set[str] = set()
    for j in job_list:  # each job once, after the jobs it reads from
        assert j.key not in seen and set(j.deps) <= seen, j
        seen.add(j.key)


def test_shipped_configs_are_all_pinned():
    configs = {p.name for p in (REPO / "config").glob("*.yaml") if "study" in yaml.safe_load(p.read_text())}
    assert configs == set(SHIPPED_JOBS), "pin the new config's job count in SHIPPED_JOBS"


def test_dense_digests_are_pinned():
    """dense_id names every dense model's folder: a change to the pretrain settings' JSON would orphan them all."""
    default = S.load(DEFAULT_CONFIG)
    assert S.dense_id(default, "fashion_mnist", "resnet20") == "bb09366028ec"
    assert S.dense_id(default, "fashion_mnist_a", "resnet20") == "8d5b530cedd5"
    test = S.check(BASE)
    assert {S.dense_id(test, d, "resnet20") for d in ("fashion_mnist", "fashion_mnist_a", "fashion_mnist_b")} == {
        "cddd4032fc8f"
    }
    settings = S.job_settings(default, "pretrain", dataset="fashion_mnist", arch="resnet20", seed="0")
    assert set(settings) == {"data", "device", "model", "train"}  # nothing a dense model does not depend on


def test_each_stage_gets_its_own_section():
    """A stage's recipe travels under its own name: train (pretraining), search, finetune; nothing else."""
    study = S.check(BASE)
    search = S.job_settings(study, "search", dataset="fashion_mnist", method="pass")
    assert set(search) == {"data", "device", "search", "method_options"}
    assert search["method_options"] == BASE["methods"]["pass"]
    fine = S.job_settings(study, "finetune", dataset="fashion_mnist")
    assert set(fine) == {"data", "device", "finetune", "latency"} and fine["finetune"] == BASE["finetune"]
    with pytest.raises(ValueError, match="no job settings for stage 'report'"):
        S.job_settings(study, "report", dataset="fashion_mnist")


def test_still_to_run_skips_what_a_workdir_has(tmp_path):
    """A dense model on disk is not trained again; its dependants are still to run when their outputs are missing."""
    job_list = S.jobs(S.check(BASE))
    dense = next(j for j in job_list if j.rule == "pretrain" and j.dataset == "fashion_mnist")
    for out in dense.outputs:
        (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / out).write_text("x")
    todo = S.still_to_run(job_list, tmp_path)
    assert len(todo) == len(job_list) - 1 and dense not in todo
    for j in job_list:
        for out in j.outputs:
            (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / out).write_text("x")
    assert S.still_to_run(job_list, tmp_path) == []


# ----------------------------------------------------------------------------- through Snakemake: the wiring
def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake <args> -s Snakefile -d workdir`` with this interpreter's venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(SNAKEFILE), "-d", str(workdir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def test_snakemake_plans_the_study_jobs_and_settings(tmp_path):
    """config/test.yaml from a working directory that also holds config/config.yaml: --configfile replaces the
    embedded default (merged, test.yaml would inherit its methods), and Snakemake plans exactly the study's jobs,
    each handed exactly the study's settings."""
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(DEFAULT_CONFIG.read_text())
    proc = _snakemake(workdir, "-n", "-p", "--quiet", "reason", "--cores", "1", "--configfile", str(TEST_CONFIG))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "is extended by additional config" not in out
    assert not (workdir / "results").exists(), "a dry run must not create results/"
    job_list = S.jobs(S.check(BASE))
    assert list(job_counts(out, required=True).items()) == list(S.counts(job_list).items())
    expected = {(j.rule, os.path.dirname(j.outputs[0]), S.settings_json(j.settings)) for j in job_list if j.stage}
    assert planned_jobs(out) == expected


def test_snakemake_loads_the_default_without_configfile(tmp_path):
    """Plain `snakemake -n` in a copy of the repo layout uses config/config.yaml (the embedded default)."""
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(DEFAULT_CONFIG.read_text())
    proc = _snakemake(workdir, "-n", "--cores", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert (
        job_counts(out, required=True) == S.counts(S.jobs(S.load(DEFAULT_CONFIG)))
        and sum(job_counts(out, required=True).values()) == 42
    )
    # upstream first: Snakemake's scheduler sums the chosen jobs' priorities, so each stage must outweigh any
    # number of the next stage's jobs that fit beside it (else a 2-thread pretraining starves on 2 cores)
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", out, re.M)

    def priority(block: str) -> float:  # Snakemake prints no priority line for 0
        m = re.search(r"^    priority: ([\d.]+)$", block, re.M)
        return float(m.group(1)) if m else 0.0

    got = {rule: priority(block) for rule, block in jobs if rule != "finetune"}
    assert {"pretrain", "sparsify", "search", "search_pass", "transfer_hypernet_search"} <= set(got), got
    order = [got["pretrain"], got["sparsify"], got["search"]]
    assert all(hi >= 100 * lo for hi, lo in zip(order, order[1:], strict=False)) and got["search"] > 0, got
    assert got["search_pass"] == got["transfer_hypernet_search"] == got["search"], got
    # among fine-tunings the control that retrains from scratch (the longest) first, still after every search
    finetune = {re.search(r"method=(\w+)", b).group(1): priority(b) for r, b in jobs if r == "finetune"}
    assert 0 < finetune.pop("scratch") < got["search"] and set(finetune.values()) == {0.0}, finetune


@pytest.mark.parametrize(
    "mutation, expected",
    [
        pytest.param(_both(_set("targets", [0]), _set("seeds", [])), ["['targets'][0]", "['seeds']"], id="schema"),
        pytest.param(
            _both(_set("arch_settings.resnet56", {"width": 0.5}), _set("transfer.0.target", "fashion_mnist_a")),
            ["arch_settings: 'resnet56'", "source and target are both"],
            id="cross-reference",
        ),
    ],
)
def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path, mutation, expected):
    cfg = copy.deepcopy(BASE)
    mutation(cfg)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = _snakemake(workdir, "-n", "--cores", "1", "--configfile", str(configfile))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"snakemake accepted the malformed config:\n{out[-3000:]}"
    assert not (workdir / "results").exists(), "a job ran (results/ was created)"
    assert "Job stats" not in out and "invalid config" in out, out[-3000:]
    for text in expected:
        assert text in out, f"{text!r} not in snakemake's message:\n{out[-3000:]}"


def test_snakemake_plans_the_paper_grid_as_the_study_does(tmp_path):
    """config/paper.yaml at its first seed and target: every rule, dataset override, arch and transfer of the paper
    grid in a tenth of its jobs (a dry run of all of them takes half a minute; test_shipped_config_passes pins
    their count in-process). Snakemake's job table equals the study's, rule by rule."""
    cfg = yaml.safe_load(PAPER_CONFIG.read_text())
    cfg.update(seeds=cfg["seeds"][:1], targets=cfg["targets"][:1])
    configfile = tmp_path / "paper-one-seed-one-target.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = _snakemake(tmp_path, "-n", "--quiet", "rules", "--cores", "1", "--configfile", str(configfile))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = S.counts(S.jobs(S.check(cfg)))
    assert list(job_counts(out, required=True).items()) == list(counts.items())
    assert set(counts) == set(S.counts(S.jobs(S.load(PAPER_CONFIG))))  # every rule the full grid runs


def test_settings_json_is_what_a_job_reads():
    """The params string is the settings object, keys sorted (equal settings, equal strings: no false reruns)."""
    s = S.job_settings(S.check(BASE), "finetune", dataset="fashion_mnist")
    assert json.loads(S.settings_json(s)) == s and S.settings_json(s) == json.dumps(s, sort_keys=True)
