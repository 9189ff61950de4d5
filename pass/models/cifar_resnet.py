"""CIFAR-style ResNets: ``resnet20``, ``resnet56`` (He et al. 2016, sec. 4.2) and ``resnet18_cifar``.

Shortcuts use "option B" (1x1 conv + BN projection whenever the shape changes) instead of the
paper's parameter-free "option A" (stride-2 subsampling + zero channel padding). Why: option A
is a lambda / ``F.pad`` whose channel mapping torch-pruning cannot trace, so the residual
additions would not be coupled into one pruning group; a projection conv is an ordinary layer
that the dependency graph handles. The cost is a few thousand extra parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import MODELS, init_weights_, scaled


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus an identity or (option B) projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3, 1)
        needs_projection = stride != 1 or cin != cout
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stride-1 stem (no max-pool: 32 px inputs are too small to downsample early), stages
    of BasicBlocks (the first stage at stride 1, later ones halve the resolution), global
    average pooling and one Linear classifier."""

    def __init__(
        self,
        stage_widths: Sequence[int],
        stage_blocks: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_channels, stage_widths[0], 3, 1)
        self.relu = nn.ReLU(inplace=True)
        cin = stage_widths[0]
        for i, (cout, blocks) in enumerate(zip(stage_widths, stage_blocks)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            cin = cout
        self.num_stages = len(stage_widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def _cifar_resnet(
    widths: Sequence[int], blocks: Sequence[int], num_classes: int, in_channels: int, width: float
) -> CifarResNet:
    return CifarResNet([scaled(w, width) for w in widths], blocks, num_classes, in_channels)


@MODELS.register("resnet20")
def resnet20(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """ResNet-20: 3 stages x 3 BasicBlocks, widths 16-32-64."""
    return _cifar_resnet((16, 32, 64), (3, 3, 3), num_classes, in_channels, width)


@MODELS.register("resnet56")
def resnet56(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """ResNet-56: 3 stages x 9 BasicBlocks, widths 16-32-64."""
    return _cifar_resnet((16, 32, 64), (9, 9, 9), num_classes, in_channels, width)


@MODELS.register("resnet18_cifar")
def resnet18_cifar(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """ResNet-18 layout (4 stages x 2 BasicBlocks, widths 64-128-256-512) with the CIFAR stem."""
    return _cifar_resnet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, in_channels, width)
