"""Dense and pruned model files: plain data (arch name, constructor arguments, kept channels, tensors).

A pruned network is never pickled: it is rebuilt from the dense architecture, the kept channel indices per
dependency group (``structure.json``'s ``kept``) and its weights, so every file here loads with
``torch.load(weights_only=True)`` -- no code from a results folder is ever executed -- and survives
refactors of the model classes. A file that is truncated, corrupted or of the wrong kind fails with a
message naming it and the job that rewrites it, instead of an unpickling traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .files import atomic_torch_save

#: Keys of a dense checkpoint; a pruned one adds ``structure``.
DENSE_KEYS = ("arch", "model_kwargs", "state_dict", "input_shape")


class CheckpointError(ValueError):
    """A model file that cannot be used (missing, truncated, corrupted, or not a passprune model)."""


def build(arch: str, kwargs: dict[str, Any], pretrained: bool = False, weights_dir: str | None = None) -> nn.Module:
    """A fresh network of a registered architecture (``passprune.models``)."""
    from .models import build_model

    return build_model(arch, pretrained=pretrained, weights_dir=weights_dir, **kwargs)


def example_input(data) -> torch.Tensor:
    """One zero image of the dataset's shape: what the dependency graph and the MACs model trace."""
    return torch.zeros(1, data.in_channels, data.image_size, data.image_size)


def read(path: str | Path, kind: str = "model", required: tuple[str, ...] = DENSE_KEYS) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; every failure names the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path}: no such file; run the job that writes it (snakemake rebuilds it)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many types for a bad file; all mean the same here)
        raise CheckpointError(
            f"{kind} {path} is truncated or corrupted ({type(err).__name__}: {err}); delete it and "
            "rerun the job that writes it (snakemake reruns it once the file is gone)"
        ) from None
    missing = [k for k in required if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise CheckpointError(
            f"{kind} {path} is not a passprune model file (missing {missing}); delete it and rerun "
            "the job that writes it"
        )
    return ck


def _save(
    path: str | Path,
    arch: str,
    model_kwargs: dict[str, Any],
    model: nn.Module,
    input_shape: list[int],
    structure: dict[str, list[int]] | None = None,
) -> Path:
    """One layout for every model file (key order fixed, so the same model gives the same bytes)."""
    record: dict[str, Any] = {"arch": arch, "model_kwargs": dict(model_kwargs)}
    if structure is not None:
        record["structure"] = structure
    record["state_dict"] = model.to(memory_format=torch.contiguous_format).state_dict()
    record["input_shape"] = list(input_shape)
    return atomic_torch_save(record, path)


def _load_weights(model: nn.Module, ck: dict[str, Any], what: str, fix: str) -> None:
    """``load_state_dict`` with an error that says which file does not fit and how to get a good one."""
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{what}: {str(err).splitlines()[0]}; {fix}") from None


def save_dense(
    path: str | Path, arch: str, model_kwargs: dict[str, Any], model: nn.Module, input_shape: list[int]
) -> Path:
    """A dense (or sparsity-trained) network: rebuildable with :func:`build` + ``load_state_dict``."""
    return _save(path, arch, model_kwargs, model, input_shape)


def load_dense(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The dense network of a ``model.pt`` written by pretraining (or a sparsity-trained ``search_model.pt``)."""
    ck = read(path, "dense model")
    model = build(ck["arch"], ck["model_kwargs"])
    what = f"dense model {path}: its weights do not fit {ck['arch']}({ck['model_kwargs']})"
    _load_weights(model, ck, what, "delete it and rerun its pretraining")
    return model.to(device), ck


def save_pruned(
    path: str | Path,
    arch: str,
    model_kwargs: dict[str, Any],
    structure: dict[str, list[int]],
    model: nn.Module,
    input_shape: list[int],
) -> Path:
    """A physically pruned network as data: dense architecture + kept channels + weights."""
    return _save(path, arch, model_kwargs, model, input_shape, structure)


def load_pruned(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a pruned network: build the dense architecture, remove the channels not kept, load weights."""
    from .structure import prune_model

    ck = read(path, "pruned model", DENSE_KEYS + ("structure",))
    model = build(ck["arch"], ck["model_kwargs"])
    prune_model(model, torch.zeros(ck["input_shape"]), ck["structure"])
    what = f"pruned model {path}: its weights do not fit its structure"
    _load_weights(model, ck, what, "delete it and rerun its fine-tuning")
    return model, ck
