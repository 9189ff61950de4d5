"""PASS learns: on a network whose answer is known, its structure keeps the channels that carry the signal.

Construction: a small two-group conv net ("teacher", 8 channels per group) is trained on a synthetic
8-class task (smoothed random prototypes plus noise). It is embedded into a 16-channel net at random channel
positions (seeded); the other 8 channels of each group are near-dead: small random filters, BN gamma
~0.01, beta 0, so they carry (almost) nothing. At 0.5 of the dense MACs the budget keeps ~9-12 channels per
group, so a structure can keep all 8 informative ones of each group; random channels keep about the kept
fraction of them. PASS runs with its defaults except for a short search (100 steps).

Why this test exists: with masks at the writers' norm outputs, a pruned channel's straight-through gradient
is exactly 0 (ReLU'(0) = 0) and PASS kept informative channels no better than random (0.62-0.69 on the
four seeds tried, random 0.38-0.75); masking at the readers (``passnet.masking``) fixed it (0.94 on each).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from passprune.data import DataBundle, TensorSplit
from passprune.engine import evaluate
from passprune.methods import SearchContext, get_method
from passprune.structure import PruningSpace

SIZE, CLASSES, WIDTH = 16, 8, 16
CPU = torch.device("cpu")


class TinyNet(nn.Module):
    """conv-BN-ReLU at 16x16, avg-pool to 4x4, conv-BN-ReLU, GAP, linear: two prunable groups whose MACs are
    close to linear in their widths (the first conv dominates), so a 0.5 budget keeps about half."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), 4)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def synthetic_task(n: int = 1024, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    protos = F.avg_pool2d(torch.randn(CLASSES, 1, SIZE, SIZE, generator=g), 3, 1, 1)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = protos[y] * 3 + 0.6 * torch.randn(n, 1, SIZE, SIZE, generator=g)
    pool = ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8)
    mean, std = (float(pool.float().mean() / 255),), (float(pool.float().std() / 255),)
    idx = torch.arange(n)

    def split(a: int, b: int) -> TensorSplit:
        return TensorSplit(pool, idx[a:b], y[a:b], mean=mean, std=std, pad=0, flip=False)

    return DataBundle(
        name="synthetic",
        train=split(0, 640),
        val=split(640, 832),
        test=split(832, n),
        num_classes=CLASSES,
        in_channels=1,
        image_size=SIZE,
        mean=mean,
        std=std,
        class_names=[str(c) for c in range(CLASSES)],
    )


@pytest.fixture(scope="module")
def task():
    data = synthetic_task()
    torch.manual_seed(0)
    teacher = TinyNet(WIDTH // 2)
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        for x, y in data.train.batches(32, shuffle=True, augment=False, generator=gen, drop_last=True):
            opt.zero_grad()
            F.cross_entropy(teacher(x), y).backward()
            opt.step()
    teacher.eval()
    assert evaluate(teacher, data.val, CPU)["top1"] > 90.0
    return data, teacher


def embed(teacher: TinyNet, seed: int) -> tuple[TinyNet, dict[str, list[int]]]:
    """The teacher's channels at random positions of a twice-as-wide net; the rest near-dead."""
    g = torch.Generator().manual_seed(seed)
    inf1 = torch.randperm(WIDTH, generator=g)[: WIDTH // 2].sort().values
    inf2 = torch.randperm(WIDTH, generator=g)[: WIDTH // 2].sort().values
    torch.manual_seed(seed)
    net = TinyNet(WIDTH)
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.weight.copy_(1e-2 * torch.rand(WIDTH, generator=g))
            bn.bias.zero_()
        net.conv1.weight.mul_(0.1)
        net.conv2.weight.mul_(0.1)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(net.bn1, name)[inf1] = getattr(teacher.bn1, name)
            getattr(net.bn2, name)[inf2] = getattr(teacher.bn2, name)
        net.conv1.weight[inf1] = teacher.conv1.weight
        net.conv2.weight[inf2[:, None], inf1[None, :]] = teacher.conv2.weight
        net.fc.weight.normal_(0, 0.1, generator=g)
        net.fc.weight[:, inf2] = teacher.fc.weight
        net.fc.bias.copy_(teacher.fc.bias)
    return net.eval(), {"conv1": inf1.tolist(), "conv2": inf2.tolist()}


def informative_kept(structure: dict[str, list[int]], informative: dict[str, list[int]]) -> float:
    kept = sum(len(set(structure[g]) & set(idx)) for g, idx in informative.items())
    return kept / sum(len(idx) for idx in informative.values())


def search(method: str, data: DataBundle, net: nn.Module, seed: int, tmp_path, **options):
    spec = get_method(method)
    space = PruningSpace(net, torch.zeros(1, 1, SIZE, SIZE))
    ctx = SearchContext(net, space, data, 0.5, spec.options(options), CPU, seed, tmp_path, batch_size=32)
    res = spec.fn(ctx)
    # one channel is 2-6% of this tiny net's MACs, so the pipeline's 1% tolerance cannot apply; never above it
    assert 0.45 <= space.structure_macs_ratio(res.structure) <= 0.5 + 1e-12
    return res


def test_pass_keeps_the_informative_channels_random_does_not(task, tmp_path):
    data, teacher = task
    net, informative = embed(teacher, seed=0)
    dense = {k: v.clone() for k, v in net.state_dict().items()}
    assert evaluate(net, data.val, CPU)["top1"] > 90.0  # the dead half changes nothing
    res = search("pass", data, net, 0, tmp_path, steps=100, checkpoint_every=0)
    pass_rate = informative_kept(res.structure, informative)

    random_rates = []
    for seed in range(8):  # random's rate averaged over seeds: "about the kept fraction"
        net_r, inf_r = embed(teacher, seed)
        random_rates.append(informative_kept(search("random", data, net_r, seed, tmp_path).structure, inf_r))
    random_mean = sum(random_rates) / len(random_rates)
    print(
        f"informative channels kept: PASS {pass_rate:.3f}; random {random_rates[0]:.3f} (same seed), "
        f"{random_mean:.3f} (mean of 8 seeds)"
    )
    assert pass_rate >= 0.9
    assert random_mean <= 0.75 and random_rates[0] < 0.9
    assert all(torch.equal(dense[k], v) for k, v in net.state_dict().items())  # the search left the net as it was
