"""The workflow's view of the registries is generated from them, never copied by hand.

workflow/registry.yaml (read by passprune.study to plan a study) and the schema's arch/dataset/method enums are
written by ``passprune registry --write``; these tests fail when a registration changed and the files were
not regenerated, and check that the capability flags say what the methods do.
"""

from __future__ import annotations

import subprocess
import sys

import yaml

from passprune.methods import get_method, list_methods
from passprune.models import IMAGENET_WEIGHTS
from passprune.registry_export import REGISTRY_FILE, registry_data, stale_files


def test_generated_files_are_current():
    stale = stale_files()
    assert not stale, f"stale: {sorted(map(str, stale))}; run `passprune registry --write`"
    proc = subprocess.run(
        [sys.executable, "-m", "passprune.cli", "registry", "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_registry_file_is_what_the_registries_say():
    data = yaml.safe_load(REGISTRY_FILE.read_text())
    assert data == registry_data()
    assert data["imagenet_archs"] == sorted(IMAGENET_WEIGHTS)
    assert set(data["methods"]) == set(list_methods())


def test_the_study_plans_with_the_registries_capabilities():
    """What passprune.study reads from the generated file equals what the methods and models declare."""
    from passprune.study.registry import capabilities

    caps = capabilities()
    live = {m: get_method(m) for m in list_methods() if not get_method(m).transfer_only}
    assert caps.pass_methods == tuple(sorted(m for m, s in live.items() if s.saves_hypernet))
    assert caps.reference_methods == {m: s.defaults["reference"] for m, s in live.items() if s.needs_reference}
    assert caps.imagenet_archs == tuple(sorted(IMAGENET_WEIGHTS))


def test_capability_flags():
    """The PASS family saves a hypernetwork; the controls read a reference; sparsity learners train weights."""
    flags = {m: get_method(m) for m in list_methods()}
    assert {m for m, s in flags.items() if s.saves_hypernet and not s.transfer_only} == {
        "pass",
        "pass_noprompt",
        "pass_norecur",
        "pass_uniform",
        "pass_nostats",
    }
    assert {m for m, s in flags.items() if s.needs_reference} == {"random_widths", "scratch"}
    assert {m for m, s in flags.items() if s.transfer_only} == {"pass_hypertransfer"}
    trains = {m for m, s in flags.items() if s.trains_weights}
    assert trains == {"slimming", "greg", "depgraph", "bn_scale_tp", "depgraph_tp", "greg_tp"}
    for m in trains:  # exactly the methods with a sparsity-training budget
        assert "epochs" in get_method(m).defaults, m
