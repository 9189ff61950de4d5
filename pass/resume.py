"""Resume checkpoints: one format and one load path for every resumable loop (``engine.train``, PASS's search).

Why: an interrupted job (a preempted SLURM task, a killed laptop run) must continue to exactly the result of
an uninterrupted one, and must never continue someone else's run. A checkpoint is a dict holding a
``fingerprint`` (a digest of everything the run's trajectory depends on), the ``state_dict`` of each stateful
object under its name, and plain extras (epoch or step, history, best-so-far). It is resumed only when the
fingerprint matches and every object the loop needs is in it; otherwise it is ignored with a message, never
half-loaded. Files are written atomically, so a kill during the save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from .files import atomic_torch_save


class Stateful(Protocol):
    """Anything with torch's ``state_dict`` / ``load_state_dict`` pair (modules, optimisers, schedulers)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def save(path: str | Path, fingerprint: str, stateful: Mapping[str, Stateful], **extras: Any) -> Path:
    """Write the state of every object in ``stateful`` (by name) and the ``extras`` to ``path``, atomically."""
    record = {"fingerprint": fingerprint, **{name: obj.state_dict() for name, obj in stateful.items()}, **extras}
    return atomic_torch_save(record, path)


def load(
    path: str | Path | None,
    fingerprint: str,
    stateful: Mapping[str, Stateful],
    *,
    map_location: torch.device | str,
    tag: str,
    belongs: str,
) -> dict[str, Any] | None:
    """Load a checkpoint of this very run into the objects of ``stateful``; return it (for its extras), or
    None when there is none to resume from.

    ``tag`` prefixes the messages (the loop's name); ``belongs`` says what a foreign fingerprint means
    ("another configuration", "another search (...)").
    """
    if path is None or not Path(path).exists():
        return None
    ck = torch.load(path, map_location=map_location, weights_only=False)
    if ck.get("fingerprint", "") != fingerprint:
        print(f"[{tag}] ignoring {path}: it belongs to {belongs}", file=sys.stderr)
        return None
    missing = [name for name in stateful if name not in ck]
    if missing:
        print(f"[{tag}] ignoring {path}: written by another version (it lacks {missing})", file=sys.stderr)
        return None
    for name, obj in stateful.items():
        obj.load_state_dict(ck[name])
    return ck
