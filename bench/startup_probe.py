"""Child process of part 2: what a job does before its first training step, one timestamp per stage.

Run by ``bench/startup.py`` as a fresh interpreter (``python bench/startup_probe.py DENSE SETTINGS_JSON``);
the parent notes the wall clock just before it starts us, so "python" below is interpreter start-up. The
imports are done one library at a time (torch, then torch_pruning, torchvision, mlflow, then passprune's
own modules), each stage's cost being what it adds to those before it. Then the same calls a job makes:
data through the decoded cache (``passprune.data.load_dataset``), the dense model rebuilt from model.pt, its
``PruningSpace``, an MLflow run opened (when tracking is on) and one training step. Prints one JSON line:
``[stage, wall clock, CPU seconds so far]`` per stage.
"""

import time

T = [("python", time.time(), time.process_time())]


def mark(name: str) -> None:
    """Wall clock and this process's CPU seconds (all threads) at the end of a stage."""
    T.append((name, time.time(), time.process_time()))


import json  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

mark("import torch")
import torch_pruning  # noqa: E402,F401

mark("import torch_pruning")
import torchvision  # noqa: E402,F401

mark("import torchvision")
from mlflow.entities import Metric, Param  # noqa: E402,F401
from mlflow.tracking import MlflowClient  # noqa: E402,F401

mark("import mlflow")
import passprune.data  # noqa: E402
import passprune.engine  # noqa: E402,F401
import passprune.methods  # noqa: E402,F401
import passprune.models  # noqa: E402,F401
import passprune.tracking  # noqa: E402
from passprune.structure import PruningSpace  # noqa: E402

mark("import passprune (the rest)")


def main() -> None:
    dense, settings = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(int(settings.get("threads", 1)))
    d = settings["data"]
    data = passprune.data.load_dataset(
        "fashion_mnist",
        d["root"],
        seed=0,
        val_size=d["val_size"],
        train_subset=d["train_subset"],
        test_subset=d["test_subset"],
    )
    mark("data (decoded cache + splits)")
    ck = torch.load(dense, map_location="cpu", weights_only=False)
    model = passprune.models.build_model(ck["arch"], **ck["model_kwargs"])
    model.load_state_dict(ck["state_dict"])
    mark("model build + load")
    x0 = torch.zeros(1, data.in_channels, data.image_size, data.image_size)
    PruningSpace(model, x0, max_prune_frac=0.9)
    mark("PruningSpace")
    run = passprune.tracking.JobRun(settings.get("tracking"), "bench/startup", {"stage": "bench"}, settings)
    mark("MLflow run opened")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = next(
        iter(
            data.train.batches(
                64, shuffle=True, augment=False, generator=torch.Generator().manual_seed(0), drop_last=True
            )
        )
    )
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item()
    mark("first training step")
    run.__exit__(None, None, None)
    print(json.dumps(T))


if __name__ == "__main__":
    main()
