"""Image transforms: normalisation on device, batched augmentation for in-memory sets, the PIL recipes.

Why two kinds: in-memory sets (Fashion-MNIST, CIFAR) are augmented a *whole batch* at a time with tensor
ops (:func:`batch_translate` plus a flip), which on a 2-core box is far faster than per-sample PIL
transforms and runs unchanged on a GPU; file-backed sets decode with PIL and use torchvision's transforms
(:func:`imagenet_style_transforms`). Both end as uint8 and are normalised on the device
(:func:`normalise_`), so batches travel as uint8 (4x less traffic than float).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalise_(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32, ``(x/255 - mean) / std`` in one fused affine op."""
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)
    return x.to(torch.float32).mul_(scale).sub_(shift)


def batch_translate(x: Tensor, shifts: Tensor, pad: int) -> Tensor:
    """Translate every image of a batch by its own ``(dy, dx)`` in ``[-pad, pad]``, zero fill.

    Equivalent to torchvision's ``RandomCrop(size, padding=pad)`` per sample, but vectorised: the
    batch is zero-padded once and each sample's window is cut out with two ``gather`` calls (rows,
    then columns), so there is no Python loop over the batch and it runs unchanged on a GPU.

    Args:
        x: ``(N, C, H, W)`` images, any dtype.
        shifts: ``(N, 2)`` int64 offsets into the padded image, each in ``[0, 2*pad]``.
        pad: padding in pixels.
    """
    if pad == 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))  # zero fill, like RandomCrop(padding=pad)
    shifts = shifts.to(x.device)
    rows = shifts[:, 0:1] + torch.arange(h, device=x.device)  # (N, H)
    cols = shifts[:, 1:2] + torch.arange(w, device=x.device)  # (N, W)
    rows = rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    xp = xp.gather(2, rows)  # (N, C, H, W + 2 pad)
    cols = cols.view(n, 1, 1, w).expand(n, c, h, w)
    return xp.gather(3, cols)


def imagenet_style_transforms(image_size: int) -> tuple[Callable[[Any], Tensor], Callable[[Any], Tensor]]:
    """Standard ImageNet recipe: RandomResizedCrop+flip for training, Resize(s*256/224)+CenterCrop
    for evaluation.  Both end in ``PILToTensor`` (uint8) because normalisation happens on device."""
    from torchvision import transforms as T

    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.PILToTensor()])
    evaluate = T.Compose([T.Resize(int(math.floor(image_size * 256 / 224))), T.CenterCrop(image_size), T.PILToTensor()])
    return train, evaluate
