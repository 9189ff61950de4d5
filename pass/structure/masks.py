"""Masking: the pruned network simulated on the dense one, by multiplying channels by 0/1 masks.

Masking multiplies a group's output activations *after its norm layers* by a 0/1 (or straight-through)
mask. With BatchNorm in eval mode this is exactly equivalent to removing the channels (tested for every
registered architecture against :func:`~passprune.structure.removal.prune_model`).

The 0/1 tensors themselves (:func:`~passprune.structure.groups.masks_from_structure`) live with the groups
and structures they are made of, below :class:`PruningSpace`; this module holds the hooks that apply them and
sits above it, so the package imports in one direction only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch
import torch.nn as nn

from .space import PruningSpace


class HookMasker(ABC):
    """Forward hooks that multiply channels by each group's current mask; subclasses say where.

    Masks may carry gradients (PASS's straight-through masks): the hooks read ``self.masks`` at every
    forward, so a search loop only swaps tensors. Use as a context manager to remove the hooks.
    """

    def __init__(self, space: PruningSpace, model: nn.Module | None = None) -> None:
        self.space = space
        self.model = model or space.model
        self.masks: dict[str, torch.Tensor] = {}
        self._hooks = self._install(dict(self.model.named_modules()))

    @abstractmethod
    def _install(self, modules: dict[str, nn.Module]) -> list:
        """Register the hooks (ChannelMasker: at the writers' norm outputs; passnet's ReaderMasker: at the
        readers' inputs) and return their handles."""

    def _scaled(self, gid: str, x: torch.Tensor) -> torch.Tensor | None:
        m = self.masks.get(gid)
        if m is None:
            return None
        return x * m.to(x.dtype).view((1, -1) + (1,) * (x.dim() - 2))

    def set(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks = dict(masks)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class ChannelMasker(HookMasker):
    """Multiplies each group's output activations (after its norm layer) by its current mask."""

    def _install(self, modules: dict[str, nn.Module]) -> list:
        def hook_for(gid: str):
            def hook(_mod, _inp, out):
                scaled = self._scaled(gid, out)
                return out if scaled is None else scaled

            return hook

        return [modules[point].register_forward_hook(hook_for(g.id)) for g in self.space.groups for point in g.mask_at]
