"""Atomic file outputs and provenance.

Files are the pipeline's truth (tables and figures are rebuilt from them), so a crash must never leave a
half-written file that looks finished: everything is written to a temporary name in the same folder and
renamed into place.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` via a temporary file in the same folder (so the rename is atomic) and ``os.replace``;
    the temporary file is removed if ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def read_json_checked(path: str | os.PathLike, kind: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object another job wrote, with an error naming the file and the fix when it is missing,
    truncated or corrupted (a half-copied results folder, a full disk), or lacks a key this reader needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path}: no such file; run the job that writes it (snakemake rebuilds it)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{kind} {path} is truncated or corrupted (not valid JSON: {err}); delete it and rerun "
            "the job that writes it"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(
            f"{kind} {path}: expected a JSON object, got {type(obj).__name__}; delete it and rerun "
            "the job that writes it"
        )
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(
            f"{kind} {path} lacks {missing}; it was not written by this version of passprune's "
            "search, or is damaged: delete it and rerun the job that writes it"
        )
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_state(root: str | os.PathLike | None = None, timeout: float = 5) -> tuple[str, bool] | None:
    """(HEAD commit, dirty flag) of the repository at ``root`` (default: this checkout), or None outside git."""
    root = root or Path(__file__).resolve().parent.parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=timeout)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (head.stdout.strip(), bool(dirty.stdout.strip())) if head.returncode == 0 else None


def git_commit() -> str:
    """The commit a result was produced with, suffixed ``-dirty`` when tracked files had changes."""
    state = git_state()
    return "unknown" if state is None else state[0] + ("-dirty" if state[1] else "")


def package_version(dist: str) -> str:
    """The installed version of distribution ``dist`` (``"not installed"`` when absent), read from its metadata:
    importing torchvision just for ``__version__`` costs a job about a CPU second (it pulls in torch._dynamo).
    The metadata is also the truer figure: torch_pruning 1.6.1 still says ``__version__ = "1.6.0"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance() -> dict[str, Any]:
    """What a result needs to be traced back: code version, library versions, hardware."""
    import torch

    from . import __version__
    from .devices import runtime_info

    return {
        "passprune": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torchvision": package_version("torchvision"),
        "torch_pruning": package_version("torch-pruning"),
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
        # forked by the workflow's job server (passprune.jobserver) rather than started as its own process
        "warm_start": bool(getattr(sys.modules.get("passprune.jobserver"), "forked_job", False)),
        **runtime_info(),  # device, gpu_name, torch, cuda (the wheel's CUDA), cudnn
    }
