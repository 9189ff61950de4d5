"""The MACs model: conv+linear multiply-accumulates as a function of each group's kept width.

``macs`` counts multiply-accumulates of conv and linear layers (what pruning papers call "FLOPs");
PyTorch's ``FlopCounterMode`` reports exactly 2x this number (:func:`conv_linear_macs`, the reference the
tests compare against). Reports also give Torch-Pruning's own count (:func:`count_macs_params`), which adds
BatchNorm and is within ~0.5% of ours.

Why a closed form rather than a traced count: selection under a budget evaluates the MACs of thousands of
candidate widths. Every layer's cost is ``per_unit x c_in x c_out``, where each factor is either a group's
kept width or a fixed count, so the whole network is a constant, a linear term per group and a bilinear term
per (reader group, writer group) pair -- three numpy arrays, evaluated in microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch_pruning as tp

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


@dataclass
class LayerCost:
    """MACs of one conv/linear as a function of its in/out group widths."""

    name: str
    per_unit: float  # kernel area x output positions
    in_group: str | None
    out_group: str | None
    in_fixed: int  # channel count when in_group is None
    out_fixed: int
    conv_groups: int  # 1 for dense convs; depthwise convs are handled by ``depthwise``
    depthwise: bool


def layer_costs(
    modules: Mapping[str, nn.Module],
    out_positions: Mapping[str, int],
    in_group_of: Mapping[str, str],
    out_group_of: Mapping[str, str],
) -> list[LayerCost]:
    """One :class:`LayerCost` per conv/linear that ran in the traced forward, in module order."""
    layers = []
    for name, mod in modules.items():
        if not isinstance(mod, WEIGHT_LAYERS) or name not in out_positions:
            continue
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            cin, cout, cg = mod.in_channels, mod.out_channels, mod.groups
        else:
            k, cin, cout, cg = 1, mod.in_features, mod.out_features, 1
        depthwise = cg > 1 and cg == cin == cout
        if cg > 1 and not depthwise:
            raise ValueError(f"grouped (non-depthwise) conv {name} is not supported")
        layers.append(
            LayerCost(
                name,
                float(k * out_positions[name]),
                in_group_of.get(name),
                out_group_of.get(name),
                cin,
                cout,
                cg,
                depthwise,
            )
        )
    return layers


class MacsModel:
    """``macs(c) = const + lin . c + sum_pairs w * c[i] * c[o]`` over the groups' kept widths ``c``."""

    def __init__(self, layers: Sequence[LayerCost], group_index: Mapping[str, int]) -> None:
        self.const = 0.0
        self.lin = np.zeros(len(group_index))
        pairs: dict[tuple[int, int], float] = {}
        for L in layers:
            gi = group_index.get(L.in_group) if L.in_group else None
            go = group_index.get(L.out_group) if L.out_group else None
            if L.depthwise:
                if go is None:
                    self.const += L.per_unit * L.out_fixed
                else:
                    self.lin[go] += L.per_unit
                continue
            if gi is None and go is None:
                self.const += L.per_unit * L.in_fixed * L.out_fixed
            elif gi is None:
                self.lin[go] += L.per_unit * L.in_fixed
            elif go is None:
                self.lin[gi] += L.per_unit * L.out_fixed
            else:
                pairs[(gi, go)] = pairs.get((gi, go), 0.0) + L.per_unit
        self.pair_i = np.array([p[0] for p in pairs], dtype=np.int64)
        self.pair_o = np.array([p[1] for p in pairs], dtype=np.int64)
        self.pair_w = np.array(list(pairs.values()))

    def __call__(self, c: np.ndarray) -> float:
        return float(self.const + self.lin @ c + (self.pair_w * c[self.pair_i] * c[self.pair_o]).sum())

    def share(self, sizes: np.ndarray, dense_macs: float) -> np.ndarray:
        """``c_g * dMACs/dc_g / MACs`` at the dense widths ``sizes`` (a layer between two groups counts
        for both)."""
        c = sizes.astype(float)
        grad = self.lin.copy()
        np.add.at(grad, self.pair_i, self.pair_w * c[self.pair_o])
        np.add.at(grad, self.pair_o, self.pair_w * c[self.pair_i])
        return c * grad / dense_macs


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[float, int]:
    """Torch-Pruning's MACs (conv, linear and norm layers) and parameter count."""
    was = model.training
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    model.train(was)
    return float(macs), int(params)


def conv_linear_macs(model: nn.Module, example_inputs: torch.Tensor) -> float:
    """Conv+linear MACs measured by PyTorch's own FLOP counter (FLOPs / 2); the reference for our model."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(example_inputs)
    model.train(was)
    return fc.get_total_flops() / 2.0


@dataclass(frozen=True)
class ModelCost:
    """What a report states about a network's size: both MACs counts and the parameter count."""

    macs: float  # conv+linear, PyTorch's FLOP counter / 2 (as :func:`conv_linear_macs`)
    macs_tp: float  # Torch-Pruning's count, norms included (as :func:`count_macs_params`)
    params: int


def count_costs(model: nn.Module, example_inputs: torch.Tensor) -> ModelCost:
    """:func:`conv_linear_macs` and :func:`count_macs_params` from ONE forward pass: Torch-Pruning's counter
    (hooks that only read shapes) runs inside PyTorch's FLOP counter, which sees the same convolutions and
    matmuls. Why: a report counted each model twice, and on a large network every forward pass costs."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        macs_tp, params = tp.utils.count_ops_and_params(model, example_inputs)
    model.train(was)
    return ModelCost(fc.get_total_flops() / 2.0, float(macs_tp), int(params))
