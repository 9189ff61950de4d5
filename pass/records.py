"""The ``metrics.json`` record: one finished run, written by the stages and read by the report.

Writer and reader share this contract (the keys every record carries, their types, the run identity), so a
record a stage writes is exactly one the report accepts: :func:`write_record` validates before writing, with
the same check :func:`load_metrics` applies when reading. Torch-free, like the whole report layer.

A record is a JSON object: the keys below, plus every other fact the stage measured (scalar keys become
``summary.csv`` columns; nested ones -- training history, settings, provenance, kept channels -- stay in the
file).

Where a record says what it ran on: its ``provenance`` object (:func:`passprune.files.provenance`, which every
stage calls) carries ``device`` (``cuda:0``, ``cpu``), ``gpu_name`` (null on the CPU), ``torch``, ``cuda`` (the
CUDA the wheel was built for) and ``cudnn`` (:func:`passprune.devices.runtime_info`). They are provenance, not
required keys, and the byte-identity checks (tests/test_determinism.py, tests/test_resume.py) skip the whole
provenance object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Keys every metrics.json must carry (present and not null).
REQUIRED_KEYS: tuple[str, ...] = (
    "stage",
    "dataset",
    "arch",
    "seed",
    "method",
    "family",
    "target",
    "top1",
    "top1_before_ft",
    "val_top1",
    "macs",
    "params",
)

#: Extra keys a pruned run (stage "finetune") must carry; a dense run gets fixed values instead.
REQUIRED_FINETUNE_KEYS: tuple[str, ...] = ("speedup_macs", "search_seconds")

#: What a dense (unpruned) row means for the comparison columns: it *is* the reference.
DENSE_DEFAULTS: dict[str, Any] = {
    "speedup_macs": 1.0,
    "speedup_latency": 1.0,
    "search_seconds": 0.0,
    "macs_ratio": 1.0,
    "source": None,
}

#: Identity of a run; two files with the same identity would be double-counted in the mean over seeds.
RUN_KEY: tuple[str, ...] = ("dataset", "arch", "method", "target", "seed", "source")

_NUMERIC_REQUIRED = ("seed", "target", "top1", "top1_before_ft", "val_top1", "macs", "params")


def validate_record(metrics: Any, where: str | os.PathLike) -> dict[str, Any]:
    """Raise ``ValueError`` naming ``where`` when ``metrics`` is not a complete run record."""
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(metrics).__name__}")
    missing = _missing(metrics, REQUIRED_KEYS)
    if metrics.get("stage") not in (None, "pretrain"):
        missing += _missing(metrics, REQUIRED_FINETUNE_KEYS)
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")
    bad = [k for k in _NUMERIC_REQUIRED if isinstance(metrics[k], bool) or not isinstance(metrics[k], (int, float))]
    if isinstance(metrics["seed"], float) and not bad:
        if not float(metrics["seed"]).is_integer():
            bad.append("seed")
    if bad:
        raise ValueError(f"{where}: non-numeric values for keys {bad}")
    return metrics


def write_record(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Validate, then write atomically: a stage can never leave a record the report would reject."""
    from .files import atomic_write_json

    validate_record(metrics, path)
    return atomic_write_json(path, metrics)


def _missing(metrics: dict[str, Any], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if metrics.get(k) is None]


def load_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one ``metrics.json`` (nested values kept).

    Raises ``ValueError`` naming the file when it is not JSON, not a JSON object, lacks required keys
    (missing or null), or has non-numeric values where numbers are required -- so a broken job is
    reported by name instead of surfacing later as a NaN in a table.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        metrics = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    return validate_record(metrics, path)
