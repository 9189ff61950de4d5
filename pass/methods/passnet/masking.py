"""Masks for PASS's search, applied where the channels are *read*, so pruned channels still get gradients.

Why not ``structure.ChannelMasker`` (masks at the writers' norm outputs): there a pruned channel's
activation is exactly 0 before the ReLU that follows (or before the residual add and its ReLU), and ReLU's
derivative at 0 is 0. So dL/dmask_j = 0 for every pruned channel: the straight-through estimator can only
tell the hypernetwork to drop kept channels, never that a pruned one should come back. Measured on a
constructed task (tests/test_pass_learns.py): with writer-side masks PASS keeps informative channels no
better than random.

Masking each conv/linear *input* instead (forward pre-hooks on every layer that reads the group) removes
the channel from every computation just as well -- everything between a writer and its readers (norms,
activations, residual adds, pooling) is per channel -- so the forward pass still equals the physically
pruned network (tested for every architecture), while dL/dmask_j = sum <dL/d(input_j), x_j> with the
channel's real activation x_j, also for a pruned channel.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from ...structure import PruningSpace


class ReaderMasker:
    """Multiplies the input channels of every layer that reads a group by the group's current mask.

    Same interface as ``structure.ChannelMasker`` (``set``, context manager); masks may carry gradients.
    """

    def __init__(self, space: PruningSpace, model: nn.Module | None = None) -> None:
        self.space = space
        self.model = model or space.model
        self.masks: dict[str, torch.Tensor] = {}
        mods = dict(self.model.named_modules())
        self._hooks = []
        for layer in space.layers:
            if layer.in_group is not None:
                self._hooks.append(mods[layer.name].register_forward_pre_hook(self._hook_for(layer.in_group)))

    def _hook_for(self, gid: str):
        def hook(_mod, args):
            m = self.masks.get(gid)
            if m is None:
                return None
            x = args[0]
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return (x * m.to(x.dtype).view(shape),) + tuple(args[1:])

        return hook

    def set(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks = dict(masks)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> "ReaderMasker":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
