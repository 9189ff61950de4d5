"""The config schema (``workflow/schemas/config.schema.yaml``), applied as Snakemake's ``validate`` applies it.

Why not ``snakemake.utils.validate``: the tools (``passprune estimate``, ``prefetch``) and the tests resolve a
config without Snakemake. Same schema, same behaviour: JSON Schema draft 2020-12, and every ``default:`` the
schema states is filled into the config as it is validated. Unlike Snakemake's, which stops at the first
problem, every schema violation is listed, each with the key it is about and the rule it breaks.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = Path("workflow") / "schemas" / "config.schema.yaml"


@lru_cache(maxsize=4)
def load_schema(repo: Path = REPO) -> dict[str, Any]:
    """The schema of the repository ``repo`` (cached: it is read once per process)."""
    return yaml.safe_load((repo / SCHEMA_PATH).read_text())


def _validator(schema: dict[str, Any]):
    """A draft 2020-12 validator that fills each property's ``default`` into the instance it validates."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from check_properties(validator, properties, instance, sub)

    return validators.extend(Draft202012Validator, {"properties": properties_with_defaults})(schema)


def _index(path) -> str:
    return "".join(f"[{p!r}]" for p in path)


def describe(err) -> str:
    """One schema violation as a line: the key, what is wrong with it, and the schema rule it breaks."""
    line = f"config{_index(err.absolute_path)}: {err.message}"
    if err.validator == "additionalProperties" and isinstance(err.schema.get("properties"), dict):
        line += f"; known keys: {sorted(err.schema['properties'])}"
    if err.validator in ("oneOf", "anyOf") and err.context:  # say why each alternative failed
        line += " (" + "; ".join(dict.fromkeys(sub.message for sub in err.context)) + ")"
    return f"{line} (failed {err.validator!r} in schema{_index(list(err.absolute_schema_path)[:-1])})"


def validate(config: dict[str, Any], repo: Path = REPO) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``config`` with the schema's defaults filled in, and every violation (empty when it is valid)."""
    resolved = copy.deepcopy(dict(config))
    errors = _validator(load_schema(repo)).iter_errors(resolved)
    return resolved, [describe(e) for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])]
