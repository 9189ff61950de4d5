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

import torch.nn as nn

from ...structure import HookMasker


class ReaderMasker(HookMasker):
    """Multiplies the input channels of every layer that reads a group by the group's current mask.

    Same interface as ``structure.ChannelMasker`` (``set``, context manager); masks may carry gradients.
    """

    def _install(self, modules: dict[str, nn.Module]) -> list:
        def hook_for(gid: str):
            def hook(_mod, args):
                scaled = self._scaled(gid, args[0])
                return None if scaled is None else (scaled,) + tuple(args[1:])

            return hook

        return [
            modules[layer.name].register_forward_pre_hook(hook_for(layer.in_group))
            for layer in self.space.layers
            if layer.in_group is not None
        ]
