"""Typed stage settings: one home for defaults, and the schema and `passprune list` agree with it.

The schema (workflow/schemas/config.schema.yaml) validates a study before any job runs; the dataclasses of
passprune.settings parse each job's settings and hold every stage default. If the two drifted, a key the schema
accepts could be rejected by a job hours later; a default stated in the schema too could contradict the
dataclass's, so the schema's stage sections state none, and `passprune list` prints the dataclasses'.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from passprune.settings import (
    SECTIONS,
    DataSettings,
    FinetuneSettings,
    JobSettings,
    LatencySettings,
    SearchSettings,
    TrackingSettings,
    TrainSettings,
    defaults_of,
)

SCHEMA = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
PROPS = SCHEMA["properties"]
DEFS = SCHEMA["definitions"]

#: schema object -> the dataclass that parses the same section in a job
SCHEMA_SECTIONS = {
    "data": (PROPS["data"], DataSettings),
    "train": (DEFS["train"], FinetuneSettings),  # the shared train definition also carries the finetune-only key
    "search": (PROPS["search"], SearchSettings),
    "latency": (PROPS["latency"], LatencySettings),
    "tracking": (PROPS["tracking"], TrackingSettings),
}


#: Study-level keys the workflow resolves before any job sees them (passprune.study):
#: search.epochs becomes the PASS family's ``steps`` option.
STUDY_LEVEL = {"search": {"epochs"}}
#: Job-level keys the workflow sets, not the user: the study's MLflow state file.
WORKFLOW_SET = {"tracking": {"state_file"}}


@pytest.mark.parametrize("name", sorted(SCHEMA_SECTIONS))
def test_schema_properties_equal_the_dataclass_fields(name):
    schema, cls = SCHEMA_SECTIONS[name]
    fields = {f.name for f in dataclasses.fields(cls)} - WORKFLOW_SET.get(name, set())
    assert set(schema["properties"]) - STUDY_LEVEL.get(name, set()) == fields


@pytest.mark.parametrize("name", sorted(SCHEMA_SECTIONS))
def test_schema_states_no_stage_default(name):
    """passprune.settings is the one home of stage defaults: the schema's stage sections state none (a job
    fills what a config leaves out from the dataclass; the study resolves `tracking` the same way)."""
    schema, _ = SCHEMA_SECTIONS[name]
    stated = {key: prop["default"] for key, prop in schema["properties"].items() if "default" in prop}
    assert not stated, f"{name}: the schema states defaults {stated}; they live in passprune.settings only"


def test_passprune_list_prints_the_dataclass_defaults():
    """`passprune list` prints each stage section's defaults from passprune.settings, under its config key."""
    proc = subprocess.run(
        [sys.executable, "-m", "passprune.cli", "list"], capture_output=True, text=True, timeout=300, check=True
    )
    printed = proc.stdout[proc.stdout.index("stage settings") :].splitlines()[1:]
    want = [
        f"  {key:20s} " + ", ".join(f"{k}={v!r}" for k, v in defaults_of(cls).items()) for key, cls in SECTIONS.items()
    ]
    assert printed == want
    assert set(SECTIONS) == {"data", "pretrain.train", "finetune", "search", "latency", "tracking"}


def test_the_study_resolves_tracking_from_the_dataclass():
    """The tracking keys a config leaves out come from TrackingSettings (the jobs get them in the environment)."""
    import passprune.study as S

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config/test.yaml").read_text())
    cfg["tracking"] = {"enabled": True, "uri": "sqlite:///x.db", "experiment": "e"}
    tracking = S.check(cfg).resolved_config()["tracking"]
    defaults = {k: v for k, v in defaults_of(TrackingSettings).items() if k != "state_file"}
    assert tracking == {**defaults, **cfg["tracking"]}


def test_finetune_settings_are_train_settings_plus_bn_recalibration():
    ft = {f.name for f in dataclasses.fields(FinetuneSettings)}
    assert ft - {f.name for f in dataclasses.fields(TrainSettings)} == {"bn_recalibration_batches"}
    s = FinetuneSettings(epochs=2, lr=0.05, bn_recalibration_batches=3)
    assert s.train() == TrainSettings(epochs=2, lr=0.05)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"data": {"rot": "data"}}, r"settings data: unknown keys \['rot'\]"),
        ({"train": {"learning_rate": 0.1}}, r"settings train: unknown keys \['learning_rate'\]"),
        ({"latency": {"repeat": 3}}, r"settings latency: unknown keys \['repeat'\]"),
        ({"serach": {}}, r"settings: unknown keys \['serach'\]"),
        ({"train": {"epochs": 1, "bn_recalibration_batches": 5}}, "a fine-tuning option"),
        ({"finetune": {"epochs": 1, "bn_recalbration_batches": 5}}, r"settings finetune: unknown keys"),
        ({"train": {"schedule": "linear"}}, "train.schedule"),
        ({"data": 3}, "settings data: expected an object"),
        ({"tracking": {"enabled": True, "lve": False}}, r"settings tracking: unknown keys \['lve'\]"),
    ],
)
def test_unknown_or_misplaced_keys_fail_with_their_name(bad, match):
    with pytest.raises(ValueError, match=match):
        JobSettings.from_dict(bad, "pretrain")


def test_a_finetune_job_reads_its_budget_under_finetune_only():
    """Each stage's settings travel under their own name: a finetune job given `train` would silently run the
    default budget, so it is refused."""
    with pytest.raises(ValueError, match="a finetune job reads its budget under finetune"):
        JobSettings.from_dict({"train": {"epochs": 3}}, "finetune")
    s = JobSettings.from_dict({"train": {"epochs": 3}, "finetune": {"epochs": 2}}, "pretrain")
    assert (s.train.epochs, s.finetune.epochs) == (3, 2)


def test_job_settings_parse_a_resolved_workflow_object():
    raw = {
        "data": {"root": "d", "val_size": 100, "train_subset": 500},
        "device": "cpu",
        "finetune": {"epochs": 2, "batch_size": 32, "lr": 0.01, "bn_recalibration_batches": 4},
        "latency": {"enabled": True, "batch_sizes": [1, 8], "repeats": 3},
        "threads": 2,
    }
    s = JobSettings.from_dict(raw, "finetune")
    assert s.finetune.bn_recalibration_batches == 4 and s.finetune.train().epochs == 2
    assert s.latency.batch_sizes == (1, 8) and s.data.val_size == 100 and s.threads == 2
    assert s.raw == raw  # recorded as given in metrics.json
    assert s.search == SearchSettings()  # a section a stage does not get stays at the defaults
