"""Typed stage settings: one home for defaults, and the schema agrees with it.

The schema (workflow/schemas/config.schema.yaml) validates a study before any job runs; the dataclasses of
passprune.settings parse each job's settings. If the two drifted, a key the schema accepts could be rejected
by a job hours later (or a default stated in one place would be contradicted by the other).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from passprune.settings import (
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
SECTIONS = {
    "data": (PROPS["data"], DataSettings),
    "train": (DEFS["train"], FinetuneSettings),  # the shared train definition also carries the finetune-only key
    "search": (PROPS["search"], SearchSettings),
    "latency": (PROPS["latency"], LatencySettings),
    "tracking": (PROPS["tracking"], TrackingSettings),
}


#: Study-level keys the workflow resolves before any job sees them (workflow/rules/common.smk):
#: search.epochs becomes the PASS family's ``steps`` option.
STUDY_LEVEL = {"search": {"epochs"}}
#: Job-level keys the workflow sets, not the user: the study's MLflow state file.
WORKFLOW_SET = {"tracking": {"state_file"}}


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_schema_properties_equal_the_dataclass_fields(name):
    schema, cls = SECTIONS[name]
    fields = {f.name for f in dataclasses.fields(cls)} - WORKFLOW_SET.get(name, set())
    assert set(schema["properties"]) - STUDY_LEVEL.get(name, set()) == fields


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_schema_defaults_equal_the_dataclass_defaults(name):
    schema, cls = SECTIONS[name]
    defaults = defaults_of(cls)
    for key, prop in schema["properties"].items():
        if "default" in prop:
            want = defaults[key]
            got = tuple(prop["default"]) if isinstance(want, tuple) else prop["default"]
            assert got == want, f"{name}.{key}: schema says {prop['default']!r}, passprune.settings says {want!r}"


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
        ({"train": {"schedule": "linear"}}, "train.schedule"),
        ({"data": 3}, "settings data: expected an object"),
        ({"tracking": {"enabled": True, "lve": False}}, r"settings tracking: unknown keys \['lve'\]"),
    ],
)
def test_unknown_or_misplaced_keys_fail_with_their_name(bad, match):
    with pytest.raises(ValueError, match=match):
        JobSettings.from_dict(bad, "pretrain")


def test_job_settings_parse_a_resolved_workflow_object():
    raw = {
        "data": {"root": "d", "val_size": 100, "train_subset": 500},
        "device": "cpu",
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "bn_recalibration_batches": 4},
        "latency": {"enabled": True, "batch_sizes": [1, 8], "repeats": 3},
        "threads": 2,
    }
    s = JobSettings.from_dict(raw, "finetune")
    assert s.finetune.bn_recalibration_batches == 4 and s.finetune.train().epochs == 2
    assert s.latency.batch_sizes == (1, 8) and s.data.val_size == 100 and s.threads == 2
    assert s.raw == raw  # recorded as given in metrics.json
    assert s.search == SearchSettings()  # a section a stage does not get stays at the defaults
